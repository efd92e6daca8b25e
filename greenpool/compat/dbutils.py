"""DBUtils' ``PooledDB`` and ``PersistentDB`` on greenpool, green-aware.

Moving is one import::

    from dbutils.pooled_db import PooledDB
        ->  from greenpool.compat.dbutils import PooledDB
    from dbutils.persistent_db import PersistentDB
        ->  from greenpool.compat.dbutils import PersistentDB

Kept
----
* ``PooledDB(creator, mincached=0, maxcached=0, maxshared=0,
  maxconnections=0, blocking=False, maxusage=None, setsession=None,
  reset=True, failures=None, ping=1, *args, **kwargs)``; ``creator`` is a
  DB-API module or a function returning connections; the rest of the
  arguments go to it.  ``connection(shareable=True)``,
  ``dedicated_connection()``, ``steady_connection()``, ``close()``.
* ``PersistentDB(creator, maxusage=None, setsession=None, failures=None,
  ping=1, closeable=False, threadlocal=None, *args, **kwargs)`` with
  ``connection()``, ``dedicated_connection()``, ``steady_connection()``.
* Pooled connections: every attribute of the driver's connection is
  reachable; ``close()`` (or the end of a ``with`` block) gives the
  connection back; later use raises ``InvalidConnectionError``.  Cursors
  work as the driver's do.
* Steady connections: ``setsession`` commands run on every new connection;
  after ``maxusage`` uses (executions) a connection is reopened; an
  operation failing with one of ``failures`` (default: the driver's
  ``OperationalError`` and ``InterfaceError``; ``isfatal=`` refines it) is
  retried once on a reopened connection; ``begin()`` marks a transaction
  during which nothing is reopened or retried; ``commit()``/``rollback()``
  end it.  ``ping``: 0 never, 1 when taken from the pool (default), 2 when a
  cursor is made, 4 before each execution, 7 always (any bit combination),
  or an SQL statement or a callable (checked as with 1), or a tuple
  ``(flags, sql_or_callable)``.
* ``maxcached`` idle connections at most (0: no limit; the least recently
  used are closed), ``mincached`` opened at once, ``maxconnections`` open at
  most (0: no limit); ``blocking=False`` raises ``TooManyConnections`` when
  they are all in use.  ``reset=True``
  rolls back every returned connection, ``reset=False`` only those that
  called ``begin()``.
* Shared connections (``maxshared``, ``connection(shareable=True)``) only
  when the driver's ``threadsafety`` is above 1 (psycopg2: 2; PyMySQL: 1, so
  never), and never one that is in a transaction.  A driver with
  ``threadsafety`` 0 is refused (``NotSupportedError``).
* ``PersistentDB``: one connection per green thread (per OS thread on the
  threads hub), the same object on every ``connection()`` call;
  ``closeable=False`` ignores ``close()`` (ending a ``begin()`` transaction),
  ``closeable=True`` gives the connection back.

Fixed
-----
* ``blocking=True`` waits first come first served, optionally up to
  ``timeout`` seconds (default None: for ever), then raises
  ``TooManyConnections``; waiting green threads never block the hub.
* ``ping`` works on drivers without ``ping()``: psycopg2 and others are
  checked with ``SELECT 1`` (DBUtils silently stops checking them), and a
  transaction the check opened is rolled back.
* A connection is never reopened nor an operation retried inside a
  transaction, whether it was started with ``begin()`` or implicitly by the
  driver (psycopg2, PyMySQL outside autocommit): DBUtils retries those and
  can silently drop the first half of a transaction.
* Shared connections are used by one green thread at a time (a green lock
  around each call), since psycopg2 in green mode refuses overlapping
  queries; shared connections in a transaction are never handed out.
* Idle connections are closed after ``max_idle`` seconds (60; None keeps
  them); ``max_age`` (None) bounds their life.  ``PersistentDB`` can bound
  its connections too (``maxconnections=``, waiting as ``blocking=True``
  does), so thousands of green threads cannot open thousands of connections.
* A pooled connection dropped without ``close()`` does not hold its slot
  for ever: once it is garbage collected the pool closes the connection (its
  state is unknown) and frees the slot.  A shared connection is reclaimed so
  when every holder has dropped it.

Deliberately different
----------------------
* ``PersistentDB``: when a green thread ends, its connection is closed, as
  in DBUtils (``max_idle`` defaults to 0 here).  Green-thread servers that
  start a green thread per request can pass ``max_idle=60`` (say) to keep
  those connections idle for reuse by the next green threads instead.
  ``threadlocal`` is accepted and ignored: connections are keyed by the
  running green thread, which ``threading.local`` cannot see on every hub.
* Connections are opened by the pool in the background, not in the caller
  of ``connection()``, and a connect that fails is retried while the caller
  waits.  ``blocking=False`` waits for the connection being opened for it
  (up to the ``connect_timeout`` keyword if given, else 5 s), and raises
  ``TooManyConnections`` at once only when ``maxconnections`` are all in
  use.  Connect errors are not raised directly: a caller that gets no
  connection in time while connects fail gets ``PooledDBError``
  (``PersistentDBError`` from ``PersistentDB``) that is also an instance of
  the driver's error (say ``OperationalError``) and has it as its
  ``__cause__``.  ``steady_connection()`` and the reopening of a steady
  connection still connect in the caller and raise the driver's errors.
* ``PooledDB.close()`` closes idle connections now and checked-out ones as
  they come back; the pool then refuses new requests
  (:class:`greenpool.PoolClosed`) instead of silently refilling.
* ``isfatal`` and the greenpool options are keyword-only: ``isfatal``,
  ``timeout``, ``max_idle``, ``max_age``, ``tpool`` (False: the driver runs
  in place; True: in OS threads), ``hub``, ``name``; and for
  ``PersistentDB`` ``maxconnections``.  Everything else goes to the creator.
* ``failures`` defaults to the driver's ``OperationalError`` and
  ``InterfaceError``; DBUtils adds ``InternalError``, which psycopg2 raises
  for errors that leave the connection usable (an aborted transaction), so
  a retry there would hide the failure.
* The error classes derive from :class:`greenpool.PoolError`;
  ``InvalidConnectionError`` is an ``AttributeError`` too, and
  ``TooManyConnectionsError`` a :class:`greenpool.PoolTimeout`.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import weakref
from typing import Any, Callable, Iterator, Optional, Sequence, Union

from ..connections import TpooledConnectionPool, cleanup_rollback
from ..drivers import describe_target, driver_for
from ..errors import ConnectionReturned, PoolTimeout
from ..errors import PoolError as _GreenPoolError
from ..hubs import Hub, HubSpec, resolve_hub
from ..pool import TokenPool
from ..proxy import PooledConnectionWrapper
from ..validation import check_callable, check_int, check_seconds
from . import (
    DEFAULT_MAX_IDLE,
    CompatPool,
    PooledConnection,
    connect_bound,
    describe_error,
    make_core,
    ping_quietly,
    timeout_error,
)

__all__ = [
    "PooledDB",
    "PersistentDB",
    "PooledDedicatedDBConnection",
    "PooledSharedDBConnection",
    "PersistentDBConnection",
    "SteadyDBConnection",
    "SteadyDBCursor",
    "PooledDBError",
    "PersistentDBError",
    "InvalidConnectionError",
    "InvalidConnection",
    "InvalidCursorError",
    "NotSupportedError",
    "TooManyConnectionsError",
    "TooManyConnections",
]

log = logging.getLogger(__name__)

#: ``maxconnections=0`` means "no limit".
_UNLIMITED = sys.maxsize


def _quietly(what: str, action: Callable[[], Any]) -> None:
    """Run a clean-up whose failure changes nothing (closing what is already broken),
    logging the failure instead of raising it."""
    try:
        action()
    except Exception as exc:  # the thing is gone either way
        log.debug("%s failed: %s", what, describe_error(exc))


class PooledDBError(_GreenPoolError):
    """General PooledDB error."""


class PersistentDBError(_GreenPoolError):
    """General PersistentDB error."""


class InvalidConnectionError(PooledDBError, ConnectionReturned):
    """The pooled connection was closed (given back) and cannot be used any more."""


class InvalidCursorError(PooledDBError, AttributeError):
    """The cursor was closed and cannot be used any more."""


class NotSupportedError(PooledDBError, PersistentDBError):
    """The DB-API module is not thread-safe enough (``threadsafety`` 0)."""


class TooManyConnectionsError(PooledDBError, PoolTimeout):
    """Every connection allowed is in use (and ``blocking`` is off, or ``timeout`` passed)."""


InvalidConnection = InvalidConnectionError
TooManyConnections = TooManyConnectionsError

_PING_ERROR = "ping must be an int 0-7, an SQL string, a callable, or a (flags, check) tuple"

PingCheck = Callable[[Any], Any]


def _parse_ping(ping: Any) -> tuple[int, Optional[PingCheck]]:
    """DBUtils' ``ping`` argument as (flags, check); check None means the driver's ping."""
    if ping is None:
        return 0, None
    check: Any = None
    if isinstance(ping, tuple):
        if len(ping) != 2:
            raise TypeError(f"{_PING_ERROR}, got {ping!r}")
        flags, check = ping
    elif isinstance(ping, str) or callable(ping):
        flags, check = 1, ping
    else:
        flags = ping
    if not isinstance(flags, int):
        raise TypeError(f"{_PING_ERROR}, got {ping!r}")
    if not 0 <= int(flags) <= 7:
        raise ValueError(f"ping flags must be between 0 and 7, got {flags!r}")
    if isinstance(check, str):
        check = functools.partial(_run_sql, check)
    elif check is not None and not callable(check):
        raise TypeError(f"{_PING_ERROR}, got {ping!r}")
    return int(flags), check


def _run_sql(sql: str, conn: Any) -> None:
    cursor = conn.cursor()
    try:
        cursor.execute(sql)
    finally:
        cursor.close()


def _threadsafety(creator: Any) -> int:
    """The creator's DB-API ``threadsafety``, found as DBUtils finds it."""
    for source in (creator, getattr(creator, "dbapi", None)):
        value = getattr(source, "threadsafety", None)
        if isinstance(value, int):
            return value
    # A module-like object with connect() but no threadsafety: assume the worst.
    # A plain function: DBUtils assumes 1.
    return 0 if callable(getattr(creator, "connect", None)) else 1


def _module_of(conn: Any) -> Any:
    """The DB-API module a connection came from (walking up its dotted module name)."""
    name = type(conn).__module__
    while name:
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "OperationalError"):
            return module
        name = name.rpartition(".")[0]
    return None


class _Opener:
    """Opens the raw connections of steady connections; what a pool's steady connections share."""

    def __init__(
        self,
        creator: Any,
        args: tuple,
        kwargs: dict,
        *,
        maxusage: Any,
        setsession: Any,
        failures: Any,
        isfatal: Any,
        ping: Any,
        hub: Hub,
    ) -> None:
        connect = getattr(creator, "connect", None)
        if callable(connect):
            self.connect: Callable[..., Any] = connect
            self.module: Any = creator
        elif callable(creator):
            self.connect = creator
            self.module = getattr(creator, "dbapi", None)
        else:
            raise TypeError(
                f"creator must be a DB-API module or a connect function, got {creator!r}"
            )
        self.args = args
        self.kwargs = kwargs
        self.maxusage = check_int("maxusage", 0 if maxusage is None else maxusage)
        if setsession is not None and (
            isinstance(setsession, str)
            or not all(isinstance(sql, str) for sql in setsession)
        ):
            raise TypeError(f"setsession must be a list of SQL strings, got {setsession!r}")
        self.setsession: Sequence[str] = tuple(setsession or ())
        if failures is not None:
            if isinstance(failures, type):
                failures = (failures,)
            if not isinstance(failures, tuple) or not all(
                isinstance(f, type) and issubclass(f, BaseException) for f in failures
            ):
                raise TypeError(f"failures must be an exception class or a tuple of them, "
                                f"got {failures!r}")
        self.failures: Optional[tuple[type[BaseException], ...]] = failures
        self.isfatal = check_callable("isfatal", isfatal)
        self.ping_flags, self.ping_check = _parse_ping(ping)
        self.hub = hub

    def open(self) -> Any:
        """A new raw connection with the session prepared; closed again if that fails."""
        conn = self.connect(*self.args, **self.kwargs)
        try:
            if self.failures is None:
                self.failures = self._default_failures(conn)
            if self.setsession:
                cursor = conn.cursor()
                try:
                    for sql in self.setsession:
                        cursor.execute(sql)
                finally:
                    cursor.close()
        except BaseException:
            _quietly("closing the connection", conn.close)
            raise
        return conn

    def _default_failures(self, conn: Any) -> tuple[type[BaseException], ...]:
        for source in (self.module, _module_of(conn), conn):
            operational = getattr(source, "OperationalError", None)
            interface = getattr(source, "InterfaceError", None)
            if isinstance(operational, type) and isinstance(interface, type):
                return (operational, interface)
        raise TypeError(
            "cannot tell which exceptions mean a lost connection: pass failures= "
            "or a creator with a dbapi attribute"
        )

    def fatal(self, error: BaseException) -> bool:
        return self.isfatal is None or bool(self.isfatal(error))

    def steady(self) -> SteadyDBConnection:
        """A new steady connection (the core pool's connect function)."""
        return SteadyDBConnection(self)


_STEADY_SLOTS = frozenset(
    {"_opener", "_raw", "_driver", "_usage", "_transaction", "_closed", "_generation", "_mutex",
     "_fresh"}
)


class SteadyDBConnection:
    """A DB-API connection that reopens itself (DBUtils' SteadyDB, as PooledDB uses it).

    It reopens after ``maxusage`` executions, when a ping fails, and when an
    operation fails with one of ``failures``, but never while a transaction is
    open (see :attr:`in_transaction`).  Every other attribute is the driver
    connection's.
    """

    __slots__ = tuple(sorted(_STEADY_SLOTS))

    def __init__(self, opener: _Opener) -> None:
        object.__setattr__(self, "_opener", opener)
        object.__setattr__(self, "_mutex", None)
        object.__setattr__(self, "_generation", 0)
        self._store(opener.open())

    def _store(self, raw: Any) -> None:
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_driver", driver_for(raw))
        object.__setattr__(self, "_usage", 0)
        object.__setattr__(self, "_transaction", False)
        object.__setattr__(self, "_closed", False)
        object.__setattr__(self, "_fresh", True)
        object.__setattr__(self, "_generation", self._generation + 1)

    # -- state ------------------------------------------------------------------------

    @property
    def in_transaction(self) -> Optional[bool]:
        """True after ``begin()`` or while the driver reports an open transaction.

        None when the driver cannot tell (then the pool rolls back on return).
        """
        if self._transaction:
            return True
        return self._driver.in_transaction(self._raw)

    def _busy(self) -> bool:
        return self._transaction or self._driver.in_transaction(self._raw) is True

    @property
    def closed(self) -> bool:
        """True once closed, or when the driver knows the connection is broken."""
        return self._closed or self._driver.is_closed(self._raw)

    @property
    def dbapi_connection(self) -> Any:
        """The driver's connection (operations on it are neither counted nor retried)."""
        return self._raw

    def dbapi(self) -> Any:
        """The DB-API module of the connection."""
        module = self._opener.module or _module_of(self._raw)
        if module is None:
            raise AttributeError("cannot determine the DB-API module (set creator.dbapi)")
        return module

    def threadsafety(self) -> int:
        """The DB-API module's ``threadsafety``."""
        return _threadsafety(self._opener.module or self._opener.connect)

    # -- reopening ----------------------------------------------------------------------

    def _reopen(self) -> None:
        old = self._raw
        self._store(self._opener.open())
        _quietly("closing the replaced connection", old.close)

    @property
    def begun(self) -> bool:
        """True between ``begin()`` and the ``commit()``/``rollback()`` that ends it."""
        return self._transaction

    def ping_check(self, flag: int = 1) -> None:
        """Reopen the connection if it is dead, when ``ping`` asks for a check at ``flag``.

        ``flag``: 1 taken from the pool, 2 a cursor is made, 4 a statement
        runs.  Never inside a transaction.
        """
        opener = self._opener
        if not flag & opener.ping_flags or self._busy():
            return
        with self._serialized():
            if self._closed or self._driver.is_closed(self._raw) or not ping_quietly(
                self._driver, self._raw, opener.ping_check
            ):
                log.info("a pooled connection failed its check; reopening it")
                try:
                    self._reopen()
                except Exception as exc:  # the next operation will report the outage
                    log.warning("reopening a dead connection failed: %s", describe_error(exc))

    def checkout_check(self) -> None:
        """The check when taken from the pool (flag 1); a connection just opened is not pinged."""
        if self._fresh:
            object.__setattr__(self, "_fresh", False)
            return
        self.ping_check(1)

    def _prepare(self, flag: int) -> None:
        """Before a cursor is made (flag 2) or a statement runs (flag 4)."""
        if self._busy():
            return
        self.ping_check(flag)
        maxusage = self._opener.maxusage
        if maxusage and self._usage >= maxusage:
            log.debug("a connection reached maxusage=%d; reopening it", maxusage)
            self._reopen()

    def _tough(self, busy: bool, attempt: Callable[[], Any]) -> Any:
        """``attempt()``, retried once on a reopened connection after a connection failure."""
        failures = self._opener.failures or ()
        try:
            return attempt()
        except failures as exc:
            if busy or not self._opener.fatal(exc):
                raise
            log.info("retrying on a new connection after %s", describe_error(exc))
            try:
                self._reopen()
            except Exception as reopen_error:
                raise exc from reopen_error
            return attempt()

    @contextlib.contextmanager
    def _serialized(self) -> Iterator[None]:
        mutex = self._mutex
        if mutex is None:
            yield
            return
        with mutex.item():
            yield

    def serialize_calls(self, hub: Hub) -> None:
        """From now on calls go one at a time: the connection is shared by green threads."""
        if self._mutex is None and hub.green:
            object.__setattr__(self, "_mutex", TokenPool(0, 1, hub=hub))

    # -- DB-API -------------------------------------------------------------------------

    def cursor(self, *args: Any, **kwargs: Any) -> SteadyDBCursor:
        """A cursor that survives a reopened connection (see :class:`SteadyDBCursor`)."""
        return SteadyDBCursor(self, args, kwargs)

    def _new_cursor(self, args: tuple, kwargs: dict) -> Any:
        with self._serialized():
            busy = self._busy()
            if not busy:
                self._prepare(2)
            return self._tough(busy, lambda: self._raw.cursor(*args, **kwargs))

    def _execute(self, cursor: SteadyDBCursor, name: str, *args: Any, **kwargs: Any) -> Any:
        with self._serialized():
            busy = self._busy()
            if not busy:
                self._prepare(4)
            result = self._tough(busy, lambda: getattr(cursor._current(), name)(*args, **kwargs))
            object.__setattr__(self, "_usage", self._usage + 1)
            return result

    def begin(self, *args: Any, **kwargs: Any) -> None:
        """Start a transaction: nothing is reopened or retried until commit/rollback."""
        object.__setattr__(self, "_transaction", True)
        begin = getattr(self._raw, "begin", None)
        if begin is not None:
            begin(*args, **kwargs)

    def _end(self, method: str) -> None:
        object.__setattr__(self, "_transaction", False)
        failures = self._opener.failures or ()
        with self._serialized():
            try:
                getattr(self._raw, method)()
            except failures as exc:
                # The connection is gone: reopen it for the next use, report the error.
                _quietly("reopening the connection", self._reopen)
                raise exc

    def commit(self) -> None:
        """Commit, ending a ``begin()`` transaction."""
        self._end("commit")

    def rollback(self) -> None:
        """Roll back, ending a ``begin()`` transaction."""
        self._end("rollback")

    def cancel(self) -> None:
        """Cancel a running statement if the driver can, ending a ``begin()`` transaction."""
        object.__setattr__(self, "_transaction", False)
        cancel = getattr(self._raw, "cancel", None)
        if cancel is not None:
            cancel()

    def close(self) -> None:
        """Close the driver connection (idempotent)."""
        if not self._closed:
            object.__setattr__(self, "_closed", True)
            object.__setattr__(self, "_transaction", False)
            _quietly("closing the connection", self._raw.close)

    def __getattr__(self, name: str) -> Any:
        if name in _STEADY_SLOTS:
            raise AttributeError(name)
        return getattr(self._raw, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._raw, name, value)

    def __enter__(self) -> SteadyDBConnection:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Commit on success, roll back on error; the connection stays open."""
        if exc_type is None:
            self.commit()
        else:
            self.rollback()

    def __repr__(self) -> str:
        return f"<SteadyDBConnection {self._raw!r}>"


_CURSOR_SLOTS = frozenset({"_con", "_args", "_kwargs", "_cursor", "_generation", "_closed",
                           "_no_failover"})


class SteadyDBCursor:
    """A cursor of a :class:`SteadyDBConnection`.

    ``execute*`` and ``call*`` methods count towards ``maxusage`` and are
    retried on a reopened connection after a connection failure outside a
    transaction; everything else is the driver cursor's.
    """

    __slots__ = tuple(sorted(_CURSOR_SLOTS))

    def __init__(self, con: SteadyDBConnection, args: tuple, kwargs: dict) -> None:
        object.__setattr__(self, "_con", con)
        object.__setattr__(self, "_args", args)
        object.__setattr__(self, "_kwargs", kwargs)
        object.__setattr__(self, "_no_failover", 0)
        object.__setattr__(self, "_closed", False)
        object.__setattr__(self, "_cursor", con._new_cursor(args, kwargs))
        object.__setattr__(self, "_generation", con._generation)

    def _current(self) -> Any:
        """The driver cursor, made anew if the connection was reopened since."""
        if self._closed:
            raise InvalidCursorError("the cursor was closed")
        con = self._con
        if self._generation != con._generation:
            _quietly("closing the cursor", self._cursor.close)
            object.__setattr__(self, "_cursor", con._raw.cursor(*self._args, **self._kwargs))
            object.__setattr__(self, "_generation", con._generation)
        return self._cursor

    @property
    def dbapi_cursor(self) -> Any:
        """The driver's cursor (operations on it are neither counted nor retried)."""
        return self._current()

    @contextlib.contextmanager
    def no_failover(self) -> Iterator[SteadyDBCursor]:
        """Within this block, failed statements are raised at once, not retried."""
        object.__setattr__(self, "_no_failover", self._no_failover + 1)
        try:
            yield self
        finally:
            object.__setattr__(self, "_no_failover", self._no_failover - 1)

    def _run(self, name: str, *args: Any, **kwargs: Any) -> Any:
        con = self._con
        if self._no_failover:
            with con._serialized():
                result = getattr(self._current(), name)(*args, **kwargs)
                object.__setattr__(con, "_usage", con._usage + 1)
                return result
        return con._execute(self, name, *args, **kwargs)

    def close(self) -> None:
        """Close the cursor (idempotent)."""
        if not self._closed:
            object.__setattr__(self, "_closed", True)
            _quietly("closing the cursor", self._cursor.close)

    def __getattr__(self, name: str) -> Any:
        if name in _CURSOR_SLOTS:
            raise AttributeError(name)
        if name.startswith(("execute", "call")):
            return functools.partial(self._run, name)
        if self._closed:
            raise InvalidCursorError("the cursor was closed")
        return getattr(self._cursor, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._current(), name, value)

    def __iter__(self) -> Iterator[Any]:
        cursor = self._current()
        try:
            return iter(cursor)
        except TypeError:
            return iter(cursor.fetchone, None)

    def __enter__(self) -> SteadyDBCursor:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close()


# -- the pools -------------------------------------------------------------------------------


class _DBPool(CompatPool):
    """What PooledDB and PersistentDB share: options, steady connections, the core pool."""

    _returned_error = InvalidConnectionError
    #: Raised (as an instance of the connect error's class too) when no connection
    #: could be opened in time.
    _connect_error: type[Exception] = PooledDBError

    def __init__(
        self,
        creator: Any,
        args: tuple,
        kwargs: dict,
        *,
        min_size: int,
        max_size: int,
        maxusage: Any,
        setsession: Any,
        failures: Any,
        isfatal: Any,
        ping: Any,
        cleanup: Callable[[Any], Any],
        timeout: Optional[float],
        hub: HubSpec,
        name: Optional[str],
        max_idle: Optional[float],
        max_age: Optional[float],
        tpool: bool,
    ) -> None:
        self._threadsafety = _threadsafety(creator)
        if not self._threadsafety:
            raise NotSupportedError("Database module is not thread-safe.")
        chosen = resolve_hub(hub)
        self._opener = _Opener(
            creator,
            args,
            kwargs,
            maxusage=maxusage,
            setsession=setsession,
            failures=failures,
            isfatal=isfatal,
            ping=ping,
            hub=chosen,
        )
        self.timeout = check_seconds("timeout", timeout)
        core = make_core(
            self._opener.steady,
            tpool=tpool,
            min_size=min_size,
            max_size=max_size,
            max_idle=max_idle,
            max_age=max_age,
            connect_timeout=connect_bound(kwargs),
            cleanup=cleanup,
            check=None,  # DBUtils' ping option governs checks
            hub=chosen,
            name=name,
        )
        # The creator's arguments stay with the opener (steady connections reopen
        # with them); the core is told where they lead, for its repr and errors.
        core.target = describe_target(args, kwargs)
        super().__init__(core)

    def steady_connection(self) -> SteadyDBConnection:
        """A new steady connection outside the pool (closing it closes it).

        It connects in the caller, so connect errors are the driver's own.
        """
        return self._opener.steady()

    def _take(self, timeout: Optional[float]) -> PooledConnectionWrapper:
        """A connection from the core pool, checked as ``ping`` asks (flag 1)."""
        try:
            lease = self._lease(timeout, reject_closed=False)
        except PoolTimeout as exc:
            waited = "" if timeout == 0 else f" (waited {timeout} s)"
            raise timeout_error(
                exc,
                TooManyConnectionsError(
                    f"all {self._core.max_size} connections are in use{waited}"
                ),
                self._connect_error,
                "no connection could be opened",
            )
        try:
            # Forwarded to the steady connection (in an OS thread when tpooled).
            lease.checkout_check()
        except BaseException:
            self._core.put(lease)
            raise
        return lease

    def close(self) -> None:
        """Close idle connections now and the others as they come back; refuse new requests."""
        self._core.close()


def _rollback_begun(steady: SteadyDBConnection) -> None:
    """``reset=False``: roll back only transactions started with ``begin()``."""
    if steady.begun:
        steady.rollback()


class _Shared:
    """A connection in PooledDB's shared cache, and how many hold it.

    The cache holds the checkout weakly: the holders hold it, so when every
    one of them drops its share without ``close()``, the core pool reclaims
    the connection.
    """

    __slots__ = ("lease", "shares")

    def __init__(self, lease: PooledConnectionWrapper) -> None:
        self.lease = weakref.ref(lease)
        self.shares = 1


class PooledDB(_DBPool):
    """A pool of steady DB-API connections (see the module docstring)."""

    def __init__(
        self,
        creator: Any,
        mincached: Optional[int] = 0,
        maxcached: Optional[int] = 0,
        maxshared: Optional[int] = 0,
        maxconnections: Optional[int] = 0,
        blocking: bool = False,
        maxusage: Optional[int] = None,
        setsession: Optional[Sequence[str]] = None,
        reset: bool = True,
        failures: Any = None,
        ping: Any = 1,
        *args: Any,
        isfatal: Optional[Callable[[BaseException], bool]] = None,
        timeout: Optional[float] = None,
        hub: HubSpec = None,
        name: Optional[str] = None,
        max_idle: Optional[float] = DEFAULT_MAX_IDLE,
        max_age: Optional[float] = None,
        tpool: bool = False,
        **kwargs: Any,
    ) -> None:
        mincached = check_int("mincached", mincached or 0)
        maxcached = check_int("maxcached", maxcached or 0)
        maxshared = check_int("maxshared", maxshared or 0)
        maxconnections = check_int("maxconnections", maxconnections or 0)
        if maxcached:
            maxcached = max(maxcached, mincached)
        if maxconnections:
            maxconnections = max(maxconnections, maxcached, maxshared, mincached)
        self._maxcached = maxcached
        self._blocking = bool(blocking)
        self._shared: list[_Shared] = []
        self._new_shared = 0  # shared connections being taken
        super().__init__(
            creator,
            args,
            kwargs,
            min_size=mincached,
            max_size=maxconnections or _UNLIMITED,
            maxusage=maxusage,
            setsession=setsession,
            failures=failures,
            isfatal=isfatal,
            ping=ping,
            cleanup=cleanup_rollback if reset else _rollback_begun,
            timeout=timeout,
            hub=hub,
            name=name,
            max_idle=max_idle,
            max_age=max_age,
            tpool=tpool,
        )
        self._maxshared = maxshared if self._threadsafety > 1 else 0
        self._changed = self.hub.event()

    def connection(
        self, shareable: bool = True
    ) -> Union[PooledDedicatedDBConnection, PooledSharedDBConnection]:
        """A pooled connection; shared with other green threads if ``shareable`` and allowed."""
        if shareable and self._maxshared:
            return self._shared_connection()
        return self.dedicated_connection()

    def dedicated_connection(self) -> PooledDedicatedDBConnection:
        """A connection for the caller alone (``connection(shareable=False)``)."""
        lease = self._take(self._wait_time())
        return PooledDedicatedDBConnection(self, lease, lease)

    def _wait_time(self) -> Optional[float]:
        return self.timeout if self._blocking else 0.0

    # -- shared connections ---------------------------------------------------------------

    def _shared_connection(self) -> PooledSharedDBConnection:
        timeout = self._wait_time()
        deadline = None if timeout is None else self.hub.monotonic() + timeout
        while True:
            choice, changed = self._choose_shared()
            if choice is not None:
                break
            if changed is None:
                return self._new_shared_connection(deadline)
            remaining = None if deadline is None else deadline - self.hub.monotonic()
            if remaining is not None and remaining <= 0:
                raise TooManyConnectionsError(
                    f"all {self._maxshared} shared connections are in a transaction"
                )
            # Transactions end without telling us: look again now and then.
            changed.wait(0.05 if remaining is None else min(0.05, remaining))
        entry, lease = choice
        try:
            lease.ping_check(1)
        except BaseException:
            self._release(entry, lease)
            raise
        return PooledSharedDBConnection(self, lease, entry)

    def _new_shared_connection(self, deadline: Optional[float]) -> PooledSharedDBConnection:
        """Take a connection for the shared cache (a place in it is reserved already)."""
        lease = None
        try:
            remaining = None if deadline is None else max(0.0, deadline - self.hub.monotonic())
            lease = self._take(remaining)
            entry = _Shared(lease)
            if not isinstance(self._core, TpooledConnectionPool):
                lease.serialize_calls(self.hub)
            shared = PooledSharedDBConnection(self, lease, entry)
        except BaseException:
            with self._lock:
                self._new_shared -= 1
            if lease is not None:
                self._core.put(lease)
            raise
        with self._lock:
            self._new_shared -= 1
            self._shared.append(entry)
        return shared

    def _choose_shared(self) -> tuple[Optional[tuple[_Shared, Any]], Any]:
        """Decide, without yielding: share a cached connection (its entry and checkout),
        take a new one (None, None), or wait for a change (None, an event)."""
        with self._lock:
            live: list[tuple[_Shared, Any]] = []
            for entry in self._shared:
                # A connection whose every holder dropped its share is the core's to reclaim.
                lease = entry.lease()
                if lease:
                    live.append((entry, lease))
            self._shared = [e for e, _ in live]
            # in_transaction is a property: read here, never through an OS-thread hop.
            free = [(e, lease) for e, lease in live if lease.in_transaction is not True]
            best = min(free, key=lambda pair: pair[0].shares, default=None)
            room = len(self._shared) + self._new_shared < self._maxshared
            if room and (best is None or self._core.free() > 0):
                self._new_shared += 1
                return None, None
            if best is not None:
                best[0].shares += 1
                return best, None
            return None, self._changed

    def _release(self, handle: Any, lease: PooledConnectionWrapper) -> None:
        if isinstance(handle, _Shared):
            with self._lock:
                handle.shares -= 1
                if handle.shares:
                    return
                if handle in self._shared:
                    self._shared.remove(handle)
        core = self._core
        core.put(lease)
        if self._maxcached:
            surplus = len(core.free_items) - self._maxcached
            if surplus > 0:
                core.close_idle(surplus)
        with self._lock:
            changed, self._changed = self._changed, self.hub.event()
        changed.set()


class PooledDedicatedDBConnection(PooledConnection):
    """A pooled connection for one user; ``close()`` gives it back to the pool."""

    __slots__ = ()


class PooledSharedDBConnection(PooledConnection):
    """A pooled connection shared with other green threads; ``close()`` releases this share."""

    __slots__ = ()


class PersistentDBConnection(PooledConnection):
    """The calling green thread's connection from a :class:`PersistentDB`.

    ``close()`` is ignored unless the pool is ``closeable`` (a ``begin()``
    transaction is rolled back); ``with`` commits on success and rolls back
    on error, like a steady connection.
    """

    __slots__ = ("_key",)

    def close(self) -> None:
        """Give the connection back if the pool is closeable; else end a begun transaction."""
        owner = self._owner
        if isinstance(owner, PersistentDB) and owner._closeable:
            if owner._keys.pop(self._key) is not None:
                PooledConnection.close(self)
        elif self._handle is not None and self.begun:
            self.rollback()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.rollback()


class PersistentDB(_DBPool):
    """One steady connection per green thread (see the module docstring)."""

    _connect_error = PersistentDBError

    def __init__(
        self,
        creator: Any,
        maxusage: Optional[int] = None,
        setsession: Optional[Sequence[str]] = None,
        failures: Any = None,
        ping: Any = 1,
        closeable: bool = False,
        threadlocal: Any = None,
        *args: Any,
        isfatal: Optional[Callable[[BaseException], bool]] = None,
        maxconnections: Optional[int] = None,
        timeout: Optional[float] = None,
        hub: HubSpec = None,
        name: Optional[str] = None,
        max_idle: Optional[float] = 0,
        max_age: Optional[float] = None,
        tpool: bool = False,
        **kwargs: Any,
    ) -> None:
        limit = check_int("maxconnections", maxconnections or 0)
        self._closeable = bool(closeable)
        if threadlocal is not None:
            log.debug("PersistentDB: threadlocal is ignored; connections follow green threads")
        super().__init__(
            creator,
            args,
            kwargs,
            min_size=0,
            max_size=limit or _UNLIMITED,
            maxusage=maxusage,
            setsession=setsession,
            failures=failures,
            isfatal=isfatal,
            ping=ping,
            cleanup=cleanup_rollback,
            timeout=timeout,
            hub=hub,
            name=name,
            max_idle=max_idle,
            max_age=max_age,
            tpool=tpool,
        )

    def connection(self, shareable: bool = False) -> PersistentDBConnection:
        """The calling green thread's connection (the same object until it ends).

        ``shareable`` is ignored, as in DBUtils.  Waits up to ``timeout`` when
        ``maxconnections`` are all held, then raises ``TooManyConnections``.
        """
        self._return_ended()
        key = self.task_key()
        conn = self._keys.get(key)
        if conn is None:
            conn = self._keyed(key, lambda: self._bind(key), self.timeout)
        else:
            conn.checkout_check()
        return conn

    def dedicated_connection(self) -> PersistentDBConnection:
        """The same as :meth:`connection`."""
        return self.connection()

    def _bind(self, key: Any) -> PersistentDBConnection:
        lease = self._take(self.timeout)
        conn = PersistentDBConnection(self, lease, lease)
        object.__setattr__(conn, "_key", key)
        return conn

    def _release(self, handle: Any, lease: PooledConnectionWrapper) -> None:
        self._core.put(lease)

    def _ended(self, value: Any) -> None:
        PooledConnection.close(value)
