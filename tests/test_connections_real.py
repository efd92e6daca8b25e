"""The connection pools against the real PostgreSQL (psycopg2) and MariaDB (PyMySQL).

Each hub runs this file in its own process, so every case runs under eventlet
and gevent (monkey patched, psycopg2 made green by its wait callback) and under
plain threads.  The pools are observed through their public API only
(``stats()``, ``raw_connection()``, the driver profile); waits have generous
bounds, since the servers share the machine with other work.
"""

from __future__ import annotations

import socket
import time

import pytest

from greenpool import ConnectTimeout, PoolTimeout, RawConnectionPool, TpooledConnectionPool
from greenpool.drivers import ReturnState
from greenpool.health import socket_hung_up
from greenpool.vetting import SOCKET_TEST_AFTER
from tests.support.tasks import Spawned, wait_until

pytestmark = pytest.mark.timeout(240)


class Backend:
    def __init__(self, name, module, kwargs, sleep_sql, whoami_sql):
        self.name = name
        self.module = module
        self.kwargs = kwargs
        self.sleep_sql = sleep_sql
        self.whoami_sql = whoami_sql


@pytest.fixture(params=["postgres", "mariadb"])
def backend(request):
    kwargs = request.getfixturevalue(request.param)
    if request.param == "postgres":
        import psycopg2

        return Backend(
            "postgres", psycopg2, kwargs, "SELECT pg_sleep(%s)", "SELECT current_database()"
        )
    import pymysql

    return Backend("mariadb", pymysql, kwargs, "SELECT SLEEP(%s)", "SELECT DATABASE()")


def _skip_pymysql_in_gevent_threads(pool_cls, backend, hub):
    if pool_cls is TpooledConnectionPool and backend.name == "mariadb" and hub.name == "gevent":
        pytest.skip(
            "PyMySQL is pure Python: under gevent's monkey patching its sockets belong to the "
            "hub's thread, so it cannot run in OS threads; use RawConnectionPool (it is green)"
        )


@pytest.fixture
def make_real_pool(pool_cls, backend, hub):
    """Make pools of ``pool_cls`` (raw, then tpooled) on ``backend``; closed afterwards."""
    _skip_pymysql_in_gevent_threads(pool_cls, backend, hub)
    pools = []

    def make(*args, **options):
        options.setdefault("name", f"{backend.name}-test")
        pool = pool_cls(backend.module, *args, hub=hub, **options, **backend.kwargs)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


@pytest.fixture
def pool(make_real_pool):
    return make_real_pool(0, 4)


def _scalar(conn, sql, *params):
    cur = conn.cursor()
    cur.execute(sql, params or None)
    row = cur.fetchone()
    cur.close()
    return row[0]


def test_query_through_the_pool(pool, backend):
    with pool.item() as conn:
        assert _scalar(conn, backend.whoami_sql) == "test"
        assert _scalar(conn, "SELECT 1 + 1") == 2
    s = pool.stats()
    assert (s.size, s.idle, s.opened) == (1, 1, 1)


def test_driver_attributes_are_reachable(pool, backend):
    with pool.item() as conn:
        if backend.name == "postgres":
            assert conn.server_version > 90000
            assert conn.closed == 0
            conn.autocommit = True
            assert conn.autocommit is True
            conn.autocommit = False
        else:
            assert conn.open is True
            conn.ping(reconnect=False)
            assert conn.get_autocommit() is False


def test_uncommitted_work_is_rolled_back_on_return(pool, backend, hub):
    table = f"greenpool_rollback_{hub.name}_{type(pool).__name__.lower()}"
    with pool.item() as conn:
        cur = conn.cursor()
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(f"CREATE TABLE {table} (x INT)")
        conn.commit()
        cur.execute(f"INSERT INTO {table} VALUES (1)")
        # returned without commit
    with pool.item() as conn:
        raw = pool.raw_connection(conn)
        assert _scalar(conn, f"SELECT COUNT(*) FROM {table}") == 0
        assert pool.driver.in_transaction(raw) is not False
        conn.cursor().execute(f"DROP TABLE {table}")
        conn.commit()
        assert pool.driver.in_transaction(raw) is not True


def test_green_threads_overlap_their_queries(pool, backend, hub):
    """A query blocks only its own green thread: others run meanwhile."""
    if not hub.green:
        pytest.skip("overlap of green threads is a green-hub property")
    ticks = []
    done = hub.event()

    def ticker():
        while not done.is_set():
            hub.sleep(0.01)
            ticks.append(hub.monotonic())

    with pool.item(timeout=30) as conn:
        task = Spawned(hub, ticker)
        _scalar(conn, backend.sleep_sql, 0.3)
        during = len(ticks)
    done.set()
    task.wait(30)
    # A blocked hub would not have run the ticker at all (a loaded machine may
    # run it less often than every 10 ms).
    assert during >= 2, "the hub was blocked during the query"


def test_many_workers_share_four_connections(pool, backend, hub):
    workers = 50 if hub.green else 12
    seen = []

    def work():
        for _ in range(3):
            with pool.item(timeout=30) as conn:
                seen.append(_scalar(conn, "SELECT 1"))

    tasks = [Spawned(hub, work) for _ in range(workers)]
    for task in tasks:
        task.wait(60)
    assert len(seen) == workers * 3
    s = pool.stats()
    assert s.opened <= 4 and s.in_use == 0 and pool.free() == 4


def test_pymysql_with_block_returns_connection_to_pool(backend, hub):
    if backend.name != "mariadb":
        pytest.skip("about PyMySQL, whose `with conn:` closes the connection")
    pool = RawConnectionPool(backend.module, hub=hub, **backend.kwargs)
    with pool.get() as conn:
        assert _scalar(conn, "SELECT 1") == 1
    assert not conn
    s = pool.stats()
    assert (s.idle, s.in_use, s.closed) == (1, 0, 0)
    pool.close()


@pytest.fixture
def deaf_port():
    """A loopback listener that accepts TCP connections but never says a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield sock.getsockname()[1]
    sock.close()


@pytest.mark.parametrize("pool_cls", [RawConnectionPool, TpooledConnectionPool])
def test_connect_timeout_against_a_deaf_server(backend, hub, deaf_port, pool_cls):
    """Each connect gives up at connect_timeout and is retried; the caller waits its
    own timeout and gets a PoolTimeout chaining the ConnectTimeout."""
    _skip_pymysql_in_gevent_threads(pool_cls, backend, hub)
    kwargs = dict(backend.kwargs, port=deaf_port)
    pool = pool_cls(backend.module, connect_timeout=0.2, reconnect_backoff=(0.05, 0.1),
                    hub=hub, **kwargs)
    try:
        start = time.monotonic()
        with pytest.raises(PoolTimeout) as info:
            pool.get(timeout=1.0)
        elapsed = time.monotonic() - start
        assert 1.0 <= elapsed < 30, elapsed  # its own timeout, never a hang
        assert isinstance(info.value.__cause__, ConnectTimeout)
        assert "connect_timeout=0.2" in str(info.value)
        assert pool.stats().connect_timeouts >= 2  # retried while the caller waited
        wait_until(hub, lambda: pool.stats().size == 0, timeout=30)
    finally:
        pool.close()


BACKEND_ID_SQL = {"postgres": "SELECT pg_backend_pid()", "mariadb": "SELECT CONNECTION_ID()"}


@pytest.mark.parametrize("pool_cls", [RawConnectionPool, TpooledConnectionPool])
def test_500_green_threads_share_5_connections(backend, hub, pool_cls):
    """Every query answered; no server session used by two green threads at once."""
    _skip_pymysql_in_gevent_threads(pool_cls, backend, hub)
    workers = 500 if hub.green else 40
    pool = pool_cls(backend.module, 0, 5, hub=hub, **backend.kwargs)
    holders: dict = {}
    clashes = []
    answered = []
    sessions = set()

    def work(n):
        with pool.item(timeout=60) as conn:
            session = _scalar(conn, BACKEND_ID_SQL[backend.name])
            if session in holders:
                clashes.append((n, holders[session]))
            holders[session] = n
            answered.append(_scalar(conn, "SELECT %s", n))
            sessions.add(session)
            del holders[session]

    tasks = [Spawned(hub, work, n) for n in range(workers)]
    for task in tasks:
        task.wait(120)
    assert clashes == []
    assert sorted(answered) == list(range(workers))
    assert len(sessions) <= 5
    s = pool.stats()
    assert s.opened <= 5 and s.in_use == 0 and s.requests == workers
    pool.close()


@pytest.mark.parametrize("pool_cls", [RawConnectionPool, TpooledConnectionPool])
def test_workers_keeping_their_last_connection_share_sessions_safely(backend, hub, pool_cls):
    """Workers that hold their last (returned) wrapper while they wait for the next:
    no server session used by two at once, and no returned wrapper comes back to
    life."""
    _skip_pymysql_in_gevent_threads(pool_cls, backend, hub)
    workers, rounds = (40, 10) if hub.green else (8, 10)
    pool = pool_cls(backend.module, 0, 4, hub=hub, **backend.kwargs)
    holders: dict = {}
    returned_and_held: set = set()
    problems = []

    def work(n):
        conn = None
        for _ in range(rounds):
            previous = conn
            conn = pool.get(timeout=60)
            if id(conn) in returned_and_held or (previous is not None and previous):
                problems.append(("wrapper handed out while held", n))
            if previous is not None:
                returned_and_held.discard(id(previous))
            del previous
            session = _scalar(conn, BACKEND_ID_SQL[backend.name])
            if session in holders:
                problems.append(("session shared", n, holders[session]))
            holders[session] = n
            hub.sleep(0)
            del holders[session]
            pool.put(conn)
            returned_and_held.add(id(conn))
        returned_and_held.discard(id(conn))

    tasks = [Spawned(hub, work, n) for n in range(workers)]
    for task in tasks:
        task.wait(120)
    assert problems == []
    s = pool.stats()
    assert s.opened <= 4 and s.in_use == 0 and s.requests == workers * rounds
    pool.close()


def test_idle_and_age_expiry_close_real_connections(backend, hub):
    """max_idle 0.1 s, max_age 0.3 s (exact timing is tested on the fake driver)."""
    opened = []
    pool = RawConnectionPool(backend.module, 0, 2, 0.1, 0.3, hub=hub, configure=opened.append,
                             **backend.kwargs)
    try:
        with pool.item(timeout=30) as conn:
            first = _scalar(conn, BACKEND_ID_SQL[backend.name])
        # Closed by maintenance (in a thread of its own on the threads hub): counted
        # once the close is done, a moment after the slot is given up.
        wait_until(hub, lambda: pool.stats().size == 0 and pool.stats().expired == 1, timeout=30)
        assert pool.driver.is_closed(opened[0])
        with pool.item(timeout=30) as conn:
            second = _scalar(conn, BACKEND_ID_SQL[backend.name])
            hub.sleep(0.35)  # outlives max_age while checked out
        assert second != first
        assert pool.stats().size == 0  # too old when it came back: closed
        assert pool.stats().expired == 2 and pool.driver.is_closed(opened[1])
    finally:
        pool.close()


def test_sqlite_through_the_tpooled_pool(hub, tmp_path):
    import sqlite3

    path = str(tmp_path / "t.db")
    pool = TpooledConnectionPool(sqlite3, 0, 2, hub=hub, check_same_thread=False, database=path)
    with pool.item() as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.commit()
        conn.execute("INSERT INTO t VALUES (2)")  # left uncommitted: rolled back on return
    with pool.item() as conn:
        assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (1,)
        cur = conn.cursor()
        cur.execute("SELECT x FROM t")
        assert [row for row in cur] == [(1,)]
    assert pool.stats().opened == 1
    pool.close()


def test_sqlite_return_state_closed_dirty_and_idle(hub, tmp_path, pool_cls):
    import sqlite3

    pool = pool_cls(sqlite3, 0, 1, hub=hub, check_same_thread=False,
                    database=str(tmp_path / "s.db"))
    with pool.item() as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
        conn.commit()
    with pool.item() as conn:
        conn.execute("INSERT INTO t VALUES (1)")  # open transaction: rolled back on return
    with pool.item() as conn:
        assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (0,)
        pool.raw_connection(conn).close()  # closed under the pool's feet: discarded on return
    stats = pool.stats()
    assert (stats.opened, stats.closed, stats.size) == (1, 1, 0)
    with pool.item() as conn:
        assert conn.execute("SELECT COUNT(*) FROM t").fetchone() == (0,)
    pool.close()


def test_idle_connection_reads_idle_by_identity(pool, backend):
    """put()'s common return compares the driver profile's reading by identity: for
    a real connection with nothing open it must be ReturnState.IDLE itself, and the
    return then needs no rollback."""
    with pool.item() as conn:
        raw = pool.raw_connection(conn)
        if backend.name == "postgres":
            _scalar(conn, "SELECT 1")
            raw.commit()  # psycopg2: transaction status back to idle
        else:
            raw.autocommit(True)  # PyMySQL: only autocommit leaves nothing open
            _scalar(conn, "SELECT 1")
        assert pool.driver.return_state(raw) is ReturnState.IDLE
    with pool.item() as conn:
        assert pool.raw_connection(conn) is raw  # kept: it came back clean
        if backend.name == "mariadb":
            raw.autocommit(False)
        assert _scalar(conn, "SELECT 1") == 1


def test_connection_closed_under_the_pool_is_discarded_on_return(pool, backend):
    with pool.item() as conn:
        pool.raw_connection(conn).close()
    stats = pool.stats()
    assert stats.closed == 1 and stats.size == 0
    with pool.item() as conn:
        assert _scalar(conn, "SELECT 1") == 1


@pytest.mark.parametrize("check", ["ping", "SELECT 1"])
def test_health_check_leaves_no_transaction_open(backend, hub, check):
    pool = RawConnectionPool(backend.module, hub=hub, check=check, check_interval=0,
                             **backend.kwargs)
    with pool.item():
        pass
    with pool.item() as conn:  # health-checked on the way out of the pool
        raw = pool.raw_connection(conn)
        assert pool.driver.in_transaction(raw) is not True
        if backend.name == "postgres":
            conn.autocommit = True  # psycopg2 refuses this inside a transaction
            conn.autocommit = False
    assert pool.stats().opened == 1
    pool.close()


def _backend_id(conn, backend):
    sql = "SELECT pg_backend_pid()" if backend.name == "postgres" else "SELECT CONNECTION_ID()"
    return _scalar(conn, sql)


def _kill_from_outside(backend, backend_id):
    admin = backend.module.connect(**backend.kwargs)
    try:
        cur = admin.cursor()
        if backend.name == "postgres":
            cur.execute("SELECT pg_terminate_backend(%s)", (backend_id,))
        else:
            cur.execute(f"KILL {int(backend_id)}")
        cur.close()
        admin.commit()
    finally:
        admin.close()


@pytest.mark.parametrize("how", ["killed by the server", "closed behind the pool's back"])
def test_dead_idle_connection_is_replaced_within_check_interval(make_real_pool, backend, hub,
                                                                how):
    """No round trip is due (check_interval 60 s here): the socket test sees the server's
    hang-up, or the closed descriptor, and the caller gets a working connection."""
    pool = make_real_pool(0, 4, check_interval=60.0)
    with pool.item(timeout=30) as conn:
        first = _backend_id(conn, backend)
        raw = pool.raw_connection(conn)
    if how == "killed by the server":
        fileno = pool.driver.fileno(raw)
        _kill_from_outside(backend, first)
        # The server's notice may take a while on a loaded machine: wait until it is
        # there to be seen (without reading it), as it is for a connection idle a while.
        wait_until(hub, lambda: socket_hung_up(fileno), timeout=30)
    else:
        raw.close()
    hub.sleep(SOCKET_TEST_AFTER * 2)  # idle long enough to get the socket test
    with pool.item(timeout=30) as conn:
        assert _backend_id(conn, backend) != first
    stats = pool.stats()
    assert (stats.opened, stats.lost, stats.size) == (2, 1, 1)
