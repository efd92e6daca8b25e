"""The eventlet hub adapter; eventlet is imported only when this module is."""

from __future__ import annotations

from typing import Any, Callable, ContextManager, Optional, TypeVar

import eventlet
import eventlet.tpool
import greenlet
from eventlet.hubs import get_hub

from .base import Event, Hub, Task, ThreadCallTimeout, capture, unwrap

T = TypeVar("T")


class _EventletEvent(Event):
    """A one-shot event on eventlet's hub, with any number of waiters.

    Written on the hub's scheduling rather than wrapping ``eventlet.event.Event``:
    the pool makes one per waiting checkout, so its cost is paid on every
    contended hand-off.  ``set()`` never switches; each waiter is resumed by the
    hub at its next turn, unless it has left already (timed out, killed).
    """

    __slots__ = ("_flag", "_waiters")

    def __init__(self) -> None:
        self._flag = False
        self._waiters: list[Any] = []

    def set(self) -> None:
        if self._flag:
            return
        self._flag = True
        if self._waiters:
            hub = get_hub()
            for waiter in self._waiters:
                hub.schedule_call_global(0, self._wake, waiter)

    def _wake(self, waiter: Any) -> None:
        if waiter in self._waiters:  # it may have left meanwhile: then leave it alone
            waiter.switch()

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: Optional[float] = None) -> bool:
        if self._flag:
            return True
        current = greenlet.getcurrent()
        hub = get_hub()
        self._waiters.append(current)
        timer = None if timeout is None else hub.schedule_call_global(
            timeout, self._wake, current
        )
        try:
            hub.switch()
        finally:
            self._waiters.remove(current)
            if timer is not None:
                timer.cancel()
        return self._flag


class _EventletTask(Task):
    __slots__ = ("_thread",)

    def __init__(self, thread: Any) -> None:
        self._thread = thread

    def cancel(self) -> None:
        self._thread.kill()


class EventletHub(Hub):
    """eventlet green threads; OS-thread calls go through ``eventlet.tpool``."""

    name = "eventlet"
    green = True
    preemptive = False
    Timeout = eventlet.Timeout
    killed = (greenlet.GreenletExit,)

    def sleep(self, seconds: float) -> None:
        eventlet.sleep(seconds)

    def spawn(self, fn: Callable[..., Any], *args: Any) -> Task:
        return _EventletTask(eventlet.spawn(fn, *args))

    def spawn_after(self, seconds: float, fn: Callable[..., Any], *args: Any) -> Task:
        return _EventletTask(eventlet.spawn_after(seconds, fn, *args))

    def event(self) -> Event:
        return _EventletEvent()

    def timeout(self, seconds: Optional[float], exception: BaseException) -> ContextManager[Any]:
        return eventlet.Timeout(seconds, exception)

    def run_in_thread(
        self, fn: Callable[..., T], *args: Any, timeout: Optional[float] = None
    ) -> T:
        if timeout is None:
            return unwrap(eventlet.tpool.execute(capture, fn, args))
        expired = ThreadCallTimeout(f"call did not finish within {timeout} s")
        with eventlet.Timeout(timeout, expired):
            return unwrap(eventlet.tpool.execute(capture, fn, args))

    def current_task(self) -> Any:
        return greenlet.getcurrent()
