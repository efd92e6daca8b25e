"""What the green hubs (eventlet, gevent) share: the single-task waiter.

:class:`GreenWaiter` is what the pool parks a queued ``get()`` on; each
green hub adapter subclasses it with three hooks, all through the hub's
public API: the current hub, a one-shot timer, and a "call soon" on the
hub's loop.  Woken waiters are resumed in batches through a per-hub
:class:`Resumer`: one "call soon" for all the waiters woken before the
hub's next turn, instead of one each, so that they resume together after
the hub's I/O pass, in the order they were woken.
"""

from __future__ import annotations

import weakref
from collections import deque
from typing import Any, Callable, Deque, Optional

from greenlet import getcurrent

__all__ = ["GreenWaiter", "Resumer"]


class Resumer:
    """The woken waiters of one green hub, resumed in order at its next turn."""

    __slots__ = ("ready", "scheduled", "call_soon", "__weakref__")

    def __init__(self, call_soon: Callable[[Callable[[], None]], Any]) -> None:
        self.ready: Deque[GreenWaiter] = deque()
        self.scheduled = False
        self.call_soon = call_soon

    def add(self, waiter: GreenWaiter) -> None:
        """Resume ``waiter`` at the hub's next turn (never switches)."""
        self.ready.append(waiter)
        if not self.scheduled:
            self.scheduled = True
            self.call_soon(self.run)

    def run(self) -> None:
        """In the hub: resume the waiters woken so far.

        Any woken meanwhile wait for the next turn, so that I/O is polled in
        between.
        """
        ready = self.ready
        count = len(ready)
        self.scheduled = False
        try:
            for _ in range(count):
                task = ready.popleft()._task
                if task is not None:  # still waiting: not timed out or killed meanwhile
                    task.switch()
        finally:
            if ready and not self.scheduled:
                self.scheduled = True
                self.call_soon(self.run)


#: One Resumer per hub object (there is one hub per OS thread).
_resumers: weakref.WeakKeyDictionary[Any, Resumer] = weakref.WeakKeyDictionary()


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

    # -- the event -------------------------------------------------------------------

    def set(self) -> None:
        if self._flag:
            return
        self._flag = True
        if self._task is not None:
            self._resumer.add(self)  # type: ignore[union-attr]

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
        resumer = _resumers.get(hub)
        if resumer is None:
            resumer = _resumers[hub] = Resumer(self._call_soon(hub))
        self._resumer = resumer
        self._task = getcurrent()
        cancel = None if timeout is None else self._call_later(hub, timeout, self._resume)
        try:
            hub.switch()
        finally:
            self._task = None
            if cancel is not None:
                cancel()
        return self._flag
