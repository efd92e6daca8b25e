"""Connection pools: RawConnectionPool, TpooledConnectionPool and their shared base.

The API is ``eventlet.db_pool``'s, so ``import greenpool as db_pool`` works for
code written against it; the pools run on eventlet, gevent and plain threads.

Each connection lives in an :class:`_Entry` (one per slot, long-lived);
the user holds a :class:`~greenpool.proxy.PooledConnectionWrapper` (one per
checkout).  Blocking work (connect, cleanup, close) happens outside the
pool's critical sections, through :meth:`BaseConnectionPool._blocking`,
which runs it in place (``RawConnectionPool``) or in an OS thread
(``TpooledConnectionPool``).
"""

from __future__ import annotations

import dis
import logging
import random
import sys
import traceback
import types
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Optional
from weakref import getweakrefcount

from . import _checks
from .backoff import ConnectGate
from .drivers import Driver, ReturnState, describe_target, driver_for
from .errors import ConnectTimeout, ForeignConnection, PoolClosed
from .health import resolve_check, socket_watch
from .hubs import HubSpec, resolve_hub
from .hubs.base import ThreadCallTimeout, original_lock
from .pool import Pool, PoolStats
from .proxy import (
    SOLE_HOLDER_REFS,
    UNHELD_REFS,
    Cell,
    PooledConnectionWrapper,
    ThreadProxy,
    _new_wrapper,
    _set_cell,
    new_cell,
    refcount,
)
from .proxy import detach as _detach
from .sweeper import Sweeper

__all__ = [
    "BaseConnectionPool",
    "RawConnectionPool",
    "TpooledConnectionPool",
    "ConnectionPool",
    "ConnectionPoolStats",
    "cleanup_rollback",
]

log = logging.getLogger(__name__)

_MISSING: Any = object()
_INF = float("inf")
_NEG_INF = -_INF

#: While callers wait, how often the sweeper looks for garbage-collected checkouts.
ORPHAN_POLL = 1.0

# Enum members looked up once: ``ReturnState.IDLE`` costs a class attribute lookup
# on every return otherwise.
_IDLE, _DIRTY, _BUSY, _CLOSED = (
    ReturnState.IDLE, ReturnState.DIRTY, ReturnState.BUSY, ReturnState.CLOSED
)

#: Connection ages are shortened by up to this fraction, at random, so connections
#: opened together do not all expire together.
AGE_JITTER = 0.05

#: A connection given back less than this long ago (seconds) is handed out without the
#: socket test.  The test is there for connections that sat idle (a server hanging up
#: on them); one passed straight from a caller to a waiter, as a busy pool does in well
#: under this, was not idle, and the test would cost a system call on every query.
SOCKET_TEST_AFTER = 0.005


def cleanup_rollback(conn: Any) -> None:
    """The default cleanup on return: roll back whatever the caller left open.

    The pool skips the round trip when the driver can tell that no
    transaction is open (psycopg2, PyMySQL, sqlite3).
    """
    conn.rollback()


class _Entry:
    """One pooled connection and its bookkeeping (one per slot).

    ``vetted_until`` lets a checkout, and a return, decide with one comparison
    whether the connection needs a closer look: last use + the quiet
    interval, capped by the age limit, and reset to minus infinity for every
    connection when a disconnect makes older ones suspect, on a drain and on
    close.  ``watch`` is the socket test of :func:`socket_watch`.
    """

    __slots__ = (
        "conn",
        "delegate",
        "serial",
        "created_at",
        "expires_at",
        "quiet_cutoff",
        "last_used",
        "vetted_until",
        "fd",
        "watch",
        "taken_at",
        "taken_where",
        "in_use",
        "generation",
        "revoked",
        "leak_reported",
        "pool",
        "cell",
        "spare",
    )

    def __init__(
        self, conn: Any, delegate: Any, serial: int, now: float, max_age: Any, quiet: float
    ) -> None:
        self.pool: Any = None
        self.conn = conn
        self.delegate = delegate
        self.serial = serial
        self.created_at = now
        if max_age is None:
            self.expires_at = float("inf")
        else:
            self.expires_at = now + max_age * (1.0 - AGE_JITTER * random.random())
        # Vetted at t, the connection needs no closer look until min(t + quiet,
        # expires_at): t + quiet while t < quiet_cutoff.  (inf - inf is nan, never
        # greater than t: then expires_at, infinite too.)
        self.quiet_cutoff = self.expires_at - quiet
        self.last_used = now
        self.vetted_until = now
        self.fd: Optional[int] = None
        self.watch: Any = None
        self.taken_at = now
        self.taken_where: Any = ""
        self.in_use = False
        self.generation = 0
        self.revoked = False  # force-closed by close(timeout) while checked out
        self.leak_reported = False
        # The cell of the wrapper last handed out, and that wrapper once it is back
        # (kept for reuse; never held while checked out, or a dropped one would live on).
        self.cell: Optional[Cell] = None
        self.spare: Optional[PooledConnectionWrapper] = None

    def __repr__(self) -> str:
        return f"<connection #{self.serial}>"


@dataclass(frozen=True)
class ConnectionPoolStats(PoolStats):
    """:class:`~greenpool.pool.PoolStats` plus connection counters."""

    opened: int
    closed: int
    connect_failures: int
    connect_timeouts: int
    expired: int
    lost: int
    bad_returns: int
    orphans: int
    wait_time: float
    usage_time: float


class _ConnectDeadline(BaseException):
    """Raised into a green connect at ``connect_timeout``.

    A BaseException, and not an OSError, so that drivers that turn socket
    errors into their own (PyMySQL does) let it through.
    """


#: Reasons to close a returned connection that count as "lost" in the stats.
_LOST_REASONS = frozenset(
    {"closed by its user or server", "cleanup failed", "returned in the middle of a query"}
)


class _PendingConnect:
    """A connect running in an OS thread that its caller may stop waiting for.

    If the caller gives up (``connect_timeout``, kill), the connection that
    arrives later is closed instead of orphaned.
    """

    __slots__ = ("_connect", "_close", "_lock", "_abandoned", "_conn", "_taken")

    def __init__(self, connect: Callable[[], Any], close: Callable[[Any], None]) -> None:
        self._connect = connect
        self._close = close
        self._lock = original_lock()
        self._abandoned = False
        self._conn: Any = None
        self._taken = False

    def run(self) -> Any:
        conn = self._connect()
        with self._lock:
            late = self._abandoned
            if not late:
                self._conn = conn
        if late:
            self._close(conn)
        return conn

    def abandon_unless_taken(self) -> None:
        """The caller is leaving: unless it got the connection, make sure it is closed."""
        with self._lock:
            if self._taken:
                return
            self._abandoned = True
            conn, self._conn = self._conn, None
        if conn is not None:
            self._close(conn)

    def take(self, conn: Any) -> Any:
        with self._lock:
            self._taken = True
        return conn


#: What counts as "the connection is bad" when the driver's own errors are unknown.
_ANY_ERROR: tuple[type[BaseException], ...] = (Exception,)


def _driver_errors(module: Any) -> tuple[type[BaseException], ...]:
    """The exceptions that mean a health check or cleanup failed: the driver's own
    (PEP 249 ``Error``) and socket errors.  Anything else raised meanwhile (a
    caller's hub timeout carrying an ``Exception``, say) is the caller's, and
    propagates after the connection is closed."""
    error = getattr(module, "Error", None)
    if isinstance(error, type) and issubclass(error, Exception):
        return (error, OSError)
    package = sys.modules.get(getattr(module, "__name__", "").split(".")[0])
    error = getattr(package, "Error", None)
    if isinstance(error, type) and issubclass(error, Exception):
        return (error, OSError)
    return _ANY_ERROR


def _where(entry: _Entry) -> str:
    """Where an entry was checked out, for log messages."""
    where = entry.taken_where
    if isinstance(where, tuple):
        code, offset = where
        return f"{code.co_filename}:{_line_at(code, offset)} in {code.co_name}"
    return str(where) or (
        "an unknown place: the pool names it from now on, or pass leak_timeout= "
        "for the whole stack"
    )


def _line_at(code: types.CodeType, offset: int) -> Optional[int]:
    """The source line of the instruction at byte ``offset`` of ``code`` (a frame's
    ``f_lasti``, recorded at checkout because it is cheaper than ``f_lineno``)."""
    line = None
    for start, lineno in dis.findlinestarts(code):
        if start > offset:
            break
        if lineno is not None:
            line = lineno
    return line


class _Checkout:
    """The context manager of :meth:`BaseConnectionPool.item` (a class: it is on
    the hot path, and a generator-based one costs several times more).

    Made by ``item()`` without an ``__init__`` call, which would cost a quarter
    of the rest; ``_conn`` is set by ``__enter__``.
    """

    __slots__ = ("_pool", "_timeout", "_cleanup", "_conn")

    _pool: BaseConnectionPool
    _timeout: Any
    _cleanup: Any
    _conn: Any  # the wrapper, between __enter__ and __exit__

    def __enter__(self) -> PooledConnectionWrapper:
        pool = self._pool
        conn = self._conn = pool.get(self._timeout)
        if pool._track_takers and pool.leak_timeout is None:
            # get() recorded this frame as where the connection was taken: name the caller's.
            frame = sys._getframe(1)
            conn._cell.entry.taken_where = (frame.f_code, frame.f_lasti)
        return conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        conn = self._conn
        self._conn = None
        if conn._cell.entry is not None:  # unless given back in the block
            if exc_type is None:
                self._pool.put(conn, self._cleanup)
            else:
                self._pool._return_after_error(conn, exc, self._cleanup)


class BaseConnectionPool(Pool[_Entry]):
    """A pool of DB-API connections; the base of the raw and tpooled pools.

    ``db_module`` is a DB-API module (its ``connect`` is used) or a connect
    callable; ``*args`` and ``**kwargs`` go to it.  Positional options as in
    ``eventlet.db_pool``:

    * ``min_size`` (0): connections opened at once and kept open.
    * ``max_size`` (4): the most connections open at a time.
    * ``max_idle`` (10 s): an idle connection is closed after this long; 0
      closes every connection when it is returned; None never.
    * ``max_age`` (30 s): a connection is closed once this old (minus up to
      5 % jitter), at its next return or while idle; 0 closes every
      connection on return; None never.
    * ``connect_timeout`` (5 s): :meth:`get` raises
      :class:`~greenpool.errors.ConnectTimeout` when opening a connection
      takes longer; None waits for ever.
    * ``cleanup`` (:func:`cleanup_rollback`): called with the raw connection
      on return; a connection whose cleanup raises is closed.

    Keyword-only: ``timeout`` (None: the default wait of :meth:`get` for a
    free connection), ``hub``, ``name``, ``max_waiting``, ``order_as_stack``
    (True: reuse the most recently returned connection first, so surplus
    connections go idle and expire), ``connect_kwargs`` (a dict of driver
    arguments whose names the pool itself uses, such as the driver's own
    ``connect_timeout``).

    Reliability options (keyword-only):

    * ``check`` ("ping"): the health check at checkout: "ping" (the driver's
      cheap liveness test), "off"/None, SQL text, or a callable taking the raw
      connection.  A closed connection, or an idle one whose socket is readable
      (the server hung up), is caught first without a round trip; the round
      trip is skipped for a connection used within ``check_interval`` (0.5 s).
      A connection that fails is closed and another one tried.
    * ``leak_timeout`` (None): a connection held longer is logged once, with
      the stack that took it.
    * ``reconnect_backoff`` ((0.05, 2.0)): after a failed connect, the first and
      longest delay before the next attempt; meanwhile one caller at a time
      tries, and others fail with :class:`~greenpool.errors.DatabaseUnavailable`
      when their timeout passes.

    For psycopg2 and PyMySQL the driver's own connect timeout is set a little
    above ``connect_timeout`` unless given in ``connect_kwargs``, so that a
    connect the pool gave up on in an OS thread ends and closes its socket.
    """

    __slots__ = (
        "timeout", "max_idle", "max_age", "connect_timeout", "check_interval",
        "leak_timeout", "connect_args", "connect_kwargs", "target", "_module", "_connect_fn",
        "_cleanup", "_driver", "_driver_errors", "_backstop", "_check", "_quiet",
        "_plain_return", "_green_open", "_idle_probe", "_idle_reading",
        "_closed", "_generation", "_suspect_before",
        "_entries", "_serials", "_orphans", "_gate", "_sweeper", "_opened", "_closed_count",
        "_connect_failures", "_connect_timeouts", "_expired", "_lost", "_bad_returns",
        "_orphan_count", "_usage_time", "_wait_time", "_track_takers", "_kept_wrappers",
    )

    def __init__(
        self,
        db_module: Any,
        min_size: int = 0,
        max_size: int = 4,
        max_idle: Optional[float] = 10,
        max_age: Optional[float] = 30,
        connect_timeout: Optional[float] = 5,
        cleanup: Optional[Callable[[Any], Any]] = cleanup_rollback,
        *args: Any,
        timeout: Optional[float] = None,
        hub: HubSpec = None,
        name: Optional[str] = None,
        max_waiting: Optional[int] = None,
        order_as_stack: bool = True,
        connect_kwargs: Optional[dict[str, Any]] = None,
        check: Any = "ping",
        check_interval: float = 0.5,
        leak_timeout: Optional[float] = None,
        reconnect_backoff: tuple[float, float] = (0.05, 2.0),
        **kwargs: Any,
    ) -> None:
        if isinstance(db_module, types.ModuleType) or (
            hasattr(db_module, "connect") and callable(db_module.connect)
        ):
            self._module: Any = db_module
            self._connect_fn: Callable[..., Any] = db_module.connect
        elif callable(db_module):
            self._module = None
            self._connect_fn = db_module
        else:
            raise TypeError(
                f"db_module must be a DB-API module or a connect callable, got {db_module!r}"
            )
        self.max_idle = _checks.check_seconds("max_idle", max_idle)
        self.max_age = _checks.check_seconds("max_age", max_age)
        self.connect_timeout = _checks.check_seconds("connect_timeout", connect_timeout)
        self.timeout = _checks.check_seconds("timeout", timeout)
        self._cleanup = _checks.check_callable("cleanup", cleanup)
        if connect_kwargs is not None and not isinstance(connect_kwargs, dict):
            raise TypeError(f"connect_kwargs must be a dict, got {type(connect_kwargs).__name__}")
        self._use_driver(driver_for(db_module))
        self._driver_errors = _driver_errors(db_module)
        merged = dict(kwargs)
        if connect_kwargs:
            merged.update(connect_kwargs)
        # The driver's own timeouts, a little longer than the pool's, unless given.
        self._backstop: dict[str, Any] = {}
        if self._module is not None:
            for key, value in self._driver.connect_timeout_kwargs(self.connect_timeout).items():
                if key not in merged:
                    merged[key] = self._backstop[key] = value
        self.connect_args = args
        self.connect_kwargs = merged
        self.target = describe_target(args, merged)
        self._check = resolve_check(check, self._driver)
        interval = _checks.check_seconds("check_interval", check_interval, allow_none=False)
        self.check_interval: float = interval or 0.0
        self.leak_timeout = _checks.check_seconds("leak_timeout", leak_timeout)
        self._track_takers = self.leak_timeout is not None
        # How long a connection may sit idle and still be handed out unchecked.
        quiet = self.check_interval if self._check is not None else float("inf")
        self._quiet = quiet if self.max_idle is None else min(quiet, self.max_idle)
        if (
            not isinstance(reconnect_backoff, tuple)
            or len(reconnect_backoff) != 2
            or not all(isinstance(v, (int, float)) and v > 0 for v in reconnect_backoff)
            or reconnect_backoff[0] > reconnect_backoff[1]
        ):
            raise ValueError(
                "reconnect_backoff must be (first delay, longest delay) in seconds, "
                f"0 < first <= longest, got {reconnect_backoff!r}"
            )
        self._closed = False
        self._generation = 0
        self._suspect_before = float("-inf")
        hub = resolve_hub(hub)
        # Checkouts may take get()'s short path: green hub, pool open, no orphan queued
        # (see _collect_orphans).
        self._green_open = not hub.preemptive
        # Every live entry (made in create, dropped when closed): scanned for leaks and by
        # close(timeout), so that checkout and return need no bookkeeping of their own.
        self._entries: set[_Entry] = set()
        self._serials = 0
        # (entry, cell) of wrappers collected while checked out; see PooledConnectionWrapper.
        self._orphans: Deque[tuple[_Entry, Cell]] = deque()
        # Returned wrappers that were still held when their entry was next checked out,
        # oldest first, for reuse once nobody holds them: see the end of get().
        self._kept_wrappers: Deque[PooledConnectionWrapper] = deque()
        self._opened = self._closed_count = self._connect_failures = 0
        self._connect_timeouts = self._expired = self._lost = self._bad_returns = 0
        self._orphan_count = 0
        self._usage_time = 0.0
        self._wait_time = 0.0  # in get() beyond the fast path: waiting, or connecting
        self._gate = ConnectGate(
            hub,
            f"{type(self).__name__} {name!r}" if name else type(self).__name__,
            *reconnect_backoff,
        )
        self._sweeper = Sweeper(self, hub)
        super().__init__(
            min_size,
            max_size,
            order_as_stack,
            hub=hub,
            name=name,
            max_waiting=max_waiting,
        )
        self._plain_return = self._returns_plainly()

    def _returns_plainly(self) -> bool:
        """Whether returns may take put()'s short path: with the pool's cleanup the
        rollback (skipped when no transaction is open), idle reuse allowed, and the
        pool not above its size (resize)."""
        return (
            self.max_idle != 0
            and self._cleanup in (None, cleanup_rollback)
            and self.current_size <= self.max_size
        )

    def resize(self, new_size: int) -> None:
        self._plain_return = False  # returns meanwhile retire surplus connections
        try:
            super().resize(new_size)
        finally:
            self._plain_return = self._returns_plainly()

    def _use_driver(self, driver: Driver) -> None:
        self._driver = driver
        self._idle_probe, self._idle_reading = driver.idle_probe()

    def _create_item(self, deadline: Optional[float]) -> _Entry:
        gate = self._gate
        ticket = gate.enter(deadline)
        try:
            entry = self.create()
        except BaseException as exc:
            if isinstance(exc, Exception):
                gate.failed(exc, ticket)
            else:
                gate.leave()
            raise
        gate.succeeded()
        return entry

    # -- blocking work: in place, or in an OS thread (TpooledConnectionPool) ------------

    #: Whether connects run in an OS thread on green hubs (always on the threads hub,
    #: so that connect_timeout holds there too).
    connect_in_thread = False

    def _blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run blocking driver work; overridden to use an OS thread."""
        return fn(*args)

    def _delegate(self, conn: Any) -> Any:
        """What the user's wrapper forwards to: the connection itself here."""
        return conn

    # -- opening and closing ---------------------------------------------------------

    def connect(
        self, db_module: Any, connect_timeout: Optional[float], /, *args: Any, **kw: Any
    ) -> Any:
        """Open one raw connection (eventlet's signature; kept for subclasses).

        The timeout is enforced by the caller, :meth:`create`.
        """
        return self._connect_fn(*args, **kw)

    def _connect_raw(self) -> Any:
        conn = self.connect(
            self._module, self.connect_timeout, *self.connect_args, **self.connect_kwargs
        )
        if self._backstop:
            self._driver.after_connect(conn, self._backstop)
        return conn

    def _open(self) -> Any:
        """Open a raw connection within ``connect_timeout``.

        Green hubs interrupt a green connect with the hub's timeout; an OS-thread
        connect (TpooledConnectionPool, or any pool on the threads hub) is waited
        for with a timeout and, if it arrives late, closed.
        """
        seconds = self.connect_timeout
        if self.connect_in_thread or not self.hub.can_interrupt:
            if seconds is None and not self.connect_in_thread:
                return self._connect_raw()
            pending = _PendingConnect(self._connect_raw, self._close_late)
            try:
                return pending.take(self.hub.run_in_thread(pending.run, timeout=seconds))
            except ThreadCallTimeout:
                pass  # raised below, outside this handler
            finally:
                pending.abandon_unless_taken()
        else:
            deadline = _ConnectDeadline()
            try:
                with self.hub.timeout(seconds, deadline):
                    return self._connect_raw()
            except _ConnectDeadline as exc:
                if exc is not deadline:
                    raise
            # Raised below, with no exception context, and the deadline's traceback
            # dropped: the interrupted connect's frames (and the driver's half-open
            # connection in them) are let go at once, closing its socket.
            deadline.__traceback__ = None
            del deadline
        with self._lock:
            self._connect_timeouts += 1
        log.warning(
            "%s: connecting to %s took longer than connect_timeout=%s s",
            self._label(), self.target, seconds,
        )
        raise ConnectTimeout(
            f"{self._label()}: connecting to {self.target} took longer than "
            f"connect_timeout={seconds} s"
        )

    def create(self) -> _Entry:
        """Open a connection and wrap it in a new entry (called by the pool core)."""
        # A drain() or a disconnect during the connect: the new connection is
        # replaced, or checked, at its first checkout.
        generation, suspect_before = self._generation, self._suspect_before
        try:
            conn = self._open()
        except BaseException as exc:
            with self._lock:
                self._connect_failures += 1
            if isinstance(exc, Exception) and not isinstance(exc, ConnectTimeout):
                log.warning("%s: connect to %s failed: %s", self._label(), self.target, exc)
            raise
        now = self._clock()
        with self._lock:
            self._serials += 1
            self._opened += 1
            serial = self._serials
        if self._module is None and self._driver_errors is _ANY_ERROR:
            self._use_driver(driver_for(conn))
            self._driver_errors = _driver_errors(sys.modules.get(type(conn).__module__))
        entry = _Entry(conn, self._delegate(conn), serial, now, self.max_age, self._quiet)
        entry.generation = generation
        self._touch(entry, now)
        if generation != self._generation or suspect_before != self._suspect_before:
            entry.vetted_until = _NEG_INF
        if self._check is not None:
            entry.fd = self._driver.fileno(conn)
            entry.watch = socket_watch(entry.fd)
        entry.pool = self
        self._entries.add(entry)
        log.debug("%s: opened connection #%d to %s", self._label(), serial, self.target)
        self._schedule_sweep()
        return entry

    def _close_late(self, conn: Any) -> None:
        log.info("%s: a connection arrived after its connect timed out; closing it", self._label())
        self._close_raw(conn)

    def _close_raw(self, conn: Any) -> None:
        try:
            conn.close()
        except Exception as exc:  # closing a broken connection may fail; it is gone anyway
            log.debug("%s: closing a connection raised %r", self._label(), exc)

    def _discard(self, entry: _Entry, why: str, lost: bool = False) -> None:
        """Close an entry's connection and free its slot (for a waiter to create anew)."""
        try:
            self._close_entry(entry, why, lost)
        finally:
            self._release_slot()

    def _retire(self, entry: _Entry) -> None:
        # The pool shrank (resize), was cleared or swept: the slot is already gone.
        self._close_entry(entry, "retired", lost=False)

    def _close_entry(self, entry: _Entry, why: str, lost: bool) -> None:
        try:
            self._blocking(self._close_raw, entry.conn)
        finally:
            self._entries.discard(entry)  # only now: close(timeout) waits for this
            with self._lock:
                self._closed_count += 1
                if lost:
                    self._lost += 1
            log.debug("%s: closed connection #%d (%s)", self._label(), entry.serial, why)

    # -- expiry ------------------------------------------------------------------------

    def _is_expired(self, entry: _Entry, now: float) -> bool:
        """Past max_age, or idle past max_idle while the pool is above min_size."""
        if now >= entry.expires_at:
            return True
        max_idle = self.max_idle
        return (
            max_idle is not None
            and now - entry.last_used >= max_idle
            and self.current_size > self.min_size
        )

    def _deadline(self, entry: _Entry, idle_since: float) -> float:
        """When ``entry``, idle from ``idle_since`` on, may expire."""
        max_idle = self.max_idle
        if max_idle is None or self.current_size <= self.min_size:
            return entry.expires_at
        return min(entry.expires_at, idle_since + max_idle)

    def _next_sweep(self, now: float) -> float:
        """The earliest time a connection may expire idle, counting every connection
        not idle now (in use, being opened or closed) as if it went idle at ``now``.

        A connection returned later can only expire later than that, so put()
        never has to bring the sweep forward; the sweeper wakes at most once
        per ``max_idle`` while connections are in use, and sleeps on otherwise.
        Opening a connection may make idle ones expirable (above ``min_size``):
        create() reschedules.
        """
        with self._lock:
            idle = set(self.free_items)
            # A copy: connections are added and discarded outside the lock (by
            # other OS threads, on the threads hub), and _deadline() is Python code.
            return min(
                (self._deadline(entry, entry.last_used if entry in idle else now)
                 for entry in list(self._entries)),
                default=_INF,
            )

    def _schedule_sweep(self) -> None:
        soonest = self._next_sweep(self._clock())
        if soonest != _INF:
            self._sweeper.schedule(soonest)

    def _sweep(self) -> Optional[float]:
        """Close idle connections past max_idle/max_age, report leaks; the next deadline.

        Called by the sweeper.  Tops the pool back up to ``min_size``.
        """
        self._collect_orphans()
        now = self._clock()
        expired: list[_Entry] = []
        with self._lock:
            if self._closed:
                return None
            keep: Deque[_Entry] = deque()
            for entry in self.free_items:
                # One at a time, so that idle expiry stops at min_size.
                if self._is_expired(entry, now):
                    expired.append(entry)
                    self.current_size -= 1
                else:
                    keep.append(entry)
            if expired:
                self.free_items.clear()
                self.free_items.extend(keep)
                self._expired += len(expired)
            missing = self.min_size - self.current_size
        for entry in expired:
            self._retire(entry)
            log.debug("%s: connection #%d expired", self._label(), entry.serial)
        deadlines = [self._next_sweep(now)]
        if self.leak_timeout is not None:
            deadlines.extend(self._report_leaks(now, self.leak_timeout))
        if self._waiters:
            deadlines.append(now + ORPHAN_POLL)
        if missing > 0:
            self.hub.spawn(self._top_up, missing)
        soonest = min(deadlines, default=float("inf"))
        return None if soonest == float("inf") else soonest

    def _report_leaks(self, now: float, leak_timeout: float) -> list[float]:
        """Log connections held past ``leak_timeout`` (once each); their next deadlines."""
        pending = []
        for entry in list(self._entries):
            if not entry.in_use or entry.leak_reported:
                continue
            due = entry.taken_at + leak_timeout
            if now < due:
                pending.append(due)
                continue
            entry.leak_reported = True
            log.warning(
                "%s: connection #%d has been checked out for %.1f s (leak_timeout=%s s); "
                "taken at:\n%s",
                self._label(), entry.serial, now - entry.taken_at, leak_timeout,
                _where(entry),
            )
        return pending

    def _top_up(self, count: int) -> None:
        for _ in range(count):
            with self._lock:
                if self._closed or self.current_size >= self.min_size:
                    return
                self.current_size += 1
                self._creating += 1
            try:
                entry = self._create_in_slot()
            except Exception as exc:
                log.warning("%s: could not reopen a min_size connection: %s", self._label(), exc)
                return
            self._touch(entry, self._clock())
            if self._closed:
                self._discard(entry, "pool closed")
                return
            self._dispatch(entry)

    # -- checkout ------------------------------------------------------------------------

    def get(self, timeout: Optional[float] = _MISSING) -> PooledConnectionWrapper:  # type: ignore[override]
        """Check out a connection: an idle one, a new one, or the next one returned.

        ``timeout`` (default: the pool's ``timeout``, None to wait for ever)
        bounds the wait for a connection to come back; it raises
        :class:`~greenpool.errors.PoolTimeout`.  Opening a connection is bounded
        by ``connect_timeout`` (:class:`~greenpool.errors.ConnectTimeout`); while
        the database is down, :class:`~greenpool.errors.DatabaseUnavailable`.
        A connection that is expired or fails its health check is closed and
        another one taken.  Raises :class:`~greenpool.errors.PoolClosed` after
        :meth:`close`.
        """
        free = self.free_items
        if free and self._green_open:
            # Fast path, Pool.get inlined: on a green hub nothing else runs meanwhile.
            self._requests += 1
            entry = free.popleft()
            # (Read into a local: a slot holding a builtin defeats LOAD_METHOD's fast path.)
            clock = self._clock
            now = started = clock()
        else:
            if not self._green_open:  # closed, orphans queued, or OS threads
                if self._closed:
                    raise PoolClosed(f"{self._label()} is closed")
                if self._orphans:
                    self._collect_orphans()
            if timeout is _MISSING:
                timeout = self.timeout
            clock = self._clock
            started = clock()
            if self._green_open and self.current_size >= self.max_size:
                # Full, on a green hub (nothing else runs until the wait): queue at once,
                # without Pool.get()'s tests, all made here.
                self._requests += 1
                entry = self._await_item(self._enqueue_locked(), timeout)
            else:
                entry = Pool.get(self, timeout)  # waits for a connection, or opens one
            now = clock()
            self._wait_time += now - started
            if self._closed:  # while this caller waited or connected
                self._refuse(entry)
        # One comparison decides whether the connection needs a closer look; the
        # socket test (one poll() call) is made even within check_interval, unless
        # the connection came straight from another caller.
        watch = entry.watch
        if (
            now >= entry.vetted_until
            or (watch is not None and now - entry.last_used >= SOCKET_TEST_AFTER
                and watch.poll(0))
        ):
            if timeout is _MISSING:
                timeout = self.timeout
            entry, now = self._vetted(entry, now, timeout, started)
            if self._closed:  # during the health check
                self._refuse(entry)
        entry.in_use = True
        entry.taken_at = now
        if self._track_takers:
            if self.leak_timeout is None:
                frame = sys._getframe(1)
                entry.taken_where = (frame.f_code, frame.f_lasti)  # formatted only if needed
            else:
                self._note_taker(entry, now)
        # The wrapper handed out last time, unless anybody still holds it: see
        # SOLE_HOLDER_REFS.
        wrapper = entry.spare
        if (
            wrapper is not None
            and refcount(wrapper) == SOLE_HOLDER_REFS
            and getweakrefcount(wrapper) == 0
        ):
            entry.spare = None
            entry.cell.entry = entry  # type: ignore[union-attr]
            return wrapper
        # The spare is missing or still held: by a loop that keeps its last connection
        # in a variable while it checks out the next (``conn = pool.get()`` at the top
        # of a ``while``), or, under contention, by a caller waiting in the queue with
        # it in that variable until its turn comes.  Held spares go to a pool-wide
        # deque and are handed out from it, oldest first, once nobody holds them (such
        # a loop alternates two wrappers); one still held goes back to its end, and one
        # held for good falls out when the deque outgrows one per waiter and connection.
        kept = self._kept_wrappers
        if wrapper is not None:
            kept.append(wrapper)
            entry.spare = None
        wrapper = kept.popleft() if kept else None  # popped first: safe across threads
        if wrapper is not None and (
            refcount(wrapper) != UNHELD_REFS or getweakrefcount(wrapper) != 0
        ):
            if len(kept) < len(self._waiters) + self.max_size:
                kept.append(wrapper)
            wrapper = None
        if wrapper is None:
            wrapper = _new_wrapper(PooledConnectionWrapper)  # see _new_wrapper
            cell = new_cell(entry)
            _set_cell(wrapper, cell)
        else:
            cell = wrapper._cell
            cell.entry = entry
        entry.cell = cell
        return wrapper

    def _refuse(self, entry: _Entry) -> None:
        """The pool was closed while get() waited, connected or checked ``entry``."""
        self._discard(entry, "pool closed")
        raise PoolClosed(f"{self._label()} was closed during get()")

    def _note_taker(self, entry: _Entry, now: float) -> None:
        """Record the full stack of the checkout, for leak reports."""
        entry.leak_reported = False
        entry.taken_where = "".join(traceback.format_stack(sys._getframe(2), limit=12))
        self._sweeper.schedule(now + self.leak_timeout)  # type: ignore[operator]

    def _touch(self, entry: _Entry, now: float) -> None:
        """The connection was known good at ``now``: no closer look until the quiet
        interval has passed (or its age runs out), unless :meth:`_revet_all`."""
        entry.last_used = now
        entry.vetted_until = now + self._quiet if now < entry.quiet_cutoff else entry.expires_at

    def _suspect_older(self, now: float) -> None:
        """A connection was found dead: every one last vetted before ``now`` is suspect."""
        self._suspect_before = now
        self._revet_all()

    def _revet_all(self) -> None:
        """Every connection gets a closer look at its next checkout and return."""
        for entry in list(self._entries):
            entry.vetted_until = _NEG_INF

    def _socket_hung_up(self, entry: _Entry) -> bool:
        """The zero-round-trip test; the watch follows the driver's descriptor, which
        changes if the user reconnected the connection (PyMySQL's ``ping()``)."""
        fd = self._driver.fileno(entry.conn)
        if fd != entry.fd:
            entry.fd = fd
            entry.watch = socket_watch(fd)
        watch = entry.watch
        return watch is not None and bool(watch.poll(0))

    def _vetted(
        self, entry: _Entry, now: float, timeout: Optional[float], started: float
    ) -> tuple[_Entry, float]:
        """Check ``entry`` and, while it is bad, close it and take another.

        ``timeout`` counts from ``started``, the start of the caller's get().
        """
        while True:
            if entry.cell is None:
                return entry, now  # never handed out: its connect was the test
            try:
                problem = self._checkout_problem(entry, now)
            except BaseException:
                self._discard(entry, "interrupted during its health check", lost=True)
                raise
            if problem is None:
                return entry, now
            self._discard(entry, problem, lost=problem != "expired")
            left = None if timeout is None else max(0.0, started + timeout - now)
            entry = Pool.get(self, left)
            now = self._clock()

    def _checkout_problem(self, entry: _Entry, now: float) -> Optional[str]:
        """Why a pooled connection must not be handed out, or None if it may.

        Local tests first (age, drain, closed flag, socket); the round trip
        only for a connection that was used before and not within
        ``check_interval``, or before the last disconnect.
        """
        if self._is_expired(entry, now):
            with self._lock:
                self._expired += 1
            return "expired"
        if entry.generation != self._generation:
            return "drained"
        check = self._check
        if check is None:
            return None
        conn = entry.conn
        driver = self._driver
        if driver.is_closed(conn):
            return "found closed at checkout"
        if self._socket_hung_up(entry):
            self._suspect_older(now)
            return "server hung up while it was idle"
        if now - entry.last_used < self.check_interval and entry.last_used > self._suspect_before:
            return None
        try:
            self._blocking(check, conn)
            if driver.return_state(conn) is _DIRTY:
                self._blocking(conn.rollback)  # the check must not leave a transaction open
        except self._driver_errors as exc:
            self._suspect_older(now)
            log.warning(
                "%s: connection #%d failed its health check, closing it: %r",
                self._label(), entry.serial, exc,
            )
            return "failed its health check"
        self._touch(entry, now)
        return None

    def _first_waiter(self) -> None:
        # Connections whose wrappers were garbage collected are only queued by the
        # collector (see PooledConnectionWrapper); while anyone waits, the sweeper
        # wakes at least every ORPHAN_POLL seconds to reclaim them (each sweep
        # schedules the next while the queue is not empty), so that the waits
        # themselves stay single plain waits.  Arming a timer never yields.
        self._sweeper.schedule(self._clock() + ORPHAN_POLL)

    # -- return --------------------------------------------------------------------------

    def item(
        self, timeout: Optional[float] = _MISSING, cleanup: Any = _MISSING
    ) -> _Checkout:
        """``with pool.item() as conn:`` checks a connection out and always gives it back.

        If the block raises a disconnect-class error (per driver), or is
        interrupted by a hub ``Timeout``, ``kill()`` or another
        ``BaseException`` (the connection may be mid-query), the connection is
        closed instead of reused.
        """
        checkout = _Checkout()
        checkout._pool = self
        checkout._timeout = timeout
        checkout._cleanup = cleanup
        return checkout

    def _return_after_error(self, conn: PooledConnectionWrapper, exc: BaseException,
                            cleanup: Any) -> None:
        entry = conn._entry
        if entry is None:
            return
        if not isinstance(exc, Exception):
            reason = f"interrupted by {type(exc).__name__}"
        elif self._driver.is_disconnect(entry.conn, exc):
            reason = "disconnected"
            self._suspect_older(self._clock())
        else:
            self.put(conn, cleanup)
            return
        taken = self._take_back(conn)
        if taken is not None:
            self._discard(taken, reason, lost=True)

    def put(self, conn: Any, cleanup: Any = _MISSING) -> None:
        """Give a checked-out connection back.

        Runs ``cleanup`` (the pool's unless given; None for none) on the raw
        connection; a connection that is closed, broken, expired, drained, or
        whose cleanup fails is closed and its slot freed.  ``put(None)`` frees
        the slot of a connection the caller lost, as in eventlet.  Raises
        :class:`~greenpool.errors.ForeignConnection`, changing nothing, for a
        connection this pool did not hand out or that was already returned.
        """
        try:
            # The common return, taken whole or not at all: a wrapper of this pool still
            # checked out (anything else fails here), with the pool's own cleanup, in a
            # pool that allows it (_returns_plainly), within the connection's quiet
            # interval (so not too old, and no drain or close since), and the driver
            # sure that no transaction is open.  (Callables kept in slots are read into
            # locals first: a slot holding one defeats LOAD_METHOD's fast path.)
            clock = self._clock
            probe = self._idle_probe
            cell = conn._cell
            entry = cell.entry
            common = (
                entry.pool is self
                and entry.in_use
                and cleanup is _MISSING
                and self._plain_return
                and (now := clock()) < entry.vetted_until
                and probe(entry.conn) is self._idle_reading
            )
        except Exception:
            # None, a returned or foreign connection, or a probe that failed:
            # _return_checked() sorts it out.
            common = False
        locked = False
        if common and not self._cooperative:
            # OS threads: what another thread may have changed since is tested again
            # under the lock (a second put() of this wrapper, close(), drain(), resize()).
            self._lock.acquire()
            locked = True
            if not (
                cell.entry is entry
                and entry.in_use
                and self._plain_return
                and not self._closed
                and entry.generation == self._generation
                and self.current_size <= self.max_size
            ):
                self._lock.release()
                locked = common = False
        if common:
            try:
                cell.entry = None  # the wrapper is returned: false and unusable
                entry.in_use = False
                entry.spare = conn
                self._usage_time += now - entry.taken_at
                # _touch(), inlined: this is the path of nearly every return.
                entry.last_used = now
                entry.vetted_until = (
                    now + self._quiet if now < entry.quiet_cutoff else entry.expires_at
                )
                # To the oldest waiter if any, else to the idle list: Pool.put, inlined.
                # (The sweeper needs no word: see _next_sweep.)
                waiters = self._waiters
                if waiters:
                    waiter = waiters.popleft()
                    waiter.value = entry
                    waiter.set()  # never switches; on threads, releases the waiter's lock
                else:
                    file_idle = self._file_idle
                    file_idle(entry)
            finally:
                if locked:
                    self._lock.release()
            return
        if conn is None:
            self._put_none()
        else:
            self._return_checked(conn, cleanup)

    def _return_checked(self, conn: Any, cleanup: Any) -> None:
        """put() beyond the common case: validated under the lock, cleaned up, checked."""
        entry = self._take_back(conn)
        if entry is None:
            return
        now = self._clock()
        self._usage_time += now - entry.taken_at
        try:
            reason = self._check_return(entry, now, cleanup)
        except BaseException:
            # Interrupted (timeout, kill) during cleanup: the connection's state is
            # unknown, so it is closed; the slot is never leaked.
            self._discard(entry, "interrupted during cleanup", lost=True)
            raise
        if reason is None and self._closed:
            reason = "pool closed"  # closed while the cleanup ran
        if reason is not None:
            self._discard(entry, reason, lost=reason in _LOST_REASONS)
            return
        self._touch(entry, now)
        self._dispatch(entry)  # retires it instead if the pool is above its size
        if not self._plain_return:
            self._plain_return = self._returns_plainly()  # back to size since a resize?

    def _take_back(self, conn: Any) -> Optional[_Entry]:
        """Detach a wrapper from its checkout and validate ownership.

        Returns the entry, or None when the pool already took the connection
        back by force (``close(timeout)``).
        """
        with self._lock:
            if not isinstance(conn, PooledConnectionWrapper):
                self._bad_returns += 1
                raise ForeignConnection(
                    f"{self._label()}: put() takes the wrapper returned by get(), "
                    f"not {type(conn).__name__}"
                )
            entry = conn._entry
            if entry is None or entry.pool is not self or not (entry.in_use or entry.revoked):
                self._bad_returns += 1
                raise ForeignConnection(
                    f"{self._label()}: this connection was not checked out of this pool "
                    "or was already returned"
                )
            _detach(conn)
            if entry.revoked:
                return None
            entry.in_use = False
            entry.spare = conn
            return entry

    def _check_return(self, entry: _Entry, now: float, cleanup: Any) -> Optional[str]:
        """Clean the connection up; the reason to close it instead, or None to keep it."""
        if self._closed:
            return "pool closed"
        if entry.generation != self._generation:
            return "drained"
        # Only age counts here: the time it was checked out is not idle time.
        if now >= entry.expires_at or self.max_idle == 0:
            with self._lock:
                self._expired += 1
            return "expired"
        conn = entry.conn
        state = self._driver.return_state(conn)
        if state is _CLOSED:
            self._suspect_older(now)
            return "closed by its user or server"
        if state is _BUSY:
            return "returned in the middle of a query"
        if cleanup is _MISSING:
            cleanup = self._cleanup
        if cleanup is None or (cleanup is cleanup_rollback and state is _IDLE):
            return None
        try:
            self._blocking(cleanup, conn)
        except self._driver_errors as exc:
            log.warning(
                "%s: cleanup of connection #%d failed, closing it: %r",
                self._label(), entry.serial, exc,
            )
            return "cleanup failed"
        return None

    def _put_none(self) -> None:
        """eventlet's ``put(None)``: a connection died in the caller's hands; free a slot."""
        with self._lock:
            self._lost += 1
        self._release_slot()

    def _collect_orphans(self) -> None:
        """Reclaim connections whose wrappers were garbage collected while checked out."""
        while True:
            # A wrapper's __del__ queues its orphan and then turns get()'s short path
            # off; it is turned back on only before a look that finds the queue empty,
            # so it is never on while an orphan waits.
            self._green_open = self._cooperative and not self._closed
            try:
                entry, cell = self._orphans.popleft()
            except IndexError:
                return
            with self._lock:
                if not entry.in_use or entry.cell is not cell:
                    continue  # returned or revoked since (a wrapper's cell is its own)
                entry.in_use = False
                self._orphan_count += 1
                # Where connections are taken is recorded from the first orphan on: it
                # costs a tenth of a checkout, and a leak in the code repeats.
                self._track_takers = True
            log.warning(
                "%s: connection #%d was garbage collected without being returned "
                "(taken at %s); closing it",
                self._label(), entry.serial, _where(entry),
            )
            self._discard(entry, "orphaned", lost=True)

    # -- whole pool ---------------------------------------------------------------------

    def clear(self) -> None:
        """Close every idle connection now (checked-out ones are untouched)."""
        with self._lock:
            idle = list(self.free_items)
            self.free_items.clear()
            self.current_size -= len(idle)
        for entry in idle:
            self._retire(entry)
        # A waiter may now create in a freed slot.
        with self._lock:
            grants = self._grant_locked()
        for waiter in grants:
            waiter.set()

    def close(self, timeout: Optional[float] = None) -> None:
        """Close the pool: no further checkouts, idle connections closed at once.

        Waiters get :class:`~greenpool.errors.PoolClosed`.  Connections still
        checked out are closed when they come back; with ``timeout`` (seconds),
        ``close`` waits up to that long for them and then closes them under
        their users (whose next use fails).  Idempotent.
        """
        timeout = _checks.check_seconds("timeout", timeout)
        self._closed = True
        self._green_open = False
        self._revet_all()  # no return takes the fast path any more
        self._sweeper.stop()
        self._close_waiters()
        self.clear()
        self._kept_wrappers.clear()
        if timeout is not None:
            deadline = self._clock() + timeout
            # Wait for checked-out connections, and for returned ones still closing.
            while self._entries and self._clock() < deadline:
                self.hub.sleep(min(0.01, max(0.0, deadline - self._clock())))
            with self._lock:
                revoked = self._checked_out()
                for entry in revoked:
                    entry.revoked = True
                    entry.in_use = False
            for entry in revoked:
                log.warning(
                    "%s: closing connection #%d still checked out after close(timeout=%s)",
                    self._label(), entry.serial, timeout,
                )
                self._discard(entry, "pool closed with the connection still checked out")
        log.debug("%s: closed", self._label())

    def _checked_out(self) -> list[_Entry]:
        return [entry for entry in list(self._entries) if entry.in_use]

    def drain(self) -> None:
        """Replace every connection without failing requests.

        Idle connections are closed now; checked-out ones are closed when
        they come back; new checkouts get new connections.  For a failover or
        a password rotation (change ``connect_kwargs`` first).
        """
        with self._lock:
            self._generation += 1
        self._revet_all()
        log.info("%s: draining: every connection will be replaced", self._label())
        self.clear()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def stats(self) -> ConnectionPoolStats:
        """A consistent snapshot: pool sizes plus connection counters."""
        base = super().stats()
        with self._lock:
            return ConnectionPoolStats(
                **base.__dict__,
                opened=self._opened,
                closed=self._closed_count,
                connect_failures=self._connect_failures,
                connect_timeouts=self._connect_timeouts,
                expired=self._expired,
                lost=self._lost,
                bad_returns=self._bad_returns,
                orphans=self._orphan_count,
                wait_time=self._wait_time,
                usage_time=self._usage_time,
            )

    def __repr__(self) -> str:
        s = super().stats()
        state = " closed" if self._closed else ""
        return (
            f"<{self._label()}{state} {s.in_use} in use, {s.idle} idle, {s.waiting} waiting, "
            f"max {s.max_size}, {self.target}, hub {self.hub.name}>"
        )




class RawConnectionPool(BaseConnectionPool):
    """Plain driver connections, used in the caller's own green thread.

    Right for drivers that are green already: PyMySQL under monkey patching,
    psycopg2 with :func:`~greenpool.drivers.make_psycopg2_green`, sqlite3 for
    short local work.  ``connect_timeout`` interrupts a green connect; a
    driver that blocks the OS thread cannot be interrupted on a green hub, so
    there the timeout is only noticed once the connect returns.  On the threads
    hub the connect runs in a helper thread so the timeout always holds.
    """


class TpooledConnectionPool(BaseConnectionPool):
    """Connections whose every blocking call runs in an OS thread.

    For C drivers that are not green (psycopg2 without a wait callback,
    mysqlclient): connect, every method of the connection and of its
    cursors, cleanup and close run through the hub's thread pool (eventlet's
    ``tpool``, gevent's hub thread pool; directly on the threads hub), so the
    hub keeps running.  A connect that times out is closed when it finally
    arrives.  The pool's thread use is bounded by ``max_size``: each
    connection makes one call at a time.
    """

    connect_in_thread = True

    def _blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.hub.run_in_thread(fn, *args)

    def _delegate(self, conn: Any) -> Any:
        # On the threads hub every call is made in place anyway: no proxy needed.
        return ThreadProxy(conn, self.hub) if self.hub.green else conn


#: eventlet.db_pool's name for the tpooled pool.
ConnectionPool = TpooledConnectionPool
