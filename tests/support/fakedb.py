"""A per-test fake PEP 249 (DB-API 2) driver for fault injection and timing.

``make_fakedb()`` returns a fresh module-like object that behaves like a tiny DB-API driver.
Tests tune plain-attribute knobs on it (``outage``, ``connect_delay``, ``connect_error``, ...)
and inspect counters (``connects``, ``closes``, ``rollbacks``, ...) afterwards.

The fake works in three kinds of process: unpatched (plain threads), under
``eventlet.monkey_patch()`` and under ``gevent.monkey.patch_all()``.  Cooperative delays use
``time.sleep`` looked up at call time (green once monkey patched); "block" delays and the
counter lock use the original, unpatched primitives.

Counters (``commits``, ``rollbacks``, ``executes``) count operations that reached the server:
calls rejected because the connection is closed, broken or in an outage are not counted, while
calls that then fail through ``fail_commit``/``fail_rollback``/``execute_error`` are.
``connects`` and ``pings`` count successes only; ``closes`` counts each real close once.
"""

from __future__ import annotations

import importlib
import re
import sys
import time
import types
from typing import Any, Callable, Iterator, Optional, Sequence

__all__ = ["FakeConnection", "FakeCursor", "FakeDB", "make_fakedb"]

Row = tuple[Any, ...]

#: PEP 249 exception hierarchy: name -> base class name (``None`` means ``Exception``).
_EXCEPTIONS: tuple[tuple[str, Optional[str]], ...] = (
    ("Warning", None),
    ("Error", None),
    ("InterfaceError", "Error"),
    ("DatabaseError", "Error"),
    ("DataError", "DatabaseError"),
    ("OperationalError", "DatabaseError"),
    ("IntegrityError", "DatabaseError"),
    ("InternalError", "DatabaseError"),
    ("ProgrammingError", "DatabaseError"),
    ("NotSupportedError", "DatabaseError"),
)

_MSG_UNREACHABLE = "fakedb: server unreachable"
_MSG_SERVER_GONE = "fakedb: server closed the connection unexpectedly"
_MSG_CONN_CLOSED = "fakedb: connection already closed"
_MSG_CURSOR_CLOSED = "fakedb: cursor already closed"

_SELECT_INT = re.compile(r"^\s*SELECT\s+([+-]?\d+)\s*;?\s*$", re.IGNORECASE)
_SELECT_CONN_ID = re.compile(r"^\s*SELECT\s+CONNECTION_ID\s*\(\s*\)\s*;?\s*$", re.IGNORECASE)


def _original(modname: str, attr: str, eventlet_key: str, gevent_key: str) -> Any:
    """Return the unpatched ``modname.attr``, even if eventlet or gevent patched it.

    eventlet/gevent are only consulted if they are already imported.
    """
    if "eventlet" in sys.modules:
        from eventlet import patcher

        if patcher.is_monkey_patched(eventlet_key):
            return getattr(patcher.original(modname), attr)
    if "gevent" in sys.modules:
        from gevent import monkey

        if monkey.is_module_patched(gevent_key):
            return monkey.get_original(modname, attr)
    return getattr(importlib.import_module(modname), attr)


def original_sleep() -> Callable[[float], None]:
    """Return the unpatched ``time.sleep`` (blocks the whole OS thread)."""
    sleep: Callable[[float], None] = _original("time", "sleep", "time", "time")
    return sleep


def _original_lock() -> Any:
    """Return a new unpatched ``_thread`` lock (never yields to a green hub)."""
    return _original("_thread", "allocate_lock", "thread", "_thread")()


def _raise(error: BaseException | type[BaseException]) -> None:
    """Raise an exception given as an instance or a class."""
    raise error


class FakeDB(types.ModuleType):
    """A fresh, independent fake DB-API 2 driver module with knobs and counters."""

    apilevel: str = "2.0"
    threadsafety: int = 1
    paramstyle: str = "qmark"

    # Exception classes: created fresh for every instance in __init__.
    Warning: type[Exception]
    Error: type[Exception]
    InterfaceError: type[Exception]
    DatabaseError: type[Exception]
    DataError: type[Exception]
    OperationalError: type[Exception]
    IntegrityError: type[Exception]
    InternalError: type[Exception]
    ProgrammingError: type[Exception]
    NotSupportedError: type[Exception]

    # Knobs.
    outage: bool
    connect_delay: float
    connect_delay_mode: str
    connect_error: BaseException | type[BaseException] | None
    connect_error_sticky: bool
    connect_hook: Callable[[], None] | None
    query_delay: float
    rollback_delay: float
    fail_rollback: bool
    fail_close: bool
    fail_commit: bool
    execute_error: BaseException | type[BaseException] | None

    # Counters / inspection.
    connects: int
    connect_attempts: int
    closes: int
    rollbacks: int
    commits: int
    executes: int
    pings: int
    connect_calls: list[tuple[tuple[Any, ...], dict[str, Any]]]
    connections: list[FakeConnection]

    def __init__(self, name: str = "fakedb") -> None:
        super().__init__(name, "Fake PEP 249 driver for tests.")
        self._lock = _original_lock()
        self._next_id = 0
        self.connections = []
        made: dict[str, type[Exception]] = {}
        for exc_name, base_name in _EXCEPTIONS:
            base = made[base_name] if base_name else Exception
            cls = type(exc_name, (base,), {"__module__": name, "__qualname__": exc_name})
            made[exc_name] = cls
            setattr(self, exc_name, cls)
        self.reset()

    def reset(self) -> None:
        """Reset every knob to its default and every counter to zero.

        ``connections`` (and the id sequence) are kept so leak checks still see old ones.
        """
        with self._lock:
            self.outage = False
            self.connect_delay = 0.0
            self.connect_delay_mode = "yield"
            self.connect_error = None
            self.connect_error_sticky = False
            self.connect_hook = None
            self.query_delay = 0.0
            self.rollback_delay = 0.0
            self.fail_rollback = False
            self.fail_close = False
            self.fail_commit = False
            self.execute_error = None
            self.connects = 0
            self.connect_attempts = 0
            self.closes = 0
            self.rollbacks = 0
            self.commits = 0
            self.executes = 0
            self.pings = 0
            self.connect_calls = []

    # -- helpers -------------------------------------------------------------------------------

    def _incr(self, counter: str) -> None:
        """Atomically add one to the counter attribute ``counter``."""
        with self._lock:
            setattr(self, counter, getattr(self, counter) + 1)

    def sleep(self, seconds: float, mode: str = "yield") -> None:
        """Sleep cooperatively (``"yield"``) or block the OS thread (``"block"``)."""
        if mode not in ("yield", "block"):
            raise ValueError(f"fakedb: unknown delay mode {mode!r}")
        if seconds <= 0:
            return
        if mode == "yield":
            time.sleep(seconds)  # attribute looked up now: green if monkey patched
        else:
            original_sleep()(seconds)

    def open_connections(self) -> list[FakeConnection]:
        """Connections on which ``close()`` has not been called (broken ones included)."""
        return [c for c in list(self.connections) if c.closed != 1]

    def disconnect_all(self) -> None:
        """Simulate a server restart: every open connection becomes broken."""
        for conn in list(self.connections):
            conn.disconnect()

    # -- PEP 249 -------------------------------------------------------------------------------

    def connect(self, *args: Any, **kwargs: Any) -> FakeConnection:
        """Open a fake connection, honouring delay, hook, outage and connect_error knobs."""
        with self._lock:
            self.connect_attempts += 1
            self.connect_calls.append((args, dict(kwargs)))
        self.sleep(self.connect_delay, self.connect_delay_mode)
        hook = self.connect_hook
        if hook is not None:
            hook()
        if self.outage:
            raise self.OperationalError(_MSG_UNREACHABLE)
        with self._lock:
            error = self.connect_error
            if error is not None and not self.connect_error_sticky:
                self.connect_error = None
        if error is not None:
            _raise(error)
        with self._lock:
            self._next_id += 1
            conn = FakeConnection(self, self._next_id, args, kwargs)
            self.connections.append(conn)
            self.connects += 1
        return conn


class FakeConnection:
    """A fake DB-API connection; ``closed`` is 0 open, 1 closed by client, 2 broken."""

    server_version: int = 150000

    def __init__(
        self, db: FakeDB, conn_id: int, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        self.db = db
        self.id = conn_id
        self.args = args
        self.kwargs = dict(kwargs)
        self.closed = 0
        self.autocommit = False
        self.in_transaction = False
        #: True once the connection has ever been broken (survives ``close()``).
        self.was_broken = False
        #: Every SQL string passed to ``execute`` on this connection, in order.
        self.queries: list[str] = []

    def __repr__(self) -> str:
        return f"<FakeConnection id={self.id} closed={self.closed} db={self.db.__name__!r}>"

    @property
    def broken(self) -> bool:
        """True if the server dropped this connection and the client has not closed it."""
        return self.closed == 2

    def _check(self) -> None:
        """Raise if the connection cannot talk to the (fake) server."""
        if self.closed == 1:
            raise self.db.InterfaceError(_MSG_CONN_CLOSED)
        if self.closed == 2:
            raise self.db.OperationalError(_MSG_SERVER_GONE)
        if self.db.outage:
            self.disconnect()
            raise self.db.OperationalError(_MSG_SERVER_GONE)

    def disconnect(self) -> None:
        """Test helper: simulate the server dropping this connection."""
        if self.closed == 0:
            self.closed = 2
            self.was_broken = True

    def cursor(self) -> FakeCursor:
        """Return a new cursor."""
        self._check()
        return FakeCursor(self)

    def commit(self) -> None:
        """Commit; raises OperationalError if ``fail_commit`` is set."""
        self._check()
        self.db._incr("commits")
        if self.db.fail_commit:
            raise self.db.OperationalError("fakedb: commit failed")
        self.in_transaction = False

    def rollback(self) -> None:
        """Roll back after ``rollback_delay``; raises if ``fail_rollback`` is set."""
        self._check()
        self.db._incr("rollbacks")
        self.db.sleep(self.db.rollback_delay)
        self._check()
        if self.db.fail_rollback:
            raise self.db.OperationalError("fakedb: rollback failed")
        self.in_transaction = False

    def close(self) -> None:
        """Close (idempotent, works on broken connections); may raise if ``fail_close``."""
        if self.closed == 1:
            return
        self.closed = 1
        self.in_transaction = False
        self.db._incr("closes")
        if self.db.fail_close:
            raise self.db.OperationalError("fakedb: close failed")

    def ping(self, reconnect: bool = False) -> None:
        """Check liveness (PyMySQL-style); ``reconnect`` is ignored."""
        self._check()
        self.db._incr("pings")

    def __enter__(self) -> FakeConnection:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Commit on success, roll back on exception; never closes."""
        if exc_type is None:
            self.commit()
        else:
            self.rollback()


class FakeCursor:
    """A fake DB-API cursor producing canned results."""

    def __init__(self, connection: FakeConnection) -> None:
        self.connection = connection
        self.closed = False
        self.arraysize = 1
        self.rowcount = -1
        self.description: Optional[list[tuple[Any, ...]]] = None
        self._rows: list[Row] = []
        self._pos = 0

    def _check(self) -> None:
        """Raise InterfaceError if this cursor or its connection was closed."""
        if self.closed:
            raise self.connection.db.InterfaceError(_MSG_CURSOR_CLOSED)
        if self.connection.closed == 1:
            raise self.connection.db.InterfaceError(_MSG_CONN_CLOSED)

    def execute(self, sql: str, params: Optional[Sequence[Any]] = None) -> None:
        """Run ``sql`` after ``query_delay``; honours outage, breakage and ``execute_error``."""
        self._check()
        conn = self.connection
        db = conn.db
        conn._check()
        db._incr("executes")
        conn.queries.append(sql)
        self.description = None
        self._rows = []
        self._pos = 0
        self.rowcount = -1
        if not conn.autocommit:
            conn.in_transaction = True
        db.sleep(db.query_delay)
        conn._check()  # the server may have gone away mid-query
        with db._lock:
            error = db.execute_error
            db.execute_error = None
        if error is not None:
            _raise(error)
        rows = self._result(sql)
        if rows is None:
            self.rowcount = 0
        else:
            self._rows = rows
            self.rowcount = len(rows)
            self.description = [("?column?", None, None, None, None, None, None)]

    def _result(self, sql: str) -> Optional[list[Row]]:
        """Canned result rows for ``sql``, or None for statements without a result set."""
        match = _SELECT_INT.match(sql)
        if match:
            return [(int(match.group(1)),)]
        if _SELECT_CONN_ID.match(sql):
            return [(self.connection.id,)]
        return None

    def executemany(self, sql: str, seq_of_params: Sequence[Sequence[Any]]) -> None:
        """Execute ``sql`` once per parameter set."""
        total = 0
        for params in seq_of_params:
            self.execute(sql, params)
            total += max(self.rowcount, 0)
        self.description = None
        self._rows = []
        self.rowcount = total

    def _check_fetch(self) -> None:
        self._check()
        if self.description is None:
            raise self.connection.db.ProgrammingError("fakedb: no results to fetch")

    def fetchone(self) -> Optional[Row]:
        """Next row or None."""
        self._check_fetch()
        if self._pos >= len(self._rows):
            return None
        row = self._rows[self._pos]
        self._pos += 1
        return row

    def fetchmany(self, size: Optional[int] = None) -> list[Row]:
        """Up to ``size`` (default ``arraysize``) rows."""
        self._check_fetch()
        n = self.arraysize if size is None else size
        rows = self._rows[self._pos : self._pos + n]
        self._pos += len(rows)
        return rows

    def fetchall(self) -> list[Row]:
        """All remaining rows."""
        self._check_fetch()
        rows = self._rows[self._pos :]
        self._pos = len(self._rows)
        return rows

    def close(self) -> None:
        """Close the cursor (idempotent)."""
        self.closed = True

    def setinputsizes(self, sizes: Any) -> None:
        """PEP 249 no-op."""

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        """PEP 249 no-op."""

    def __iter__(self) -> Iterator[Row]:
        return self

    def __next__(self) -> Row:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close()


def make_fakedb(name: str = "fakedb") -> FakeDB:
    """Return a fresh, independent fake driver module."""
    return FakeDB(name)
