"""The gevent hub adapter; gevent is imported only when this module is."""

from __future__ import annotations

from typing import Any, Callable, ContextManager, Optional, TypeVar

import gevent
import gevent.event
import gevent.socket
import greenlet

from .base import Event, Hub, Task, ThreadCallTimeout, capture, unwrap
from .green import GreenWaiter

T = TypeVar("T")



class _GeventWaiter(GreenWaiter):
    """The single-task waiter on gevent's hub (see :class:`GreenWaiter`): woken by a
    loop callback, without the link machinery of ``gevent.event.Event``."""

    __slots__ = ()

    _current_hub = staticmethod(gevent.get_hub)

    @staticmethod
    def _call_later(hub: Any, seconds: float, fn: Callable[[], None]) -> Callable[[], Any]:
        timer = hub.loop.timer(seconds)
        # From the time now, not the loop's cached time, which lags after busy work.
        timer.start(fn, update=True)
        return timer.close

    @staticmethod
    def _call_soon(hub: Any) -> Callable[[Callable[[], None]], Any]:
        return hub.loop.run_callback


class _GeventTask(Task):
    __slots__ = ("_greenlet",)

    def __init__(self, glet: Any) -> None:
        self._greenlet = glet

    def cancel(self) -> None:
        self._greenlet.kill(block=False)


class GeventHub(Hub):
    """gevent greenlets; OS-thread calls go through the gevent hub's thread pool."""

    name = "gevent"
    green = True
    preemptive = False
    Timeout = gevent.Timeout
    killed = (greenlet.GreenletExit,)

    def sleep(self, seconds: float) -> None:
        gevent.sleep(seconds)

    def spawn(self, fn: Callable[..., Any], *args: Any) -> Task:
        return _GeventTask(gevent.spawn(fn, *args))

    def spawn_after(self, seconds: float, fn: Callable[..., Any], *args: Any) -> Task:
        return _GeventTask(gevent.spawn_later(seconds, fn, *args))

    def event(self) -> Event:
        return gevent.event.Event()

    waiter = _GeventWaiter

    def timeout(self, seconds: Optional[float], exception: BaseException) -> ContextManager[Any]:
        return gevent.Timeout(seconds, exception)

    def run_in_thread(
        self, fn: Callable[..., T], *args: Any, timeout: Optional[float] = None
    ) -> T:
        # The outcome travels back as a value: gevent would report an exception
        # raised in its thread pool on stderr as well as re-raising it.
        result = gevent.get_hub().threadpool.spawn(capture, fn, args)
        if timeout is None:
            return unwrap(result.get())
        expired = ThreadCallTimeout(f"call did not finish within {timeout} s")
        with gevent.Timeout(timeout, expired):
            return unwrap(result.get())

    # gevent's own functions, not wrappers: a green driver calls them on every query.
    wait_readable = staticmethod(gevent.socket.wait_read)
    wait_writable = staticmethod(gevent.socket.wait_write)

    def current_task(self) -> Any:
        return greenlet.getcurrent()
