"""greenpool.compat.mysql: mysql.connector.pooling's documented behaviour, its fixes, MariaDB.

Runs once per hub (threads, eventlet, gevent).  Tests named ``test_fix_*``
fail on mysql-connector-python's own pooling.
"""

from __future__ import annotations

import importlib

import pytest

import greenpool
from greenpool.compat import mysql
from tests.support.tasks import Spawned, wait_until

pytestmark = pytest.mark.timeout(60)

CONFIG = {"host": "db1", "port": 3306, "user": "app", "password": "s3cret", "database": "shop"}


@pytest.fixture
def make(db, hub):
    made = []

    def make(*args, **kwargs):
        kwargs.setdefault("driver", db)
        kwargs.setdefault("hub", hub)
        p = mysql.MySQLConnectionPool(*args, **kwargs)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()
    mysql.close_pools()


# -- mysql.connector.pooling's documented behaviour ----------------------------------------


def test_pool_fills_up_and_connections_come_back(make, db):
    p = make(3, "orders", **CONFIG)
    assert p.pool_name == "orders" and p.pool_size == 3 and p.reset_session is True
    assert db.connects == 3  # pool_size connections opened at once, as the original does
    conn = p.get_connection()
    assert isinstance(conn, mysql.PooledMySQLConnection) and conn.pool_name == "orders"
    cur = conn.cursor()
    cur.execute("SELECT 1")
    assert cur.fetchall() == [(1,)]
    conn.close()
    with pytest.raises(AttributeError):
        conn.cursor()
    with p.get_connection() as conn:  # leaving the block gives it back
        pass
    assert p.stats().in_use == 0 and db.connects == 3


def test_exhausted_pool_raises_at_once(make, hub):
    p = make(1, "one", **CONFIG)
    held = p.get_connection()
    started = hub.monotonic()
    with pytest.raises(mysql.PoolError, match="Failed getting connection; pool exhausted"):
        p.get_connection()
    assert hub.monotonic() - started < 0.5
    held.close()


def test_pooled_connection_config_raises(make):
    p = make(1, "cfg", **CONFIG)
    conn = p.get_connection()
    with pytest.raises(mysql.PoolError, match="through the pool"):
        conn.config(user="x")
    conn.close()


def test_session_reset_on_return(make, db):
    p = make(1, "reset", **CONFIG)
    conn = p.get_connection()
    conn.cursor().execute("SELECT 1")
    conn.close()
    assert db.rollbacks == 1  # the fake has no reset_session(): rolled back instead


def test_pool_without_configuration(make, db):
    p = make(2, "empty")
    assert db.connects == 0
    with pytest.raises(mysql.PoolError, match="configuration not available"):
        p.get_connection()
    with pytest.raises(mysql.PoolError, match="configuration not available"):
        p.add_connection()
    p.set_config(**CONFIG)
    p.get_connection().close()


def test_add_connection(make, db, hub):
    p = make(2, "add", min_size=0, max_idle=0.05, **CONFIG)
    p.add_connection()  # opened by the pool in the background, and kept
    wait_until(hub, lambda: p.stats().idle == 1)
    assert db.connects == 1
    p.add_connection()
    with pytest.raises(mysql.PoolError, match="queue is full"):
        p.add_connection()  # the second one counts while it is being opened
    wait_until(hub, lambda: p.stats().idle == 2)
    hub.sleep(0.2)
    assert db.closes == 0  # added connections are kept, whatever max_idle
    conn = p.get_connection()
    p.add_connection(conn)  # giving one of ours back
    assert not conn and p.stats().in_use == 0
    with pytest.raises(mysql.PoolError):
        p.add_connection(db.connect())


def test_pool_names(make):
    assert make(1, None, **CONFIG).pool_name == "db1_3306_app_shop"
    assert mysql.generate_pool_name(host="h", database="d") == "h_d"
    with pytest.raises(mysql.PoolError, match="specify pool_name"):
        mysql.generate_pool_name(password="x")
    for bad in ("with space", "semi;colon", "x" * 65, "é"):
        with pytest.raises(mysql.PoolArgumentError, match="pool_name"):
            make(1, bad, **CONFIG)
    assert make(1, "a.b:c-d*e$f#g_1", **CONFIG).pool_name == "a.b:c-d*e$f#g_1"
    assert issubclass(mysql.PoolArgumentError, AttributeError)  # as mysql-connector raises
    assert issubclass(mysql.PoolArgumentError, ValueError)


@pytest.mark.parametrize("size, error", [(0, mysql.PoolArgumentError),
                                         (33, mysql.PoolArgumentError), ("5", TypeError)])
def test_pool_size_validated(make, size, error):
    with pytest.raises(error, match="pool_size"):
        make(size, "sized", **CONFIG)


def _raw(db, conn):
    """The fake driver's connection behind a pooled one."""
    return next(c for c in db.connections if c.id == conn.id)


def test_set_config_reopens_connections_taken_before(make, db):
    p = make(2, "reconf", **CONFIG)
    held = p.get_connection()
    old = _raw(db, held)
    p.set_config(**{**CONFIG, "database": "other"})
    conn = p.get_connection()  # idle ones were closed: a new one with the new settings
    assert conn.kwargs["database"] == "other"
    conn.close()
    held.close()
    assert old.closed == 1  # closed when it came back, to be reopened with the new settings
    assert all(c.kwargs["database"] == "other" for c in db.open_connections())


def test_set_config_rejects_bad_arguments(hub):
    import pymysql

    p = mysql.MySQLConnectionPool(1, "bad", hub=hub, driver=pymysql, min_size=0, **CONFIG)
    with pytest.raises(mysql.PoolError, match="Connection configuration not valid"):
        p.set_config(hostname="x")
    with pytest.raises(mysql.PoolError, match="not valid"):
        mysql.MySQLConnectionPool(1, "bad", hub=hub, driver=pymysql, hostname="x")
    p.close()


def test_connect_creates_and_reuses_named_pools(db, hub, make):
    kwargs = dict(CONFIG, driver=db, hub=hub)
    conn = mysql.connect(pool_name=f"named_{hub.name}", pool_size=2, **kwargs)
    assert conn.pool_name == f"named_{hub.name}"
    again = mysql.connect(pool_name=f"named_{hub.name}", **kwargs)
    assert again.pool is conn.pool and db.connects == 2
    with pytest.raises(mysql.PoolError, match="Size can not be changed"):
        mysql.connect(pool_name=f"named_{hub.name}", pool_size=3, **kwargs)
    auto = mysql.connect(pool_size=1, **kwargs)
    assert auto.pool_name == "db1_3306_app_shop"
    plain = mysql.connect(**kwargs)  # no pool argument: a plain driver connection
    assert plain.__class__.__name__ == "FakeConnection"
    for c in (conn, again, auto, plain):
        c.close()


def test_connect_racing_first_calls_share_one_pool(db, hub, make):
    db.connect_delay = 0.02
    kwargs = dict(CONFIG, driver=db, hub=hub, timeout=5, pool_name=f"race_{hub.name}", pool_size=4)
    tasks = [Spawned(hub, lambda: mysql.connect(**kwargs)) for _ in range(4)]
    conns = [t.wait() for t in tasks]
    assert len({id(c.pool) for c in conns}) == 1 and db.connects == 4
    for c in conns:
        c.close()


def test_repr_and_errors_show_no_credentials(make):
    p = make(1, "secret", **CONFIG)
    assert "s3cret" not in repr(p) and "db1:3306/shop" in repr(p)
    assert issubclass(mysql.PoolError, greenpool.PoolError)


# -- fixes ---------------------------------------------------------------------------------


def test_fix_get_connection_can_wait(make, hub):
    p = make(1, "waits", timeout=5, **CONFIG)
    held = p.get_connection()
    waiter = Spawned(hub, p.get_connection)
    wait_until(hub, lambda: p.stats().waiting == 1)
    held.close()
    waiter.wait().close()
    held = p.get_connection()
    with pytest.raises(mysql.PoolError, match="exhausted"):
        p.get_connection(timeout=0.05)
    held.close()


def test_fix_pool_size_limit_is_a_default(make, db):
    p = make(40, "big", max_pool_size=64, min_size=0, **CONFIG)
    assert p.pool_size == 40


def test_fix_dropped_connection_frees_its_slot(make, db):
    p = make(1, "dropped", **CONFIG)
    conn = p.get_connection()
    first = _raw(db, conn)
    del conn  # mysql-connector loses the slot for good
    conn = p.get_connection(timeout=0)  # closed by the pool (state unknown), reopened
    assert conn.id != first.id and first.closed == 1 and db.connects == 2
    conn.close()
    assert p.stats().orphans == 1


def test_get_connection_waits_for_a_connection_being_opened(make, db):
    db.connect_delay = 0.05
    p = make(2, "opening", min_size=0, **CONFIG)
    conns = [p.get_connection(), p.get_connection()]  # timeout=0: room, so no error
    with pytest.raises(mysql.PoolError, match="pool exhausted"):
        p.get_connection()
    for conn in conns:
        conn.close()


def test_connect_errors_raise_pool_errors_that_are_driver_errors(make, db):
    p = make(1, "down", min_size=0, timeout=0.2, **{**CONFIG, "connect_timeout": 0.2})
    db.outage = True
    with pytest.raises(mysql.PoolError, match="could not connect") as info:
        p.get_connection()
    assert isinstance(info.value, db.OperationalError)  # as the driver's connect raised it
    assert isinstance(info.value.__cause__, db.OperationalError)
    assert "s3cret" not in str(info.value) and "server unreachable" in str(info.value)
    db.outage = False
    p.get_connection(timeout=5).close()  # the pool recovers by itself, after its back-off delay


def test_fix_broken_connection_not_handed_out(make, db):
    p = make(1, "broken", **CONFIG)
    conn = p.get_connection()
    first = _raw(db, conn)
    conn.close()
    first.disconnect()
    conn = p.get_connection()
    assert conn.id != first.id
    conn.close()


def test_fix_idle_connections_expire_and_min_size_is_kept(make, db, hub):
    p = make(3, "idle", min_size=1, max_idle=0.05, **CONFIG)
    conns = [p.get_connection() for _ in range(3)]
    for c in conns:
        c.close()
    wait_until(hub, lambda: db.closes >= 2)
    wait_until(hub, lambda: p.stats().size >= 1)


def test_many_green_threads_share_a_pool_of_five_fake(make, hub, db):
    db.query_delay = 0.001
    p = make(5, "many", timeout=20, **CONFIG)
    count = 200 if hub.green else 50

    def work(i):
        with p.get_connection() as conn:
            cur = conn.cursor()
            cur.execute(f"SELECT {i}")
            return cur.fetchone()[0]

    tasks = [Spawned(hub, work, i) for i in range(count)]
    assert [t.wait() for t in tasks] == list(range(count))
    assert db.connects == 5 and p.stats().in_use == 0


# -- real MariaDB --------------------------------------------------------------------------


@pytest.fixture
def maria_make(mariadb, hub):
    made = []

    def make(pool_size=5, pool_name=None, **kwargs):
        p = mysql.MySQLConnectionPool(
            pool_size, pool_name or f"maria_{hub.name}", hub=hub, **{**mariadb, **kwargs}
        )
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()
    mysql.close_pools()


def _one(conn, sql):
    cur = conn.cursor()
    cur.execute(sql)
    row = cur.fetchone()
    cur.close()
    return row


def test_mariadb_200_green_threads_share_five_connections(maria_make, hub):
    p = maria_make(5, timeout=20)
    count = 200 if hub.green else 50
    ids = set()

    def work():
        with p.get_connection() as conn:
            ids.add(_one(conn, "SELECT CONNECTION_ID(), SLEEP(0.002)")[0])

    tasks = [Spawned(hub, work) for _ in range(count)]
    for t in tasks:
        t.wait(30)
    assert len(ids) <= 5 and p.stats().opened == 5


def test_mariadb_session_reset(maria_make):
    p = maria_make(1, charset="utf8mb4", sql_mode="ANSI_QUOTES", init_command="SET @init = 1")
    conn = p.get_connection()
    conn_id = _one(conn, "SELECT CONNECTION_ID()")[0]
    _one(conn, "SET @x = 5")
    conn.close()
    conn = p.get_connection()
    row = _one(conn, "SELECT CONNECTION_ID(), @x, @init, @@sql_mode, @@character_set_client")
    assert row[0] == conn_id and row[1] is None  # same connection, session reset
    assert row[2] == 1 and "ANSI_QUOTES" in row[3] and row[4] == "utf8mb4"  # set-up redone
    assert conn.get_autocommit() is False
    conn.close()
    q = maria_make(1, "noreset_" + p.pool_name, pool_reset_session=False)
    conn = q.get_connection()
    _one(conn, "SET @x = 5")
    conn.close()
    conn = q.get_connection()
    assert _one(conn, "SELECT @x")[0] == 5
    conn.close()


def test_mariadb_connect_and_set_config(mariadb, hub, maria_make):
    name = f"connect_{hub.name}"
    conn = mysql.connect(pool_name=name, pool_size=2, hub=hub, **mariadb)
    pool = conn.pool
    assert _one(conn, "SELECT DATABASE()")[0] == mariadb["database"]
    pool.set_config(**mariadb, init_command="SET @generation = 2")
    conn.close()  # taken before set_config: closed, reopened with the new settings
    again = mysql.connect(pool_name=name, hub=hub, **mariadb)
    assert _one(again, "SELECT @generation")[0] == 2
    again.close()


def test_mariadb_killed_connection_not_handed_out(maria_make, mariadb):
    import pymysql

    p = maria_make(1, check_interval=0)
    conn = p.get_connection()
    conn_id = _one(conn, "SELECT CONNECTION_ID()")[0]
    conn.close()
    killer = pymysql.connect(**mariadb)
    try:
        killer.cursor().execute(f"KILL {conn_id}")
    finally:
        killer.close()
    conn = p.get_connection()
    assert _one(conn, "SELECT CONNECTION_ID()")[0] != conn_id
    conn.close()


def test_mariadb_with_mysql_connector(maria_make, hub):
    try:
        importlib.import_module("mysql.connector")
    except ImportError:
        pytest.skip("mysql-connector-python is not installed")
    p = maria_make(2, "connector_" + hub.name, driver="mysql.connector")
    conn = p.get_connection()
    _one(conn, "SET @x = 1")
    conn.close()
    conn = p.get_connection()
    assert _one(conn, "SELECT @x")[0] is None  # reset_session() of mysql-connector
    conn.close()


def test_killed_waiter_loses_nothing(make, green_hub):
    hub = green_hub
    p = make(1, "killed", timeout=None, **CONFIG)
    held = p.get_connection()
    waiter = Spawned(hub, p.get_connection)
    wait_until(hub, lambda: p.stats().waiting == 1)
    waiter.kill()
    assert waiter.outcome() is not None
    held.close()
    p.get_connection(timeout=0).close()
    assert p.stats().in_use == 0
