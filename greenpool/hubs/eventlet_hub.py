"""The eventlet hub adapter; eventlet is imported only when this module is."""

from __future__ import annotations

from typing import Any, Callable, ContextManager, Optional, TypeVar

import eventlet
import eventlet.event
import eventlet.tpool
import greenlet

from .base import Event, Hub, Task

T = TypeVar("T")


class _EventletEvent(Event):
    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = eventlet.event.Event()

    def set(self) -> None:
        if not self._event.ready():
            self._event.send(True)

    def is_set(self) -> bool:
        return self._event.ready()

    def wait(self, timeout: Optional[float] = None) -> bool:
        self._event.wait(timeout)
        return self._event.ready()


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
            return eventlet.tpool.execute(fn, *args)
        expired = TimeoutError(f"call did not finish within {timeout} s")
        with eventlet.Timeout(timeout, expired):
            return eventlet.tpool.execute(fn, *args)

    def current_task(self) -> Any:
        return greenlet.getcurrent()
