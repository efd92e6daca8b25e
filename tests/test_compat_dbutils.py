"""greenpool.compat.dbutils: DBUtils' documented behaviour, its fixes, real MariaDB/PostgreSQL.

Runs once per hub (threads, eventlet, gevent).  Tests named ``test_fix_*``
fail on DBUtils' own PooledDB/PersistentDB.
"""

from __future__ import annotations

import gc
import types
import weakref

import pytest

import greenpool
from greenpool.compat.dbutils import (
    InvalidConnectionError,
    NotSupportedError,
    PersistentDB,
    PersistentDBConnection,
    PersistentDBError,
    PooledDB,
    PooledDBError,
    PooledDedicatedDBConnection,
    PooledSharedDBConnection,
    SteadyDBConnection,
    TooManyConnections,
)
from tests.conftest import SECRET
from tests.support.tasks import Spawned, wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def make(db, hub):
    made = []

    def make(*args, cls=PooledDB, creator=None, **kwargs):
        p = cls(db if creator is None else creator, *args, hub=hub, **kwargs)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def raw(conn):
    """The driver connection under a pooled or persistent connection."""
    return conn.dbapi_connection


def run(conn, sql):
    cur = conn.cursor()
    cur.execute(sql)
    rows = cur.fetchall() if cur.description else None
    cur.close()
    return rows


# -- PooledDB: DBUtils' documented behaviour ----------------------------------------------


def test_mincached_opened_and_connections_come_back_on_close(make, db):
    p = make(2)
    assert db.connects == 2
    conn = p.connection()
    assert isinstance(conn, PooledDedicatedDBConnection)
    assert run(conn, "SELECT 7") == [(7,)]
    conn.close()
    conn.close()  # harmless twice
    with pytest.raises(InvalidConnectionError):
        conn.cursor()
    with p.connection() as conn:  # the with block gives it back too
        run(conn, "SELECT 1")
    assert db.connects == 2 and p.stats().in_use == 0


def test_every_attribute_passes_through(make, db):
    p = make()
    conn = p.connection()
    assert raw(conn).id == conn.id and conn.server_version == 150000
    conn.autocommit = True
    assert raw(conn).autocommit is True
    cur = conn.cursor()
    cur.arraysize = 5
    cur.execute("SELECT 3")
    assert list(cur) == [(3,)] and cur.rowcount == 1
    conn.close()


def test_maxconnections_not_blocking_raises_too_many_connections(make, db):
    db.connect_delay = 0.05  # blocking=False still waits for a connection being opened
    p = make(0, 0, 0, 2)
    held = [p.connection(), p.connection()]
    with pytest.raises(TooManyConnections):
        p.connection()
    held[0].close()
    p.connection().close()
    held[1].close()


def test_maxcached_closes_surplus_idle_connections(make, db):
    p = make(0, 1)
    conns = [p.connection() for _ in range(3)]
    for conn in conns:
        conn.close()
    assert p.stats().idle == 1 and db.closes == 2


def test_setsession_runs_on_every_new_connection(make, db):
    p = make(0, 0, 0, 0, False, 2, ["SET datestyle TO german", "SET x = 1"])
    conn = p.connection()
    cur = conn.cursor()
    for _ in range(3):
        cur.execute("SELECT 1")
        conn.commit()
    conn.close()
    opened = [c for c in db.connections]
    assert len(opened) == 2  # reopened after maxusage=2
    for c in opened:
        assert c.queries[:2] == ["SET datestyle TO german", "SET x = 1"]


def test_maxusage_reopens_after_that_many_executions(make, db):
    p = make(maxusage=3)
    conn = p.connection()
    cur = conn.cursor()
    ids = []
    for _ in range(7):
        cur.execute("SELECT CONNECTION_ID()")
        ids.append(cur.fetchone()[0])
        conn.commit()
    assert ids == [1, 1, 1, 2, 2, 2, 3]
    conn.close()


def test_failures_reopen_and_retry_outside_a_transaction(make, db):
    p = make()
    conn = p.connection()
    cur = conn.cursor()
    cur.execute("SELECT 1")
    conn.commit()
    raw(conn).disconnect()
    cur.execute("SELECT 2")  # retried on a new connection
    assert cur.fetchall() == [(2,)] and db.connects == 2
    conn.begin()
    raw(conn).disconnect()
    with pytest.raises(db.OperationalError):
        cur.execute("SELECT 3")  # inside begin(): raised, not retried
    conn.close()
    assert p.stats().size == 0  # the broken connection was not kept


def test_custom_failures_and_isfatal(make, db):
    p = make(failures=db.InterfaceError)
    conn = p.connection()
    cur = conn.cursor()
    raw(conn).disconnect()  # OperationalError is not in failures now
    with pytest.raises(db.OperationalError):
        cur.execute("SELECT 1")
    conn.close()
    q = make(isfatal=lambda exc: False)
    conn = q.connection()
    cur = conn.cursor()
    raw(conn).disconnect()
    with pytest.raises(db.OperationalError):
        cur.execute("SELECT 1")
    conn.close()


@pytest.mark.parametrize(
    "flags, expected", [(0, [0, 0, 0]), (1, [1, 1, 1]), (2, [0, 1, 1]), (4, [0, 0, 1]),
                        (7, [1, 2, 3])]
)
def test_ping_flags(make, flags, expected):
    calls = []
    p = make(ping=(flags, lambda conn: calls.append(conn)))
    p.connection().close()  # a connection just opened is never pinged
    calls.clear()
    seen = []
    conn = p.connection()
    seen.append(len(calls))
    cur = conn.cursor()
    seen.append(len(calls))
    cur.execute("SELECT 1")
    seen.append(len(calls))
    conn.close()
    assert seen == expected


def test_ping_sql_and_failing_callable(make, db):
    p = make(ping="SELECT 42")
    conn = p.connection()
    assert "SELECT 42" not in raw(conn).queries  # new connection: nothing to check
    conn.close()
    conn = p.connection()
    assert "SELECT 42" in raw(conn).queries
    conn.close()
    q = make(ping=lambda conn: False)  # "dead": reopened
    conn = q.connection()
    first = raw(conn)
    conn.close()
    conn = q.connection()
    assert raw(conn) is not first and first.closed == 1
    conn.close()


def test_dead_idle_connection_is_replaced_at_checkout(make, db):
    p = make(1)
    conn = p.connection()
    first = raw(conn)
    conn.close()
    first.disconnect()
    conn = p.connection()
    assert raw(conn) is not first and raw(conn).closed == 0
    conn.close()


def test_reset_true_rolls_back_reset_false_only_begun(make, db):
    p = make()
    conn = p.connection()
    run(conn, "SELECT 1")  # implicit transaction
    conn.close()
    assert db.rollbacks == 1
    q = make(reset=False)
    conn = q.connection()
    run(conn, "SELECT 1")
    conn.close()
    assert db.rollbacks == 1  # DBUtils' reset=False leaves it alone
    conn = q.connection()
    conn.begin()
    run(conn, "SELECT 1")
    conn.close()
    assert db.rollbacks == 2


def test_shared_connections_only_with_threadsafety_above_one(make, db):
    p = make(0, 0, 2, 2)  # the fake says threadsafety 1
    assert isinstance(p.connection(), PooledDedicatedDBConnection)
    db.threadsafety = 2
    q = make(0, 0, 2, 2)
    a, b, c = q.connection(), q.connection(), q.connection()
    assert all(isinstance(x, PooledSharedDBConnection) for x in (a, b, c))
    assert raw(c) in (raw(a), raw(b)) and raw(a) is not raw(b)
    for x in (a, b, c):
        x.close()
    assert q.stats().in_use == 0
    dedicated = q.connection(shareable=False)
    assert isinstance(dedicated, PooledDedicatedDBConnection)
    dedicated.close()


def test_shared_connection_in_a_transaction_is_not_shared(make, db):
    db.threadsafety = 2
    p = make(0, 0, 2, 2)
    a = p.connection()
    a.begin()
    b = p.connection()
    c = p.connection()
    assert raw(c) is raw(b) and raw(c) is not raw(a)
    a.rollback()
    for x in (a, b, c):
        x.close()


def test_dedicated_connection_and_steady_connection(make, db):
    db.threadsafety = 2
    p = make(0, 0, 2)
    conn = p.dedicated_connection()
    assert isinstance(conn, PooledDedicatedDBConnection)
    conn.close()
    steady = p.steady_connection()
    assert isinstance(steady, SteadyDBConnection) and run(steady, "SELECT 5") == [(5,)]
    steady.close()
    assert steady.dbapi_connection.closed == 1


def test_dropped_pooled_connection_frees_its_slot(make, db):
    p = make(0, 0, 0, 1)  # one connection at most, blocking=False
    conn = p.connection()
    first = raw(conn)
    del conn  # closed by the pool (its state is unknown), its slot freed
    conn = p.connection()
    assert raw(conn) is not first and first.closed == 1
    conn.close()
    assert p.stats().orphans == 1


def test_shared_connection_dropped_by_every_holder_frees_its_slot(make, db):
    db.threadsafety = 2
    p = make(0, 0, 1, 1)
    a, b = p.connection(), p.connection()
    first = raw(a)
    assert raw(b) is first
    del a  # b still holds it
    c = p.connection()
    assert raw(c) is first
    del b, c
    d = p.connection()
    assert raw(d) is not first and first.closed == 1
    d.close()


@pytest.mark.parametrize("cls, error", [(PooledDB, PooledDBError),
                                        (PersistentDB, PersistentDBError)])
def test_connect_errors_raise_pool_errors_that_are_driver_errors(make, db, hub, cls, error):
    # connect_timeout goes to the creator and bounds the wait for a new connection.
    p = make(cls=cls, connect_timeout=0.2, password=SECRET, timeout=0.2)
    db.outage = True
    with pytest.raises(error) as info:
        p.connection()
    assert isinstance(info.value, db.OperationalError)  # as DBUtils raised it, from the driver
    assert isinstance(info.value.__cause__, db.OperationalError)
    assert not isinstance(info.value, TooManyConnections)
    assert "server unreachable" in str(info.value) and SECRET not in str(info.value)
    db.outage = False
    # The pool recovers by itself, after its back-off delay (each try waits 0.2 s).
    deadline = hub.monotonic() + 5
    while True:
        try:
            conn = p.connection()
            break
        except error:
            assert hub.monotonic() < deadline, "the pool did not recover"
    assert run(conn, "SELECT 1") == [(1,)]


def test_threadsafety_zero_is_refused(hub, db):
    module = types.SimpleNamespace(connect=db.connect)  # no threadsafety attribute
    with pytest.raises(NotSupportedError):
        PooledDB(module, hub=hub)
    with pytest.raises(NotSupportedError):
        PersistentDB(module, hub=hub)


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"ping": 9}, ValueError, "ping"),
        ({"ping": object()}, TypeError, "ping"),
        ({"failures": "x"}, TypeError, "failures"),
        ({"maxusage": -1}, ValueError, "maxusage"),
        ({"setsession": "SET x = 1"}, TypeError, "setsession"),
        ({"maxconnections": -1}, ValueError, "maxconnections"),
    ],
)
def test_bad_arguments_name_the_argument(db, hub, kwargs, error, text):
    with pytest.raises(error, match=text):
        PooledDB(db, hub=hub, **kwargs)


def test_errors_are_greenpool_errors():
    assert issubclass(TooManyConnections, greenpool.PoolTimeout)
    assert issubclass(InvalidConnectionError, AttributeError)


# -- PooledDB: fixes -----------------------------------------------------------------------


def test_fix_blocking_waits_with_a_timeout_and_never_blocks_the_hub(make, hub):
    p = make(0, 0, 0, 1, True, timeout=0.2)
    held = p.connection()
    ticks = []
    ticker = Spawned(hub, lambda: [ticks.append(hub.sleep(0.01)) for _ in range(5)])
    started = hub.monotonic()
    with pytest.raises(TooManyConnections):
        p.connection()  # DBUtils would block for ever
    assert 0.15 < hub.monotonic() - started < 2
    ticker.wait()
    assert len(ticks) == 5
    waiter = Spawned(hub, p.connection)
    wait_until(hub, lambda: p.stats().waiting == 1)
    held.close()
    waiter.wait().close()


def test_fix_no_maxusage_reopen_inside_an_implicit_transaction(make, db):
    p = make(maxusage=2)
    conn = p.connection()
    cur = conn.cursor()
    for _ in range(4):  # the driver reports an open transaction after the first
        cur.execute("SELECT CONNECTION_ID()")
        assert cur.fetchone() == (1,)  # DBUtils reopens on the third
    conn.commit()
    cur.execute("SELECT CONNECTION_ID()")
    assert cur.fetchone() == (2,)
    conn.close()


def test_fix_no_retry_inside_an_implicit_transaction(make, db):
    p = make()
    conn = p.connection()
    cur = conn.cursor()
    cur.execute("SELECT 1")  # opens a transaction on the driver
    raw(conn).disconnect()
    with pytest.raises(db.OperationalError):
        cur.execute("SELECT 2")  # DBUtils retries it alone on a new connection
    conn.close()


def test_fix_idle_connections_expire(make, db, hub):
    p = make(max_idle=0.05)
    p.connection().close()
    wait_until(hub, lambda: db.closes == 1)


def test_many_green_threads_share_a_pool_of_five_fake(make, hub, db):
    db.query_delay = 0.001
    p = make(1, 5, 0, 5, True, timeout=20)
    count = 200 if hub.green else 50

    def work(i):
        with p.connection() as conn:
            return run(conn, f"SELECT {i}")[0][0]

    tasks = [Spawned(hub, work, i) for i in range(count)]
    assert [t.wait() for t in tasks] == list(range(count))
    assert db.connects <= 5 and p.stats().in_use == 0


# -- PersistentDB --------------------------------------------------------------------------


def test_persistent_one_connection_per_green_thread(make, hub):
    p = make(cls=PersistentDB)
    mine = p.connection()
    assert isinstance(mine, PersistentDBConnection) and p.connection() is mine
    assert p.dedicated_connection() is mine
    other = Spawned(hub, lambda: raw(p.connection())).wait()
    assert other is not raw(mine)


def test_persistent_close_ignored_unless_closeable(make, db):
    p = make(cls=PersistentDB)
    conn = p.connection()
    conn.begin()
    run(conn, "SELECT 1")
    conn.close()  # ignored, but the begun transaction is rolled back
    assert db.rollbacks == 1 and run(conn, "SELECT 2") == [(2,)]
    assert p.connection() is conn
    q = make(cls=PersistentDB, closeable=True)
    conn = q.connection()
    conn.close()
    with pytest.raises(InvalidConnectionError):
        conn.cursor()
    assert q.connection() is not conn


def test_persistent_with_block_commits_or_rolls_back(make, db):
    p = make(cls=PersistentDB)
    with p.connection() as conn:
        run(conn, "SELECT 1")
    assert db.commits == 1
    with pytest.raises(KeyError):
        with p.connection() as conn:
            rollbacks = db.rollbacks
            run(conn, "SELECT 1")
            raise KeyError
    assert db.rollbacks == rollbacks + 1 and p.connection() is conn


def test_persistent_reopens_broken_connection(make, db):
    p = make(cls=PersistentDB)
    conn = p.connection()
    first = raw(conn)
    first.disconnect()
    assert p.connection() is conn and raw(conn) is not first
    assert run(conn, "SELECT 1") == [(1,)]


def test_persistent_connection_released_when_green_thread_ends(make, db, hub):
    p = make(cls=PersistentDB)  # default: closed when its green thread ends, as in DBUtils
    first = Spawned(hub, lambda: raw(p.connection())).wait()
    wait_until(hub, lambda: first.closed == 1)
    q = make(cls=PersistentDB, max_idle=60)  # opt-in: back to the idle connections, for reuse
    second = Spawned(hub, lambda: raw(q.connection())).wait()
    wait_until(hub, lambda: q.stats().idle == 1)
    assert second.closed == 0
    assert Spawned(hub, lambda: raw(q.connection())).wait() is second


def test_persistent_pool_is_collected_while_a_green_thread_holds_a_connection(db, hub):
    p = PersistentDB(db, hub=hub, max_idle=60)
    p.connection()  # bound to this green thread, which lives on
    collected = weakref.ref(p)
    del p
    gc.collect()
    assert collected() is None  # the task giving back connections holds its pool weakly


def test_fix_persistent_maxconnections_waits(make, hub, db):
    p = make(cls=PersistentDB, maxconnections=1, timeout=5, max_idle=60)
    release = hub.event()

    def holder():
        conn = p.connection()
        release.wait(5)
        return raw(conn)

    first = Spawned(hub, holder)
    wait_until(hub, lambda: p.stats().in_use == 1)
    second = Spawned(hub, lambda: raw(p.connection()))
    wait_until(hub, lambda: p.stats().waiting == 1)
    release.set()
    assert first.wait() is second.wait() and db.connects == 1


def test_persistent_many_green_threads_share_five_fake(make, hub, db):
    p = make(cls=PersistentDB, maxconnections=5, timeout=20, max_idle=60)
    count = 200 if hub.green else 50

    def work(i):
        conn = p.connection()
        assert p.connection() is conn
        return run(conn, f"SELECT {i}")[0][0]

    tasks = [Spawned(hub, work, i) for i in range(count)]
    assert [t.wait(30) for t in tasks] == list(range(count))
    assert db.connects <= 5
    wait_until(hub, lambda: p.stats().in_use == 0)


# -- real MariaDB and PostgreSQL ----------------------------------------------------------


def test_mariadb_200_green_threads_pooled_db(mariadb, make, hub):
    import pymysql

    p = make(1, 5, 5, 5, True, creator=pymysql, timeout=20, **mariadb)
    first = p.connection()
    assert isinstance(first, PooledDedicatedDBConnection)  # threadsafety 1: no sharing
    first.close()
    count = 200 if hub.green else 50
    ids = set()

    def work():
        with p.connection() as conn:
            cur = conn.cursor()
            cur.execute("SELECT CONNECTION_ID(), SLEEP(0.002)")
            ids.add(cur.fetchone()[0])

    tasks = [Spawned(hub, work) for _ in range(count)]
    for t in tasks:
        t.wait(30)
    assert len(ids) <= 5 and p.stats().opened <= 5


def test_mariadb_200_green_threads_persistent_db(mariadb, make, hub):
    import pymysql

    p = make(cls=PersistentDB, creator=pymysql, maxconnections=5, timeout=20, max_idle=60,
             **mariadb)
    count = 200 if hub.green else 50

    def work():
        conn = p.connection()
        cur = conn.cursor()
        cur.execute("SELECT CONNECTION_ID()")
        return cur.fetchone()[0]

    tasks = [Spawned(hub, work) for _ in range(count)]
    ids = {t.wait(30) for t in tasks}
    assert len(ids) <= 5
    wait_until(hub, lambda: p.stats().in_use == 0)


def test_mariadb_setsession_maxusage_and_killed_connection(mariadb, make):
    import pymysql

    p = make(0, 0, 0, 2, False, 3, ["SET @greeting = 'hi'"], creator=pymysql, **mariadb)
    conn = p.connection()
    cur = conn.cursor()
    ids = []
    for _ in range(4):
        cur.execute("SELECT CONNECTION_ID(), @greeting")
        row = cur.fetchone()
        assert row[1] == "hi"
        ids.append(row[0])
        conn.commit()
    assert ids[0] == ids[2] != ids[3]
    killer = pymysql.connect(**mariadb)
    try:
        killer.cursor().execute(f"KILL {ids[3]}")
    finally:
        killer.close()
    cur.execute("SELECT CONNECTION_ID()")  # reconnected and retried
    assert cur.fetchone()[0] not in ids
    conn.close()


def test_pg_fix_psycopg2_is_pinged_with_a_query(postgres, make):
    import psycopg2

    p = make(1, creator=psycopg2, **postgres)
    conn = p.connection()
    pid = run(conn, "SELECT pg_backend_pid()")[0][0]
    conn.commit()
    conn.close()
    killer = psycopg2.connect(**postgres)
    try:
        killer.autocommit = True
        killer.cursor().execute("SELECT pg_terminate_backend(%s)", (pid,))
    finally:
        killer.close()
    conn = p.connection()  # DBUtils cannot ping psycopg2 and hands out the dead one
    cur = conn.cursor()
    with cur.no_failover():
        cur.execute("SELECT pg_backend_pid()")
    assert cur.fetchone()[0] != pid
    conn.close()


def test_pg_fix_shared_connection_used_by_one_green_thread_at_a_time(postgres, make, green_hub):
    import psycopg2

    hub = green_hub
    p = make(0, 0, 1, 1, creator=psycopg2, **postgres)  # psycopg2: threadsafety 2
    a = p.connection()
    b = p.connection()
    assert isinstance(a, PooledSharedDBConnection) and raw(a) is raw(b)

    def query(conn):
        cur = conn.cursor()
        cur.execute("SELECT pg_backend_pid() FROM pg_sleep(0.05)")
        return cur.fetchone()[0]

    # Without a lock, psycopg2 in green mode refuses the overlapping query.
    tasks = [Spawned(hub, query, a), Spawned(hub, query, b)]
    pids = {t.wait() for t in tasks}
    assert len(pids) == 1
    a.close()
    b.close()


# -- interruptions (green hubs) ------------------------------------------------------------


def test_killed_waiter_and_holder_lose_nothing(make, green_hub, db):
    hub = green_hub
    p = make(0, 0, 0, 1, True)
    held = p.connection()
    waiter = Spawned(hub, p.connection)
    wait_until(hub, lambda: p.stats().waiting == 1)
    waiter.kill()
    assert waiter.outcome() is not None
    held.close()
    p.connection(shareable=False).close()
    q = make(cls=PersistentDB, maxconnections=1, timeout=5, max_idle=60)
    stop = hub.event()
    holder = Spawned(hub, lambda: (q.connection(), stop.wait(10)))
    wait_until(hub, lambda: q.stats().in_use == 1)
    holder.kill()
    holder.outcome()
    assert run(q.connection(), "SELECT 1") == [(1,)]
