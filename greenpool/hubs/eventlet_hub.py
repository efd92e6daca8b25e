"""The eventlet hub adapter; eventlet is imported only when this module is."""

from __future__ import annotations

import functools
from typing import Any, Callable, ContextManager, Optional, TypeVar

import eventlet
import eventlet.greenthread
import eventlet.tpool
import greenlet
from eventlet.hubs import get_hub, trampoline

from .base import Event, Hub, Task, ThreadCallTimeout, capture, unwrap
from .green import GreenWaiter

T = TypeVar("T")


class _EventletWaiter(GreenWaiter):
    """The single-task waiter on eventlet's hub (see :class:`GreenWaiter`)."""

    __slots__ = ()

    _current_hub = staticmethod(get_hub)

    @staticmethod
    def _call_later(hub: Any, seconds: float, fn: Callable[[], None]) -> Callable[[], Any]:
        return hub.schedule_call_global(seconds, fn).cancel

    @staticmethod
    def _call_soon(hub: Any) -> Callable[[Callable[[], None]], Any]:
        return functools.partial(hub.schedule_call_global, 0)



class _EventletEvent(Event):
    """A one-shot event on eventlet's hub, with any number of waiters.

    ``set()`` never switches; each waiter is resumed by the hub at its next
    turn, unless it has left already (timed out, killed).
    """

    __slots__ = ("_flag", "_waiters")

    def __init__(self) -> None:
        self._flag = False
        self._waiters: list[_EventletWaiter] = []

    def set(self) -> None:
        if self._flag:
            return
        self._flag = True
        for waiter in self._waiters:
            waiter.set()

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: Optional[float] = None) -> bool:
        if self._flag:
            return True
        waiter = _EventletWaiter()
        self._waiters.append(waiter)
        try:
            waiter.wait(timeout)
        finally:
            self._waiters.remove(waiter)
        return self._flag


class _EventletTask(Task):
    __slots__ = ("_thread", "_timer")

    def __init__(self, thread: Any, timer: Any = None) -> None:
        self._thread = thread
        self._timer = timer

    def cancel(self) -> None:
        thread = self._thread
        if self._timer is not None and not thread and not thread.dead:
            # Not started: cancelling the timer is enough, and unlike kill() it never
            # switches, so the sweeper can re-arm from inside the pool's code.
            self._timer.cancel()
        else:
            thread.kill()


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
        # eventlet.spawn_after's own way, keeping the timer so that cancel() can stop it.
        hub = get_hub()
        thread = eventlet.greenthread.GreenThread(hub.greenlet)
        timer = hub.schedule_call_global(seconds, thread.switch, fn, args, {})
        return _EventletTask(thread, timer)

    def event(self) -> Event:
        return _EventletEvent()

    waiter = _EventletWaiter

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

    def wait_readable(self, fd: int) -> None:
        trampoline(fd, read=True)

    def wait_writable(self, fd: int) -> None:
        trampoline(fd, write=True)

    def current_task(self) -> Any:
        return greenlet.getcurrent()
