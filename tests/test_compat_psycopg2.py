"""greenpool.compat.psycopg2: psycopg2.pool's documented behaviour, its fixes, real PostgreSQL.

Runs once per hub (threads, eventlet, gevent).  Tests named ``test_fix_*``
fail on the original ``psycopg2.pool`` behaviour.
"""

from __future__ import annotations

import gc
import threading
import weakref

import pytest

import greenpool
from greenpool.compat import psycopg2 as pool
from greenpool.proxy import ThreadProxy
from tests.support.fakedb import FakeConnection
from tests.support.tasks import Spawned, wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def make(db, hub):
    made = []

    def make(minconn=0, maxconn=2, *args, cls=pool.ThreadedConnectionPool, **kwargs):
        kwargs.setdefault("driver", db)
        p = cls(minconn, maxconn, *args, hub=hub, **kwargs)
        made.append(p)
        return p

    yield make
    for p in made:
        if not p.closed:
            p.closeall()


# -- the original's documented behaviour -------------------------------------------------


def test_minconn_opened_at_once_and_driver_connection_returned(make, db):
    p = make(2, 4, host="h", dbname="d")
    assert db.connects == 2 and p.minconn == 2 and p.maxconn == 4 and not p.closed
    conn = p.getconn()
    assert type(conn) is FakeConnection  # the driver's own object, as in psycopg2
    assert db.connect_calls[0] == ((), {"host": "h", "dbname": "d"})
    p.putconn(conn)


def test_same_key_same_connection_until_put_back(make):
    p = make()
    a = p.getconn("a")
    assert p.getconn("a") is a
    b = p.getconn()
    assert b is not a
    p.putconn(a)  # the key is found from the connection
    p.putconn(b)
    again = p.getconn("a")
    p.putconn(again, key="a")


def test_putconn_of_unknown_connection_raises(make, db):
    p = make()
    conn = p.getconn()
    p.putconn(conn)
    with pytest.raises(pool.PoolError, match="trying to put unkeyed connection"):
        p.putconn(conn)
    with pytest.raises(pool.PoolError, match="trying to put unkeyed connection"):
        p.putconn(db.connect())
    held = p.getconn("k")
    with pytest.raises(pool.PoolError, match="unkeyed"):
        p.putconn(db.connect(), key="k")  # not the key's connection
    p.putconn(held, key="k")


def test_putconn_close_true_closes_and_frees_the_slot(make, db):
    p = make(0, 1)
    conn = p.getconn()
    p.putconn(conn, close=True)
    assert conn.closed == 1
    fresh = p.getconn(timeout=0)
    assert fresh is not conn
    p.putconn(fresh)


def test_putconn_rolls_back_and_drops_closed_connections(make, db):
    p = make(0, 2)
    conn = p.getconn()
    conn.cursor().execute("SELECT 1")  # opens a transaction on the fake
    p.putconn(conn)
    assert db.rollbacks == 1 and not conn.in_transaction
    conn = p.getconn()
    conn.close()  # the user closed it
    p.putconn(conn)
    assert p.stats().idle == 0 and p.stats().size == 0


def test_closeall(make, db):
    p = make(1, 2)
    held = p.getconn()
    p.closeall()
    assert p.closed
    with pytest.raises(pool.PoolError, match="connection pool is closed"):
        p.getconn()
    with pytest.raises(pool.PoolError, match="connection pool is closed"):
        p.closeall()
    assert held.closed == 0  # never closed under its holder ...
    p.putconn(held)  # ... but when it comes back, without an error
    assert db.open_connections() == []


def test_pool_error_is_a_psycopg2_and_a_greenpool_error():
    import psycopg2

    assert issubclass(pool.PoolError, psycopg2.Error)
    assert issubclass(pool.PoolError, greenpool.PoolError)


def test_connect_arguments_dsn_keywords_or_one_dict(make, db):
    make(1, 1, "host=h dbname=d")
    make(1, 1, {"host": "h", "dbname": "d"}, user="u")  # KingbaseES style
    assert db.connect_calls[0] == (("host=h dbname=d",), {})
    assert db.connect_calls[1] == ((), {"host": "h", "dbname": "d", "user": "u"})


def test_simple_and_threaded_pools_share_the_api(make):
    for cls in (pool.SimpleConnectionPool, pool.ThreadedConnectionPool):
        p = make(cls=cls)
        conn = p.getconn()
        p.putconn(conn)
        p.closeall()


@pytest.mark.parametrize(
    "args, kwargs, error, text",
    [
        ((3, 2), {}, ValueError, "minconn"),
        ((0, 0), {}, ValueError, "maxconn"),
        (("1", 2), {}, TypeError, "minconn"),
        ((0, 2), {"exhausted": "never"}, ValueError, "exhausted"),
        ((0, 2), {"timeout": -1}, ValueError, "timeout"),
    ],
)
def test_bad_arguments_name_the_argument(db, hub, args, kwargs, error, text):
    with pytest.raises(error, match=text):
        pool.ThreadedConnectionPool(*args, driver=db, hub=hub, **kwargs)


def test_repr_shows_no_credentials(make):
    p = make(1, 2, host="h", dbname="d", user="u", password="s3cret", name="orders")
    text = repr(p)
    assert "orders" in text and "h/d" in text and "s3cret" not in text and "u" not in text.split()


def test_tpool_returns_a_thread_proxy_that_putconn_accepts(make, db, hub):
    p = make(0, 1, tpool=True)
    conn = p.getconn()
    # On the threads hub every call is made in place: the raw connection, no proxy.
    assert isinstance(conn, ThreadProxy) is hub.green
    cur = conn.cursor()
    cur.execute("SELECT 1")
    assert cur.fetchall() == [(1,)]
    p.putconn(conn)
    conn = p.getconn()
    raw = conn.cursor().connection  # the driver's own connection
    assert type(raw) is FakeConnection
    p.putconn(raw)  # accepted too
    assert p.stats().in_use == 0


# -- fixes ----------------------------------------------------------------------------------


def test_fix_getconn_waits_for_a_connection_instead_of_raising(make, hub):
    p = make(0, 1)
    held = p.getconn()
    waiter = Spawned(hub, p.getconn)
    wait_until(hub, lambda: p.stats().waiting == 1)
    p.putconn(held)
    got = waiter.wait()
    assert got is held
    p.putconn(got)


def test_fix_exhausted_raise_keeps_the_original_error(make, hub):
    p = make(0, 1, exhausted="raise")
    held = p.getconn()
    started = hub.monotonic()
    with pytest.raises(pool.PoolError, match="connection pool exhausted"):
        p.getconn()
    assert hub.monotonic() - started < 0.5
    p.putconn(held)
    q = make(0, 1, timeout=0.1)
    held = q.getconn()
    with pytest.raises(pool.PoolError, match="connection pool exhausted"):
        q.getconn()
    with pytest.raises(pool.PoolError, match="connection pool exhausted"):
        q.getconn(timeout=0)
    q.putconn(held)


def test_exhausted_raise_waits_for_a_connection_being_opened(make, db):
    db.connect_delay = 0.05
    p = make(0, 2, exhausted="raise")
    conns = [p.getconn(), p.getconn(timeout=0)]  # room in the pool: no error
    with pytest.raises(pool.PoolError, match="connection pool exhausted"):
        p.getconn()
    for conn in conns:
        p.putconn(conn)


@pytest.mark.parametrize("exhausted", ["wait", "raise"])
def test_connect_errors_raise_pool_errors_that_are_driver_errors(make, db, exhausted):
    p = make(0, 2, connect_timeout=0.2, password="s3cret", timeout=0.2, exhausted=exhausted)
    db.outage = True
    with pytest.raises(pool.PoolError, match="could not connect") as info:
        p.getconn()
    assert isinstance(info.value, db.OperationalError)  # as the driver's connect raised it
    assert isinstance(info.value.__cause__, db.OperationalError)
    assert "s3cret" not in str(info.value) and "server unreachable" in str(info.value)
    db.outage = False
    p.putconn(p.getconn(timeout=5))  # the pool recovers by itself, after its back-off delay


def test_connect_timeout_raises_a_pool_error_that_is_a_connect_timeout(make, db):
    db.connect_delay = 1.0
    p = make(0, 1, connect_timeout=0.1, timeout=0.3)
    with pytest.raises(pool.PoolError) as info:
        p.getconn()
    assert isinstance(info.value, greenpool.ConnectTimeout)
    assert isinstance(info.value.__cause__, greenpool.ConnectTimeout)


def test_fix_idle_connections_above_minconn_are_kept(make, db):
    p = make(1, 3)
    conns = [p.getconn() for _ in range(3)]
    for conn in conns:
        p.putconn(conn)
    assert p.stats().idle == 3 and db.closes == 0  # psycopg2 closes two of them here
    again = [p.getconn() for _ in range(3)]
    assert db.connects == 3
    for conn in again:
        p.putconn(conn)


def test_fix_idle_connections_expire_after_max_idle(make, db, hub):
    p = make(0, 2, max_idle=0.05)
    p.putconn(p.getconn())
    wait_until(hub, lambda: db.closes == 1)


def test_fix_broken_connection_not_handed_out(make, db):
    p = make(1, 1)
    conn = p.getconn()
    p.putconn(conn)
    conn.disconnect()  # the server dropped it while idle
    fresh = p.getconn()
    assert fresh is not conn and fresh.closed == 0
    fresh.cursor().execute("SELECT 1")
    p.putconn(fresh)


def test_fix_same_key_racing_callers_share_one_connection(make, hub, db):
    db.connect_delay = 0.05
    p = make(0, 3)
    tasks = [Spawned(hub, p.getconn, "shared") for _ in range(3)]
    conns = [t.wait() for t in tasks]
    assert all(c is conns[0] for c in conns) and db.connects == 1
    p.putconn(conns[0])


def test_persistent_pool_keys_by_green_thread(make, hub):
    p = make(0, 3, cls=pool.PersistentConnectionPool)
    mine = p.getconn()
    assert p.getconn() is mine
    done = hub.event()

    def other():
        conn = p.getconn()
        assert p.getconn() is conn
        done.wait(5)
        p.putconn()  # conn may be omitted
        return conn

    task = Spawned(hub, other)
    wait_until(hub, lambda: p.stats().in_use == 2)
    done.set()
    assert task.wait() is not mine
    p.putconn(mine)


def test_fix_persistent_connection_returned_when_its_green_thread_ends(make, hub, db):
    p = make(0, 1, cls=pool.PersistentConnectionPool)
    task = Spawned(hub, p.getconn)
    conn = task.wait()
    # psycopg2's PersistentConnectionPool keeps it checked out for ever.
    wait_until(hub, lambda: p.stats().in_use == 0)
    assert p.getconn(timeout=1) is conn
    p.putconn()


def test_fix_persistent_connection_returned_when_its_thread_is_collected(make, hub):
    p = make(0, 1, cls=pool.PersistentConnectionPool)
    task = Spawned(hub, p.getconn)
    task.wait()
    del task
    gc.collect()
    assert p.getconn(timeout=2) is not None
    p.putconn()


def test_persistent_pool_is_collected_while_a_green_thread_holds_a_connection(db, hub):
    p = pool.PersistentConnectionPool(0, 1, driver=db, hub=hub)
    p.getconn()  # bound to this green thread, which lives on
    collected = weakref.ref(p)
    del p
    gc.collect()
    assert collected() is None  # the task giving back connections holds its pool weakly


def test_fix_simple_pool_is_safe_across_green_threads_and_threads(make, hub):
    p = make(0, 3, cls=pool.SimpleConnectionPool)
    seen = set()
    lock = threading.Lock()

    def work():
        for _ in range(20):
            conn = p.getconn()
            with lock:
                seen.add(id(conn))
            hub.sleep(0)
            p.putconn(conn)

    tasks = [Spawned(hub, work) for _ in range(10)]
    for t in tasks:
        t.wait()
    s = p.stats()
    assert len(seen) <= 3 and s.in_use == 0 and s.size <= 3


def test_many_green_threads_share_a_pool_of_five_fake(make, hub, db):
    db.query_delay = 0.001
    p = make(1, 5)
    count = 200 if hub.green else 50

    def work(i):
        conn = p.getconn()
        try:
            cur = conn.cursor()
            cur.execute(f"SELECT {i}")
            return cur.fetchone()[0]
        finally:
            p.putconn(conn)

    tasks = [Spawned(hub, work, i) for i in range(count)]
    assert [t.wait() for t in tasks] == list(range(count))
    assert db.connects <= 5 and p.stats().in_use == 0


# -- real PostgreSQL -------------------------------------------------------------------------


@pytest.fixture
def pg_make(postgres, hub):
    import psycopg2

    made = []

    def make(minconn=0, maxconn=5, cls=pool.ThreadedConnectionPool, **kwargs):
        p = cls(minconn, maxconn, hub=hub, **{**postgres, **kwargs})
        made.append(p)
        return p

    yield make
    for p in made:
        if not p.closed:
            p.closeall()
    assert psycopg2  # imported for the fixture's users


@pytest.mark.parametrize("tpool", [False, True], ids=["raw", "tpool"])
def test_pg_200_green_threads_share_five_connections(pg_make, hub, tpool):
    p = pg_make(1, 5, tpool=tpool, timeout=20)
    count = 200 if hub.green else 50
    pids = set()

    def work():
        conn = p.getconn()
        try:
            cur = conn.cursor()
            cur.execute("SELECT pg_backend_pid() FROM pg_sleep(0.002)")
            pids.add(cur.fetchone()[0])
            conn.commit()
        finally:
            p.putconn(conn)

    tasks = [Spawned(hub, work) for _ in range(count)]
    for t in tasks:
        t.wait(30)
    s = p.stats()
    assert len(pids) <= 5 and s.opened <= 5 and s.in_use == 0


def test_pg_persistent_200_green_threads_release_on_exit(pg_make, hub):
    p = pg_make(0, 5, cls=pool.PersistentConnectionPool, timeout=20)
    count = 200 if hub.green else 50

    def work():
        conn = p.getconn()
        cur = conn.cursor()
        cur.execute("SELECT 1")
        assert p.getconn() is conn
        # ends without putconn(): the pool takes it back

    tasks = [Spawned(hub, work) for _ in range(count)]
    for t in tasks:
        t.wait(30)
    wait_until(hub, lambda: p.stats().in_use == 0)
    assert p.stats().opened <= 5


def test_pg_real_connection_type_and_extras(pg_make):
    import psycopg2.extensions
    import psycopg2.extras

    p = pg_make(0, 1)
    conn = p.getconn()
    assert isinstance(conn, psycopg2.extensions.connection)
    psycopg2.extensions.register_type(psycopg2.extensions.UNICODE, conn)
    cur = conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor)
    cur.execute("SELECT 1 AS one")
    assert cur.fetchone() == {"one": 1}
    p.putconn(cur.connection)


def test_pg_fix_terminated_backend_not_handed_out(pg_make, postgres):
    import psycopg2

    p = pg_make(1, 1, check_interval=0)
    conn = p.getconn()
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    pid = cur.fetchone()[0]
    conn.commit()
    p.putconn(conn)
    killer = psycopg2.connect(**postgres)
    try:
        killer.autocommit = True
        killer.cursor().execute("SELECT pg_terminate_backend(%s)", (pid,))
    finally:
        killer.close()
    conn = p.getconn()  # psycopg2.pool would hand out the dead connection
    cur = conn.cursor()
    cur.execute("SELECT pg_backend_pid()")
    assert cur.fetchone()[0] != pid
    p.putconn(conn)


def test_pg_checked_connection_is_not_left_in_a_transaction(pg_make):
    p = pg_make(1, 1, check_interval=0)
    conn = p.getconn()
    p.putconn(conn)
    conn = p.getconn()  # checked with SELECT 1 first
    conn.autocommit = True  # fails inside a transaction
    conn.autocommit = False
    p.putconn(conn)


def test_pg_getconn_timeout_while_all_busy(pg_make, hub):
    p = pg_make(0, 1, timeout=0.2)
    held = p.getconn()
    with pytest.raises(pool.PoolError, match="exhausted"):
        p.getconn()
    p.putconn(held)


# -- interruptions (green hubs) ------------------------------------------------------------


class Interrupted(Exception):
    pass


@pytest.mark.parametrize("how", ["kill", "timeout"])
def test_interrupted_getconn_loses_no_slot(make, green_hub, how):
    hub = green_hub
    p = make(0, 1)
    held = p.getconn()

    def wait_for_key():
        if how == "timeout":
            with hub.timeout(0.05, Interrupted()):
                return p.getconn("k")
        return p.getconn("k")

    task = Spawned(hub, wait_for_key)
    wait_until(hub, lambda: p.stats().waiting == 1)
    if how == "kill":
        task.kill()
    assert task.outcome() is not None
    p.putconn(held)
    conn = p.getconn("k", timeout=0)  # nothing left behind for the key or the slot
    assert p.stats().in_use == 1 and p.stats().waiting == 0
    p.putconn(conn)


def test_killed_persistent_holder_gives_its_connection_back(make, green_hub, db):
    hub = green_hub
    p = make(0, 1, cls=pool.PersistentConnectionPool)
    stop = hub.event()

    def holder():
        p.getconn()
        stop.wait(10)

    task = Spawned(hub, holder)
    wait_until(hub, lambda: p.stats().in_use == 1)
    task.kill()
    task.outcome()
    conn = p.getconn(timeout=2)
    assert conn.closed == 0
    p.putconn(conn)
