"""The fault-test support code works: private servers, the fault proxy, deaf listeners."""

from __future__ import annotations

import os
import select
import socket
import time
from typing import Any, Callable, Iterator

import pytest

from tests.support.faultproxy import FaultProxy, deaf_listener
from tests.support.servers import PrivateMariaDB, PrivatePostgres

pytestmark = [pytest.mark.db, pytest.mark.slow]

REQUIRE_DB = os.environ.get("GREENPOOL_REQUIRE_DB") == "1"


def _unavailable(message: str) -> None:
    if REQUIRE_DB:
        pytest.fail(f"{message} (GREENPOOL_REQUIRE_DB=1)", pytrace=False)
    pytest.skip(message)


def _require(cls: Any, driver: str) -> None:
    ok, reason = cls.available()
    if not ok:
        _unavailable(f"private {cls.__name__[7:]} unavailable: {reason}")
    try:
        __import__(driver)
    except ImportError as exc:
        _unavailable(f"{driver} not importable: {exc}")


@pytest.fixture(autouse=True)
def _blocking_psycopg2() -> Iterator[None]:
    """Run psycopg2 without a green wait callback so libpq's connect_timeout applies.

    eventlet.monkey_patch() installs a wait callback, and libpq ignores
    connect_timeout for such (asynchronous) connects.
    """
    try:
        import psycopg2.extensions as ext
    except ImportError:
        yield
        return
    saved = ext.get_wait_callback()
    ext.set_wait_callback(None)
    try:
        yield
    finally:
        ext.set_wait_callback(saved)


@pytest.fixture(scope="module")
def pg_server() -> Iterator[PrivatePostgres]:
    _require(PrivatePostgres, "psycopg2")
    server = PrivatePostgres()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(scope="module")
def my_server() -> Iterator[PrivateMariaDB]:
    _require(PrivateMariaDB, "pymysql")
    server = PrivateMariaDB()
    try:
        server.start()
        yield server
    finally:
        server.close()


@pytest.fixture
def pg(pg_server: PrivatePostgres) -> PrivatePostgres:
    """The module's private PostgreSQL, running (a previous test may have stopped it)."""
    pg_server.start()
    return pg_server


@pytest.fixture
def my(my_server: PrivateMariaDB) -> PrivateMariaDB:
    """The module's private MariaDB, running."""
    my_server.start()
    return my_server


def pg_connect(kwargs: dict[str, Any], **extra: Any) -> Any:
    import psycopg2

    options = dict(kwargs, connect_timeout=5)
    options.update(extra)
    conn = psycopg2.connect(**options)
    conn.autocommit = True
    return conn


def my_connect(kwargs: dict[str, Any], **extra: Any) -> Any:
    import pymysql

    options = dict(connect_timeout=5, read_timeout=10, write_timeout=10, autocommit=True)
    options.update(extra)
    return pymysql.connect(**dict(kwargs, **options))


def scalar(conn: Any, sql: str) -> Any:
    cur = conn.cursor()
    try:
        cur.execute(sql)
        return cur.fetchone()[0]
    finally:
        cur.close()


def refused(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def elapsed(fn: Callable[[], Any], exc: Any) -> float:
    """Run FN, require it to raise EXC, return how long that took."""
    t0 = time.monotonic()
    with pytest.raises(exc):
        fn()
    return time.monotonic() - t0


# --------------------------------------------------------------------------
# Private PostgreSQL
# --------------------------------------------------------------------------


def test_pg_select_one(pg: PrivatePostgres) -> None:
    conn = pg_connect(pg.connect_kwargs())
    try:
        assert scalar(conn, "SELECT 1") == 1
        assert scalar(conn, "SELECT current_database()") == "test"
    finally:
        conn.close()
    assert pg.last_ready_at is not None and pg.last_ready_at <= time.monotonic()


def test_pg_terminate_all_connections(pg: PrivatePostgres) -> None:
    import psycopg2

    victims = [pg_connect(pg.connect_kwargs()) for _ in range(2)]
    assert pg.terminate_all_connections() >= 2
    for conn in victims:
        with pytest.raises(psycopg2.OperationalError):
            scalar(conn, "SELECT 1")
        conn.close()
    fresh = pg_connect(pg.connect_kwargs())
    assert scalar(fresh, "SELECT 1") == 1
    fresh.close()


def test_pg_restart_immediate_then_reconnect(pg: PrivatePostgres) -> None:
    import psycopg2

    old = pg_connect(pg.connect_kwargs())
    scalar(
        old,
        "CREATE TABLE IF NOT EXISTS survives (x int); INSERT INTO survives VALUES (1); SELECT 1",
    )
    ready_before = pg.last_ready_at
    port = pg.port
    pg.restart("immediate")
    assert pg.port == port
    assert pg.last_ready_at is not None and ready_before is not None
    assert pg.last_ready_at > ready_before
    with pytest.raises(psycopg2.OperationalError):
        scalar(old, "SELECT 1")
    old.close()
    conn = pg_connect(pg.connect_kwargs())
    try:
        assert scalar(conn, "SELECT count(*) FROM survives") >= 1
    finally:
        conn.close()


def test_pg_stop_kill_refuses(pg: PrivatePostgres) -> None:
    import psycopg2

    idle = pg_connect(pg.connect_kwargs())
    pg.stop("kill")
    assert not pg.running
    assert refused(pg.host, pg.port)
    with pytest.raises(psycopg2.OperationalError):
        scalar(idle, "SELECT 1")
    idle.close()
    with pytest.raises(psycopg2.OperationalError):
        pg_connect(pg.connect_kwargs())
    pg.start()  # crash recovery after SIGKILL works
    conn = pg_connect(pg.connect_kwargs())
    assert scalar(conn, "SELECT 1") == 1
    conn.close()


# --------------------------------------------------------------------------
# Private MariaDB
# --------------------------------------------------------------------------


def test_mariadb_select_one(my: PrivateMariaDB) -> None:
    conn = my_connect(my.connect_kwargs())
    try:
        assert scalar(conn, "SELECT 1") == 1
        assert scalar(conn, "SELECT DATABASE()") == "test"
    finally:
        conn.close()


def test_mariadb_terminate_all_connections(my: PrivateMariaDB) -> None:
    import pymysql

    victims = [my_connect(my.connect_kwargs()) for _ in range(2)]
    assert my.terminate_all_connections() >= 2
    for conn in victims:
        with pytest.raises(pymysql.err.OperationalError):
            scalar(conn, "SELECT 1")
    fresh = my_connect(my.connect_kwargs())
    assert scalar(fresh, "SELECT 1") == 1
    fresh.close()


def test_mariadb_restart_immediate_then_reconnect(my: PrivateMariaDB) -> None:
    import pymysql

    old = my_connect(my.connect_kwargs())
    cur = old.cursor()
    cur.execute("CREATE TABLE IF NOT EXISTS survives (x int) ENGINE=InnoDB")
    cur.execute("INSERT INTO survives VALUES (1)")
    ready_before = my.last_ready_at
    my.restart("immediate")
    assert my.last_ready_at is not None and ready_before is not None
    assert my.last_ready_at > ready_before
    with pytest.raises(pymysql.err.OperationalError):
        scalar(old, "SELECT 1")
    conn = my_connect(my.connect_kwargs())
    try:
        assert scalar(conn, "SELECT count(*) FROM survives") >= 1
    finally:
        conn.close()


def test_mariadb_stop_kill_refuses(my: PrivateMariaDB) -> None:
    import pymysql

    my.stop("kill")
    assert not my.running
    assert refused(my.host, my.port)
    with pytest.raises(pymysql.err.OperationalError):
        my_connect(my.connect_kwargs())
    my.start()
    conn = my_connect(my.connect_kwargs())
    assert scalar(conn, "SELECT 1") == 1
    conn.close()


# --------------------------------------------------------------------------
# Fault proxy
# --------------------------------------------------------------------------


@pytest.fixture
def pg_proxy(pg: PrivatePostgres) -> Iterator[FaultProxy]:
    with FaultProxy(pg.host, pg.port) as proxy:
        yield proxy


def proxied(pg: PrivatePostgres, proxy: FaultProxy) -> dict[str, Any]:
    return dict(pg.connect_kwargs(), port=proxy.port)


def test_proxy_pass_forwards_pg_query(pg: PrivatePostgres, pg_proxy: FaultProxy) -> None:
    assert pg_proxy.port != pg.port
    conn = pg_connect(proxied(pg, pg_proxy))
    try:
        assert scalar(conn, "SELECT 40 + 2") == 42
        assert scalar(conn, "SELECT length(repeat('x', 3000000))") == 3000000
        assert pg_proxy.connection_count() == 1
    finally:
        conn.close()
    pg_proxy.wait_connection_count(0)


def _pg_async_query_finishes(conn: Any, sql: str, timeout: float) -> bool:
    """Run SQL on an async psycopg2 connection; False if no answer within TIMEOUT."""
    import psycopg2.extensions as ext

    deadline = time.monotonic() + timeout
    cur = conn.cursor()
    cur.execute(sql)
    while True:
        state = conn.poll()
        if state == ext.POLL_OK:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        if state == ext.POLL_READ:
            select.select([conn.fileno()], [], [], remaining)
        else:
            select.select([], [conn.fileno()], [], remaining)


def test_proxy_blackhole_times_out(
    pg: PrivatePostgres, my: PrivateMariaDB, pg_proxy: FaultProxy
) -> None:
    import psycopg2
    import psycopg2.extras
    import pymysql

    # An existing PostgreSQL connection goes silent.
    aconn = psycopg2.connect(**dict(proxied(pg, pg_proxy), async_=1))
    psycopg2.extras.wait_select(aconn)
    assert _pg_async_query_finishes(aconn, "SELECT 1", 5)
    pg_proxy.set_mode("blackhole")
    assert not _pg_async_query_finishes(aconn, "SELECT 1", 1.0)
    aconn.close()

    # A new PostgreSQL connection never completes its handshake.
    took = elapsed(
        lambda: pg_connect(proxied(pg, pg_proxy), connect_timeout=1), psycopg2.OperationalError
    )
    assert 0.9 <= took < 4

    # An existing MariaDB connection times out on read.
    with FaultProxy(my.host, my.port) as my_proxy:
        conn = my_connect(dict(my.connect_kwargs(), port=my_proxy.port), read_timeout=1)
        assert scalar(conn, "SELECT 1") == 1
        my_proxy.set_mode("blackhole")
        took = elapsed(lambda: scalar(conn, "SELECT 1"), pymysql.err.OperationalError)
        assert 0.9 <= took < 4
        conn.close()

    pg_proxy.set_mode("pass")
    conn = pg_connect(proxied(pg, pg_proxy))
    assert scalar(conn, "SELECT 1") == 1
    conn.close()


def test_proxy_reset_fails_fast(pg: PrivatePostgres, pg_proxy: FaultProxy) -> None:
    import psycopg2

    conn = pg_connect(proxied(pg, pg_proxy))
    assert scalar(conn, "SELECT 1") == 1
    pg_proxy.set_mode("reset")
    assert elapsed(lambda: scalar(conn, "SELECT 1"), psycopg2.OperationalError) < 1
    conn.close()
    assert elapsed(lambda: pg_connect(proxied(pg, pg_proxy)), psycopg2.OperationalError) < 1
    assert pg_proxy.connection_count() == 0


def test_proxy_refuse_then_listen_again(pg: PrivatePostgres, pg_proxy: FaultProxy) -> None:
    import psycopg2

    port = pg_proxy.port
    pg_proxy.set_mode("refuse")
    assert refused(pg_proxy.host, port)
    assert elapsed(lambda: pg_connect(proxied(pg, pg_proxy)), psycopg2.OperationalError) < 1
    pg_proxy.set_mode("pass")
    assert pg_proxy.port == port
    conn = pg_connect(proxied(pg, pg_proxy))
    assert scalar(conn, "SELECT 1") == 1
    conn.close()


def test_proxy_delay_and_drop(pg: PrivatePostgres, pg_proxy: FaultProxy) -> None:
    import psycopg2

    conns = [pg_connect(proxied(pg, pg_proxy)) for _ in range(2)]
    pg_proxy.set_mode("delay", 150)
    t0 = time.monotonic()
    assert scalar(conns[0], "SELECT 1") == 1
    assert time.monotonic() - t0 >= 0.3  # 150 ms each way
    assert pg_proxy.connection_count() == 2
    pg_proxy.drop()
    assert pg_proxy.connection_count() == 0
    for conn in conns:
        with pytest.raises(psycopg2.OperationalError):
            scalar(conn, "SELECT 1")
        conn.close()
    pg_proxy.set_mode("pass")
    conn = pg_connect(proxied(pg, pg_proxy))
    assert scalar(conn, "SELECT 1") == 1
    conn.close()


def test_deaf_listener_connect_times_out() -> None:
    try:
        import pymysql
    except ImportError as exc:
        _unavailable(f"pymysql not importable: {exc}")
    # PyMySQL's connect_timeout only bounds the TCP connect, which the kernel
    # completes here; the wait for the server greeting is bounded by read_timeout.
    with deaf_listener() as (host, port):
        took = elapsed(
            lambda: pymysql.connect(
                host=host, port=port, user="root", connect_timeout=1, read_timeout=1
            ),
            pymysql.err.OperationalError,
        )
    assert 0.9 <= took < 4
