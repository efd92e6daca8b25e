"""The threads hub: plain OS threads, for programs that are not monkey patched."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any, Callable, ContextManager, Optional, TypeVar

from .base import Event, Hub, Task, ThreadCallTimeout

T = TypeVar("T")


class _ThreadTask(Task):
    __slots__ = ("_timer",)

    def __init__(self, timer: threading.Timer) -> None:
        self._timer = timer

    def cancel(self) -> None:
        self._timer.cancel()


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

    def current_task(self) -> Any:
        return threading.current_thread()
