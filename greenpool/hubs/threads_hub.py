"""The threads hub: plain OS threads, for programs that are not monkey patched."""

from __future__ import annotations

import contextlib
import select
import threading
import time
from typing import Any, Callable, ContextManager, Optional, TypeVar

from .base import Event, Hub, Task, ThreadCallTimeout, original_lock

T = TypeVar("T")


def _wait_for(fd: int, events: int) -> None:
    poller = select.poll()
    poller.register(fd, events)
    poller.poll()


class _ThreadTask(Task):
    __slots__ = ("_timer",)

    def __init__(self, timer: threading.Timer) -> None:
        self._timer = timer

    def cancel(self) -> None:
        self._timer.cancel()


class _ThreadWaiter:
    """One thread waiting once (see :meth:`Hub.waiter`): a lock held until set,
    much cheaper to make than a ``threading.Event``."""

    __slots__ = ("value", "_lock", "_flag")

    def __init__(self) -> None:
        self.value: Any = None
        self._lock = original_lock()
        self._lock.acquire()
        self._flag = False

    def set(self) -> None:
        # The pool sets each waiter once, in a critical section.
        if not self._flag:
            self._flag = True
            self._lock.release()

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: Optional[float] = None) -> bool:
        if not self._flag:
            if timeout is None:
                self._lock.acquire()
            else:
                self._lock.acquire(True, timeout)
        return self._flag


class _ThreadResult:
    """The outcome of a call made in a helper thread."""

    __slots__ = ("done", "value", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: Optional[BaseException] = None


class ThreadsHub(Hub):
    """OS threads: blocking calls block only their own thread."""

    name = "threads"
    green = False
    Timeout = TimeoutError
    can_interrupt = False

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def spawn(self, fn: Callable[..., Any], *args: Any) -> Task:
        return self.spawn_after(0, fn, *args)

    def spawn_after(self, seconds: float, fn: Callable[..., Any], *args: Any) -> Task:
        timer = threading.Timer(seconds, fn, args)
        timer.daemon = True
        timer.start()
        return _ThreadTask(timer)

    def event(self) -> Event:
        return threading.Event()

    waiter = _ThreadWaiter

    def timeout(self, seconds: Optional[float], exception: BaseException) -> ContextManager[Any]:
        return contextlib.nullcontext()

    def run_in_thread(
        self, fn: Callable[..., T], *args: Any, timeout: Optional[float] = None
    ) -> T:
        if timeout is None:
            return fn(*args)
        result = _ThreadResult()

        def call() -> None:
            try:
                result.value = fn(*args)
            except BaseException as exc:  # handed to the caller below
                result.error = exc
            finally:
                result.done.set()

        threading.Thread(target=call, daemon=True, name="greenpool-call").start()
        if not result.done.wait(timeout):
            raise ThreadCallTimeout(f"call did not finish within {timeout} s")
        if result.error is not None:
            raise result.error
        return result.value

    def wait_readable(self, fd: int) -> None:
        _wait_for(fd, select.POLLIN)

    def wait_writable(self, fd: int) -> None:
        _wait_for(fd, select.POLLOUT)

    def current_task(self) -> Any:
        return threading.current_thread()
