"""What the green hubs (eventlet, gevent) share: the single-task waiter.

:class:`GreenWaiter` is what the pool parks a queued ``get()`` on; each
green hub adapter subclasses it with its hooks (the current hub, a
one-shot timer, a "call soon" on the hub's loop, and whether a task may
park straight on the hub's greenlet, skipping the hub's own ``switch()``
where it would only add bookkeeping: a fifth of a contended hand-off on
eventlet).
Woken waiters are resumed through a per-hub :class:`Resumer`, with one
"call soon" per batch of wake-ups instead of one per wake-up (on eventlet
each is a timer object, a heap push and a heap pop).

A direct hand-off when there is nothing to batch: a task about to park
switches straight to the oldest woken waiter, instead of to the hub, when
the hub's recent turns woke fewer than two waiters each on average
(:data:`BATCHING_LOAD`), and at most once per hub turn.  Where each turn
wakes one waiter (queries that take milliseconds), the woken waiter sends
its query a hub turn sooner: the 2 ms query went from 0.98 to 0.99 of ideal
on eventlet and from 0.99 to 1.00 on gevent, in three pairs of runs each.
Where turns wake several (``SELECT 1`` on a busy hub), the waiters stay
batched and send their queries together after the hub's I/O pass: handing
off directly there too, on every park, had lowered ``SELECT 1`` from
0.79-0.80 to 0.71-0.74 of ideal on PostgreSQL (queries sent one at a time
cost more than the hub turn saves when the server shares the client's
CPUs).  The once-per-turn bound keeps two tasks that wake each other from
looping without ever letting the hub poll I/O or fire its timers.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Deque, Optional

from greenlet import getcurrent

__all__ = ["BATCHING_LOAD", "GreenWaiter", "Resumer"]

#: Wake-ups per hub turn (a moving average) from which woken waiters are left to the
#: hub's next turn, together, instead of being handed off directly.
BATCHING_LOAD = 2.0


class Resumer:
    """The woken waiters of one green hub (one per OS thread), resumed in order.

    :meth:`GreenWaiter.set` queues on ``ready`` and arms the hub's "call
    soon" when ``scheduled`` is false.  ``load`` is the moving average of
    the wake-ups per turn (those handed off directly included);
    ``handed_off`` is true from a direct hand-off until the turn that
    follows it (and during a turn, whose waiters are resumed right there).
    """

    __slots__ = ("ready", "scheduled", "call_soon", "load", "handed_off")

    def __init__(self, call_soon: Callable[[Callable[[], None]], Any]) -> None:
        self.ready: Deque[GreenWaiter] = deque()
        self.scheduled = False
        self.call_soon = call_soon
        self.load = 1.0
        self.handed_off = False

    def run(self) -> None:
        """In the hub: resume the waiters queued now.

        Any woken meanwhile wait for the next turn, as with the hub's own
        timers, so that I/O is polled in between.
        """
        ready = self.ready
        count = len(ready)
        self.scheduled = False
        self.load = (3.0 * self.load + count + self.handed_off) * 0.25
        self.handed_off = True
        try:
            for _ in range(count):
                task = ready.popleft()._task
                if task is not None:  # still waiting: not timed out or killed meanwhile
                    task.switch()
        finally:
            self.handed_off = False
            if ready and not self.scheduled:
                self.scheduled = True
                self.call_soon(self.run)

    def hand_off(self) -> bool:
        """Switch to the oldest woken waiter still waiting; false if there is none.

        The caller parks this way: it is resumed later like any waiter.
        A turn of the hub is armed while ``ready`` is not empty, so
        ``handed_off`` is cleared at that turn.
        """
        ready = self.ready
        while ready:
            task = ready.popleft()._task
            if task is not None:
                self.handed_off = True
                task.switch()
                return True
        return False


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
    def _plain(hub: Any, task: Any) -> bool:
        """Whether ``task`` (the current one) may switch away without the hub's
        ``switch()``, which would only add its bookkeeping: it has no hook that
        switch would run.  False by default."""
        return False

    @staticmethod
    def _switch_to_hub(hub: Any) -> None:
        """Switch straight to the hub's greenlet (for a plain task, see ``_plain``)."""
        raise NotImplementedError

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
            resumer = self._resumer = hub._greenpool_resumer
        except AttributeError:
            resumer = self._resumer = hub._greenpool_resumer = Resumer(self._call_soon(hub))
        task = self._task = getcurrent()
        cancel = None if timeout is None else self._call_later(hub, timeout, self._resume)
        try:
            if not self._plain(hub, task):
                hub.switch()
            elif not (resumer.ready and not resumer.handed_off
                      and resumer.load < BATCHING_LOAD and resumer.hand_off()):
                self._switch_to_hub(hub)
        finally:
            self._task = None
            if cancel is not None:
                cancel()
        return self._flag
