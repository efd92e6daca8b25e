"""A server that accepts fewer connections than the pool may open fails no request.

The load from the issue: "Against a PostgreSQL that accepts 5 connections, a pool
with max_size=10 and timeout=5 under 100 green threads x 10 queries failed 14-26 of
1,000 requests (too many clients, DatabaseUnavailable) while connections in use were
about to come back; psycopg_pool on the same load served 1,000 of 1,000."

The contract: a ``get()`` that finds nothing idle queues and the pool grows in the
background; a refused connect backs off and is retried, and fails no caller whose
own timeout (5 s here) has not run out, since a connection in use comes back within
milliseconds.  So 1,000 of 1,000 requests succeed, and afterwards the pool is whole:
nothing in use or being opened, no more connections than the server accepts, every
one of those usable at once, and the server sees exactly the pool's connections.

Servers: a private PostgreSQL whose ordinary users get 5 connections (max_connections
8, 3 of them reserved for superusers, which the admin queries use) and a private
MariaDB with max_connections 10 (its floor), 5 of them held by idle connections of
the test, so that the pool's ordinary user gets 5 (MariaDB's one extra connection
for SUPER users is root's, for the admin queries).  See
tests/support/limited_servers.py.  Each query holds its connection 10 ms.

Cases: RawConnectionPool with psycopg2 (made green with ``make_psycopg2_green`` on
green hubs) and with PyMySQL (green under monkey patching), and
TpooledConnectionPool with psycopg2 (no wait callback: blocking calls in OS threads,
what that pool is for).  Green hubs run the issue's 100 green threads x 10 queries.
The threads hub runs the same 1,000 requests from 25 OS threads x 40 queries: still
five times the server's slots and more than the pool's ``max_size`` (so the pool
keeps trying to grow past what the server accepts), without 100 OS threads on a
small CI machine.

A missing server binary or driver skips, and fails under GREENPOOL_REQUIRE_DB=1.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Iterator

import pytest

import greenpool
from greenpool import RawConnectionPool, TpooledConnectionPool
from tests.support.limited_servers import (
    APP_PASSWORD,
    LimitedMariaDB,
    LimitedPostgres,
    server_connections,
)
from tests.support.private_fixture import private_server
from tests.support.servers import PrivateMariaDB
from tests.support.tasks import Spawned, wait_until

pytestmark = pytest.mark.db


#: Connections the server accepts for the pool's user.
SERVER_SLOTS = 5
MAX_SIZE = 10
TIMEOUT = 5
REQUESTS = 1000
QUERY_SECONDS = 0.01
#: (workers, queries each) per kind of hub.
GREEN_LOAD = (100, 10)
THREAD_LOAD = (25, 40)
#: For what has to happen "eventually": backends exiting, a late connect closing.
SETTLE = 20.0


# -- servers --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pg_limited() -> Iterator[LimitedPostgres]:
    yield from private_server(
        LimitedPostgres, "psycopg2", lambda: LimitedPostgres(client_slots=SERVER_SLOTS)
    )


@pytest.fixture(scope="module")
def my_limited() -> Iterator[PrivateMariaDB]:
    yield from private_server(PrivateMariaDB, "pymysql", PrivateMariaDB)


class Backend:
    """A driver, the limited server, and the SQL that differs between them."""

    def __init__(self, name: str, server: Any, pool_cls: type, hub: Any) -> None:
        self.name = name
        self.server = server
        self.pool_cls = pool_cls
        self.hub = hub
        if name == "postgres":
            import psycopg2

            server.check_limit()
            self.module: Any = psycopg2
            self.kwargs = server.app_kwargs()
            self.sleep_sql = "SELECT pg_sleep(%s)"
            self.whoami_sql = "SELECT pg_backend_pid()"
        else:
            import pymysql

            self.module = pymysql
            self.limit = LimitedMariaDB(server, SERVER_SLOTS)
            self.kwargs = dict(self.limit.apply(), autocommit=True)
            self.kwargs["ssl_disabled"] = True  # PyMySQL builds an SSL context otherwise
            self.sleep_sql = "SELECT SLEEP(%s)"
            self.whoami_sql = "SELECT CONNECTION_ID()"

    def release(self) -> None:
        if self.name == "mariadb":
            self.limit.release()

    def connect(self) -> Any:
        return self.module.connect(**self.kwargs, connect_timeout=5)

    def pool(self) -> Any:
        return self.pool_cls(
            self.module,
            max_size=MAX_SIZE,
            timeout=TIMEOUT,
            hub=self.hub,
            name=f"{self.name}-limited",
            **self.kwargs,
        )

    def connections(self) -> int:
        return server_connections(self.server)


CASES = [
    ("postgres", RawConnectionPool),
    ("postgres", TpooledConnectionPool),
    ("mariadb", RawConnectionPool),
]


@pytest.fixture(params=CASES, ids=["postgres-raw", "postgres-tpooled", "mariadb-raw"])
def backend(request: Any, hub: Any) -> Iterator[Backend]:
    name, pool_cls = request.param
    server = request.getfixturevalue("pg_limited" if name == "postgres" else "my_limited")
    if name == "postgres":
        # Raw: green on green hubs (a wait callback); tpooled: plain blocking calls,
        # each in an OS thread ("threads" removes the callback).
        greenpool.make_psycopg2_green(hub.name if pool_cls is RawConnectionPool else "threads")
    made = Backend(name, server, pool_cls, hub)
    try:
        yield made
    finally:
        made.release()
        if name == "postgres":
            greenpool.make_psycopg2_green(hub.name)  # as the conftest's fixtures expect


# -- helpers ------------------------------------------------------------------------------


def scalar(conn: Any, sql: str, *args: Any) -> Any:
    cursor = conn.cursor()
    try:
        cursor.execute(sql, args or None)
        return cursor.fetchone()[0]
    finally:
        cursor.close()


def connect_when_free(backend: Backend) -> Any:
    """Connect, retrying while the server still counts connections that are gone: a
    backend leaves PostgreSQL's pg_stat_activity a moment before it frees its slot."""
    deadline = backend.hub.monotonic() + SETTLE
    while True:
        try:
            return backend.connect()
        except backend.module.OperationalError:
            if backend.hub.monotonic() > deadline:
                raise
            backend.hub.sleep(0.05)


def check_server_limit(backend: Backend) -> None:
    """The server takes SERVER_SLOTS connections of the pool's user and refuses the next
    (else this test would prove nothing); then it is empty again."""
    hub = backend.hub
    wait_until(hub, lambda: backend.connections() == 0, timeout=SETTLE)
    held = []
    try:
        for _ in range(SERVER_SLOTS):
            held.append(connect_when_free(backend))
        with pytest.raises(backend.module.OperationalError) as refused:
            held.append(backend.connect())
        text = str(refused.value).lower()
        assert "too many" in text or "reserved" in text, text
    finally:
        for conn in held:
            conn.close()
    wait_until(hub, lambda: backend.connections() == 0, timeout=SETTLE)


def run_load(backend: Backend, pool: Any) -> tuple[int, list]:
    """The issue's load: workers x queries, each query holding its connection 10 ms.
    Returns (requests served, exceptions raised)."""
    hub = backend.hub
    workers, queries = GREEN_LOAD if hub.green else THREAD_LOAD
    assert workers * queries == REQUESTS
    served = []
    errors: list = []

    def worker() -> None:
        for _ in range(queries):
            try:
                with pool.item() as conn:
                    scalar(conn, backend.sleep_sql, QUERY_SECONDS)
                served.append(1)
            except Exception as exc:  # counted: the test wants none
                exc.__traceback__ = None
                errors.append(exc)

    tasks = [Spawned(hub, worker) for _ in range(workers)]
    for task in tasks:
        task.wait(REQUESTS * TIMEOUT)  # never reached: each request ends within TIMEOUT
    return len(served), errors


def summarise(errors: list) -> str:
    kinds = Counter(
        f"{type(e).__module__}.{type(e).__name__}: {re.sub(r'[0-9]+', 'N', str(e).strip())[:160]}"
        for e in errors
    )
    causes = Counter(repr(e.__cause__)[:160] for e in errors if e.__cause__ is not None)
    lines = [f"  {n} x {kind}" for kind, n in kinds.most_common(8)]
    lines += [f"  caused by {n} x {cause}" for cause, n in causes.most_common(3)]
    return "\n".join(lines)


def pool_problems(backend: Backend, pool: Any) -> list[str]:
    """What is wrong with the pool after the load (empty: nothing)."""
    hub = backend.hub
    problems = []

    def quiet() -> bool:
        s = pool.stats()
        return s.waiting == 0 and s.creating == 0 and s.in_use == 0

    try:
        wait_until(hub, quiet, timeout=SETTLE)
    except AssertionError:
        problems.append(f"still busy {SETTLE} s after the load: {pool.stats()}")
    s = pool.stats()
    if s.size != s.idle + s.in_use + s.creating:
        problems.append(f"size != idle + in_use + creating: {s}")
    if s.size > SERVER_SLOTS:
        problems.append(f"the pool counts {s.size} connections; the server accepts "
                        f"{SERVER_SLOTS}: {s}")
    # Every connection the server accepts, checked out at once.
    held = []
    try:
        for _ in range(SERVER_SLOTS):
            held.append(pool.get(timeout=SETTLE))
        ids = [scalar(conn, backend.whoami_sql) for conn in held]
        if len(set(ids)) != len(ids):
            problems.append(f"one connection handed out twice at once: {sorted(ids)}")
    except Exception as exc:  # reported with the rest
        problems.append(
            f"only {len(held)} of {SERVER_SLOTS} checkouts succeeded at once after the load: "
            f"{type(exc).__name__}: {exc}"
        )
    finally:
        for conn in held:
            pool.put(conn)
    s = pool.stats()
    if s.in_use or s.size != s.idle + s.creating:
        problems.append(f"after giving them back: {s}")
    # The server has exactly the pool's connections (none leaked).
    try:
        wait_until(hub, lambda: backend.connections() == pool.stats().size, timeout=SETTLE)
    except AssertionError:
        problems.append(
            f"the server has {backend.connections()} connections of the pool's user, "
            f"the pool counts {pool.stats().size}"
        )
    return problems


# -- the test ------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_full_server_fails_no_request_that_can_wait(backend: Backend) -> None:
    check_server_limit(backend)
    pool = backend.pool()
    try:
        served, errors = run_load(backend, pool)
        problems = pool_problems(backend, pool)
        stats = pool.stats()
    finally:
        pool.close()
    report = f"{backend.name}, {backend.pool_cls.__name__}, hub {backend.hub.name}: "
    report += f"{served} of {REQUESTS} served; pool {stats}"
    if errors:
        problems.insert(0, f"{len(errors)} requests failed:\n{summarise(errors)}")
    if any(APP_PASSWORD in str(e) for e in errors):
        problems.append("the password shows in an error message")
    assert not problems and served == REQUESTS, report + "\n" + "\n".join(problems)
    # Closing the pool closes every connection on the server too.
    wait_until(backend.hub, lambda: backend.connections() == 0, timeout=SETTLE)
