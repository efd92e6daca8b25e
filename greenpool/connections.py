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

import logging
import random
import sys
import types
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Optional

from . import _checks
from .drivers import Driver, describe_target, driver_for
from .errors import ConnectTimeout, ForeignConnection, PoolClosed
from .hubs import HubSpec
from .hubs.base import original_lock
from .pool import Pool, PoolStats
from .proxy import PooledConnectionWrapper, ThreadProxy
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

#: Connection ages are shortened by up to this fraction, at random, so connections
#: opened together do not all expire together.
AGE_JITTER = 0.05


def cleanup_rollback(conn: Any) -> None:
    """The default cleanup on return: roll back whatever the caller left open.

    The pool skips the round trip when the driver can tell that no
    transaction is open (psycopg2, PyMySQL, sqlite3).
    """
    conn.rollback()


class _Entry:
    """One pooled connection and its bookkeeping (one per slot)."""

    __slots__ = (
        "conn",
        "delegate",
        "serial",
        "created_at",
        "expires_at",
        "last_used",
        "taken_at",
        "taken_where",
        "checkouts",
        "in_use",
    )

    def __init__(self, conn: Any, delegate: Any, serial: int, now: float, max_age: Any) -> None:
        self.conn = conn
        self.delegate = delegate
        self.serial = serial
        self.created_at = now
        if max_age is None:
            self.expires_at = float("inf")
        else:
            self.expires_at = now + max_age * (1.0 - AGE_JITTER * random.random())
        self.last_used = now
        self.taken_at = now
        self.taken_where = ""
        self.checkouts = 0
        self.in_use = False

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
_LOST_REASONS = frozenset({"closed by its user or server", "cleanup failed"})


class _PendingConnect:
    """A connect running in an OS thread that its caller may stop waiting for.

    If the caller gives up (``connect_timeout``, kill), the connection that
    arrives later is closed instead of orphaned.
    """

    __slots__ = ("_connect", "_close", "_lock", "_abandoned", "_conn")

    def __init__(self, connect: Callable[[], Any], close: Callable[[Any], None]) -> None:
        self._connect = connect
        self._close = close
        self._lock = original_lock()
        self._abandoned = False
        self._conn: Any = None

    def run(self) -> Any:
        conn = self._connect()
        with self._lock:
            late = self._abandoned
            if not late:
                self._conn = conn
        if late:
            self._close(conn)
        return conn

    def abandon(self) -> None:
        with self._lock:
            self._abandoned = True
            conn, self._conn = self._conn, None
        if conn is not None:
            self._close(conn)


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

    For psycopg2 and PyMySQL the driver's own connect timeout is set a little
    above ``connect_timeout`` unless given in ``connect_kwargs``, so that a
    connect the pool gave up on in an OS thread ends and closes its socket.
    """

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
        self._driver: Driver = driver_for(db_module)
        merged = dict(kwargs)
        if connect_kwargs:
            merged.update(connect_kwargs)
        if self._module is not None:
            for key, value in self._driver.connect_timeout_kwargs(self.connect_timeout).items():
                merged.setdefault(key, value)
        self.connect_args = args
        self.connect_kwargs = merged
        self.target = describe_target(args, merged)
        self._closed = False
        self._serials = 0
        self._orphans: Deque[tuple[_Entry, int]] = deque()
        self._opened = self._closed_count = self._connect_failures = 0
        self._connect_timeouts = self._expired = self._lost = self._bad_returns = 0
        self._orphan_count = 0
        self._wait_time = self._usage_time = 0.0
        self._sweeper: Optional[Sweeper] = None
        super().__init__(
            min_size,
            max_size,
            order_as_stack,
            hub=hub,
            name=name,
            max_waiting=max_waiting,
        )
        self._sweeper = Sweeper(self, self.hub)
        self._schedule_sweep()

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
        return self.connect(
            self._module, self.connect_timeout, *self.connect_args, **self.connect_kwargs
        )

    def _open(self) -> Any:
        """Open a raw connection within ``connect_timeout``.

        Green hubs interrupt a green connect with the hub's timeout; an OS-thread
        connect (TpooledConnectionPool, or any pool on the threads hub) is waited
        for with a timeout and, if it arrives late, closed.
        """
        seconds = self.connect_timeout
        try:
            if self.connect_in_thread or not self.hub.can_interrupt:
                if seconds is None and not self.connect_in_thread:
                    return self._connect_raw()
                pending = _PendingConnect(self._connect_raw, self._close_late)
                try:
                    return self.hub.run_in_thread(pending.run, timeout=seconds)
                except BaseException:
                    pending.abandon()
                    raise
            deadline = _ConnectDeadline()
            try:
                with self.hub.timeout(seconds, deadline):
                    return self._connect_raw()
            except _ConnectDeadline as exc:
                if exc is not deadline:
                    raise
                raise TimeoutError() from None
        except TimeoutError:
            with self._lock:
                self._connect_timeouts += 1
            log.warning(
                "%s: connecting to %s took longer than connect_timeout=%s s",
                self._label(), self.target, seconds,
            )
            raise ConnectTimeout(
                f"{self._label()}: connecting to {self.target} took longer than "
                f"connect_timeout={seconds} s"
            ) from None

    def create(self) -> _Entry:
        """Open a connection and wrap it in a new entry (called by the pool core)."""
        try:
            conn = self._open()
        except BaseException as exc:
            with self._lock:
                self._connect_failures += 1
            if isinstance(exc, Exception) and not isinstance(exc, ConnectTimeout):
                log.warning("%s: connect to %s failed: %s", self._label(), self.target, exc)
            raise
        now = self.hub.monotonic()
        with self._lock:
            self._serials += 1
            self._opened += 1
            serial = self._serials
        if self._driver is _GENERIC_DRIVER and self._module is None:
            self._driver = driver_for(conn)
        entry = _Entry(conn, self._delegate(conn), serial, now, self.max_age)
        log.debug("%s: opened connection #%d to %s", self._label(), serial, self.target)
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
            self._blocking(self._close_raw, entry.conn)
        finally:
            with self._lock:
                self._closed_count += 1
                if lost:
                    self._lost += 1
            self._release_slot()
            log.debug("%s: closed connection #%d (%s)", self._label(), entry.serial, why)

    def _retire(self, entry: _Entry) -> None:
        # The pool shrank (resize) or was cleared: the slot is already gone.
        try:
            self._blocking(self._close_raw, entry.conn)
        finally:
            with self._lock:
                self._closed_count += 1
            log.debug("%s: closed connection #%d (retired)", self._label(), entry.serial)

    # -- expiry ------------------------------------------------------------------------

    def _is_expired(self, entry: _Entry, now: float) -> bool:
        if now >= entry.expires_at:
            return True
        max_idle = self.max_idle
        return max_idle is not None and now - entry.last_used >= max_idle

    def _deadline(self, entry: _Entry) -> float:
        max_idle = self.max_idle
        if max_idle is None:
            return entry.expires_at
        return min(entry.expires_at, entry.last_used + max_idle)

    def _schedule_sweep(self) -> None:
        if self._sweeper is None:
            return
        with self._lock:
            deadlines = [self._deadline(e) for e in self.free_items]
        if deadlines:
            soonest = min(deadlines)
            if soonest != float("inf"):
                self._sweeper.schedule(soonest)

    def _sweep(self) -> Optional[float]:
        """Close idle connections past max_idle/max_age; return the next deadline.

        Called by the sweeper.  Tops the pool back up to ``min_size``.
        """
        self._collect_orphans()
        now = self.hub.monotonic()
        expired: list[_Entry] = []
        with self._lock:
            if self._closed:
                return None
            keep: Deque[_Entry] = deque()
            for entry in self.free_items:
                (expired if self._is_expired(entry, now) else keep).append(entry)
            if expired:
                self.free_items = keep
                self.current_size -= len(expired)
                self._expired += len(expired)
            deadlines = [self._deadline(e) for e in keep]
            missing = self.min_size - self.current_size
        for entry in expired:
            self._retire(entry)
            log.debug("%s: connection #%d expired", self._label(), entry.serial)
        if missing > 0:
            self.hub.spawn(self._top_up, missing)
        soonest = min(deadlines, default=float("inf"))
        return None if soonest == float("inf") else soonest

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
            entry.last_used = self.hub.monotonic()
            self._dispatch(entry)
        self._schedule_sweep()

    # -- checkout ------------------------------------------------------------------------

    def get(self, timeout: Optional[float] = _MISSING) -> PooledConnectionWrapper:  # type: ignore[override]
        """Check out a connection: an idle one, a new one, or the next one returned.

        ``timeout`` (default: the pool's ``timeout``, None to wait for ever)
        bounds the wait for a connection to come back; it raises
        :class:`~greenpool.errors.PoolTimeout`.  Opening a connection is bounded
        by ``connect_timeout`` (:class:`~greenpool.errors.ConnectTimeout`).
        Raises :class:`~greenpool.errors.PoolClosed` after :meth:`close`.
        """
        if self._closed:
            raise PoolClosed(f"{self._label()} is closed")
        if self._orphans:
            self._collect_orphans()
        if timeout is _MISSING:
            timeout = self.timeout
        started = self.hub.monotonic()
        while True:
            entry = Pool.get(self, timeout)
            now = self.hub.monotonic()
            if not self._is_expired(entry, now) or entry.checkouts == 0:
                break
            with self._lock:
                self._expired += 1
            self._discard(entry, "expired")
            if timeout is not None:
                timeout = max(0.0, timeout - (now - started))
        if now - started > 0.0005:
            self._wait_time += now - started
        return self._checkout(entry, now)

    def _checkout(self, entry: _Entry, now: float) -> PooledConnectionWrapper:
        entry.in_use = True
        entry.checkouts += 1
        entry.taken_at = now
        frame = sys._getframe(2)
        entry.taken_where = f"{frame.f_code.co_filename}:{frame.f_lineno}"
        return PooledConnectionWrapper(entry.delegate, self, entry)

    def _wait_for_event(self, event: Any, timeout: Optional[float]) -> None:
        # Wake now and then to reclaim connections whose wrappers were garbage
        # collected: the collector itself only queues them (see PooledConnectionWrapper).
        if timeout is not None and timeout <= 1.0:
            event.wait(timeout)
            return
        deadline = None if timeout is None else self.hub.monotonic() + timeout
        while True:
            step = 1.0 if deadline is None else min(1.0, deadline - self.hub.monotonic())
            if step <= 0 or event.wait(step):
                return
            if self._orphans:
                self._collect_orphans()

    # -- return --------------------------------------------------------------------------

    def put(self, conn: Any, cleanup: Any = _MISSING) -> None:
        """Give a checked-out connection back.

        Runs ``cleanup`` (the pool's unless given; None for none) on the raw
        connection; a connection that is closed, expired, or whose cleanup
        fails is closed and its slot freed.  ``put(None)`` frees the slot of a
        connection the caller lost, as in eventlet.  Raises
        :class:`~greenpool.errors.ForeignConnection`, changing nothing, for a
        connection this pool did not hand out or that was already returned.
        """
        if conn is None:
            self._put_none()
            return
        entry = self._take_back(conn)
        now = self.hub.monotonic()
        self._usage_time += now - entry.taken_at
        try:
            reason = self._check_return(entry, now, cleanup)
        except BaseException:
            # Interrupted (timeout, kill) during cleanup: the connection's state is
            # unknown, so it is closed; the slot is never leaked.
            self._discard(entry, "interrupted during cleanup", lost=True)
            raise
        if reason is not None:
            self._discard(entry, reason, lost=reason in _LOST_REASONS)
            return
        entry.last_used = now
        self._dispatch(entry)
        if self._sweeper is not None:
            self._sweeper.schedule(self._deadline(entry))

    def _take_back(self, conn: Any) -> _Entry:
        """Detach a wrapper (or raw connection) from its checkout; validate ownership."""
        with self._lock:
            if isinstance(conn, PooledConnectionWrapper):
                entry = conn._entry
                if conn._pool is not self or entry is None or not entry.in_use:
                    self._bad_returns += 1
                    raise ForeignConnection(
                        f"{self._label()}: this connection was not checked out of this pool "
                        "or was already returned"
                    )
                conn._detach()
            else:
                entry = self._find_raw(conn)
            entry.in_use = False
            return entry

    def _find_raw(self, conn: Any) -> _Entry:
        # eventlet.db_pool accepted the raw connection back; so do we, if it is ours.
        raise ForeignConnection(
            f"{self._label()}: put() takes the wrapper returned by get(), "
            f"not {type(conn).__name__}"
        )

    def _check_return(self, entry: _Entry, now: float, cleanup: Any) -> Optional[str]:
        """Clean the connection up; the reason to close it instead, or None to keep it."""
        if self._closed:
            return "pool closed"
        if self._is_expired(entry, now) or self.max_idle == 0:
            with self._lock:
                self._expired += 1
            return "expired"
        conn = entry.conn
        driver = self._driver
        if driver.is_closed(conn):
            return "closed by its user or server"
        if cleanup is _MISSING:
            cleanup = self._cleanup
        if cleanup is None:
            return None
        if cleanup is cleanup_rollback and driver.in_transaction(conn) is False:
            return None
        try:
            self._blocking(cleanup, conn)
        except Exception as exc:
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
        while self._orphans:
            try:
                entry, checkout = self._orphans.popleft()
            except IndexError:
                return
            with self._lock:
                if not entry.in_use or entry.checkouts != checkout:
                    continue
                entry.in_use = False
                self._orphan_count += 1
            log.warning(
                "%s: connection #%d was garbage collected without being returned "
                "(taken at %s); closing it",
                self._label(), entry.serial, entry.taken_where,
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
            waiter.event.set()

    def close(self) -> None:
        """Close the pool: no further checkouts, idle connections closed at once.

        Waiters get :class:`~greenpool.errors.PoolClosed`; connections still
        checked out are closed when they come back.  Idempotent.
        """
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.stop()
        self._close_waiters()
        self.clear()
        log.debug("%s: closed", self._label())

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


_GENERIC_DRIVER = driver_for(object())


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
        return ThreadProxy(conn, self.hub)


#: eventlet.db_pool's name for the tpooled pool.
ConnectionPool = TpooledConnectionPool
