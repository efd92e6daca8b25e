"""The generic pool every connection pool is built on, and the owner of the hand-off.

:class:`Pool` keeps the API of ``eventlet.pools.Pool`` (``create``/``get``/
``put``/``item()``, ``free()``, ``waiting()``, ``resize()``, the
``current_size`` and ``free_items`` attributes) and runs on any hub.

Invariants, held whatever interrupts ``get``, ``create`` or ``put``
(ordinary exceptions, the hub's ``Timeout``, ``GreenletExit``/``kill()``):

* ``current_size == idle + in use + creating <= max_size`` (outside
  :meth:`resize`'s shrinking): ``free_items`` holds the idle items, and
  ``creating`` counts slots reserved for an item being made.
* Waiters are served first come, first served.  An item (or the right to
  create one) is handed to a waiter inside a critical section; a waiter that
  gives up afterwards passes it on instead of keeping it, so nothing is
  swallowed.
* A slot whose item is gone, or was never made, is freed and offered on: to
  the next waiter as the right to create (the generic pool), or to the
  pool's growth (connection pools, which grow in the background; see
  :meth:`Pool._slot_freed`).

Every state change happens under the pool's lock, in a section that never
yields; ``create()`` and anything else that may do I/O runs outside it.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Deque, Generic, Optional, TypeVar

from . import validation
from .errors import PoolClosed, PoolTimeout, TooManyWaiters
from .hubs import Hub, HubSpec, Waiter, resolve_hub

__all__ = ["Pool", "TokenPool", "Token", "PoolStats"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_INF = float("inf")


class _State:
    """Where a queued caller stands, kept in its waiter's ``value`` until it is
    served (the value is then the item)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


_WAITING = _State("waiting")
_GRANTED = _State("granted the right to create")  # a slot is reserved for it
_CANCELLED = _State("cancelled")  # left the queue: timed out or interrupted
_CLOSED = _State("pool closed")


@dataclass(frozen=True)
class PoolStats:
    """A consistent snapshot of a pool: ``size == idle + in_use + creating``.

    ``requests`` counts ``get()`` calls, ``waits`` those that queued,
    ``timeouts`` those whose timeout ran out in the queue; ``created`` and
    ``create_failures`` count calls of ``create()``.
    """

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
    """``with pool.item() as obj``."""

    __slots__ = ("_pool", "_timeout", "_item")

    def __init__(self, pool: Pool[Any], timeout: Optional[float]) -> None:
        self._pool = pool
        self._timeout = timeout

    def __enter__(self) -> Any:
        self._item = self._pool.get(self._timeout)
        return self._item

    def __exit__(self, *exc_info: Any) -> None:
        self._pool.put(self._item)


class Pool(Generic[T]):
    """A pool of up to ``max_size`` items, made on demand by :meth:`create`.

    ``min_size`` items are made at once.  With ``order_as_stack`` the most
    recently returned item is reused first (LIFO, keeping the rest idle);
    otherwise items are reused round-robin (FIFO).  ``create`` is a callable
    used instead of overriding :meth:`create`.  A ``get()`` that finds
    nothing idle and a free slot creates the item itself, as
    ``eventlet.pools`` does.

    Keyword-only additions to eventlet's API: ``hub`` (a name, a
    :class:`~greenpool.hubs.Hub`, or None for the process default or
    detection), ``name`` (shown in ``repr``, logs and errors) and
    ``max_waiting`` (None: unbounded; beyond it ``get()`` raises
    :class:`~greenpool.errors.TooManyWaiters` at once).
    """

    # Slots, read on every checkout and return; ``__dict__`` stays for subclasses.
    __slots__ = (
        "__dict__", "__weakref__", "hub", "name", "min_size", "max_size", "max_waiting",
        "order_as_stack", "free_items", "current_size", "_creating", "_waiters", "_lock",
        "_clock", "_cooperative", "_closed", "_create_fn", "_requests", "_waits",
        "_timeouts", "_wait_time", "_created", "_create_failures",
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
        min_size = validation.check_int("min_size", min_size)
        max_size = validation.check_int("max_size", max_size)
        if min_size > max_size:
            raise ValueError(f"min_size ({min_size}) must not exceed max_size ({max_size})")
        if not isinstance(order_as_stack, bool):
            raise TypeError(f"order_as_stack must be a bool, got {order_as_stack!r}")
        self._create_fn = validation.check_callable("create", create)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string, got {type(name).__name__}")
        self.max_waiting = validation.check_optional_int("max_waiting", max_waiting)
        self.hub: Hub = resolve_hub(hub)
        self.name = name
        self.min_size = min_size
        self.max_size = max_size
        self.order_as_stack = order_as_stack
        self.free_items: Deque[T] = deque()
        self.current_size = 0
        self._creating = 0
        self._waiters: Deque[Waiter] = deque()
        self._lock = self.hub.lock()
        # Green threads switch only at I/O or sleep: the critical sections of get() and
        # put() need no lock there when they take their short path.
        self._cooperative = not self.hub.preemptive
        self._clock = self.hub.monotonic
        self._closed = False
        self._requests = self._waits = self._timeouts = 0
        self._wait_time = 0.0  # seconds callers spent queued
        self._created = self._create_failures = 0
        self._prefill(min_size)

    # -- creation -------------------------------------------------------------

    def create(self) -> T:
        """Make a new item.  Override it, or pass ``create=`` to the constructor."""
        if self._create_fn is None:
            raise NotImplementedError(
                "Pool.create: override it or pass create= to the constructor"
            )
        return self._create_fn()

    def _prefill(self, count: int) -> None:
        """Create ``count`` items now, in the caller; if one fails, drop those made."""
        made: list[T] = []
        try:
            for _ in range(count):
                made.append(self.create())
        except BaseException:
            for item in made:
                self._retire(item)
            raise
        with self._lock:
            self.current_size += len(made)
            self._created += len(made)
        for item in made:
            self._add_created(item, reserved=False)

    def _create_reserved(self) -> T:
        """Create an item for a slot already reserved; free the slot if that fails."""
        try:
            item = self.create()
        except BaseException:
            with self._lock:
                self._create_failures += 1
            self._release_slot(creating=True)
            raise
        with self._lock:
            self._creating -= 1
            self._created += 1
        return item

    def _reserve_locked(self) -> None:
        self.current_size += 1
        self._creating += 1

    def _add_created(self, item: T, reserved: bool = True) -> None:
        """File a new item made in a reserved slot (``reserved``: still counted as
        creating): to the first waiter, else idle."""
        if reserved:
            with self._lock:
                self._creating -= 1
                self._created += 1
        self._hand_back(item)

    # -- checkout -------------------------------------------------------------

    def get(self, timeout: Optional[float] = None) -> T:
        """Return an idle item, a newly created one, or wait for one.

        ``timeout`` (seconds, None to wait for ever) bounds the wait in the
        queue; when it runs out, raise :class:`~greenpool.errors.PoolTimeout`.
        It does not bound :meth:`create` itself.
        """
        if timeout is not None and not (type(timeout) is float and 0.0 <= timeout < _INF):
            timeout = validation.check_seconds("timeout", timeout)
        if self._cooperative and self.free_items:
            # A green hub runs nothing else until this task does I/O: no lock needed.
            self._requests += 1
            return self.free_items.popleft()
        with self._lock:
            self._requests += 1
            if self.free_items:
                return self.free_items.popleft()
            if self._closed:
                raise PoolClosed(f"{self._label()} is closed")
            if self.current_size < self.max_size and self._grows_in_caller():
                self._reserve_locked()
                waiter = None
            else:
                waiter = self._enqueue_locked()
        if waiter is None:
            return self._create_reserved()
        self._queued()
        return self._await(waiter, timeout)

    def _grows_in_caller(self) -> bool:
        """Whether a caller that finds a free slot creates the item itself (eventlet's
        way); connection pools queue instead and grow in the background."""
        return True

    def _queued(self) -> None:
        """Hook, outside the lock: a caller has just joined the queue."""

    def _enqueue_locked(self) -> Waiter:
        waiters = self._waiters
        if self.max_waiting is not None and len(waiters) >= self.max_waiting:
            raise TooManyWaiters(
                f"{self._label()}: {len(waiters)} callers already wait "
                f"(max_waiting={self.max_waiting})"
            )
        waiter = self.hub.waiter()
        waiter.value = _WAITING
        waiters.append(waiter)
        self._waits += 1
        return waiter

    def _await(self, waiter: Waiter, timeout: Optional[float]) -> T:
        """Wait, queued as ``waiter``; whatever interrupts the wait, what the caller
        was given is passed on."""
        started = self._clock()
        try:
            waiter.wait(timeout)
        except BaseException:
            self._abandon(waiter)
            raise
        self._wait_time += self._clock() - started  # (not exact across OS threads)
        # Once set, the value is this caller's alone: only a timeout needs the lock.
        value = waiter.value
        if value is _WAITING:
            with self._lock:
                value = waiter.value
                if value is _WAITING:  # timed out, and nobody served it meanwhile
                    waiter.value = _CANCELLED
                    self._waiters.remove(waiter)
                    self._timeouts += 1
            if value is _WAITING:
                raise self._timeout_error(timeout)
        if value is _GRANTED:
            return self._create_reserved()
        if value is _CLOSED:
            raise PoolClosed(f"{self._label()} was closed while waiting")
        return value

    def _timeout_error(self, timeout: Optional[float]) -> PoolTimeout:
        """The error for a caller whose ``timeout`` ran out in the queue."""
        return PoolTimeout(f"{self._label()}: no item free within {timeout} s")

    def _abandon(self, waiter: Waiter) -> None:
        """The caller leaves with an exception: pass on whatever it was given."""
        with self._lock:
            value = waiter.value
            if value is _WAITING:
                waiter.value = _CANCELLED
                self._waiters.remove(waiter)
        if value is _GRANTED:
            self._release_slot(creating=True)
        elif not isinstance(value, _State):
            self._hand_back(value)  # handed to it, never taken: to the next waiter

    # -- return ---------------------------------------------------------------

    def put(self, item: T) -> None:
        """Give ``item`` back: to the first waiter, else to the idle list.

        When the pool was shrunk by :meth:`resize` and is still over its new
        ``max_size``, the item is retired instead.  On a green hub, a
        ``put()`` that hands the item to a waiter yields once, so that the
        waiter takes it (or, if it is being interrupted, passes it on) before
        ``put()`` returns, as in ``eventlet.pools``.
        """
        if self._hand_back(item) and self.hub.green:
            self.hub.sleep(0)

    def _hand_back(self, item: T) -> bool:
        """The hand-off of :meth:`put`, never yielding; true if a waiter got the item."""
        if (
            self._cooperative
            and not self._waiters
            and self.current_size <= self.max_size
            and not self._closed
        ):
            # As in get(): no lock needed on a green hub.
            if self.order_as_stack:
                self.free_items.appendleft(item)
            else:
                self.free_items.append(item)
            return False
        with self._lock:
            if self.current_size > self.max_size or self._closed:
                self.current_size -= 1
                retire = True
            elif self._waiters:
                waiter = self._waiters.popleft()
                waiter.value = item
                retire = False
            else:
                self._file_idle(item)
                return False
        if retire:
            self._retire(item)
            return False
        waiter.set()
        return True

    def _file_idle(self, item: T) -> None:
        """File an item as idle: first in line for a stack, last otherwise."""
        if self.order_as_stack:
            self.free_items.appendleft(item)
        else:
            self.free_items.append(item)

    def _release_slot(self, creating: bool = False) -> None:
        """Forget one slot (its item is gone, or was never made) and offer it on."""
        with self._lock:
            self.current_size -= 1
            if creating:
                self._creating -= 1
        self._slot_freed()

    def _slot_freed(self) -> None:
        """A slot was freed: grant the right to create to waiters while slots are free."""
        with self._lock:
            grants = []
            while self._waiters and self.current_size < self.max_size:
                waiter = self._waiters.popleft()
                waiter.value = _GRANTED
                self._reserve_locked()
                grants.append(waiter)
        for waiter in grants:
            waiter.set()

    def _close_waiters(self) -> None:
        """Refuse further checkouts and wake every waiter with PoolClosed."""
        with self._lock:
            self._closed = True
            waiters = list(self._waiters)
            self._waiters.clear()
            for waiter in waiters:
                waiter.value = _CLOSED
        for waiter in waiters:
            waiter.set()

    def close(self) -> None:
        """Refuse further checkouts (:class:`~greenpool.errors.PoolClosed`), wake
        every waiter with PoolClosed, and retire the idle items, and the items
        still out as they are put back.  Idempotent."""
        self._close_waiters()
        with self._lock:
            idle = list(self.free_items)
            self.free_items.clear()
            self.current_size -= len(idle)
        for item in idle:
            self._retire(item)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def _retire(self, item: T) -> None:
        """Dispose of an item leaving the pool for good (hook; the generic pool drops it)."""

    def item(self, timeout: Optional[float] = None) -> Any:
        """``with pool.item() as obj:`` gets an item and always puts it back."""
        return _ItemContext(self, timeout)

    # -- size -----------------------------------------------------------------

    def resize(self, new_size: int) -> None:
        """Change ``max_size``.

        Growing serves waiters at once; shrinking retires surplus idle items
        now and surplus items in use as they come back.  ``min_size`` is
        lowered to ``new_size`` if above it.
        """
        new_size = validation.check_int("new_size", new_size)
        surplus = []
        with self._lock:
            self.max_size = new_size
            self.min_size = min(self.min_size, new_size)
            while self.free_items and self.current_size > self.max_size:
                surplus.append(self.free_items.pop())
                self.current_size -= 1
        self._slot_freed()
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
        s = Pool.stats(self)
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
