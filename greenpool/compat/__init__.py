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
:class:`~greenpool.TpooledConnectionPool`), so waiting is fair, never blocks
the hub, and loses no slot whatever interrupts it.

This package module holds what the three share: building the core pool,
keying checkouts (by a caller's key or by the running green thread), the
object handed to users whose ``close()`` gives the connection back, and
the small task that returns connections whose holder is gone (a green
thread that ended, a pooled connection dropped without ``close()``).  None
of the submodules is imported here, so importing this package imports no
database driver.
"""

from __future__ import annotations

import logging
import weakref
from collections import deque
from typing import Any, Callable, Deque, Dict, Generic, Hashable, Optional, TypeVar

from ..connections import (
    BaseConnectionPool,
    ConnectionPoolStats,
    RawConnectionPool,
    TpooledConnectionPool,
    cleanup_rollback,
)
from ..drivers import Driver
from ..errors import PoolTimeout
from ..health import resolve_check
from ..hubs import Hub
from ..hubs.base import original_lock
from ..proxy import PooledConnectionWrapper

__all__ = ["PooledConnection"]

log = logging.getLogger(__name__)

V = TypeVar("V")

#: Seconds between the reaper's rounds while callers wait for a connection, and otherwise.
REAP_FAST = 0.02
REAP_SLOW = 0.5

#: Default seconds a compat pool keeps an idle connection open.
DEFAULT_MAX_IDLE = 60.0


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
    core's ``connect_kwargs``).
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


def discard(core: BaseConnectionPool, conn: PooledConnectionWrapper, why: str) -> None:
    """Close a checked-out connection instead of returning it; its slot is freed."""
    entry = core._take_back(conn)
    if entry is not None:
        core._discard(entry, why)


def checkout(core: BaseConnectionPool, timeout: Optional[float]) -> PooledConnectionWrapper:
    """``core.get(timeout)``, never handing out a connection the driver knows is closed.

    The core skips its checks for a connection used moments ago; this
    zero-round-trip test (``conn.closed`` and the like) is repeated here so
    a connection that broke in its last user's hands is replaced.  The
    timeout covers the whole call.
    """
    driver = core._driver
    deadline = None if timeout is None else core.hub.monotonic() + timeout
    while True:
        conn = core.get(timeout)
        if not driver.is_closed(conn._base):
            return conn
        discard(core, conn, "found closed at checkout")
        if deadline is not None:
            timeout = max(0.0, deadline - core.hub.monotonic())


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
        log.debug("ping failed: %r", exc)
        return False
    return alive


def quiet_check(check: Any, driver: Driver) -> Optional[Callable[[Any], None]]:
    """The core's ``check=`` option, made to leave no transaction open behind it.

    ``SELECT 1`` on psycopg2 outside autocommit opens a transaction; handing
    that connection out would make ``conn.autocommit = True`` fail.
    """
    resolved = resolve_check(check, driver)
    if resolved is None:
        return None

    def run(conn: Any) -> None:
        before = driver.in_transaction(conn)
        resolved(conn)
        if before is False and driver.in_transaction(conn):
            conn.rollback()

    return run


def merge_mapping_arg(args: tuple, kwargs: Dict[str, Any]) -> tuple[tuple, Dict[str, Any]]:
    """Accept connect arguments given as one positional mapping (``{"host": ...}``).

    Explicit keywords win over the mapping's entries.
    """
    if len(args) == 1 and isinstance(args[0], dict):
        return (), {**args[0], **kwargs}
    return args, kwargs


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
    """

    def __init__(self) -> None:
        self._lock = original_lock()
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


# -- the pool base and the object users hold --------------------------------------------------


class CompatPool:
    """What every compat pool shares: the core pool, keyed checkouts, and the reaper.

    Subclasses implement :meth:`_release` (give back what a
    :class:`PooledConnection` or a key held) and may override
    :attr:`_returned_error`.
    """

    #: Raised by a :class:`PooledConnection` used after ``close()``.
    _returned_error: type[Exception] = AttributeError

    def __init__(self, core: BaseConnectionPool) -> None:
        self._core = core
        self._keys: OnceMap[Any] = OnceMap()
        self._dropped: Deque[Any] = deque()
        self._lock = original_lock()
        self._outstanding = 0
        self._reaper = _Reaper(self)

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

    # -- handing out and taking back ---------------------------------------------------

    def _handed_out(self) -> None:
        """A :class:`PooledConnection` or a task-keyed checkout now exists: watch it."""
        with self._lock:
            self._outstanding += 1
        self._reaper.wake()

    def _give_back(self, handle: Any) -> None:
        with self._lock:
            self._outstanding -= 1
        self._release(handle)

    def _release(self, handle: Any) -> None:
        """Return what a pooled connection or key held (subclasses)."""
        raise NotImplementedError

    def _ended(self, value: Any) -> None:
        """Give back a task-keyed checkout whose task ended (subclasses may override)."""
        self._release(value)

    def _watching(self) -> bool:
        return bool(self._outstanding or self._dropped or self._keys.has_task_keys())

    def _maintain(self) -> None:
        """Give back connections whose holder is gone: dropped wrappers, ended tasks.

        Runs at the start of each pool operation and in the reaper task, never
        inside the garbage collector (which only queues into ``_dropped``).
        """
        while self._dropped:
            try:
                handle = self._dropped.popleft()
            except IndexError:
                break
            log.debug("%r: a pooled connection was dropped without close(); returning it", self)
            self._quietly(self._give_back, handle)
        for value in self._keys.pop_ended():
            log.debug("%r: the green thread holding a connection ended; returning it", self)
            self._quietly(self._ended, value)

    def _quietly(self, fn: Callable[[Any], None], value: Any) -> None:
        try:
            fn(value)
        except Exception as exc:  # a failed return must not stop the others
            log.warning("%r: returning a connection failed: %r", self, exc)

    def __repr__(self) -> str:
        s = self._core.stats()
        name = f" {s.name!r}" if s.name else ""
        state = " closed" if self._core.closed else ""
        return (
            f"<{type(self).__name__}{name}{state} {s.in_use} in use, {s.idle} idle, "
            f"{s.waiting} waiting, max {s.max_size}, {self._core.target}, hub {self.hub.name}>"
        )


class _Reaper:
    """One task per compat pool that gives back connections whose holder is gone.

    It runs only while something is checked out through a
    :class:`PooledConnection` or bound to a green thread, every
    :data:`REAP_FAST` seconds while callers wait and :data:`REAP_SLOW`
    otherwise, and holds the pool weakly.
    """

    __slots__ = ("_pool", "_lock", "_running", "_hub")

    def __init__(self, pool: CompatPool) -> None:
        self._pool = weakref.ref(pool)
        self._lock = original_lock()
        self._running = False
        self._hub = pool.hub

    def wake(self) -> None:
        with self._lock:
            if self._running:
                return
            self._running = True
        self._hub.spawn(self._run)

    def _run(self) -> None:
        try:
            while True:
                pool = self._pool()
                if pool is None:
                    return
                with self._lock:
                    if not pool._watching():
                        self._running = False
                        return
                pool._maintain()
                interval = REAP_FAST if pool._core.waiting() else REAP_SLOW
                del pool
                self._hub.sleep(interval)
        finally:
            with self._lock:
                self._running = False


_OWN_SLOTS = frozenset({"_conn", "_handle", "_owner"})


class PooledConnection:
    """A checked-out connection as the compat APIs hand it out.

    Every attribute of the underlying connection is reachable; ``close()``
    (or leaving a ``with`` block) gives it back to its pool instead of closing
    it, and any later use raises the pool's "returned" error.  One dropped
    without ``close()`` is given back too, by the pool's reaper task shortly
    after, never from inside the garbage collector.
    """

    __slots__ = ("_conn", "_handle", "_owner", "__weakref__")
    _conn: Any
    _handle: Any
    _owner: CompatPool

    def __init__(self, owner: CompatPool, conn: Any, handle: Any) -> None:
        object.__setattr__(self, "_owner", owner)
        object.__setattr__(self, "_conn", conn)
        object.__setattr__(self, "_handle", handle)
        owner._handed_out()

    def close(self) -> None:
        """Give the connection back to the pool (a no-op the second time)."""
        handle = self._handle
        if handle is None:
            return
        object.__setattr__(self, "_handle", None)
        object.__setattr__(self, "_conn", None)
        self._owner._give_back(handle)

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

    def __del__(self) -> None:
        # Only a deque append: this may run inside the garbage collector or another thread.
        try:
            handle = object.__getattribute__(self, "_handle")
        except AttributeError:
            return
        if handle is not None:
            self._owner._dropped.append(handle)

    def __repr__(self) -> str:
        state = "returned" if self._handle is None else repr(self._conn)
        return f"<{type(self).__name__} {state}>"
