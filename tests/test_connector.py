"""DatabaseConnector with the fake driver: keying, credentials, creation races, max_total,
idle-pool eviction and the fail-fast back-off, on every hub."""

from __future__ import annotations

import gc
import logging

import pytest

from greenpool import (
    DatabaseUnavailable,
    PoolClosed,
    PoolTimeout,
    RawConnectionPool,
    TpooledConnectionPool,
)
from greenpool.connector import DatabaseConnector, PoolKey, UnknownHost, split_host
from tests.support.fakedb import make_fakedb
from tests.support.tasks import Spawned, wait_until

SECRET = "s3cret-pw"
CREDENTIALS = {
    "default": {"user": "app", "password": SECRET},
    "db2": {"user": "two", "password": SECRET, "port": 6000},
}
POOL_CLASSES = [RawConnectionPool, TpooledConnectionPool]


class Killed(Exception):
    pass


def make(hub, conn_pool=RawConnectionPool, *args, db=None, credentials=None, **kwargs):
    db = db if db is not None else make_fakedb()
    credentials = CREDENTIALS if credentials is None else credentials
    connector = DatabaseConnector(db, credentials, conn_pool, *args, hub=hub, **kwargs)
    return connector, db


class HostOutage:
    """Connects to ``host`` fail without reaching the fake driver, which is one module
    for every host; ``attempts`` counts them.  Install it before the pools are made
    (a pool takes the module's ``connect`` when it is built); ``end()`` ends it."""

    def __init__(self, db, host):
        self.host = host
        self.attempts = 0
        self.down = True
        real = db.connect

        def connect(*args, **kwargs):
            if self.down and kwargs.get("host") == host:
                self.attempts += 1
                raise db.OperationalError(f"fakedb: {host} refused the connection")
            return real(*args, **kwargs)

        db.connect = connect

    def end(self):
        self.down = False


def cause_chain(error):
    """``error`` and its causes, outermost first."""
    chain = []
    while error is not None:
        chain.append(error)
        error = error.__cause__
    return chain


# -- keying and connect arguments ------------------------------------------------------


def test_one_pool_per_host_and_database(hub):
    connector, db = make(hub)
    a = connector.get("db1", "orders")
    assert connector.get("db1", "orders") is a
    assert connector.get("DB1", "orders") is a
    others = [connector.get("db1", "users"), connector.get("db3", "orders")]
    assert len({id(p) for p in [a, *others]}) == 3
    assert set(connector.pools()) == {
        PoolKey("db1", None, "orders"),
        PoolKey("db1", None, "users"),
        PoolKey("db3", None, "orders"),
    }
    assert db.connect_attempts == 0  # pools open connections on demand
    connector.close()


def test_ports_in_the_host_or_the_credentials(hub):
    connector, db = make(hub)
    # db2's credentials carry port 6000: "db2" and "db2:6000" are the same server.
    assert connector.get("db2", "x") is connector.get("db2:6000", "x")
    assert connector.key_for("db2", "x") == PoolKey("db2", 6000, "x")
    other_port = connector.get("db2:6001", "x")
    assert other_port is not connector.get("db2", "x")
    assert connector.key_for("[::1]:5433", "x") == PoolKey("::1", 5433, "x")
    assert str(connector.key_for("[::1]:5433", "x")) == "[::1]:5433/x"
    with other_port.item() as conn:
        kwargs = conn.kwargs
    # "db2:6001" uses db2's entry (user "two") but its own port.
    assert kwargs == {
        "host": "db2", "user": "two", "password": SECRET, "port": 6001, "database": "x"
    }
    connector.close()


def test_connect_arguments_merge_pool_options_credentials_and_database(hub):
    creds = {"default": {"user": "app", "password": SECRET, "database": "ignored"}}
    connector, db = make(hub, RawConnectionPool, 0, 2, credentials=creds, charset="utf8")
    pool = connector.get("db9", "shard_9")
    assert pool.max_size == 2  # eventlet-style positional pool options
    with pool.item() as conn:
        assert conn.kwargs == {
            "host": "db9",
            "user": "app",
            "password": SECRET,
            "charset": "utf8",
            "database": "shard_9",
        }
    connector.close()


def test_credentials_may_name_the_real_host(hub):
    creds = {"shard-a": {"host": "10.1.2.3", "user": "u"}}
    connector, db = make(hub, credentials=creds)
    with connector.get("shard-a", "d").item() as conn:
        assert conn.kwargs["host"] == "10.1.2.3"
    connector.close()


@pytest.mark.parametrize(
    "module_name, keyword, passes_host",
    [
        ("psycopg2", "dbname", True),
        ("pymysql", "database", True),
        ("MySQLdb", "database", True),
        ("sqlite3", "database", False),
        ("somedriver", "database", True),
    ],
)
def test_database_keyword_follows_the_driver(hub, module_name, keyword, passes_host):
    connector, _ = make(hub, db=make_fakedb(module_name), credentials={"default": {}})
    assert connector.database_keyword == keyword
    pool = connector.get("h", "d")
    assert pool.connect_kwargs[keyword] == "d"
    assert ("host" in pool.connect_kwargs) is passes_host
    connector.close()


def test_database_keyword_override_like_eventlet(hub):
    connector, _ = make(hub, db=make_fakedb("MySQLdb"), database_keyword="db")
    kwargs = connector.get("h", "d").connect_kwargs
    assert kwargs["db"] == "d" and "database" not in kwargs
    connector.close()


@pytest.mark.parametrize(
    "host, expected",
    [
        ("db3", ("db3", None)),
        ("db3:5433", ("db3", 5433)),
        ("[::1]:5433", ("::1", 5433)),
        ("[::1]", ("::1", None)),
        ("::1", ("::1", None)),
        ("fe80::1:2", ("fe80::1:2", None)),
    ],
)
def test_split_host(host, expected):
    assert split_host(host) == expected


@pytest.mark.parametrize(
    "host, error, text",
    [
        ("db3:", ValueError, "port must be a number from 1 to 65535, got ''"),
        ("db3:http", ValueError, "got 'http'"),
        ("db3:70000", ValueError, "got 70000"),
        ("[::1]:0", ValueError, "got 0"),
        (42, TypeError, "host must be a string, got 42"),
    ],
)
def test_split_host_errors(host, error, text):
    with pytest.raises(error, match=text):
        split_host(host)


# -- credentials ---------------------------------------------------------------------


def test_credentials_lookup_order(hub):
    connector, _ = make(hub)
    assert connector.credentials_for("db2")["user"] == "two"
    assert connector.credentials_for("db2:7000")["user"] == "two"  # falls back to "db2"
    assert connector.credentials_for("db7")["user"] == "app"  # 'default'
    mine = connector.credentials_for("db2")
    mine["user"] = "changed"
    assert connector.credentials_for("db2")["user"] == "two"  # a copy


def test_unknown_host_names_it_without_secrets(hub):
    connector, _ = make(hub, credentials={"db1": {"user": "u", "password": SECRET}})
    with pytest.raises(UnknownHost) as caught:
        connector.get("db9", "x")
    assert isinstance(caught.value, KeyError)
    message = str(caught.value)
    assert "db9" in message and "no 'default'" in message and "db1" in message
    assert SECRET not in message
    with pytest.raises(KeyError, match="db9"):
        connector.credentials_for("db9")
    assert connector.pools() == {}


def test_no_credentials_in_reprs_logs_or_stats(hub, caplog):
    caplog.set_level(logging.DEBUG)
    db = make_fakedb()
    outage = HostOutage(db, "db1")
    connector, _ = make(hub, db=db, name="shards", failure_threshold=1, backoff=5)
    pool = connector.get("db3", "orders")
    pool.put(pool.get())
    with pytest.raises(PoolTimeout) as caught:
        connector.get("db1", "users").get(timeout=0.3)
    assert outage.attempts == 1  # then refused by the fail-fast gate
    errors = cause_chain(caught.value)
    assert any(isinstance(e, DatabaseUnavailable) for e in errors)
    texts = [repr(connector), repr(pool), str(connector.stats()), caplog.text]
    texts += [str(e) for e in errors]
    for text in texts:
        assert SECRET not in text
    assert "shards" in repr(connector) and "db3/orders" in repr(pool)
    connector.close()


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"max_total": 0}, ValueError, "max_total must be >= 1, got 0"),
        ({"max_total": "3"}, TypeError, "max_total must be an integer"),
        ({"max_pool_idle": -1}, ValueError, "max_pool_idle must be >= 0"),
        ({"max_pool_idle": 0}, ValueError, "max_pool_idle must be > 0"),
        ({"failure_threshold": 0}, ValueError, "failure_threshold must be >= 1"),
        ({"backoff": 0}, ValueError, "backoff must be > 0"),
        ({"backoff": None}, TypeError, "backoff must be a number of seconds"),
        ({"database_keyword": 5}, TypeError, "database_keyword must be a string, got 5"),
        ({"database_keyword": "db name"}, ValueError, "database_keyword must be a keyword"),
        ({"name": 1}, TypeError, "name must be a string"),
        ({"min_size": 1, "max_total": 4}, ValueError, "min_size must be 0 when max_total"),
        ({"max_total": 4, "limiter": object()}, ValueError, "limiter cannot be combined"),
        ({"before_connect": 5}, TypeError, "before_connect must be callable"),
    ],
)
def test_bad_arguments_name_the_argument(hub, kwargs, error, text):
    with pytest.raises(error, match=text):
        make(hub, **kwargs)


def test_bad_module_credentials_and_pool_class(hub):
    with pytest.raises(TypeError, match="module must be a DB-API module"):
        DatabaseConnector(42, {})
    with pytest.raises(TypeError, match="credentials must be a mapping.*got list"):
        DatabaseConnector(make_fakedb(), [("default", {})])
    with pytest.raises(TypeError, match="conn_pool must be a pool class"):
        DatabaseConnector(make_fakedb(), {}, "RawConnectionPool")
    with pytest.raises(TypeError, match="max_total needs conn_pool"):
        DatabaseConnector(make_fakedb(), {}, lambda *a, **k: None, max_total=2)
    connector, _ = make(hub, credentials={"default": "user=app password=" + SECRET})
    with pytest.raises(TypeError, match=r"credentials\['default'\] must be a mapping") as caught:
        connector.get("db1", "x")
    assert SECRET not in str(caught.value)


def test_any_pool_class_like_eventlet(hub):
    made = []

    def pool_class(module, *args, **kwargs):
        made.append((module, args, kwargs))
        return object()

    db = make_fakedb()
    connector = DatabaseConnector(db, CREDENTIALS, pool_class, 1, 2, hub=hub, max_size_hint=3)
    pool = connector.get("db2", "x")
    assert connector.get("db2", "x") is pool
    assert made == [
        (
            db,
            (1, 2),
            {"max_size_hint": 3, "host": "db2", "user": "two", "password": SECRET,
             "port": 6000, "database": "x"},
        )
    ]


def test_pools_are_instances_of_the_pool_class_itself(hub):
    class Mine(RawConnectionPool):
        pass

    seen = []
    connector, db = make(hub, Mine, max_total=2, before_connect=seen.append)
    pool = connector.get("db1", "a")
    assert type(pool) is Mine
    default, _ = make(hub, None)
    assert type(default.get("db1", "a")) is TpooledConnectionPool
    default.close()
    with pool.item(timeout=5):
        pass
    assert seen == [pool]  # a before_connect of the user's own is called as well
    connector.close()


# -- creation races ------------------------------------------------------------------


def test_concurrent_first_gets_make_one_pool(hub):
    made = []

    class Counting(RawConnectionPool):
        def __init__(self, *args, **kwargs):
            made.append(1)
            super().__init__(*args, **kwargs)

    # min_size=1: creating the pool connects, so the creator yields (or blocks) mid-way.
    connector, db = make(hub, Counting, 1)
    db.connect_delay = 0.1
    tasks = [Spawned(hub, connector.get, "db1", "orders") for _ in range(8)]
    pools = {id(task.wait()) for task in tasks}
    assert len(pools) == 1 and len(made) == 1 and db.connects == 1
    # Nothing is left pending: a later first get of another pair is made at once.
    assert connector.get("db1", "other").stats().idle == 1
    connector.close()


def test_failed_creation_is_retried_by_the_next_caller(hub):
    # min_size connections are opened in the pool's constructor, so its error raises there.
    connector, db = make(hub, RawConnectionPool, 1)
    db.connect_delay = 0.1
    db.connect_error = db.OperationalError("fakedb: first connect refused")  # once only
    first = Spawned(hub, connector.get, "db1", "orders")
    wait_until(hub, lambda: db.connect_attempts == 1)
    second = Spawned(hub, connector.get, "db1", "orders")
    assert isinstance(first.outcome(), db.OperationalError)
    pool = second.wait()
    assert connector.pools() == {PoolKey("db1", None, "orders"): pool}
    assert pool.stats().idle == 1 and db.connect_attempts == 2
    assert connector.get("db1", "orders") is pool
    connector.close()


def test_interrupted_creation_leaves_nothing_behind(green_hub):
    connector, db = make(green_hub, RawConnectionPool, 1)
    db.connect_delay = 5
    creator = Spawned(green_hub, connector.get, "db1", "orders")
    wait_until(green_hub, lambda: db.connect_attempts == 1)
    follower = Spawned(green_hub, connector.get, "db1", "orders")
    db.connect_delay = 0  # the creator already sleeps in its connect
    creator.kill()
    creator.outcome()
    pool = follower.wait()
    assert pool.stats().idle == 1
    assert connector.pools() == {PoolKey("db1", None, "orders"): pool}
    connector.close()


# -- close, clear, stats -----------------------------------------------------------------


def test_close_closes_every_pool(hub):
    connector, db = make(hub)
    with connector:
        held = connector.get("db1", "a").get()
        idle = connector.get("db3", "b")
        idle.put(idle.get())
        pools = list(connector.pools().values())
    assert connector.closed and all(p.closed for p in pools)
    assert len(db.open_connections()) == 1  # the one still checked out
    held.close()
    assert db.open_connections() == []
    with pytest.raises(PoolClosed, match="DatabaseConnector is closed"):
        connector.get("db1", "a")
    connector.close()  # idempotent


def test_close_wakes_callers_waiting_for_the_cap(hub):
    connector, db = make(hub, max_total=1)
    held = connector.get("db1", "a").get()
    waiter = Spawned(hub, lambda: connector.get("db3", "b").get())  # no timeout
    wait_until(hub, lambda: connector.stats().checkout_waiting == 1)
    connector.close()
    error = waiter.outcome()
    assert isinstance(error, PoolClosed) and "closed while waiting" in str(error)
    held.close()
    assert db.open_connections() == []


def test_close_with_timeout_takes_connections_back(hub):
    connector, db = make(hub, max_total=2)
    held = connector.get("db1", "a").get()
    started = hub.monotonic()
    connector.close(timeout=0.1)
    assert 0.1 <= hub.monotonic() - started < 2
    assert db.open_connections() == [] and held.closed  # closed under its user
    assert connector.stats().checkouts == 0  # the revoked checkout's token came back
    held.close()  # a late return is harmless


def test_checkouts_remember_where_they_were_taken(hub, caplog):
    caplog.set_level(logging.WARNING)
    connector, _ = make(hub, leak_timeout=0.05)

    def hold_one():
        return connector.get("db1", "a").get(timeout=5)

    conn = hold_one()
    wait_until(hub, lambda: "has been checked out for" in caplog.text)
    assert __file__ in caplog.text and "in hold_one" in caplog.text
    conn.close()
    connector.close()


def test_clear_closes_pools_and_keeps_the_connector_usable(hub):
    connector, db = make(hub)
    old = connector.get("db1", "a")
    old.put(old.get())
    connector.clear()
    assert old.closed and connector.pools() == {} and db.open_connections() == []
    new = connector.get("db1", "a")
    assert new is not old and not new.closed
    connector.close()


def test_stats_sum_the_pools(hub):
    connector, db = make(hub, max_total=5, name="shards")
    a, b = connector.get("db1", "a"), connector.get("db3", "b")
    held = [a.get(), a.get(), b.get()]
    b.put(b.get())
    s = connector.stats()
    assert (s.size, s.in_use, s.idle, s.waiting) == (4, 3, 1, 0)
    assert (s.max_total, s.checkouts, s.checkout_waiting) == (5, 3, 0)
    assert s.pools[PoolKey("db1", None, "a")].in_use == 2 and s.name == "shards"
    assert repr(connector) == (
        f"<DatabaseConnector 'shards' generic, 2 pools, 4 connections, max_total 5, "
        f"hub {hub.name}>"
    )
    for conn in held:
        conn.close()
    assert connector.stats().checkouts == 0
    connector.close()


# -- max_total ---------------------------------------------------------------------------


@pytest.mark.parametrize("conn_pool", POOL_CLASSES, ids=lambda c: c.__name__)
def test_max_total_waiter_is_served_when_another_host_returns(hub, conn_pool):
    connector, db = make(hub, conn_pool, max_total=2)
    on_b = connector.get("db3", "b")
    held = [on_b.get(), on_b.get()]
    waiter = Spawned(hub, lambda: connector.get("db1", "a").get(timeout=5))
    wait_until(hub, lambda: connector.stats().checkout_waiting == 1)
    assert len(db.open_connections()) == 2
    held[0].close()
    conn = waiter.wait()
    assert conn.kwargs["host"] == "db1"
    # B's returned connection was closed to make room: never more than 2 open.
    assert len(db.open_connections()) == 2 and connector.stats().size == 2
    conn.close()
    held[1].close()
    assert connector.stats().checkouts == 0
    connector.close()


def test_max_total_serves_waiters_first_come_first_served(hub):
    connector, db = make(hub, max_total=1)
    held = connector.get("db9", "z").get()
    order = []

    def waiter(host):
        conn = connector.get(host, "x").get(timeout=5)
        order.append(host)
        conn.close()

    tasks = []
    for n, host in enumerate(["db1", "db3", "db4"]):
        tasks.append(Spawned(hub, waiter, host))
        wait_until(hub, lambda n=n: connector.stats().checkout_waiting == n + 1)
    held.close()
    for task in tasks:
        task.wait()
    assert order == ["db1", "db3", "db4"]
    assert len(db.open_connections()) <= 1
    connector.close()


def test_max_total_timeout_names_the_cap_and_leaks_nothing(hub):
    connector, _ = make(hub, max_total=1)
    held = connector.get("db1", "a").get()
    other = connector.get("db3", "b")
    started = hub.monotonic()
    with pytest.raises(PoolTimeout, match="all max_total=1 connections are in use"):
        other.get(timeout=0.05)
    assert hub.monotonic() - started >= 0.05
    assert connector.stats().checkout_waiting == 0
    held.close()
    with other.item(timeout=5) as conn:
        assert conn
    assert connector.stats().checkouts == 0
    connector.close()


def test_max_total_pool_timeout_default_applies_to_the_cap(hub):
    connector, _ = make(hub, max_total=1, timeout=0.05)
    held = connector.get("db1", "a").get()
    with pytest.raises(PoolTimeout):
        connector.get("db3", "b").get()
    held.close()
    connector.close()


@pytest.mark.parametrize("conn_pool", POOL_CLASSES, ids=lambda c: c.__name__)
def test_max_total_never_opens_more_than_the_cap(hub, conn_pool):
    cap = 3
    connector, db = make(hub, conn_pool, max_total=cap)
    db.query_delay = 0.002
    seen = []
    db.connect_hook = lambda: seen.append(len(db.open_connections()))

    def worker(n):
        for i in range(6):
            with connector.get(f"db{(n + i) % 5}", "x").item(timeout=10) as conn:
                conn.cursor().execute("SELECT 1")

    tasks = [Spawned(hub, worker, n) for n in range(8)]
    for task in tasks:
        task.wait(20)
    assert seen and max(seen) < cap  # room made before every connect
    # Connects whose callers were served by a returned connection meanwhile may
    # still be under way (the pools open connections in the background).
    wait_until(hub, lambda: not any(p.creating for p in connector.stats().pools.values()))
    s = connector.stats()
    assert s.checkouts == 0 and s.size <= cap and len(db.open_connections()) <= cap
    connector.close()


def test_max_total_tokens_balance_under_contention(hub):
    """A return races the next checkout of the same connection (real threads on threads).

    With max_total above max_size, callers holding a token queue in the pool and are
    handed the returned connection directly.
    """
    connector, db = make(hub, max_total=3, max_size=2, check=None)
    pool = connector.get("db1", "a")

    def worker():
        for _ in range(200):
            pool.put(pool.get(timeout=10))

    tasks = [Spawned(hub, worker) for _ in range(6)]
    for task in tasks:
        task.wait(20)
    s = connector.stats()
    assert (s.checkouts, s.checkout_waiting, s.in_use) == (0, 0, 0)
    # Every token is back: max_total checkouts at once, without waiting.
    other = connector.get("db3", "b")
    held = [pool.get(timeout=1), pool.get(timeout=1), other.get(timeout=1)]
    assert connector.stats().checkouts == 3
    for conn in held:
        conn.close()
    connector.close()


def test_max_total_token_comes_back_when_connects_fail(hub):
    connector, db = make(hub, max_total=1)
    db.outage = True
    with pytest.raises(PoolTimeout) as caught:
        connector.get("db1", "a").get(timeout=0.2)
    assert isinstance(caught.value.__cause__, db.OperationalError)
    assert connector.stats().checkouts == 0
    db.outage = False
    with connector.get("db3", "a").item(timeout=5) as conn:
        assert conn
    connector.close()


def test_max_total_token_comes_back_when_connection_is_discarded(hub):
    connector, db = make(hub, max_total=1)
    pool = connector.get("db1", "a")
    conn = pool.get()
    conn.disconnect()  # the server dropped it: the pool closes it on return
    conn.close()
    assert pool.stats().lost == 1 and connector.stats().checkouts == 0
    with pool.item(timeout=5) as again:
        assert again
    pool.discard(pool.get(timeout=5))
    assert connector.stats().checkouts == 0
    connector.close()


def test_max_total_token_comes_back_from_an_unreturned_connection(hub):
    connector, db = make(hub, max_total=1)
    pool = connector.get("db1", "a")
    pool.put(pool.get(timeout=5))
    hub.sleep(1.2)  # past the pool's own look for abandoned checkouts after that first get
    pool.get()  # from the idle list, and dropped at once, never returned
    gc.collect()
    # The waiter is on another host: the pool of the dropped checkout is not asked again.
    with connector.get("db3", "b").item(timeout=5) as conn:
        assert conn.kwargs["host"] == "db3"
    assert connector.stats().checkouts == 0
    connector.close()


@pytest.mark.parametrize("where", ["waiting for the cap", "connecting"])
def test_max_total_token_survives_kills(green_hub, where):
    connector, db = make(green_hub, max_total=1)
    held = connector.get("db1", "a").get() if where == "waiting for the cap" else None
    if where == "connecting":
        db.connect_delay = 0.5  # the connect goes on without its caller
    doomed = Spawned(green_hub, lambda: connector.get("db3", "b").get())
    if held is not None:
        wait_until(green_hub, lambda: connector.stats().checkout_waiting == 1)
    else:
        wait_until(green_hub, lambda: db.connect_attempts == 1)
    doomed.kill()
    doomed.outcome()
    db.connect_delay = 0
    if held is not None:
        held.close()
    s = connector.stats()
    assert s.checkouts == 0 and s.checkout_waiting == 0
    with connector.get("db3", "b").item(timeout=5) as conn:
        assert conn
    connector.close()


# -- max_pool_idle ----------------------------------------------------------------------


def test_unused_pools_are_closed_and_forgotten(hub, caplog):
    caplog.set_level(logging.INFO, logger="greenpool.connector")
    connector, db = make(hub, max_pool_idle=0.2)
    pool = connector.get("db1", "a")
    pool.put(pool.get())
    # Forgotten first, then closed (closing may yield to other tasks in between).
    wait_until(hub, lambda: connector.pools() == {} and not db.open_connections(), timeout=3)
    assert pool.closed
    assert "closing the pool for db1/a, unused for" in caplog.text
    fresh = connector.get("db1", "a")
    assert fresh is not pool and not fresh.closed
    connector.close()


def test_pools_in_use_are_kept(hub):
    connector, db = make(hub, max_pool_idle=0.1)
    busy = connector.get("db1", "a")
    direct = connector.get("db3", "b")
    held = busy.get()
    deadline = hub.monotonic() + 0.5
    while hub.monotonic() < deadline:  # use "direct" without asking the connector
        direct.put(direct.get())
        hub.sleep(0.02)
    assert set(connector.pools()) == {PoolKey("db1", None, "a"), PoolKey("db3", None, "b")}
    held.close()
    wait_until(hub, lambda: connector.pools() == {}, timeout=3)
    connector.close()


# -- fail fast ---------------------------------------------------------------------------

#: The pools' own retry delay after a failed connect, short and steady for these tests.
RETRY = (0.01, 0.01)


@pytest.mark.parametrize("conn_pool", POOL_CLASSES, ids=lambda c: c.__name__)
def test_failing_host_fails_fast_then_recovers(hub, conn_pool, caplog):
    caplog.set_level(logging.INFO, logger="greenpool.connector")
    db = make_fakedb()
    outage = HostOutage(db, "db1")
    connector, _ = make(
        hub, conn_pool, db=db, failure_threshold=3, backoff=0.5, reconnect_backoff=RETRY
    )
    pool = connector.get("db1", "a")
    # The pool retries while its caller waits; after 3 failures the host is refused.
    with pytest.raises(PoolTimeout) as caught:
        pool.get(timeout=0.3)
    assert outage.attempts == 3
    refusal = caught.value.__cause__
    assert isinstance(refusal, DatabaseUnavailable)
    assert isinstance(refusal.__cause__, db.OperationalError)
    assert "db1 failed 3 connects in a row" in str(refusal) and "failing fast for" in str(refusal)
    assert "DatabaseUnavailable" in str(caught.value)
    assert "3 connects in a row to db1 failed (last: OperationalError)" in caplog.text
    assert connector.stats().failing_hosts == ("db1",)
    with pytest.raises(PoolTimeout) as caught:
        connector.get("db1", "other_db").get(timeout=0.05)  # the host, whatever the database
    assert isinstance(caught.value.__cause__, DatabaseUnavailable)
    assert outage.attempts == 3
    with connector.get("db3", "a").item(timeout=5) as conn:  # other hosts are unaffected
        assert conn

    wait_until(hub, lambda: connector.stats().failing_hosts == ())
    # Back-off over: one trial connect, which fails again; then refused again.
    with pytest.raises(PoolTimeout):
        pool.get(timeout=0.1)
    assert outage.attempts == 4
    assert "trial connect to db1 failed" in caplog.text
    assert connector.stats().failing_hosts == ("db1",)

    outage.end()
    wait_until(hub, lambda: connector.stats().failing_hosts == ())
    with pool.item(timeout=5) as conn:
        assert conn
    assert "db1 is reachable again after 4 failed connects" in caplog.text
    assert connector.stats().failing_hosts == ()
    connector.close()


def test_idle_connections_of_a_failing_host_are_still_handed_out(hub):
    db = make_fakedb()
    outage = HostOutage(db, "db1")
    outage.end()
    connector, _ = make(hub, db=db, failure_threshold=1, backoff=5, reconnect_backoff=RETRY)
    ready = connector.get("db1", "a")
    ready.put(ready.get(timeout=5))
    outage.down = True
    with pytest.raises(PoolTimeout):
        connector.get("db1", "b").get(timeout=0.1)
    assert connector.stats().failing_hosts == ("db1",)
    with ready.item(timeout=1) as conn:
        assert conn
    connector.close()


def test_one_trial_connect_at_a_time(hub):
    connector, db = make(hub, failure_threshold=1, backoff=0.05, reconnect_backoff=(0.05, 0.05))
    db.outage = True
    with pytest.raises(PoolTimeout):
        connector.get("db1", "a").get(timeout=0.02)
    assert db.connect_attempts == 1
    hub.sleep(0.1)
    db.outage = False
    db.connect_delay = 0.3
    trial = Spawned(hub, lambda: connector.get("db1", "a").get(timeout=5))
    wait_until(hub, lambda: db.connect_attempts == 2)
    with pytest.raises(PoolTimeout) as caught:
        connector.get("db1", "b").get(timeout=0.1)
    assert isinstance(caught.value.__cause__, DatabaseUnavailable)
    assert "a trial connect is under way" in str(caught.value.__cause__)
    assert db.connect_attempts == 2
    trial.wait().close()
    assert connector.stats().failing_hosts == ()
    with connector.get("db1", "b").item(timeout=5) as conn:
        assert conn
    connector.close()


def test_connect_timeouts_count_as_failures(hub):
    connector, db = make(
        hub, failure_threshold=2, backoff=5, connect_timeout=0.05, reconnect_backoff=RETRY
    )
    db.connect_delay = 1
    pool = connector.get("db1", "a")
    with pytest.raises(PoolTimeout):
        pool.get(timeout=0.5)
    assert db.connect_attempts == 2 and connector.stats().failing_hosts == ("db1",)
    with pytest.raises(PoolTimeout) as caught:
        pool.get(timeout=0.05)
    assert isinstance(caught.value.__cause__, DatabaseUnavailable)
    assert "last: ConnectTimeout" in str(caught.value.__cause__)
    assert db.connect_attempts == 2
    connector.close()


def test_a_killed_caller_says_nothing_about_the_host(green_hub):
    connector, db = make(green_hub, failure_threshold=1, backoff=5)
    db.connect_delay = 0.2
    doomed = Spawned(green_hub, lambda: connector.get("db1", "a").get())
    wait_until(green_hub, lambda: db.connect_attempts == 1)
    doomed.kill()
    doomed.outcome()
    # The connect goes on without its caller, and its connection is kept.
    with connector.get("db1", "a").item(timeout=5) as conn:
        assert conn
    assert db.connect_attempts == 1
    assert connector.stats().failing_hosts == ()
    connector.close()


def test_a_pool_made_while_its_host_fails_fast_is_refused_too(hub):
    """min_size connections are opened by the pool's constructor: refused at once."""
    db = make_fakedb()
    outage = HostOutage(db, "db1")
    eager, _ = make(hub, RawConnectionPool, 1, db=db, failure_threshold=1, backoff=5)
    with pytest.raises(db.OperationalError):
        eager.get("db1", "a")
    with pytest.raises(DatabaseUnavailable, match="db1 failed 1 connects in a row"):
        eager.get("db1", "b")
    assert outage.attempts == 1 and eager.pools() == {}
    eager.close()


def test_failure_threshold_none_never_fails_fast(hub):
    connector, db = make(hub, failure_threshold=None, reconnect_backoff=RETRY)
    db.outage = True
    with pytest.raises(PoolTimeout) as caught:
        connector.get("db1", "a").get(timeout=0.3)
    assert isinstance(caught.value.__cause__, db.OperationalError)
    assert db.connect_attempts > 3
    assert connector.stats().failing_hosts == ()
    connector.close()
