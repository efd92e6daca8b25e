"""DatabaseConnector against the local servers, on every hub: two PostgreSQL databases and
one MariaDB database, each reached through one connector; a closed port for the back-off."""

from __future__ import annotations

import logging
import socket
from typing import Any

import pytest

from greenpool import DatabaseUnavailable, PoolTimeout, RawConnectionPool
from greenpool.connector import DatabaseConnector
from tests.support.tasks import Spawned, wait_until

#: The second PostgreSQL database, made by the ``pg_shards`` fixture if missing.
PG_SHARD2 = "test_shard2"


def ensure_pg_database(kwargs: dict[str, Any], name: str) -> None:
    """Create the PostgreSQL database ``name`` unless it exists (safe against other hubs)."""
    import psycopg2
    import psycopg2.errors

    conn = psycopg2.connect(**kwargs)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is None:
                try:
                    cur.execute(f'CREATE DATABASE "{name}"')
                except (psycopg2.errors.DuplicateDatabase, psycopg2.errors.UniqueViolation):
                    pass  # another hub's test process made it a moment ago
    finally:
        conn.close()


@pytest.fixture
def pg_shards(postgres: dict[str, Any]) -> dict[str, Any]:
    """The ``postgres`` connect keywords, with the database ``test_shard2`` made if missing."""
    ensure_pg_database(postgres, PG_SHARD2)
    return postgres


def address(kwargs: dict[str, Any]) -> str:
    return f"{kwargs['host']}:{kwargs['port']}"


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ask(connector: DatabaseConnector, host: str, dbname: str, query: str) -> Any:
    with connector.get(host, dbname).item(timeout=10) as conn:
        cur = conn.cursor()
        cur.execute(query)
        value = cur.fetchone()[0]
        cur.close()
        return value


def test_postgres_queries_reach_the_right_database(hub, pg_shards):
    import psycopg2

    host = address(pg_shards)
    creds = {host: {"user": pg_shards["user"]}}
    with DatabaseConnector(
        psycopg2, creds, RawConnectionPool, max_size=2, max_total=3, hub=hub, name="pg"
    ) as connector:
        def worker(n: int) -> list[tuple[str, str]]:
            seen = []
            for i in range(4):
                wanted = ("test", PG_SHARD2)[(n + i) % 2]
                got = ask(connector, host, wanted, "SELECT current_database()")
                seen.append((wanted, got))
            return seen

        tasks = [Spawned(hub, worker, n) for n in range(6)]
        for task in tasks:
            for wanted, got in task.wait(30):
                assert got == wanted
        # Connects whose callers were served by a returned connection meanwhile may
        # still be under way (the pools open connections in the background).
        wait_until(hub, lambda: not any(p.creating for p in connector.stats().pools.values()))
        stats = connector.stats()
        assert {str(key) for key in stats.pools} == {f"{host}/test", f"{host}/{PG_SHARD2}"}
        assert stats.size <= 3 and stats.checkouts == 0
        # The connection parameters really reached psycopg2: one pool per database.
        pool = connector.get(host, PG_SHARD2)
        assert pool.connect_kwargs["dbname"] == PG_SHARD2
    assert pool.closed


def test_mariadb_queries_reach_the_database(hub, mariadb):
    import pymysql

    host = address(mariadb)
    creds = {"default": {"user": mariadb["user"], "password": mariadb["password"]}}
    with DatabaseConnector(pymysql, creds, RawConnectionPool, max_size=2, hub=hub) as connector:
        tasks = [
            Spawned(hub, ask, connector, host, "test", "SELECT DATABASE()") for _ in range(5)
        ]
        assert [task.wait(30) for task in tasks] == ["test"] * 5
        assert connector.key_for(host, "test").port == mariadb["port"]
        assert connector.stats().pools[connector.key_for(host, "test")].opened <= 2


def test_both_servers_side_by_side(hub, pg_shards, mariadb):
    import psycopg2
    import pymysql

    pg_host, my_host = address(pg_shards), address(mariadb)
    pg = DatabaseConnector(
        psycopg2, {"default": {"user": "postgres"}}, RawConnectionPool, hub=hub, name="pg"
    )
    my = DatabaseConnector(
        pymysql, {"default": {"user": "root", "password": ""}}, RawConnectionPool, hub=hub
    )
    routes = [
        (pg, pg_host, "test", "SELECT current_database()"),
        (pg, pg_host, PG_SHARD2, "SELECT current_database()"),
        (my, my_host, "test", "SELECT DATABASE()"),
    ]
    try:
        tasks = [(route[2], Spawned(hub, ask, *route)) for route in routes * 3]
        for wanted, task in tasks:
            assert task.wait(30) == wanted
    finally:
        pg.close()
        my.close()


def test_unreachable_host_backs_off(hub, pg_shards, caplog):
    import psycopg2

    caplog.set_level(logging.INFO, logger="greenpool.connector")
    dead = f"127.0.0.1:{closed_port()}"
    healthy = address(pg_shards)
    connector = DatabaseConnector(
        psycopg2,
        {"default": {"user": "postgres", "password": "not-logged"}},
        RawConnectionPool,
        connect_timeout=3,
        reconnect_backoff=(0.01, 0.01),  # the pools retry at once while callers wait
        failure_threshold=2,
        backoff=0.5,
        hub=hub,
    )
    try:
        # Callers never see the connect error itself: they time out, naming it.
        with pytest.raises(PoolTimeout) as caught:
            connector.get(dead, "test").get(timeout=0.3)
        errors = cause_chain(caught.value)
        assert any(isinstance(e, psycopg2.OperationalError) for e in errors)
        assert f"2 connects in a row to {dead} failed" in caplog.text
        assert connector.stats().failing_hosts == (dead,)
        # Any database of the failing host is refused without connecting.
        with pytest.raises(PoolTimeout) as caught:
            connector.get(dead, PG_SHARD2).get(timeout=0.1)
        refusal = caught.value.__cause__
        assert isinstance(refusal, DatabaseUnavailable)
        assert isinstance(refusal.__cause__, psycopg2.OperationalError)
        assert dead in str(refusal)
        for error in cause_chain(caught.value):
            assert "not-logged" not in str(error)
        # The healthy server on the same connector is not affected.
        assert ask(connector, healthy, PG_SHARD2, "SELECT current_database()") == PG_SHARD2

        hub.sleep(0.6)  # back-off over: one trial connect, refused again
        with pytest.raises(PoolTimeout):
            connector.get(dead, "test").get(timeout=0.1)
        assert f"trial connect to {dead} failed" in caplog.text
        assert connector.stats().failing_hosts == (dead,)
        assert "not-logged" not in caplog.text
    finally:
        connector.close()


def cause_chain(error: BaseException | None) -> list[BaseException]:
    """``error`` and its causes, outermost first."""
    chain = []
    while error is not None:
        chain.append(error)
        error = error.__cause__
    return chain
