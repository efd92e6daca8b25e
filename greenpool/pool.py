"""The generic token pool every connection pool is built on.

:class:`Pool` keeps the API of ``eventlet.pools.Pool`` (``create``/``get``/
``put``/``item()``, ``free()``, ``waiting()``, ``resize()``, the
``current_size`` and ``free_items`` attributes) and runs on any hub.

Invariants, held whatever interrupts ``get``, ``create`` or ``put``
(ordinary exceptions, the hub's ``Timeout``, ``GreenletExit``/``kill()``):

* ``current_size`` counts every slot: items idle in ``free_items``, items
  handed out, and slots reserved for an item being created.
* Waiters are served first come, first served.  An item (or the right to
  create one) is handed to a waiter under the lock; a waiter that gives up
  afterwards passes it on instead of keeping it, so nothing is swallowed.
* A failed ``create()`` frees its slot, and the right to create passes to
  the next waiter.

All state changes happen in short critical sections that never yield;
``create()`` and the hooks that may do I/O run outside them.
"""

from __future__ import annotations

import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Generic, Iterator, Optional, TypeVar

from . import _checks
from .errors import PoolClosed, PoolTimeout, TooManyWaiters
from .hubs import Hub, HubSpec, resolve_hub

__all__ = ["Pool", "TokenPool", "Token", "PoolStats"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_WAITING, _SERVED, _GRANTED, _CANCELLED, _CLOSED = range(5)


class _Waiter:
    """One caller queued in ``get()``; ``state`` changes only under the pool lock."""

    __slots__ = ("event", "item", "state")

    def __init__(self, event: Any) -> None:
        self.event = event
        self.item: Any = None
        self.state = _WAITING


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
        self.current_size = 0
        self._creating = 0
        self._waiters: Deque[_Waiter] = deque()
        self._lock = self.hub.lock()
        # Green threads switch only at I/O or sleep, so the lock-free fast paths of
        # get()/put() are safe there; preemptive threads always take the lock.
        self._cooperative = not self.hub.preemptive
        self._requests = self._waits = self._timeouts = 0
        self._wait_time = 0.0
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
        if self._cooperative:
            # Fast path: on a green hub nothing can run between these lines.
            free = self.free_items
            if free:
                self._requests += 1
                return free.popleft()
        with self._lock:
            self._requests += 1
            if self.free_items:
                return self.free_items.popleft()
            if self.current_size < self.max_size:
                self.current_size += 1
                self._creating += 1
                waiter = None
            else:
                if self.max_waiting is not None and len(self._waiters) >= self.max_waiting:
                    raise TooManyWaiters(
                        f"{self._label()}: {len(self._waiters)} callers already wait "
                        f"(max_waiting={self.max_waiting})"
                    )
                waiter = _Waiter(self.hub.event())
                self._waiters.append(waiter)
                self._waits += 1
        if waiter is None:
            deadline = None if timeout is None else self.hub.monotonic() + timeout
            return self._create_in_slot(deadline)
        return self._wait(waiter, timeout)

    def _wait(self, waiter: _Waiter, timeout: Optional[float]) -> T:
        started = self.hub.monotonic()
        deadline = None
        try:
            if timeout is not None:
                _checks.check_seconds("timeout", timeout)
                deadline = started + timeout
            self._wait_for_event(waiter.event, timeout)
        except BaseException:
            self._abandon(waiter)
            raise
        finally:
            self._wait_time += self.hub.monotonic() - started
        # Once set, the event guarantees the state moved on from _WAITING, and only
        # this waiter changes it after that: the lock is needed for a timeout only.
        state = waiter.state
        if state == _WAITING:
            with self._lock:
                state = waiter.state
                if state == _WAITING:
                    waiter.state = _CANCELLED
                    self._waiters.remove(waiter)
                    self._timeouts += 1
        if state == _SERVED:
            return waiter.item
        if state == _GRANTED:
            return self._create_in_slot(deadline)
        if state == _CLOSED:
            raise PoolClosed(f"{self._label()} was closed while waiting")
        raise PoolTimeout(f"{self._label()}: no item free within {timeout} s")

    def _wait_for_event(self, event: Any, timeout: Optional[float]) -> None:
        """Block until ``event`` is set or ``timeout`` passes (hook for subclasses)."""
        event.wait(timeout)

    def _abandon(self, waiter: _Waiter) -> None:
        """The waiter is leaving with an exception: pass on whatever it was given."""
        with self._lock:
            state = waiter.state
            if state == _WAITING:
                waiter.state = _CANCELLED
                self._waiters.remove(waiter)
        if state == _SERVED:
            self._dispatch(waiter.item)
        elif state == _GRANTED:
            self._release_slot(creating=True)

    # -- return ---------------------------------------------------------------

    def put(self, item: T) -> None:
        """Give ``item`` back: to the first waiter, else to the idle list.

        When the pool was shrunk by :meth:`resize` and is still over its new
        ``max_size``, the item is retired instead.
        """
        if self._cooperative and not self._waiters and self.current_size <= self.max_size:
            # Fast path: on a green hub nothing can run between these lines.
            if self.order_as_stack:
                self.free_items.appendleft(item)
            else:
                self.free_items.append(item)
            return
        with self._lock:
            if self.current_size > self.max_size:
                self.current_size -= 1
                waiter = None
            elif self._waiters:
                waiter = self._waiters.popleft()
                waiter.item = item
                waiter.state = _SERVED
            else:
                if self.order_as_stack:
                    self.free_items.appendleft(item)
                else:
                    self.free_items.append(item)
                return
        if waiter is not None:
            waiter.event.set()
        else:
            self._retire(item)

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
            waiter.event.set()

    def _grant_locked(self) -> list[_Waiter]:
        """Give the right to create to as many waiters as there are free slots."""
        grants = []
        while self._waiters and self.current_size < self.max_size:
            waiter = self._waiters.popleft()
            waiter.state = _GRANTED
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
                waiter.state = _CLOSED
        for waiter in waiters:
            waiter.event.set()

    def _retire(self, item: T) -> None:
        """Dispose of an item leaving the pool for good (hook; the generic pool drops it)."""

    @contextlib.contextmanager
    def item(self, timeout: Optional[float] = None) -> Iterator[T]:
        """``with pool.item() as obj:`` gets an item and always puts it back."""
        obj = self.get(timeout)
        try:
            yield obj
        finally:
            self.put(obj)

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
            waiter.event.set()
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
