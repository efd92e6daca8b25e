"""Familiar pool APIs backed by greenpool's core.

Services written against another pool's API move to greenpool by changing one
import:

* :mod:`greenpool.compat.psycopg2` - ``psycopg2.pool`` (and ``ksycopg2.pool``):
  ``SimpleConnectionPool``, ``ThreadedConnectionPool``,
  ``PersistentConnectionPool``, ``PoolError``.
* :mod:`greenpool.compat.dbutils` - DBUtils' ``PooledDB`` and ``PersistentDB``.
* :mod:`greenpool.compat.mysql` - ``mysql.connector.pooling``:
  ``MySQLConnectionPool``, ``PooledMySQLConnection``, ``connect()``.

Each module's docstring says what it keeps, what it fixes and where it
deliberately differs.  Every one of them waits, queues and counts through a
:class:`~greenpool.RawConnectionPool` (or, with ``tpool=True``, a
:class:`~greenpool.TpooledConnectionPool`), using only its public API, so
waiting is fair, never blocks the hub, and loses no slot whatever
interrupts it.  What they share:

* **Connections are opened by the pool**, in the background, never in the
  caller.  A call that asks not to wait (``timeout=0``, DBUtils'
  ``blocking=False``) fails at once only when every connection is in use;
  when the pool has room it waits for the connection being opened for it,
  up to the pool's ``connect_timeout`` (:data:`CONNECT_WAIT` when none is
  set).  A caller with a longer timeout waits up to its own timeout.
* **Connect errors are not raised directly**: a caller that gets no
  connection in time while connects fail gets the module's own pool error,
  which is also an instance of the last connect error's class (so
  ``except psycopg2.OperationalError`` still catches it) and has that error
  as its ``__cause__`` (:func:`timeout_error`).
* **One reclaim mechanism.**  A pooled connection dropped without
  ``close()`` is reclaimed by the core pool (the connection is closed, since
  its state is unknown, and its slot freed).  What only the compat pools
  know, a connection bound to a green thread (or OS thread) that has ended,
  is given back at the start of the pool's next operation and by one
  :class:`~greenpool.maintenance.MaintenanceTask` per pool, which holds the
  pool weakly and runs every :data:`HOLDER_POLL` seconds while such
  connections exist (every :data:`HOLDER_POLL_WAITING` seconds while
  callers wait for a connection), and not at all otherwise.

None of the submodules is imported here, so importing this package imports
no database driver.
"""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any, Callable, Dict, Generic, Hashable, Optional, TypeVar

from ..connections import (
    BaseConnectionPool,
    ConnectionPoolStats,
    RawConnectionPool,
    TpooledConnectionPool,
    cleanup_rollback,
)
from ..drivers import Driver
from ..errors import PoolTimeout
from ..hubs import Hub
from ..maintenance import MaintenanceTask
from ..proxy import PooledConnectionWrapper

__all__ = ["CompatPool", "PooledConnection"]

log = logging.getLogger(__name__)

V = TypeVar("V")

#: Default seconds a compat pool keeps an idle connection open.
DEFAULT_MAX_IDLE = 60.0

#: How long a call that asked not to wait may wait for a connection being opened for
#: it, when the pool has no ``connect_timeout`` (the core's default connect bound).
CONNECT_WAIT = 5.0

#: Seconds between looks for connections bound to ended green threads (or threads),
#: while such connections exist, and while callers wait for a connection.
HOLDER_POLL = 0.5
HOLDER_POLL_WAITING = 0.02


# -- arguments -----------------------------------------------------------------------------


def merge_mapping_arg(args: tuple, kwargs: Dict[str, Any]) -> tuple[tuple, Dict[str, Any]]:
    """Accept connect arguments given as one positional mapping (``{"host": ...}``).

    Explicit keywords win over the mapping's entries.
    """
    if len(args) == 1 and isinstance(args[0], dict):
        return (), {**args[0], **kwargs}
    return args, kwargs


def connect_bound(kwargs: Dict[str, Any], *names: str) -> Optional[float]:
    """The driver's own connect timeout keyword (first of ``names`` found), as the pool's bound.

    The keyword still goes to the driver; the pool enforces it as well, because
    a green connect (psycopg2 with a wait callback) ignores libpq's.
    """
    for key in names or ("connect_timeout",):
        value = kwargs.get(key)
        if value is not None:
            try:
                seconds = float(value)
            except (TypeError, ValueError):
                return None
            return seconds if seconds > 0 else None
    return None


def describe_error(error: BaseException) -> str:
    """An error's class and text on one line, for a log record (drivers write several)."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# -- the core pool -------------------------------------------------------------------------


def make_core(
    connect: Any,
    *,
    tpool: bool,
    min_size: int,
    max_size: int,
    max_idle: Optional[float],
    max_age: Optional[float],
    connect_timeout: Optional[float],
    cleanup: Optional[Callable[[Any], Any]] = cleanup_rollback,
    check: Any = "ping",
    check_interval: float = 0.5,
    hub: Any = None,
    name: Optional[str] = None,
    args: tuple = (),
    kwargs: Optional[Dict[str, Any]] = None,
) -> BaseConnectionPool:
    """The core pool behind a compat pool: raw, or tpooled when ``tpool`` is true.

    ``args``/``kwargs`` go to ``connect`` untouched, whatever their names (the
    core's ``connect_kwargs``).  ``min_size`` connections are opened now; a
    connect error raises from here, as the original pools' constructors do.
    """
    if not isinstance(tpool, bool):
        raise TypeError(f"tpool must be a bool, got {tpool!r}")
    cls = TpooledConnectionPool if tpool else RawConnectionPool
    return cls(
        connect,
        min_size,
        max_size,
        max_idle,
        max_age,
        connect_timeout,
        cleanup,
        *args,
        hub=hub,
        name=name,
        connect_kwargs=dict(kwargs or {}),
        check=check,
        check_interval=check_interval,
    )


def connect_wait(pool: BaseConnectionPool) -> float:
    """How long a caller may wait for a connection being opened for it (see the module)."""
    bound = pool.connect_timeout
    return CONNECT_WAIT if bound is None else bound


def take(pool: BaseConnectionPool, timeout: Optional[float]) -> PooledConnectionWrapper:
    """Check a connection out of ``pool``; ``timeout`` bounds the wait for one in use.

    A caller finding the pool with an idle connection, room for a new one, or
    one being opened for it (:func:`can_serve`) waits up to
    ``max(timeout, connect_wait(pool))``: the pool opens
    connections in the background, and a caller that asked not to wait
    still waits for the one being opened for it, as it waited for its own
    connect in the original pools.  Raises the core's ``PoolTimeout`` (naming
    the last connect error while connects fail) or ``PoolClosed``.
    """
    wait = connect_wait(pool)
    if timeout is None or timeout >= wait:
        return pool.get(timeout)
    # Checkouts dropped without being returned hold their slots until reclaimed.
    pool.reclaim_abandoned()
    return pool.get(wait if can_serve(pool) else timeout)


def can_serve(pool: BaseConnectionPool) -> bool:
    """Whether a caller can be served now without anyone returning a connection: an
    idle one, room for a new one, or one being opened that no waiter ahead will take."""
    s = pool.stats()
    return bool(s.idle) or s.size < s.max_size or s.creating > s.waiting


def checkout(pool: BaseConnectionPool, timeout: Optional[float]) -> PooledConnectionWrapper:
    """:func:`take`, never handing out a connection the driver knows is closed.

    The core skips its checks for a connection used moments ago; this
    zero-round-trip test (``conn.closed`` and the like) is repeated here so
    that a connection that broke while idle is replaced.  The timeout covers
    the whole call.
    """
    clock = pool.hub.monotonic
    deadline = None if timeout is None else clock() + timeout
    while True:
        lease = take(pool, timeout)
        if not pool.driver.is_closed(pool.raw_connection(lease)):
            return lease
        pool.discard(lease, "found closed at checkout")
        if deadline is not None:
            timeout = max(0.0, deadline - clock())


# -- errors --------------------------------------------------------------------------------


#: The classes made by :func:`_with_class`, by (pool error, connect error class).
_COMBINED: Dict[tuple[type, type], type[Exception]] = {}


def _with_class(base: type[Exception], cause: type[BaseException]) -> type[Exception]:
    """``base`` made a subclass of ``cause`` as well, where Python allows it."""
    if issubclass(base, cause):
        return base
    combined = _COMBINED.get((base, cause))
    if combined is None:
        namespace = {"__module__": base.__module__, "__qualname__": base.__qualname__,
                     "__doc__": base.__doc__}
        try:
            combined = type(base.__name__, (base, cause), namespace)
        except TypeError:  # incompatible layouts or a final class: the pool's error alone
            combined = base
        if len(_COMBINED) >= 64:  # a bound, should error classes be made on the fly
            _COMBINED.clear()
        _COMBINED[(base, cause)] = combined
    return combined


def connect_failure(base: type[Exception], message: str, cause: BaseException) -> Exception:
    """A ``base`` error saying no connection could be opened, chained from ``cause``.

    It is an instance of ``cause``'s class too where Python allows, so code
    written for the original pools, which raised connect errors straight
    from the driver, still catches it.
    """
    try:
        error = _with_class(base, type(cause))(message)
    except Exception:  # the driver's class wants other arguments
        error = base(message)
    error.__cause__ = cause
    return error


def timeout_error(
    exc: PoolTimeout, exhausted: Exception, failed: type[Exception], text: str
) -> Exception:
    """What a compat API raises for the core's ``PoolTimeout`` ``exc``.

    While connects fail (the core chains the last connect error to ``exc``):
    a ``failed`` error (see :func:`connect_failure`) whose message is
    ``text`` followed by the core's.  Otherwise ``exhausted``, chained from
    ``exc``.  Raise the result inside the ``except`` block, so that ``exc``
    stays its context.
    """
    cause = exc.__cause__
    if cause is None:
        exhausted.__cause__ = exc
        return exhausted
    return connect_failure(failed, f"{text}: {exc}", cause)


# -- checks --------------------------------------------------------------------------------


def ping_quietly(driver: Driver, conn: Any, check: Optional[Callable[[Any], Any]] = None) -> bool:
    """One round trip to see whether ``conn`` is alive; False if it is not.

    ``check`` replaces the driver's ping; it may return False for "dead".  A
    ping that opened a transaction (psycopg2 outside autocommit) is rolled
    back, so the caller gets the connection in the state it was in.
    """
    before = driver.in_transaction(conn)
    try:
        if check is None:
            driver.ping(conn)
            alive = True
        else:
            alive = check(conn) is not False
        if alive and before is False and driver.in_transaction(conn):
            conn.rollback()
    except Exception as exc:  # any error means "not usable"
        log.debug("ping failed: %s", describe_error(exc))
        return False
    return alive


# -- keys ----------------------------------------------------------------------------------


def task_ended(task: Any) -> bool:
    """True once a green thread (``dead``) or OS thread (``is_alive()``) has finished."""
    dead = getattr(task, "dead", None)
    if isinstance(dead, bool):
        return dead
    is_alive = getattr(task, "is_alive", None)
    if callable(is_alive):
        return not is_alive()
    return False


class TaskKey(weakref.ref):
    """A key naming a green thread (or OS thread), holding it weakly.

    Two keys for the same live task are equal, so the running task finds its
    own checkout; a key whose task has ended (or been garbage collected) is
    :meth:`ended`.
    """

    __slots__ = ()

    def ended(self) -> bool:
        task = self()
        return task is None or task_ended(task)


class OnceMap(Generic[V]):
    """Values by key, where concurrent callers for one key share a single make().

    No lock is held while the value is made (it may wait for a connection);
    other callers for the same key wait on the hub's event for the first.
    ``lock`` guards the map and is never held across a switch.
    """

    def __init__(self, lock: Any = None) -> None:
        self._lock = threading.Lock() if lock is None else lock
        self._values: Dict[Hashable, V] = {}
        self._pending: Dict[Hashable, Any] = {}
        self._task_keys = 0

    def get(self, key: Hashable) -> Optional[V]:
        with self._lock:
            return self._values.get(key)

    def get_or_make(
        self, key: Hashable, make: Callable[[], V], hub: Hub, timeout: Optional[float] = None
    ) -> V:
        """The value for ``key``, made by ``make()`` if missing.

        Raises :class:`~greenpool.errors.PoolTimeout` if another caller is
        making it and does not finish within ``timeout``.
        """
        deadline = None if timeout is None else hub.monotonic() + timeout
        while True:
            with self._lock:
                if key in self._values:
                    return self._values[key]
                event = self._pending.get(key)
                if event is None:
                    event = self._pending[key] = hub.event()
                    break
            remaining = None if deadline is None else max(0.0, deadline - hub.monotonic())
            if not event.wait(remaining):
                raise PoolTimeout(f"another caller is still taking the connection for key {key!r}")
        try:
            value = make()
            with self._lock:
                self._values[key] = value
                if isinstance(key, TaskKey):
                    self._task_keys += 1
            return value
        finally:
            with self._lock:
                del self._pending[key]
            event.set()

    def pop(self, key: Hashable) -> Optional[V]:
        with self._lock:
            value = self._values.pop(key, None)
            if value is not None and isinstance(key, TaskKey):
                self._task_keys -= 1
            return value

    def pop_all(self) -> list[V]:
        with self._lock:
            values = list(self._values.values())
            self._values.clear()
            self._task_keys = 0
            return values

    def pop_ended(self) -> list[V]:
        """Remove and return the values whose task key has ended."""
        if not self._task_keys:
            return []
        with self._lock:
            ended = [k for k in self._values if isinstance(k, TaskKey) and k.ended()]
            self._task_keys -= len(ended)
            return [self._values.pop(k) for k in ended]

    def has_task_keys(self) -> bool:
        return self._task_keys > 0

    def __len__(self) -> int:
        return len(self._values)


# -- the pool base and the object users hold ------------------------------------------------


class CompatPool:
    """What every compat pool shares: the core pool, keyed checkouts, and giving back
    the connections of ended green threads.

    Subclasses implement :meth:`_release` (give back what a
    :class:`PooledConnection` held) and, if they bind connections to green
    threads (:meth:`task_key`), :meth:`_ended`; they may override
    :attr:`_returned_error`.
    """

    #: Raised by a :class:`PooledConnection` used after ``close()``.
    _returned_error: type[Exception] = AttributeError

    def __init__(self, core: BaseConnectionPool) -> None:
        self._core = core
        self._lock = core.hub.lock()
        self._keys: OnceMap[Any] = OnceMap(core.hub.lock())
        self._waiting = 0  # callers that found no connection free
        self._holders: MaintenanceTask[CompatPool] = MaintenanceTask(
            self, core.hub, CompatPool._holder_round, "holder reclaim"
        )

    @property
    def hub(self) -> Hub:
        """The hub the pool runs on."""
        return self._core.hub

    @property
    def core(self) -> BaseConnectionPool:
        """The greenpool core pool doing the work (for ``stats()`` and tuning)."""
        return self._core

    def stats(self) -> ConnectionPoolStats:
        """The core pool's :class:`~greenpool.ConnectionPoolStats`."""
        return self._core.stats()

    def task_key(self) -> TaskKey:
        """The key of the running green thread (or OS thread on the threads hub)."""
        return TaskKey(self.hub.current_task())

    # -- checking out ------------------------------------------------------------------

    def _lease(
        self, timeout: Optional[float], reject_closed: bool = True
    ) -> PooledConnectionWrapper:
        """A connection from the core pool (:func:`checkout`, or :func:`take` when
        ``reject_closed`` is false); the core's errors pass through."""
        get = checkout if reject_closed else take
        if self._core.free():
            return get(self._core, timeout)
        # The caller will wait: connections of ended green threads may serve it.
        with self._lock:
            self._waiting += 1
        try:
            if self._keys.has_task_keys():
                self._holders.schedule(self.hub.monotonic())
            return get(self._core, timeout)
        finally:
            with self._lock:
                self._waiting -= 1

    def _keyed(self, key: Hashable, make: Callable[[], V], timeout: Optional[float]) -> V:
        """The value bound to ``key``, made by ``make()`` if missing (see :class:`OnceMap`)."""
        value = self._keys.get_or_make(key, make, self.hub, timeout)
        if isinstance(key, TaskKey):
            self._holders.schedule(self.hub.monotonic() + self._holder_interval())
        return value

    # -- giving back -------------------------------------------------------------------

    def _release(self, handle: Any, lease: PooledConnectionWrapper) -> None:
        """Give back what a :class:`PooledConnection` held: its ``handle`` and the core's
        ``lease`` it used (subclasses)."""
        raise NotImplementedError

    def _ended(self, value: Any) -> None:
        """Give back a value bound to a green thread that ended (subclasses that bind)."""
        raise NotImplementedError

    def _return_ended(self) -> None:
        """Give back the connections of green threads (or threads) that ended.

        Called at the start of each operation of the pools that bind
        connections to green threads, and by the holder reclaim task.
        """
        for value in self._keys.pop_ended():
            log.debug("%r: the green thread holding a connection ended; returning it", self)
            try:
                self._ended(value)
            except Exception as exc:  # a failed return must not stop the others
                log.warning("%r: returning a connection failed: %s", self, describe_error(exc))

    def _holder_round(self) -> Optional[float]:
        """The holder reclaim task's job: when to look again, or None."""
        self._return_ended()
        if not self._keys.has_task_keys():
            return None
        return self.hub.monotonic() + self._holder_interval()

    def _holder_interval(self) -> float:
        waiting = self._waiting or self._core.waiting()
        return HOLDER_POLL_WAITING if waiting else HOLDER_POLL

    def __repr__(self) -> str:
        s = self._core.stats()
        name = f" {s.name!r}" if s.name else ""
        state = " closed" if self._core.closed else ""
        return (
            f"<{type(self).__name__}{name}{state} {s.in_use} in use, {s.idle} idle, "
            f"{s.waiting} waiting, max {s.max_size}, {self._core.target}, hub {self.hub.name}>"
        )


_OWN_SLOTS = frozenset({"_conn", "_handle", "_owner"})


class PooledConnection:
    """A checked-out connection as the compat APIs hand it out.

    Every attribute of the underlying connection is reachable; ``close()``
    (or leaving a ``with`` block) gives it back to its pool instead of closing
    it, and any later use raises the pool's "returned" error.  One dropped
    without ``close()`` is reclaimed by the core pool once garbage collected:
    the connection is closed (its state is unknown) and its slot freed.
    """

    __slots__ = ("_conn", "_handle", "_owner", "__weakref__")
    _conn: Any
    _handle: Any
    _owner: CompatPool

    def __init__(self, owner: CompatPool, conn: PooledConnectionWrapper, handle: Any) -> None:
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_conn", conn)
        object.__setattr__(self, "_handle", handle)

    def close(self) -> None:
        """Give the connection back to the pool (a no-op the second time)."""
        handle, lease = self._handle, self._conn
        if handle is None:
            return
        object.__setattr__(self, "_handle", None)
        object.__setattr__(self, "_conn", None)
        self._owner._release(handle, lease)

    def __getattr__(self, name: str) -> Any:
        if name in _OWN_SLOTS:  # only while __init__ is incomplete
            raise AttributeError(name)
        conn = self._conn
        if conn is None:
            raise self._owner._returned_error(
                f"this connection was returned to its pool; cannot use .{name} any more"
            )
        return getattr(conn, name)

    def __setattr__(self, name: str, value: Any) -> None:
        conn = self._conn
        if conn is None:
            raise self._owner._returned_error(
                f"this connection was returned to its pool; cannot set .{name} any more"
            )
        setattr(conn, name, value)

    def __bool__(self) -> bool:
        return self._handle is not None

    def __enter__(self) -> Any:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "returned" if self._handle is None else repr(self._conn)
        return f"<{type(self).__name__} {state}>"
