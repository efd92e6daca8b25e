"""Connection pools: RawConnectionPool, TpooledConnectionPool and their shared base.

The API is ``eventlet.db_pool``'s, so ``import greenpool as db_pool`` works for
code written against it; the pools run on eventlet, gevent and plain threads.

The pool is assembled from one module per concern: :mod:`~greenpool.pool`
owns the hand-off (queue, slots, invariants), :mod:`~greenpool.options`
validates, :mod:`~greenpool.connecting` opens connections within
``connect_timeout``, :mod:`~greenpool.growth` opens them off the request
path, :mod:`~greenpool.vetting` decides at checkout and return,
:mod:`~greenpool.maintenance` runs the sweep, the leak report and the
reclaim of abandoned checkouts, and :mod:`~greenpool.events` reports what
happens to observers and to ``stats()``.
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from typing import Any, Callable, Deque, Optional

from . import upkeep, validation
from .administration import PoolAdministration
from .backoff import Backoff
from .connecting import Opener, close_quietly, connect_function
from .drivers import Driver, ReturnState, describe_target, driver_for
from .entry import ConnectionEntry
from .errors import ConnectTimeout, ForeignConnection, PoolTimeout
from .events import ConnectionCounters, ConnectionPoolStats, PoolObserver
from .growth import Growth
from .health import resolve_check
from .hubs import HubSpec, resolve_hub
from .maintenance import Scheduler
from .options import connection_options
from .pool import Pool
from .proxy import PooledConnectionWrapper, ThreadProxy, set_entry
from .vetting import DEFAULT as _DEFAULT
from .vetting import (
    LOST_REASONS,
    SOCKET_TEST_AFTER,
    Vetting,
    cleanup_rollback,
    driver_errors,
    vet_at_checkout,
)

__all__ = [
    "BaseConnectionPool",
    "RawConnectionPool",
    "TpooledConnectionPool",
    "ConnectionPool",
    "ConnectionPoolStats",
    "cleanup_rollback",
]

log = logging.getLogger(__name__)

_INF = float("inf")

_IDLE = ReturnState.IDLE


class _Checkout:
    """The context manager of :meth:`BaseConnectionPool.item`."""

    __slots__ = ("_pool", "_timeout", "_cleanup", "_conn")

    def __init__(self, pool: BaseConnectionPool, timeout: Any, cleanup: Any) -> None:
        self._pool = pool
        self._timeout = timeout
        self._cleanup = cleanup
        self._conn: Optional[PooledConnectionWrapper] = None

    def __enter__(self) -> PooledConnectionWrapper:
        self._conn = self._pool.get(self._timeout)
        return self._conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        conn, self._conn = self._conn, None
        if not conn:
            return  # given back in the block
        pool = self._pool
        if exc is None:
            pool.put(conn, self._cleanup)
        elif not isinstance(exc, Exception):
            # Interrupted (hub Timeout, kill): the connection may be mid-query.
            pool.discard(conn, f"interrupted by {type(exc).__name__}")
        elif pool.driver.is_disconnect(pool.raw_connection(conn), exc):
            pool.discard(conn, "disconnected")
            pool._revet_all()  # a disconnect makes the older connections suspect
        else:
            pool.put(conn, self._cleanup)


class BaseConnectionPool(PoolAdministration):
    """A pool of DB-API connections; the base of the raw and tpooled pools.

    ``db_module`` is a DB-API module (its ``connect`` is used) or a connect
    callable; ``*args`` and ``**kwargs`` go to it.  The positional options
    are ``eventlet.db_pool``'s: ``min_size`` (0) connections are opened at
    once and kept open, at most ``max_size`` (4) are open at a time; then
    ``max_idle`` (10 s), ``max_age`` (30 s), ``connect_timeout`` (5 s) and
    ``cleanup`` (:func:`cleanup_rollback`).  Those and the keyword-only
    options (``timeout``, ``hub``, ``name``, ``max_waiting``,
    ``order_as_stack``, ``connect_kwargs``, ``configure``, ``check``,
    ``check_interval``, ``leak_timeout``, ``reconnect_backoff``, ``limiter``,
    ``before_connect``) are described, with their defaults, in
    :class:`~greenpool.options.ConnectionOptions`.

    Connections are opened by the pool, not by callers: a :meth:`get` that
    finds none idle queues (first come, first served) and the pool opens one
    in the background, backing off and retrying while connects fail.
    """

    __slots__ = (
        "timeout", "max_idle", "max_age", "connect_timeout", "check_interval",
        "leak_timeout", "options", "target", "_module", "_connect_fn", "_opener",
        "_vetting", "_quiet", "_plain_cleanup", "_generation", "_entries", "_serials",
        "_orphans", "_counters", "_observers", "_growth", "_limiter", "_before_connect",
        "_scheduler", "_sweep_task", "_leak_task",
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
        configure: Optional[Callable[[Any], Any]] = None,
        check: Any = "ping",
        check_interval: float = 0.5,
        leak_timeout: Optional[float] = None,
        reconnect_backoff: tuple[float, float] = (0.05, 2.0),
        limiter: Optional[Pool[Any]] = None,
        before_connect: Optional[Callable[[BaseConnectionPool], Any]] = None,
        **kwargs: Any,
    ) -> None:
        self._module, self._connect_fn = connect_function(db_module)
        options = connection_options(
            max_size=max_size, max_idle=max_idle, max_age=max_age, connect_timeout=connect_timeout,
            cleanup=cleanup, timeout=timeout, check=check, check_interval=check_interval,
            leak_timeout=leak_timeout, reconnect_backoff=reconnect_backoff, configure=configure,
        )
        if connect_kwargs is not None and not isinstance(connect_kwargs, dict):
            raise TypeError(f"connect_kwargs must be a dict, got a {type(connect_kwargs).__name__}")
        self.options = options
        self.max_idle, self.max_age = options.max_idle, options.max_age
        self.connect_timeout, self.timeout = options.connect_timeout, options.timeout
        self.check_interval, self.leak_timeout = options.check_interval, options.leak_timeout
        hub = resolve_hub(hub)
        label = f"{type(self).__name__} {name!r}" if name else type(self).__name__
        driver = driver_for(db_module)
        merged = {**kwargs, **(connect_kwargs or {})}
        self.target = describe_target(args, merged)
        self._opener = Opener(
            self._connect_raw, args, merged, hub=hub, driver=driver,
            connect_timeout=options.connect_timeout, in_thread=self.connect_in_thread,
            configure=options.configure, label=label, target=self.target,
        )
        self._vetting = Vetting(
            driver, driver_errors(db_module), resolve_check(check, driver),
            options.check_interval, options.cleanup, self._blocking, label,
            reuse=options.max_idle != 0,
        )
        # How long a connection may sit idle and still be handed out unchecked.
        quiet = options.check_interval if self._vetting.check is not None else _INF
        self._quiet = quiet if options.max_idle is None else min(quiet, options.max_idle)
        # Returns need no cleanup call when the driver sees no transaction open.
        self._plain_cleanup = options.cleanup in (None, cleanup_rollback) and options.max_idle != 0
        self._generation = 0
        self._entries: set[ConnectionEntry] = set()
        self._serials = 0
        # Entries whose wrappers were garbage-collected while checked out.
        self._orphans: Deque[ConnectionEntry] = deque()
        self._counters = ConnectionCounters()
        self._observers: list[PoolObserver] = []
        self._growth = Growth(self, Backoff(label, *options.reconnect_backoff))
        self._limiter = limiter
        self._before_connect = validation.check_callable("before_connect", before_connect)
        self._scheduler = Scheduler(self, hub)
        self._sweep_task = self._scheduler.task(upkeep.sweep, "sweep")
        self._leak_task = self._scheduler.task(upkeep.report_leaks, "leak report")
        super().__init__(
            min_size, max_size, order_as_stack, hub=hub, name=name, max_waiting=max_waiting
        )

    # -- the public seams --------------------------------------------------------------

    @property
    def driver(self) -> Driver:
        """The driver profile in use (:class:`~greenpool.drivers.Driver`)."""
        return self._vetting.driver

    @property
    def connect_args(self) -> tuple:
        """The positional arguments given to the driver's connect."""
        return self._opener.args

    @property
    def connect_kwargs(self) -> dict[str, Any]:
        """The keyword arguments given to the driver's connect.  A change, or a new
        dict, applies to connections opened from then on (see :meth:`drain`)."""
        return self._opener.kwargs

    @connect_kwargs.setter
    def connect_kwargs(self, kwargs: dict[str, Any]) -> None:
        if not isinstance(kwargs, dict):
            raise TypeError(f"connect_kwargs must be a dict, got a {type(kwargs).__name__}")
        self._opener.kwargs = kwargs

    def raw_connection(self, conn: PooledConnectionWrapper) -> Any:
        """The driver's own connection behind a wrapper this pool has checked out."""
        entry = conn._entry if isinstance(conn, PooledConnectionWrapper) else None
        if entry is None or entry.pool is not self:
            raise ForeignConnection(f"{self._label()}: not a connection checked out of this pool")
        return entry.conn

    def discard(self, conn: PooledConnectionWrapper, reason: str = "discarded") -> None:
        """Close a checked-out connection instead of returning it; its slot is freed.

        As for :meth:`put`, a connection of another pool is passed to it, and
        one already returned is left alone.
        """
        entry = self._check_in(conn)
        if entry is not None:
            self._end_lease(entry)
            self._discard_entry(entry, reason, lost=True)
        elif conn._entry is not None:
            conn._entry.pool.discard(conn, reason)

    # -- opening and closing -----------------------------------------------------------

    #: Whether connects run in an OS thread on green hubs.
    connect_in_thread = False

    def _blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run blocking driver work: in place here, in an OS thread when tpooled."""
        return fn(*args)

    def _delegate(self, conn: Any) -> Any:
        """What the user's wrapper forwards to: the connection itself here."""
        return conn

    def connect(
        self, db_module: Any, connect_timeout: Optional[float], /, *args: Any, **kw: Any
    ) -> Any:
        """Open one raw connection (eventlet's signature, for subclasses to override).

        ``connect_timeout`` is enforced by the pool around this call.
        """
        return self._connect_fn(*args, **kw)

    def _connect_raw(self, *args: Any, **kwargs: Any) -> Any:
        return self.connect(self._module, self.connect_timeout, *args, **kwargs)

    def create(self) -> ConnectionEntry:
        """Open a connection and wrap it in a new entry (called by the pool's growth)."""
        generation, suspect_before = self._generation, self._vetting.suspect_before
        started = self._clock()
        try:
            if self._before_connect is not None:
                self._before_connect(self)
            conn = self._opener.open()
        except BaseException as exc:
            if isinstance(exc, Exception):
                with self._lock:
                    self._counters.connect_failures += 1
                    self._counters.connect_timeouts += isinstance(exc, ConnectTimeout)
                if self._observers:
                    self._notify("connect_failed", exc)
            raise
        now = self._clock()
        if self._observers:
            self._notify("connected", now - started)
        if self._module is None and self.driver.name == "generic":
            self._vetting.driver = driver_for(conn)
            self._vetting.errors = driver_errors(sys.modules.get(type(conn).__module__))
        with self._lock:
            self._serials += 1
            self._counters.opened += 1
            serial = self._serials
        entry = ConnectionEntry(self, conn, self._delegate(conn), serial, now, self.max_age)
        entry.generation = generation
        entry.touch(now, self._quiet)
        if suspect_before != self._vetting.suspect_before:
            entry.revet()
        self._vetting.watch(entry)
        with self._lock:
            self._entries.add(entry)
        log.debug("%s: opened connection #%d to %s", self._label(), serial, self.target)
        self._sweep_task.schedule(upkeep.expiry(self, entry, now))
        return entry

    def _close_entry(self, entry: ConnectionEntry, reason: str, lost: bool) -> None:
        try:
            self._blocking(close_quietly, entry.conn, self._label())
        finally:
            with self._lock:
                self._entries.discard(entry)  # only now: close(timeout) waits for this
                self._counters.discarded(reason, lost)
            log.debug("%s: closed connection #%d (%s)", self._label(), entry.serial, reason)
            if self._observers:
                self._notify("discarded", reason, lost)

    def _discard_entry(self, entry: ConnectionEntry, reason: str, lost: bool) -> None:
        """Close a connection that holds a slot and free the slot."""
        try:
            self._close_entry(entry, reason, lost)
        finally:
            self._release_slot()

    def _retire(self, entry: ConnectionEntry, reason: str = "retired") -> None:
        # Its slot is already gone (shrunk, cleared, expired idle).
        self._close_entry(entry, reason, lost=False)

    # -- growth ------------------------------------------------------------------------

    def _grows_in_caller(self) -> bool:
        return False

    def _queued(self) -> None:
        if self.current_size < self.max_size:  # else only a returned connection helps
            self._grow()
        if len(self._waiters) == 1:
            # Orphans are reclaimed by maintenance while anyone waits (see _orphaned).
            self._sweep_task.schedule(self._clock() + upkeep.ORPHAN_POLL)

    def _slot_freed(self) -> None:
        self._grow()

    def _grow(self) -> None:
        self._growth.grow()

    def _timeout_error(self, timeout: Optional[float]) -> PoolTimeout:
        error = self._growth.timeout_error(timeout)
        if self._observers:
            self._notify("timed_out", timeout)
        return error

    # -- checkout ----------------------------------------------------------------------

    def get(self, timeout: Optional[float] = _DEFAULT) -> PooledConnectionWrapper:  # type: ignore[override]
        """Check out a connection: an idle one, or the first to come back or be opened.

        ``timeout`` (default: the pool's ``timeout``; None waits for ever)
        bounds the whole call; when it runs out, raise
        :class:`~greenpool.errors.PoolTimeout`, naming the last connect error
        if connects are failing.  A connection that is expired or fails its
        health check is closed and another one taken.  Raises
        :class:`~greenpool.errors.PoolClosed` after :meth:`close`.
        """
        if timeout is _DEFAULT:
            timeout = self.timeout
        if self._orphans:
            upkeep.reclaim_orphans(self)
        # The start of the call, for the time left after a failed check and for
        # observers (no clock read otherwise).
        started = self._clock() if timeout is not None or self._observers else 0.0
        if self._limiter is None:
            entry = Pool.get(self, timeout)
        else:
            entry = self._get_within_limit(timeout)
        now = self._clock()
        # One comparison decides whether the connection needs a closer look; the
        # socket test is made too for a connection that sat idle a moment.
        if (
            now >= entry.vetted_until
            or self._closed
            or (entry.watch is not None and now - entry.last_used >= SOCKET_TEST_AFTER)
        ):
            entry, now = vet_at_checkout(self, entry, now, started, timeout)
        entry.in_use = entry.lent = True
        entry.taken_at = now
        if self.leak_timeout is not None:
            upkeep.note_taker(self, entry, now)
        if self._observers:
            self._notify("checked_out", now - started)
        return PooledConnectionWrapper(entry)

    def _get_within_limit(self, timeout: Optional[float]) -> ConnectionEntry:
        """Pool.get(), with an item of the shared ``limiter`` taken first."""
        started = self._clock()
        token = self._limiter.get(timeout)  # type: ignore[union-attr]
        try:
            left = None if timeout is None else max(0.0, started + timeout - self._clock())
            entry = Pool.get(self, left)
        except BaseException:
            self._limiter._hand_back(token)  # type: ignore[union-attr]
            raise
        entry.token = token
        return entry

    def _end_lease(self, entry: ConnectionEntry) -> None:
        """A checkout ended (returned, discarded, reclaimed): give its limiter item back."""
        token, entry.token = entry.token, None
        if token is not None:
            self._limiter._hand_back(token)  # type: ignore[union-attr]

    def item(self, timeout: Optional[float] = _DEFAULT, cleanup: Any = _DEFAULT) -> _Checkout:
        """``with pool.item() as conn:`` checks a connection out and always gives it back.

        If the block raises a disconnect-class error (per driver), or is
        interrupted by a hub ``Timeout``, ``kill()`` or another
        ``BaseException`` (the connection may be mid-query), the connection is
        closed instead of reused.
        """
        return _Checkout(self, timeout, cleanup)

    # -- return ------------------------------------------------------------------------

    def put(self, conn: Any, cleanup: Any = _DEFAULT) -> None:
        """Give a checked-out connection back.

        Runs ``cleanup`` (the pool's unless given; None for none) on the raw
        connection; a connection that is closed, broken, expired, drained, or
        whose cleanup fails is closed and its slot freed.  ``put(None)`` frees
        the slot of a connection the caller lost, as in eventlet.  A wrapper
        already returned is left alone (as ``close()`` twice is); one checked
        out of another pool is closed there, freeing its slot (a warning is
        logged: its state is that pool's business, and nothing of it must
        reach this one).  Anything else raises
        :class:`~greenpool.errors.ForeignConnection`, changing nothing.
        """
        if conn is None:
            self._release_slot()
            return
        if cleanup is not _DEFAULT and cleanup is not None and not callable(cleanup):
            raise TypeError(f"cleanup must be callable or None, got a {type(cleanup).__name__}")
        if self._cooperative:  # see Pool.get
            entry = self._check_in_locked(conn)
        else:
            with self._lock:
                entry = self._check_in_locked(conn)
        if entry is None:  # not ours to take back
            if conn._entry is not None:
                log.warning("%s: put() of a connection checked out of %r: closing it there",
                            self._label(), conn._entry.pool)
                conn._entry.pool.discard(conn, "returned to another pool")
            return
        if entry.token is not None:
            self._end_lease(entry)
        now = self._clock()
        self._counters.usage_time += now - entry.taken_at  # (not exact across OS threads)
        if self._observers:
            self._notify("checked_in", now - entry.taken_at)
        # One local look at the connection's state; with nothing to clean up and the
        # connection within its quiet interval (so not expired, and no drain,
        # disconnect or close since), that decides.
        state = self._vetting.driver.return_state(entry.conn)
        if (
            state is _IDLE
            and cleanup is _DEFAULT
            and self._plain_cleanup
            and now < entry.vetted_until
        ):
            self._keep(entry, now)
            return
        try:
            reason = "pool closed" if self._closed else self._vetting.return_problem(
                entry, now, self._generation, cleanup, state
            )
        except BaseException:
            # Interrupted during cleanup: the connection's state is unknown.
            self._discard_entry(entry, "interrupted during cleanup", lost=True)
            raise
        if reason is not None:
            if reason == "closed by its user or server":
                self._revet_all()
            self._discard_entry(entry, reason, lost=reason in LOST_REASONS)
            return
        self._keep(entry, now)

    def _keep(self, entry: ConnectionEntry, now: float) -> None:
        """File a returned connection found fit, unless a close or a drain came first.

        Touched before the test: a drain after it marks the connection for a
        closer look at its next checkout, and the hand-off itself retires it
        once the pool is closed.
        """
        entry.touch(now, self._quiet)
        if entry.generation != self._generation or self._closed:
            self._discard_entry(entry, "pool closed" if self._closed else "drained", lost=False)
        else:
            self._hand_back(entry)


    def _check_in(self, conn: Any) -> Optional[ConnectionEntry]:
        """Detach a wrapper this pool lent and return its entry; None when there is
        nothing to take back (a wrapper returned already or lent by another pool,
        or a connection close(timeout) took back meanwhile)."""
        if self._cooperative:  # see Pool.get
            return self._check_in_locked(conn)
        with self._lock:
            return self._check_in_locked(conn)

    def _check_in_locked(self, conn: Any) -> Optional[ConnectionEntry]:
        if not isinstance(conn, PooledConnectionWrapper):
            self._counters.bad_returns += 1
            raise ForeignConnection(
                f"{self._label()}: put() takes a connection checked out of a pool, "
                f"got {type(conn).__name__}"
            )
        entry = conn._entry
        if entry is None or entry.pool is not self:
            return None
        set_entry(conn, None)  # from now on the wrapper is false and unusable
        if entry.revoked:
            return None
        entry.in_use = False
        return entry

    # -- abandoned checkouts -----------------------------------------------------------

    def _orphaned(self, entry: ConnectionEntry) -> None:
        """A wrapper was garbage collected while checked out (called from its __del__:
        only a deque append, safe inside the collector)."""
        self._orphans.append(entry)

    def _revet_all(self) -> None:
        """Every connection gets a closer look at its next checkout."""
        self._vetting.suspect_before = self._clock()
        with self._lock:
            entries = list(self._entries)
        for entry in entries:
            entry.revet()



class RawConnectionPool(BaseConnectionPool):
    """Plain driver connections, used in the caller's own green thread.

    Right for drivers that are green already: PyMySQL under monkey patching,
    psycopg2 with :func:`~greenpool.drivers.make_psycopg2_green`, sqlite3 for
    short local work.  ``connect_timeout`` interrupts a green connect; on
    the threads hub the connect runs in a helper thread so that the timeout
    holds there too.
    """


class TpooledConnectionPool(BaseConnectionPool):
    """Connections whose every blocking call runs in an OS thread.

    For C drivers that are not green (psycopg2 without a wait callback,
    mysqlclient): connect, every method of the connection and of its
    cursors, cleanup and close run through the hub's thread pool (eventlet's
    ``tpool``, gevent's hub thread pool; directly on the threads hub), so the
    hub keeps running.  A connect that times out is closed when it finally
    arrives.
    """

    connect_in_thread = True

    def _blocking(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.hub.run_in_thread(fn, *args)

    def _delegate(self, conn: Any) -> Any:
        # On the threads hub every call is made in place anyway: no proxy needed.
        return ThreadProxy(conn, self.hub) if self.hub.green else conn


#: eventlet.db_pool's name for the tpooled pool.
ConnectionPool = TpooledConnectionPool

_MISSING = _DEFAULT  # TEMPORARY: until connector/compat use the public API
_Entry = ConnectionEntry  # TEMPORARY
