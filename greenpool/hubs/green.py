"""What the green hubs (eventlet, gevent) share: the single-task waiter.

:class:`GreenWaiter` is what the pool parks a queued ``get()`` on; each
green hub adapter subclasses it with its hooks (the current hub, a
one-shot timer, a "call soon" on the hub's loop, and how a task parks:
straight to the hub's greenlet when the hub's own ``switch()`` would only
add bookkeeping, which was a fifth of a contended hand-off on eventlet).
Woken waiters are resumed through a per-hub :class:`Resumer`, with one
"call soon" per batch of wake-ups instead of one per wake-up (on eventlet
each is a timer object, a heap push and a heap pop).

Measured and left out: a direct hand-off, where the task about to park
switches straight to the oldest woken waiter instead of to the hub.  It
saves a hub turn per hand-off, yet on the contended benchmark against real
databases it lowered throughput by about a tenth on both hubs: the woken
waiters then send their queries one by one in the middle of the hub's I/O
pass instead of together after it.  Measured again later, against ideals of
the same age: 4,000 fewer instructions per contended query on eventlet and
PostgreSQL, and the 2 ms query went from 0.97 to 0.99 of ideal, yet
``SELECT 1`` fell from 0.79-0.80 to 0.71-0.74 (the FIFO reference: 0.97
and 0.82 before, 0.78 and 0.86 after, in the same two pairs of runs): on a
machine whose database server shares the client's CPUs, queries sent
one at a time cost more than the hub turn saves.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, Optional

from greenlet import getcurrent

__all__ = ["GreenWaiter", "Resumer"]


class Resumer:
    """The woken waiters of one green hub (one per OS thread), resumed in order.

    :meth:`GreenWaiter.set` queues on ``ready`` and arms the hub's "call
    soon" when ``scheduled`` is false.
    """

    __slots__ = ("ready", "scheduled", "call_soon")

    def __init__(self, call_soon: Callable[[Callable[[], None]], Any]) -> None:
        self.ready: Deque[GreenWaiter] = deque()
        self.scheduled = False
        self.call_soon = call_soon

    def run(self) -> None:
        """In the hub: resume the waiters queued now.

        Any woken meanwhile wait for the next turn, as with the hub's own
        timers, so that I/O is polled in between.
        """
        ready = self.ready
        self.scheduled = False
        try:
            for _ in range(len(ready)):
                task = ready.popleft()._task
                if task is not None:  # still waiting: not timed out or killed meanwhile
                    task.switch()
        finally:
            if ready and not self.scheduled:
                self.scheduled = True
                self.call_soon(self.run)


class GreenWaiter:
    """One green task waiting once; ``value`` carries what the setter hands over.

    ``set()`` never switches.  A task that stopped waiting (timed out,
    killed) is never resumed by a late ``set()``: ``_task`` is cleared as it
    leaves.  Subclasses provide the hub hooks below.
    """

    __slots__ = ("value", "_flag", "_task", "_resumer")

    def __init__(self) -> None:
        self.value: Any = None
        self._flag = False
        self._task: Any = None  # the waiting task, while it waits
        self._resumer: Optional[Resumer] = None

    # -- hub hooks -------------------------------------------------------------------

    @staticmethod
    def _current_hub() -> Any:
        """The running hub (an object whose ``switch()`` parks the calling task)."""
        raise NotImplementedError

    @staticmethod
    def _call_later(hub: Any, seconds: float, fn: Callable[[], None]) -> Callable[[], Any]:
        """Call ``fn`` in the hub after ``seconds``; return what cancels it."""
        raise NotImplementedError

    @staticmethod
    def _call_soon(hub: Any) -> Callable[[Callable[[], None]], Any]:
        """A function that makes the hub call its argument at its next turn."""
        raise NotImplementedError

    @staticmethod
    def _park(hub: Any, task: Any) -> None:
        """Switch from ``task`` (the current one) to the hub until resumed.

        The default is the hub's own ``switch()``; an adapter may go
        straight to the hub's greenlet where that ``switch()`` would only
        add its bookkeeping.
        """
        hub.switch()

    # -- the event -------------------------------------------------------------------

    def set(self) -> None:
        if self._flag:
            return
        self._flag = True
        if self._task is not None:
            resumer: Resumer = self._resumer  # type: ignore[assignment]
            resumer.ready.append(self)
            if not resumer.scheduled:
                resumer.scheduled = True
                resumer.call_soon(resumer.run)

    def is_set(self) -> bool:
        return self._flag

    def _resume(self) -> None:
        task = self._task
        if task is not None:
            task.switch()

    def wait(self, timeout: Optional[float] = None) -> bool:
        if self._flag:
            return True
        hub = self._current_hub()
        try:
            self._resumer = hub._greenpool_resumer
        except AttributeError:
            self._resumer = hub._greenpool_resumer = Resumer(self._call_soon(hub))
        task = self._task = getcurrent()
        cancel = None if timeout is None else self._call_later(hub, timeout, self._resume)
        try:
            self._park(hub, task)
        finally:
            self._task = None
            if cancel is not None:
                cancel()
        return self._flag
