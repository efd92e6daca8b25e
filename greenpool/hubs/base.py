"""The hub contract: everything the pool needs from a concurrency library.

A hub adapter is the only code in greenpool that knows eventlet from gevent
from plain threads.  It offers a monotonic clock, sleep, spawn and
spawn-after, one-shot events with a timed wait (one for many waiters, a
cheaper one for a single waiter), a timeout that interrupts green code,
running a function in an OS thread, waiting for a socket, and a lock.
"""

from __future__ import annotations

import abc
import threading
import time
from typing import Any, Callable, ContextManager, Optional, Protocol, TypeVar

__all__ = ["Hub", "Event", "Waiter", "Task", "ThreadCallTimeout", "original_lock"]

T = TypeVar("T")


class Event(Protocol):
    """A one-shot event: set once, waited on by one or more tasks.

    ``threading.Event`` and ``gevent.event.Event`` are Events as they are.
    """

    def set(self) -> None:
        """Wake every waiter; later waits return at once."""

    def is_set(self) -> bool:
        """True once :meth:`set` was called."""

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block the calling task until set or ``timeout`` seconds pass; return :meth:`is_set`."""


class Waiter(Event, Protocol):
    """A one-shot :class:`Event` for exactly one waiting task, carrying a value.

    ``set()`` never switches.  A task that stopped waiting (timed out,
    killed) is never resumed by a late ``set()``.  ``value`` is the setter's
    to fill before ``set()`` and the waiter's to read after ``wait()``; the
    hub never looks at it.  Waiting from two tasks at once is an error.
    """

    value: Any


class Task(abc.ABC):
    """A handle on something started by :meth:`Hub.spawn` or :meth:`Hub.spawn_after`."""

    @abc.abstractmethod
    def cancel(self) -> None:
        """Stop it if it has not started; a green task that is running is killed.

        An OS thread that is already running cannot be stopped: the function
        it runs must check for itself whether it is still wanted.
        """


class ThreadCallTimeout(TimeoutError):
    """:meth:`Hub.run_in_thread` gave up waiting; its own class, so that a
    ``TimeoutError`` raised by the function itself is not mistaken for it."""


def capture(fn: Callable[..., Any], args: tuple) -> tuple[bool, Any]:
    """Call ``fn(*args)`` in a worker thread; the outcome as a value, never raised there.

    Thread pools report (gevent) or die on (eventlet's tpool) some exceptions
    raised in their workers; :func:`unwrap` re-raises it in the caller instead.
    """
    try:
        return True, fn(*args)
    except BaseException as exc:  # re-raised by unwrap() in the calling task
        return False, exc


def unwrap(outcome: tuple[bool, Any]) -> Any:
    ok, value = outcome
    if not ok:
        raise value
    return value


def original_lock() -> Any:
    """A real OS lock that monkey patching has not replaced with a green one."""
    import sys

    if "eventlet" in sys.modules:
        from eventlet import patcher

        return patcher.original("_thread").allocate_lock()
    if "gevent" in sys.modules:
        from gevent import monkey

        return monkey.get_original("_thread", "allocate_lock")()
    return threading.Lock()


class Hub(abc.ABC):
    """Adapter between the pool core and one concurrency library.

    Subclasses set :attr:`name` and :attr:`green`, and implement the abstract
    methods.  Instances are cheap and stateless; one per library is shared.
    """

    #: "eventlet", "gevent" or "threads".
    name: str = ""
    #: True when tasks are green threads that only switch at I/O or sleep.
    green: bool = False
    #: True when a task can be interrupted between any two bytecodes (OS threads).
    preemptive: bool = True
    #: The library's own timeout exception class (a BaseException on green hubs).
    Timeout: type[BaseException] = TimeoutError
    #: The exceptions that mean "this task was killed".
    killed: tuple[type[BaseException], ...] = ()

    monotonic: Callable[[], float] = staticmethod(time.monotonic)

    @abc.abstractmethod
    def sleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds``."""

    @abc.abstractmethod
    def spawn(self, fn: Callable[..., Any], *args: Any) -> Task:
        """Run ``fn(*args)`` as a new task, now."""

    @abc.abstractmethod
    def spawn_after(self, seconds: float, fn: Callable[..., Any], *args: Any) -> Task:
        """Run ``fn(*args)`` as a new task after ``seconds``."""

    @abc.abstractmethod
    def event(self) -> Event:
        """A new one-shot :class:`Event`, for any number of waiting tasks."""

    #: ``hub.waiter()``: a new :class:`Waiter`, one-shot, for exactly one waiting task.
    #: The pool makes one per queued ``get()``, so it is the hub's cheapest wake-up,
    #: and a class (called directly: one call per waiter, not two).
    waiter: Callable[[], Waiter]

    @abc.abstractmethod
    def timeout(self, seconds: Optional[float], exception: BaseException) -> ContextManager[Any]:
        """A context manager raising ``exception`` in the calling task after ``seconds``.

        On a green hub it interrupts the task at its next switch (I/O or
        sleep); code that blocks the OS thread cannot be interrupted.  On the
        threads hub it does nothing (see :attr:`can_interrupt`).
        """

    #: Whether :meth:`timeout` can interrupt a waiting task.
    can_interrupt: bool = True

    @abc.abstractmethod
    def run_in_thread(
        self, fn: Callable[..., T], *args: Any, timeout: Optional[float] = None
    ) -> T:
        """Call ``fn(*args)`` in an OS thread and wait for its result.

        Only the calling task waits; the hub keeps running others.  With a
        ``timeout``, raise :class:`ThreadCallTimeout` when it passes; the thread
        then runs on and its result is dropped, so ``fn`` must dispose of
        what it makes if nobody wants it any more.
        """

    @abc.abstractmethod
    def wait_readable(self, fd: int) -> None:
        """Block the calling task until ``fd`` is readable (green drivers' wait callbacks)."""

    @abc.abstractmethod
    def wait_writable(self, fd: int) -> None:
        """Block the calling task until ``fd`` is writable."""

    def lock(self) -> Any:
        """A lock for the pool's critical sections.

        The pool never yields while holding it, so on a green hub it is
        never contended and costs one atomic operation; a real OS lock is
        used everywhere so that it stays correct if an OS thread (a
        finalizer, a thread-pool worker) ever touches the pool.
        """
        return original_lock()

    @abc.abstractmethod
    def current_task(self) -> Any:
        """The running green thread (or OS thread), usable as a dict key and weakly referenced."""

    def __repr__(self) -> str:
        return f"<greenpool hub {self.name!r}>"
