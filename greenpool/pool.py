"""The generic token pool every connection pool is built on.

:class:`Pool` keeps the API of ``eventlet.pools.Pool`` (``create``/``get``/
``put``/``item()``, ``free()``, ``waiting()``, ``resize()``, the
``current_size`` and ``free_items`` attributes) and runs on any hub.

Invariants, held whatever interrupts ``get``, ``create`` or ``put``
(ordinary exceptions, the hub's ``Timeout``, ``GreenletExit``/``kill()``):

* ``current_size`` counts every slot: items idle in ``free_items``, items
  handed out, and slots reserved for an item being created.
* Waiters are served first come, first served.  An item (or the right to
  create one) is handed to a waiter in a critical section; a waiter that
  gives up afterwards passes it on instead of keeping it, so nothing is
  swallowed.
* A failed ``create()`` frees its slot, and the right to create passes to
  the next waiter.

Every state change happens in a short critical section that never yields
(the ``_*_locked`` methods, and the checkout's own in :meth:`Pool.get`);
``create()`` and the hooks that may do I/O run outside them.  On a green hub
nothing else can run during such a section, so it takes no lock; on the
threads hub it holds the pool's lock.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Generic, Optional, TypeVar

from . import _checks
from .errors import PoolClosed, PoolTimeout, TooManyWaiters
from .hubs import Hub, HubSpec, Waiter, resolve_hub

__all__ = ["Pool", "TokenPool", "Token", "PoolStats"]

log = logging.getLogger(__name__)

T = TypeVar("T")


class _State:
    """Where a queued caller stands, kept in its waiter's ``value`` until it is
    served (the value is then the item).  Changed only in critical sections."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


_WAITING = _State("waiting")
_GRANTED = _State("granted the right to create")  # a slot is reserved for it
_CANCELLED = _State("cancelled")  # left the queue: timed out or interrupted
_CLOSED = _State("pool closed")

#: Returned by the return critical section: the item must be retired.
_RETIRE: Any = _State("retire")


@dataclass(frozen=True)
class PoolStats:
    """A consistent snapshot of a pool: ``size == idle + in_use + creating``."""

    name: Optional[str]
    size: int
    idle: int
    in_use: int
    creating: int
    waiting: int
    min_size: int
    max_size: int
    requests: int
    waits: int
    timeouts: int
    created: int
    create_failures: int


class _ItemContext:
    """``with pool.item() as obj``: a class rather than a generator, as it is on the
    hot path of every ``with`` checkout."""

    __slots__ = ("_pool", "_timeout", "_item")

    def __init__(self, pool: Pool, timeout: Optional[float]) -> None:
        self._pool = pool
        self._timeout = timeout

    def __enter__(self) -> Any:
        item = self._item = self._pool.get(self._timeout)
        return item

    def __exit__(self, *exc_info: Any) -> None:
        self._pool.put(self._item)


class Pool(Generic[T]):
    """A pool of up to ``max_size`` items, created on demand by :meth:`create`.

    ``min_size`` items are created at once.  With ``order_as_stack`` the most
    recently returned item is reused first (LIFO, keeping the rest idle);
    otherwise items are reused round-robin (FIFO).  ``create`` is a callable
    used instead of overriding :meth:`create`.

    Keyword-only additions to eventlet's API: ``hub`` (a name, a
    :class:`~greenpool.hubs.Hub`, or None to use the process default or
    detection), ``name`` (shown in ``repr``, logs and errors) and
    ``max_waiting`` (None: unbounded; beyond it ``get()`` raises
    :class:`~greenpool.errors.TooManyWaiters` at once).
    """

    # Slots, read on every checkout and return, are much cheaper to reach than a large
    # instance dict; ``__dict__`` stays for subclasses and for per-instance overrides.
    __slots__ = (
        "__dict__", "__weakref__", "hub", "name", "min_size", "max_size", "max_waiting",
        "order_as_stack", "free_items", "current_size", "_creating", "_waiters", "_lock",
        "_clock", "_cooperative", "_file_idle", "_new_waiter", "_plain_wait",
        "_requests", "_waits", "_timeouts", "_created", "_create_failures",
    )

    def __init__(
        self,
        min_size: int = 0,
        max_size: int = 4,
        order_as_stack: bool = False,
        create: Optional[Callable[[], T]] = None,
        *,
        hub: HubSpec = None,
        name: Optional[str] = None,
        max_waiting: Optional[int] = None,
    ) -> None:
        min_size = _checks.check_int("min_size", min_size)
        max_size = _checks.check_int("max_size", max_size)
        if min_size > max_size:
            raise ValueError(f"min_size ({min_size}) must not exceed max_size ({max_size})")
        if not isinstance(order_as_stack, bool):
            raise TypeError(f"order_as_stack must be a bool, got {order_as_stack!r}")
        _checks.check_callable("create", create)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string, got {name!r}")
        self.max_waiting = _checks.check_optional_int("max_waiting", max_waiting)
        self.hub: Hub = resolve_hub(hub)
        self.name = name
        self.min_size = min_size
        self.max_size = max_size
        self.order_as_stack = order_as_stack
        if create is not None:
            self.create = create  # type: ignore[method-assign]
        self.free_items: Deque[T] = deque()
        # Where put() files an idle item: the front (reused first) for a stack.
        self._file_idle = self.free_items.appendleft if order_as_stack else self.free_items.append
        self.current_size = 0
        self._creating = 0
        self._waiters: Deque[Waiter] = deque()
        # Subclasses that wait differently override _wait_for_event; others wait inline.
        # (Whoever replaces _wait_for_event on an instance sets _plain_wait to False.)
        self._plain_wait = type(self)._wait_for_event is Pool._wait_for_event
        self._new_waiter = self.hub.waiter
        self._lock = self.hub.lock()
        self._clock = self.hub.monotonic
        # Green threads switch only at I/O or sleep: there the critical sections need
        # no lock, and the hot paths take none.  Preemptive OS threads always lock.
        self._cooperative = not self.hub.preemptive
        self._requests = self._waits = self._timeouts = 0
        self._created = self._create_failures = 0
        self._prefill(min_size)

    # -- creation -------------------------------------------------------------

    def create(self) -> T:
        """Make a new item.  Override it, or pass ``create=`` to the constructor."""
        raise NotImplementedError("Pool.create: override it or pass create= to the constructor")

    def _prefill(self, count: int) -> None:
        """Create ``count`` items now; if one fails, retire those made and re-raise."""
        made: list[T] = []
        try:
            for _ in range(count):
                with self._lock:
                    self.current_size += 1
                    self._creating += 1
                made.append(self._create_in_slot())
        except BaseException:
            with self._lock:
                self.current_size -= len(made)
            for item in made:
                self._retire(item)
            raise
        for item in made:
            self._dispatch(item)

    def _create_item(self, deadline: Optional[float]) -> T:
        """Make the item for a reserved slot; ``deadline`` is the caller's (hook)."""
        return self.create()

    def _create_in_slot(self, deadline: Optional[float] = None) -> T:
        """Create an item in a slot already counted; free the slot if that fails."""
        try:
            item = self._create_item(deadline)
        except BaseException:
            with self._lock:
                self._create_failures += 1
            self._release_slot(creating=True)
            raise
        with self._lock:
            self._creating -= 1
            self._created += 1
        return item

    # -- checkout -------------------------------------------------------------

    def get(self, timeout: Optional[float] = None) -> T:
        """Return an idle item, a newly created one, or wait for one.

        ``timeout`` (seconds, None to wait for ever) bounds the wait for
        another caller to return an item; on expiry raise
        :class:`~greenpool.errors.PoolTimeout`.  It does not bound
        :meth:`create` itself.
        """
        cooperative = self._cooperative
        if cooperative:
            free = self.free_items
            if free:
                self._requests += 1
                return free.popleft()
        else:
            self._lock.acquire()
        # The critical section: an idle item is taken, a slot reserved (waiter None), or
        # the caller queued.
        try:
            self._requests += 1
            if self.free_items:
                return self.free_items.popleft()
            if self.current_size < self.max_size:
                self.current_size += 1
                self._creating += 1
                waiter = None
            else:
                waiter = self._enqueue_locked()
        finally:
            if not cooperative:
                self._lock.release()
        if waiter is None:
            deadline = None if timeout is None else self._clock() + timeout
            return self._create_in_slot(deadline)
        return self._await_item(waiter, timeout)

    def _enqueue_locked(self) -> Waiter:
        """Queue the caller (in a critical section): no item is idle and no slot free."""
        waiters = self._waiters
        if self.max_waiting is not None and len(waiters) >= self.max_waiting:
            raise TooManyWaiters(
                f"{self._label()}: {len(waiters)} callers already wait "
                f"(max_waiting={self.max_waiting})"
            )
        waiter = self._new_waiter()
        waiter.value = _WAITING
        if not waiters:
            self._first_waiter()
        waiters.append(waiter)
        self._waits += 1
        return waiter

    def _await_item(self, waiter: Waiter, timeout: Optional[float]) -> T:
        """Wait, queued as ``waiter``, for an item (or the right to create one).

        Subclasses that check out their own way queue with
        :meth:`_enqueue_locked` and wait here, without :meth:`get`'s other
        tests.  Whatever interrupts the wait, what the caller was given is
        passed on.
        """
        deadline = None
        try:
            if timeout is not None:
                _checks.check_seconds("timeout", timeout)
                deadline = self._clock() + timeout
            if self._plain_wait:
                waiter.wait(timeout)
            else:
                self._wait_for_event(waiter, timeout)
        except BaseException:
            self._abandon(waiter)
            raise
        value = waiter.value
        if type(value) is not _State:
            return value  # handed an item: the common end of a wait
        return self._waited(waiter, timeout, deadline)

    def _first_waiter(self) -> None:
        """Hook: someone starts waiting in an empty queue (in a critical section)."""

    def _waited(self, waiter: Waiter, timeout: Optional[float], deadline: Optional[float]) -> T:
        """What a caller whose wait ended takes: the item, the right to create, or an error."""
        # Once set, the waiter's value moved on from _WAITING, and only this caller
        # changes it after that: a critical section is needed for a timeout only.
        value = waiter.value
        if value is _WAITING:
            if self._cooperative:
                value = self._leave_locked(waiter, timed_out=True)
            else:
                with self._lock:
                    value = self._leave_locked(waiter, timed_out=True)
            if value is _CANCELLED:
                raise PoolTimeout(f"{self._label()}: no item free within {timeout} s")
        if value is _GRANTED:
            return self._create_in_slot(deadline)
        if value is _CLOSED:
            raise PoolClosed(f"{self._label()} was closed while waiting")
        return value

    def _leave_locked(self, waiter: Waiter, timed_out: bool = False) -> Any:
        """The caller stops waiting; what it was given (its waiter's value) if anything."""
        value = waiter.value
        if value is _WAITING:
            waiter.value = _CANCELLED
            self._waiters.remove(waiter)
            if timed_out:
                self._timeouts += 1
            return _CANCELLED
        return value

    def _wait_for_event(self, waiter: Waiter, timeout: Optional[float]) -> None:
        """Block until ``waiter`` is set or ``timeout`` passes (hook for subclasses)."""
        waiter.wait(timeout)

    def _abandon(self, waiter: Waiter) -> None:
        """The caller is leaving with an exception: pass on whatever it was given."""
        with self._lock:
            value = self._leave_locked(waiter)
        if value is _GRANTED:
            self._release_slot(creating=True)
        elif value is not _CANCELLED and value is not _CLOSED:
            self._dispatch(value)

    # -- return ---------------------------------------------------------------

    def put(self, item: T) -> None:
        """Give ``item`` back: to the first waiter, else to the idle list.

        When the pool was shrunk by :meth:`resize` and is still over its new
        ``max_size``, the item is retired instead.
        """
        if self._cooperative:
            if not self._waiters and self.current_size <= self.max_size:
                self._file_idle(item)
                return
            waiter = self._return_locked(item)
        else:
            with self._lock:
                waiter = self._return_locked(item)
        if waiter is _RETIRE:
            self._retire(item)
        elif waiter is not None:
            waiter.set()

    def _return_locked(self, item: T) -> Any:
        """File ``item``: the waiter it was handed to, None if idle, _RETIRE to retire it."""
        if self.current_size > self.max_size:
            self.current_size -= 1
            return _RETIRE
        if self._waiters:
            waiter = self._waiters.popleft()
            waiter.value = item
            return waiter
        self._file_idle(item)
        return None

    #: The hand-off itself, for subclasses whose put() does more (cleanup, checks).
    _dispatch = put

    def _release_slot(self, creating: bool = False) -> None:
        """Forget one slot (its item is gone, or was never made) and let a waiter create."""
        with self._lock:
            self.current_size -= 1
            if creating:
                self._creating -= 1
            grants = self._grant_locked()
        for waiter in grants:
            waiter.set()

    def _grant_locked(self) -> list[Waiter]:
        """Give the right to create to as many waiters as there are free slots."""
        grants = []
        while self._waiters and self.current_size < self.max_size:
            waiter = self._waiters.popleft()
            waiter.value = _GRANTED
            self.current_size += 1
            self._creating += 1
            grants.append(waiter)
        return grants

    def _close_waiters(self) -> None:
        """Wake every waiter with :class:`~greenpool.errors.PoolClosed`."""
        with self._lock:
            waiters = list(self._waiters)
            self._waiters.clear()
            for waiter in waiters:
                waiter.value = _CLOSED
        for waiter in waiters:
            waiter.set()

    def _retire(self, item: T) -> None:
        """Dispose of an item leaving the pool for good (hook; the generic pool drops it)."""

    def item(self, timeout: Optional[float] = None) -> Any:
        """``with pool.item() as obj:`` gets an item and always puts it back."""
        return _ItemContext(self, timeout)

    # -- size -----------------------------------------------------------------

    def resize(self, new_size: int) -> None:
        """Change ``max_size``.

        Growing wakes waiters at once (each gets the right to create);
        shrinking retires surplus idle items now and surplus items in use as
        they come back.  ``min_size`` is lowered to ``new_size`` if above it.
        """
        new_size = _checks.check_int("new_size", new_size)
        surplus = []
        with self._lock:
            self.max_size = new_size
            self.min_size = min(self.min_size, new_size)
            grants = self._grant_locked()
            while self.free_items and self.current_size > self.max_size:
                surplus.append(self.free_items.pop())
                self.current_size -= 1
        for waiter in grants:
            waiter.set()
        for item in surplus:
            self._retire(item)

    def free(self) -> int:
        """How many ``get()`` calls would succeed now without waiting."""
        return len(self.free_items) + max(0, self.max_size - self.current_size)

    def waiting(self) -> int:
        """How many callers are waiting in ``get()``."""
        return len(self._waiters)

    def stats(self) -> PoolStats:
        """A consistent :class:`PoolStats` snapshot."""
        with self._lock:
            idle = len(self.free_items)
            return PoolStats(
                name=self.name,
                size=self.current_size,
                idle=idle,
                in_use=self.current_size - idle - self._creating,
                creating=self._creating,
                waiting=len(self._waiters),
                min_size=self.min_size,
                max_size=self.max_size,
                requests=self._requests,
                waits=self._waits,
                timeouts=self._timeouts,
                created=self._created,
                create_failures=self._create_failures,
            )

    def _label(self) -> str:
        return f"{type(self).__name__} {self.name!r}" if self.name else type(self).__name__

    def __repr__(self) -> str:
        s = self.stats()
        return (
            f"<{self._label()} {s.in_use} in use, {s.idle} idle, {s.waiting} waiting, "
            f"max {s.max_size}, hub {self.hub.name}>"
        )


class Token:
    """An opaque item for :class:`TokenPool`."""

    __slots__ = ()


class TokenPool(Pool[Token]):
    """A pool of opaque tokens: a counting semaphore with the pool's fairness."""

    def create(self) -> Token:
        return Token()
