"""Tests of the fake DB-API driver in tests/support/fakedb.py.

They pass unpatched, under ``eventlet.monkey_patch()`` and under ``gevent.monkey.patch_all()``;
the green-hub-only cases skip themselves when no hub has patched ``time``.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, Optional

import pytest

from tests.support.fakedb import FakeDB, make_fakedb, original_sleep


def _green_hub() -> Optional[str]:
    """Name of the green library that monkey patched ``time``, or None."""
    if "eventlet" in sys.modules:
        from eventlet import patcher

        if patcher.is_monkey_patched("time"):
            return "eventlet"
    if "gevent" in sys.modules:
        from gevent import monkey

        if monkey.is_module_patched("time"):
            return "gevent"
    return None


def _spawn(fn: Callable[[], None]) -> Callable[[], None]:
    """Spawn ``fn`` in a green thread of the patched hub; return a join function."""
    if _green_hub() == "eventlet":
        import eventlet

        gt = eventlet.spawn(fn)
        return gt.wait
    import gevent

    glet = gevent.spawn(fn)
    return lambda: glet.join()


def _timeout(seconds: float) -> Any:
    """A green Timeout of the patched hub (usable as a context manager)."""
    if _green_hub() == "eventlet":
        import eventlet

        return eventlet.Timeout(seconds)
    import gevent

    return gevent.Timeout(seconds)


def _timeout_class() -> type[BaseException]:
    if _green_hub() == "eventlet":
        import eventlet

        return eventlet.Timeout
    import gevent

    return gevent.Timeout


needs_green_hub = pytest.mark.skipif(
    "_green_hub() is None", reason="needs eventlet or gevent monkey patching"
)


@pytest.fixture
def db() -> FakeDB:
    return make_fakedb()


# -- module globals ----------------------------------------------------------------------------


def test_globals_and_exception_hierarchy(db: FakeDB) -> None:
    assert db.apilevel == "2.0"
    assert db.threadsafety == 1
    assert db.paramstyle == "qmark"
    assert db.__name__ == "fakedb"
    assert issubclass(db.Warning, Exception)
    assert not issubclass(db.Warning, db.Error)
    assert issubclass(db.Error, Exception)
    assert issubclass(db.InterfaceError, db.Error)
    assert issubclass(db.DatabaseError, db.Error)
    for name in (
        "DataError",
        "OperationalError",
        "IntegrityError",
        "InternalError",
        "ProgrammingError",
        "NotSupportedError",
    ):
        cls = getattr(db, name)
        assert issubclass(cls, db.DatabaseError)
        assert cls.__name__ == name
    assert not issubclass(db.InterfaceError, db.DatabaseError)


def test_instances_are_independent() -> None:
    a, b = make_fakedb("a"), make_fakedb("b")
    assert a.Error is not b.Error
    assert a.OperationalError is not b.OperationalError
    assert not issubclass(a.OperationalError, b.Error)
    a.outage = True
    assert b.connect().id == 1
    with pytest.raises(a.OperationalError):
        a.connect()
    assert b.connects == 1 and a.connects == 0


# -- connect / close ---------------------------------------------------------------------------


def test_connect_records_calls_and_counts(db: FakeDB) -> None:
    c1 = db.connect("dsn", user="u")
    c2 = db.connect(host="h")
    assert db.connect_calls == [(("dsn",), {"user": "u"}), ((), {"host": "h"})]
    assert (c1.id, c2.id) == (1, 2)
    assert c1.args == ("dsn",) and c1.kwargs == {"user": "u"}
    assert db.connects == 2 and db.connect_attempts == 2
    assert db.connections == [c1, c2]
    assert db.open_connections() == [c1, c2]
    assert c1.closed == 0 and not c1.broken
    assert c1.autocommit is False and c1.in_transaction is False
    assert c1.server_version == 150000


def test_close_is_idempotent_and_counted_once(db: FakeDB) -> None:
    c1, c2 = db.connect(), db.connect()
    c1.close()
    c1.close()
    assert c1.closed == 1
    assert db.closes == 1
    assert db.open_connections() == [c2]
    c2.close()
    assert db.closes == 2 and db.open_connections() == []


def test_operations_on_closed_connection_raise_interface_error(db: FakeDB) -> None:
    conn = db.connect()
    cur = conn.cursor()
    conn.close()
    for op in (conn.cursor, conn.commit, conn.rollback, conn.ping, lambda: cur.execute("x")):
        with pytest.raises(db.InterfaceError, match="connection already closed"):
            op()
    assert db.commits == db.rollbacks == db.pings == db.executes == 0


# -- outage / connect errors -------------------------------------------------------------------


def test_outage_blocks_connect(db: FakeDB) -> None:
    db.outage = True
    with pytest.raises(db.OperationalError, match="fakedb: server unreachable"):
        db.connect()
    assert db.connect_attempts == 1 and db.connects == 0 and db.connections == []
    db.outage = False
    assert db.connect().id == 1
    assert db.connect_attempts == 2 and db.connects == 1


def test_outage_breaks_existing_connections(db: FakeDB) -> None:
    conn = db.connect()
    cur = conn.cursor()
    db.outage = True
    with pytest.raises(db.OperationalError):
        cur.execute("SELECT 1")
    assert conn.broken and conn.closed == 2
    db.outage = False
    for op in (conn.ping, conn.rollback, conn.commit, conn.cursor):  # stays broken
        with pytest.raises(db.OperationalError):
            op()
    assert db.open_connections() == [conn]
    conn.close()
    assert conn.closed == 1 and db.closes == 1 and db.open_connections() == []


def test_outage_on_ping_marks_broken(db: FakeDB) -> None:
    conn = db.connect()
    conn.ping()
    db.outage = True
    with pytest.raises(db.OperationalError):
        conn.ping()
    assert conn.broken and db.pings == 1


@pytest.mark.parametrize("as_class", [False, True])
def test_connect_error_is_one_shot(db: FakeDB, as_class: bool) -> None:
    db.connect_error = db.OperationalError if as_class else db.OperationalError("nope")
    with pytest.raises(db.OperationalError):
        db.connect()
    assert db.connect_error is None
    assert db.connect().id == 1
    assert db.connect_attempts == 2 and db.connects == 1


def test_connect_error_sticky(db: FakeDB) -> None:
    db.connect_error = RuntimeError("boom")
    db.connect_error_sticky = True
    for _ in range(3):
        with pytest.raises(RuntimeError, match="boom"):
            db.connect()
    assert db.connect_attempts == 3 and db.connects == 0
    db.connect_error = None
    db.connect()
    assert db.connects == 1


def test_connect_hook(db: FakeDB) -> None:
    calls: list[int] = []
    db.connect_hook = lambda: calls.append(1)
    db.connect()
    assert calls == [1]

    def hook() -> None:
        raise KeyboardInterrupt

    db.connect_hook = hook
    with pytest.raises(KeyboardInterrupt):
        db.connect()
    assert db.connects == 1 and db.connect_attempts == 2 and len(db.connections) == 1


# -- disconnect --------------------------------------------------------------------------------


def test_disconnect(db: FakeDB) -> None:
    conn = db.connect()
    cur = conn.cursor()
    conn.disconnect()
    assert conn.broken and conn.closed == 2 and conn.was_broken
    msg = "fakedb: server closed the connection unexpectedly"
    ops = (conn.cursor, conn.commit, conn.rollback, conn.ping, lambda: cur.execute("SELECT 1"))
    for op in ops:
        with pytest.raises(db.OperationalError, match=msg):
            op()
    assert db.open_connections() == [conn]
    conn.close()
    conn.close()
    assert conn.closed == 1 and not conn.broken and conn.was_broken
    assert db.closes == 1
    conn.disconnect()  # no effect once closed
    assert conn.closed == 1


def test_disconnect_all(db: FakeDB) -> None:
    c1, c2 = db.connect(), db.connect()
    c2.close()
    db.disconnect_all()
    assert c1.broken and c2.closed == 1


# -- transactions ------------------------------------------------------------------------------


def test_in_transaction_tracking(db: FakeDB) -> None:
    conn = db.connect()
    cur = conn.cursor()
    assert not conn.in_transaction
    cur.execute("SELECT 1")
    assert conn.in_transaction
    conn.commit()
    assert not conn.in_transaction
    cur.execute("UPDATE t SET x = ?", (1,))
    assert conn.in_transaction
    conn.rollback()
    assert not conn.in_transaction
    conn.autocommit = True
    cur.execute("SELECT 1")
    assert not conn.in_transaction
    assert db.commits == 1 and db.rollbacks == 1 and db.executes == 3


def test_connection_context_manager(db: FakeDB) -> None:
    conn = db.connect()
    with conn as entered:
        assert entered is conn
        conn.cursor().execute("INSERT")
    assert db.commits == 1 and db.rollbacks == 0
    assert not conn.in_transaction and conn.closed == 0

    with pytest.raises(ValueError):
        with conn:
            conn.cursor().execute("INSERT")
            raise ValueError
    assert db.commits == 1 and db.rollbacks == 1
    assert not conn.in_transaction and conn.closed == 0


def test_fail_commit_rollback_close(db: FakeDB) -> None:
    conn = db.connect()
    conn.cursor().execute("INSERT")
    db.fail_commit = True
    with pytest.raises(db.OperationalError):
        conn.commit()
    assert conn.in_transaction
    db.fail_rollback = True
    with pytest.raises(db.OperationalError):
        conn.rollback()
    assert conn.in_transaction and not conn.broken
    db.fail_close = True
    with pytest.raises(db.OperationalError):
        conn.close()
    assert conn.closed == 1 and db.closes == 1
    conn.close()  # already closed: no error, no count
    assert db.closes == 1


# -- cursors -----------------------------------------------------------------------------------


def test_cursor_results(db: FakeDB) -> None:
    db.connect()
    conn = db.connect()
    cur = conn.cursor()
    assert cur.arraysize == 1 and cur.description is None
    cur.execute("SELECT 1")
    assert cur.fetchall() == [(1,)] and cur.rowcount == 1
    assert cur.description is not None and len(cur.description[0]) == 7
    cur.execute("select 42;")
    assert cur.fetchone() == (42,)
    assert cur.fetchone() is None
    cur.execute("SELECT CONNECTION_ID()")
    assert list(cur) == [(2,)]
    cur.execute("SELECT 7")
    assert cur.fetchmany() == [(7,)] and cur.fetchmany(5) == []
    cur.execute("DELETE FROM t WHERE id = ?", [3])
    assert cur.rowcount == 0 and cur.description is None
    with pytest.raises(db.ProgrammingError):
        cur.fetchall()
    cur.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
    assert db.executes == 7
    assert conn.queries[-1] == "INSERT INTO t VALUES (?)"


def test_cursor_context_manager_closes(db: FakeDB) -> None:
    conn = db.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT 1")
    assert cur.closed
    with pytest.raises(db.InterfaceError):
        cur.execute("SELECT 1")
    cur.close()  # idempotent
    assert conn.closed == 0


def test_execute_error_is_one_shot(db: FakeDB) -> None:
    conn = db.connect()
    cur = conn.cursor()
    db.execute_error = db.IntegrityError("dup")
    with pytest.raises(db.IntegrityError, match="dup"):
        cur.execute("INSERT")
    assert db.execute_error is None
    assert conn.in_transaction and not conn.broken
    cur.execute("SELECT 1")
    assert cur.fetchone() == (1,)
    assert db.executes == 2


def test_ping_counts(db: FakeDB) -> None:
    conn = db.connect()
    conn.ping()
    conn.ping(reconnect=True)
    assert db.pings == 2


# -- reset -------------------------------------------------------------------------------------


def test_reset(db: FakeDB) -> None:
    conn = db.connect()
    conn.cursor().execute("SELECT 1")
    conn.ping()
    conn.commit()
    conn.rollback()
    db.outage = True
    db.connect_delay = 1.0
    db.connect_delay_mode = "block"
    db.connect_error = RuntimeError()
    db.connect_error_sticky = True
    db.connect_hook = lambda: None
    db.query_delay = db.rollback_delay = 1.0
    db.fail_rollback = db.fail_close = db.fail_commit = True
    db.execute_error = RuntimeError()
    db.reset()
    assert (db.connects, db.connect_attempts, db.closes, db.rollbacks) == (0, 0, 0, 0)
    assert (db.commits, db.executes, db.pings, db.connect_calls) == (0, 0, 0, [])
    assert not db.outage and db.connect_delay == 0.0 and db.connect_delay_mode == "yield"
    assert db.connect_error is None and not db.connect_error_sticky and db.connect_hook is None
    assert db.query_delay == 0.0 and db.rollback_delay == 0.0
    assert not (db.fail_rollback or db.fail_close or db.fail_commit)
    assert db.execute_error is None
    assert db.connect().id == 2  # ids stay unique; old connections are still tracked
    assert db.open_connections()[0] is conn


# -- timing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["yield", "block"])
def test_connect_delay_elapsed(db: FakeDB, mode: str) -> None:
    db.connect_delay = 0.1
    db.connect_delay_mode = mode
    db.outage = True
    start = time.monotonic()
    with pytest.raises(db.OperationalError):
        db.connect()  # the outage error comes after the delay
    assert time.monotonic() - start >= 0.09
    db.outage = False
    start = time.monotonic()
    db.connect()
    assert 0.09 <= time.monotonic() - start < 2.0


def test_bad_delay_mode(db: FakeDB) -> None:
    db.connect_delay = 0.01
    db.connect_delay_mode = "nap"
    with pytest.raises(ValueError):
        db.connect()


def test_query_and_rollback_delay(db: FakeDB) -> None:
    conn = db.connect()
    db.query_delay = 0.05
    db.rollback_delay = 0.05
    start = time.monotonic()
    conn.cursor().execute("SELECT 1")
    conn.rollback()
    assert 0.09 <= time.monotonic() - start < 2.0


def test_disconnect_during_query(db: FakeDB) -> None:
    conn = db.connect()
    db.query_delay = 0.2
    timer = threading.Timer(0.05, conn.disconnect)  # green under monkey patching
    timer.start()
    try:
        with pytest.raises(db.OperationalError):
            conn.cursor().execute("SELECT 1")
    finally:
        timer.cancel()
        timer.join()
    assert conn.broken


def test_original_sleep() -> None:
    sleep = original_sleep()
    if _green_hub() is None:
        assert sleep is time.sleep
    else:
        assert sleep is not time.sleep
    start = time.monotonic()
    sleep(0.02)
    assert time.monotonic() - start >= 0.015


@needs_green_hub
@pytest.mark.parametrize("mode", ["yield", "block"])
def test_connect_delay_yield_vs_block_under_green_hub(db: FakeDB, mode: str) -> None:
    db.connect_delay = 0.2
    db.connect_delay_mode = mode
    ticks = [0]
    stop = [False]

    def ticker() -> None:
        while not stop[0]:
            ticks[0] += 1
            time.sleep(0.01)

    join = _spawn(ticker)
    try:
        time.sleep(0.03)  # let the ticker get going
        assert ticks[0] >= 1
        before = ticks[0]
        start = time.monotonic()
        db.connect()
        elapsed = time.monotonic() - start
        during = ticks[0] - before
    finally:
        stop[0] = True
        join()
    assert elapsed >= 0.18
    if mode == "yield":
        assert during >= 5  # other green threads ran while we "waited for the server"
    else:
        assert during == 0  # the whole OS thread (and hub) was blocked


@needs_green_hub
def test_green_timeout_interrupts_query(db: FakeDB) -> None:
    conn = db.connect()
    cur = conn.cursor()
    db.query_delay = 5.0
    start = time.monotonic()
    with pytest.raises(_timeout_class()):
        with _timeout(0.05):
            cur.execute("SELECT 1")
    assert time.monotonic() - start < 1.0
    assert db.executes == 1
    assert conn.in_transaction and not conn.broken  # killed mid-query: connection is dirty
    db.query_delay = 0.0
    conn.rollback()
    assert not conn.in_transaction


@needs_green_hub
def test_green_timeout_interrupts_yielding_connect(db: FakeDB) -> None:
    db.connect_delay = 5.0
    start = time.monotonic()
    with pytest.raises(_timeout_class()):
        with _timeout(0.05):
            db.connect()
    assert time.monotonic() - start < 1.0
    assert db.connect_attempts == 1 and db.connects == 0 and db.connections == []


# -- concurrency -------------------------------------------------------------------------------


def test_counters_consistent_across_threads(db: FakeDB) -> None:
    """OS threads when unpatched, green threads when monkey patched."""
    db.query_delay = 0.001
    n_threads, n_iter = 8, 25
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(n_iter):
                conn = db.connect()
                cur = conn.cursor()
                cur.execute("SELECT CONNECTION_ID()")
                assert cur.fetchone() == (conn.id,)
                conn.ping()
                conn.commit()
                conn.rollback()
                conn.close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    total = n_threads * n_iter
    assert db.connects == db.connect_attempts == len(db.connect_calls) == total
    assert db.closes == db.executes == db.pings == db.commits == db.rollbacks == total
    assert sorted(c.id for c in db.connections) == list(range(1, total + 1))
    assert db.open_connections() == []
