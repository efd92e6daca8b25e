"""Shared fixtures: the hub under test, per-test deadlines, real database servers."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest

import greenpool
from greenpool import RawConnectionPool, TpooledConnectionPool
from greenpool.hubs import Hub, detect_hub, resolve_hub
from tests.support.fakedb import make_fakedb

HUB_NAME = os.environ.get("GREENPOOL_TEST_HUB") or detect_hub().name
REQUIRE_DB = os.environ.get("GREENPOOL_REQUIRE_DB") == "1"
#: A green deadline on every test: a deadlock fails the test instead of hanging CI.
GREEN_TEST_TIMEOUT = float(os.environ.get("GREENPOOL_TEST_TIMEOUT", "90"))

PG_HOST = os.environ.get("GREENPOOL_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("GREENPOOL_PG_PORT", "5432"))
MYSQL_HOST = os.environ.get("GREENPOOL_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("GREENPOOL_MYSQL_PORT", "3306"))


#: A password given to pools in tests, to check it never shows up anywhere.
SECRET = "s3cret-pw"


class TestDeadline(Exception):
    """Raised into a test that ran past GREEN_TEST_TIMEOUT on a green hub."""

    __test__ = False


def pytest_configure(config: Any) -> None:
    greenpool.set_default_hub(HUB_NAME)


def pytest_report_header(config: Any) -> str:
    return f"greenpool hub: {HUB_NAME}; databases required: {REQUIRE_DB}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: Any) -> Any:
    hub = resolve_hub(HUB_NAME)
    if not hub.green:
        yield
        return
    deadline = TestDeadline(f"test still running after {GREEN_TEST_TIMEOUT} s (deadlock?)")
    with hub.timeout(GREEN_TEST_TIMEOUT, deadline):
        yield


@pytest.fixture
def hub() -> Hub:
    """The hub this test process runs on."""
    return resolve_hub(HUB_NAME)


@pytest.fixture
def green_hub(hub: Hub) -> Hub:
    """The hub, for tests that need green kill/timeout semantics (skipped on threads)."""
    if not hub.green:
        pytest.skip("needs a green hub (kill / Timeout cannot interrupt an OS thread)")
    return hub


@pytest.fixture
def db() -> Any:
    """A fresh fake DB-API module (tests/support/fakedb.py)."""
    return make_fakedb()


@pytest.fixture(params=[RawConnectionPool, TpooledConnectionPool], ids=["raw", "tpooled"])
def pool_cls(request: Any) -> Any:
    """Each connection-pool class in turn."""
    return request.param


@pytest.fixture
def make_pool(pool_cls: Any, db: Any, hub: Hub) -> Any:
    """Make pools of ``pool_cls`` on the fake driver; all closed after the test."""
    pools = []

    def make(*args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("hub", hub)
        kwargs.setdefault("password", SECRET)
        kwargs.setdefault("host", "db1")
        pool = pool_cls(db, *args, **kwargs)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


def _unreachable(what: str, reason: str) -> None:
    message = f"{what} unreachable: {reason}"
    if REQUIRE_DB:
        pytest.fail(f"{message} (GREENPOOL_REQUIRE_DB=1)", pytrace=False)
    pytest.skip(message)


def _port_open(host: str, port: int) -> str:
    try:
        with socket.create_connection((host, port), timeout=3):
            return ""
    except OSError as exc:
        return str(exc)


_server_state: dict[str, str] = {}


def _check_postgres() -> str:
    if "pg" not in _server_state:
        reason = _port_open(PG_HOST, PG_PORT)
        if not reason:
            try:
                import psycopg2

                psycopg2.connect(**postgres_kwargs(), connect_timeout=5).close()
            except Exception as exc:  # reported as the skip/fail reason
                reason = f"{type(exc).__name__}: {exc}"
        _server_state["pg"] = reason
    return _server_state["pg"]


def _check_mariadb() -> str:
    if "my" not in _server_state:
        reason = _port_open(MYSQL_HOST, MYSQL_PORT)
        if not reason:
            try:
                import pymysql

                pymysql.connect(**mariadb_kwargs(), connect_timeout=5).close()
            except Exception as exc:  # reported as the skip/fail reason
                reason = f"{type(exc).__name__}: {exc}"
        _server_state["my"] = reason
    return _server_state["my"]


def postgres_kwargs() -> dict[str, Any]:
    return {"host": PG_HOST, "port": PG_PORT, "user": "postgres", "dbname": "test"}


def mariadb_kwargs() -> dict[str, Any]:
    return {
        "host": MYSQL_HOST,
        "port": MYSQL_PORT,
        "user": "root",
        "password": "",
        "database": "test",
        # PyMySQL otherwise builds an SSL context per connect (~24 ms of CPU here).
        "ssl_disabled": True,
    }


@pytest.fixture
def postgres() -> dict[str, Any]:
    """psycopg2 connect keywords for the shared PostgreSQL (skip/fail if unreachable)."""
    reason = _check_postgres()
    if reason:
        _unreachable(f"PostgreSQL at {PG_HOST}:{PG_PORT}", reason)
    # psycopg2 is a C driver: on a green hub it cooperates only with a wait callback.
    greenpool.make_psycopg2_green(HUB_NAME)
    return postgres_kwargs()


@pytest.fixture
def mariadb() -> dict[str, Any]:
    """PyMySQL connect keywords for the shared MariaDB (skip/fail if unreachable)."""
    reason = _check_mariadb()
    if reason:
        _unreachable(f"MariaDB at {MYSQL_HOST}:{MYSQL_PORT}", reason)
    return mariadb_kwargs()
