"""A green hub on a virtual clock, for timing tests that never really sleep.

:class:`ManualClockHub` runs greenlet tasks one at a time, in FIFO order of
readiness.  Its clock moves only when no task can run: it then jumps straight
to the next due timer (trio's ``MockClock`` with autojump), so a 30-second
idle timeout is tested in microseconds, with exact times.  Timers due at the
same moment fire in the order they were set.

``hub.run(fn, *args)`` runs ``fn`` as the main task, and the others, until it
returns; whatever blocks must happen inside it.  When every task blocks with
no timer pending, :class:`Deadlock` is raised in the main task instead of
hanging.  Tasks still blocked when ``run()`` returns carry on at the next
``run()``.  It needs only greenlet, so it works in plain, eventlet-patched
and gevent-patched processes alike, provided the code it runs blocks only
through this hub (never ``time.sleep`` or a socket).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
from collections import deque
from typing import Any, Callable, Deque, Iterator, Optional, TypeVar

import greenlet

from greenpool.hubs.base import Hub, Task, ThreadCallTimeout, capture

__all__ = ["ManualClockHub", "Deadlock"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_NO_IO = "ManualClockHub has no I/O: it cannot wait for a file descriptor"


class Deadlock(RuntimeError):
    """Raised into the main task of :meth:`ManualClockHub.run` when it waits while
    no task can run and no timer is pending: nothing could ever wake it."""


class _Timer:
    """A call set for a virtual time; a cancelled one never fires nor moves the clock."""

    __slots__ = ("fn", "args", "cancelled")

    def __init__(self, fn: Callable[..., Any], args: tuple) -> None:
        self.fn, self.args, self.cancelled = fn, args, False

    def cancel(self) -> None:
        self.cancelled = True


class _TaskGreenlet(greenlet.greenlet):
    """A task.  While it does not run, it is dead or parked on ``park``, at first on
    ``start`` (its first turn); while it runs, ``park`` is None."""

    def __init__(self, hub: ManualClockHub, run: Callable[[], Any]) -> None:
        super().__init__(run)
        self.hub = hub
        self.start = _Park(self)
        self.park: Optional[_Park] = self.start


class _Park:
    """One suspension of one task, resumed once: with ``value``, or by raising
    ``error`` (a timeout or a kill, which wins over an ordinary wake-up)."""

    __slots__ = ("task", "queued", "value", "error")

    def __init__(self, task: _TaskGreenlet) -> None:
        self.task = task
        self.queued = False
        self.value: Any = None
        self.error: Optional[BaseException] = None


def _current_task(what: str, hub: Optional[ManualClockHub] = None) -> _TaskGreenlet:
    """The calling task, which must be one of ``hub``'s (any hub's if None) in ``run()``."""
    task = greenlet.getcurrent()
    if not isinstance(task, _TaskGreenlet) or task.hub._loop is None or hub not in (None, task.hub):
        raise RuntimeError(f"{what} blocks: only a task of this hub, in its run(), may call it")
    return task


class _Event:
    """``hub.event()``: a one-shot event for any number of tasks.

    ``set()`` never switches: each waiting task is resumed in its turn,
    unless it has stopped waiting (timed out, killed) meanwhile.
    """

    __slots__ = ("_flag", "_parks")

    def __init__(self) -> None:
        self._flag = False
        self._parks: list[_Park] = []

    def set(self) -> None:
        if not self._flag:
            self._flag = True
            for park in self._parks:
                park.task.hub._wake(park)

    def is_set(self) -> bool:
        return self._flag

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until set or ``timeout`` virtual seconds pass; return :meth:`is_set`."""
        if self._flag:
            return True
        task = _current_task(f"{type(self).__name__}.wait()")
        park = _Park(task)
        self._parks.append(park)
        try:
            task.hub._suspend(park, timeout)
        finally:
            self._parks.remove(park)
        return self._flag


class _Waiter(_Event):
    """``hub.waiter()``: an :class:`_Event` for one waiting task, carrying ``value``
    (the setter's to fill, the waiter's to read; the hub never looks at it)."""

    value: Any = None

    def wait(self, timeout: Optional[float] = None) -> bool:
        if self._parks:
            raise RuntimeError("a waiter is for one task, and another task already waits on it")
        return super().wait(timeout)


class _ManualTask(Task):
    """What :meth:`ManualClockHub.spawn` returns; ``cancel()`` never switches."""

    __slots__ = ("_task", "_timer")

    def __init__(self, task: _TaskGreenlet, timer: Optional[_Timer] = None) -> None:
        self._task, self._timer = task, timer

    def cancel(self) -> None:
        """Not started: it never will be.  Started: ``GreenletExit`` is raised in it at
        its turn (at once if it cancels itself).  Finished: nothing happens."""
        task = self._task
        if task is greenlet.getcurrent():
            raise greenlet.GreenletExit
        if self._timer is not None:
            self._timer.cancel()
        task.hub._interrupt(task, greenlet.GreenletExit())


class _TaskLock:
    """``hub.lock()``: free for code that never switches while holding it, and loud
    (``RuntimeError``) if some task finds it held, which would otherwise deadlock."""

    __slots__ = ("_owner",)

    def __init__(self) -> None:
        self._owner: Any = None

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if self._owner is None:
            self._owner = greenlet.getcurrent()
            return True
        if blocking:
            raise RuntimeError(f"lock wanted while {self._owner!r} holds it across a switch")
        return False

    def release(self, *exc_info: Any) -> None:
        self._owner = None

    __enter__, __exit__ = acquire, release


class ManualClockHub(Hub):
    """A green hub whose clock moves only when every task is blocked (see the module).

    ``start`` is the initial reading of the clock.  ``thread_call_seconds`` is
    the virtual time each :meth:`run_in_thread` call takes (0: it returns at
    once, without switching).  Exceptions that escape spawned tasks are
    logged and kept in ``failures``, so a test can assert there were none.
    """

    name = "manual"
    green = True
    preemptive = False
    can_interrupt = True
    killed = (greenlet.GreenletExit,)

    class Timeout(BaseException):
        """This hub's own timeout exception: a BaseException, like eventlet's and gevent's."""

    waiter = _Waiter

    def __init__(self, start: float = 0.0, thread_call_seconds: float = 0.0) -> None:
        self._now = float(start)
        self.thread_call_seconds = thread_call_seconds
        self.failures: list[BaseException] = []
        self._ready: Deque[_Park] = deque()
        self._timers: list[tuple[float, int, _Timer]] = []
        self._order = itertools.count()
        self._loop: Optional[greenlet.greenlet] = None

    # -- the clock and the scheduler ---------------------------------------------------

    def monotonic(self) -> float:
        """The virtual time, in seconds."""
        return self._now

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` as the main task, and the other tasks, until it returns;
        return its value or raise its exception."""
        if self._loop is not None:
            raise RuntimeError("ManualClockHub.run() is already running")
        outcome: list[Any] = []
        task = _TaskGreenlet(self, lambda: outcome.append(capture(fn, args)))
        self._wake(task.start)
        self._loop = greenlet.greenlet(self._drive)
        try:
            self._loop.switch(task)
        finally:
            self._loop = None
        ok, value = outcome[0]
        if not ok:
            raise value
        return value

    def _drive(self, main: _TaskGreenlet) -> None:
        """The loop: fire the timers due, then resume the first ready task; when
        none is ready, jump the clock to the next timer."""
        loop = greenlet.getcurrent()
        timers = self._timers
        while not main.dead:
            while timers and timers[0][2].cancelled:
                heapq.heappop(timers)  # a cancelled timer never moves the clock
            if timers and timers[0][0] <= self._now:
                timer = heapq.heappop(timers)[2]
                timer.fn(*timer.args)
            elif self._ready:
                park = self._ready.popleft()
                task = park.task
                if task.dead:
                    continue
                task.parent = loop  # where it goes when it ends (it may predate this run)
                if not task:  # not started: it starts, unless cancelled (an error) first
                    task.park = None
                    if park.error is None:
                        task.switch()
                elif park.error is not None:
                    task.throw(park.error)
                else:
                    task.switch(park.value)
            elif timers:
                self._now = timers[0][0]
            elif main.park is not None:
                self._wake(main.park, error=Deadlock(
                    f"deadlock at virtual time {self._now}: the main task waits, "
                    "no task can run and no timer is pending"
                ))
            else:
                raise RuntimeError("the main task switched away without waiting on this hub")

    def _call_later(self, seconds: float, fn: Callable[..., Any], *args: Any) -> _Timer:
        """Call ``fn(*args)`` in the loop (it must not switch) after ``seconds``."""
        timer = _Timer(fn, args)
        heapq.heappush(self._timers, (self._now + max(0.0, seconds), next(self._order), timer))
        return timer

    def _wake(self, park: _Park, value: Any = True, error: Optional[BaseException] = None) -> None:
        """Make ``park``'s task ready (once), to resume with ``value`` or raise ``error``."""
        if error is not None:
            park.error = error
        if not park.queued:
            park.queued = True
            park.value = value
            self._ready.append(park)

    def _interrupt(self, task: _TaskGreenlet, error: BaseException) -> None:
        """Raise ``error`` in ``task`` at its turn, if it is blocked (not finished)."""
        if task.park is not None:
            self._wake(task.park, error=error)

    def _suspend(self, park: _Park, seconds: Optional[float] = None) -> Any:
        """Block the calling task until ``park`` is woken (or ``seconds`` pass: False)."""
        task = park.task
        timer = None if seconds is None else self._call_later(seconds, self._wake, park, False)
        task.park = park
        try:
            return self._loop.switch()  # type: ignore[union-attr]
        finally:
            task.park = None
            if timer is not None:
                timer.cancel()

    # -- the Hub contract ----------------------------------------------------------------

    def sleep(self, seconds: float) -> None:
        """Block the calling task for ``seconds`` of virtual time (0: after those ready now)."""
        self._suspend(_Park(_current_task("sleep()", self)), seconds)

    #: ``advance(seconds)``: let ``seconds`` of virtual time pass (from inside a task).
    advance = sleep

    def spawn(self, fn: Callable[..., Any], *args: Any) -> Task:
        """Start ``fn(*args)`` as a new task, run after the tasks ready now; never switches.
        Callable outside :meth:`run`: the task then starts at the next ``run()``."""
        task = self._new_task(fn, args)
        self._wake(task.start)
        return _ManualTask(task)

    def spawn_after(self, seconds: float, fn: Callable[..., Any], *args: Any) -> Task:
        """Start ``fn(*args)`` as a new task after ``seconds`` of virtual time."""
        task = self._new_task(fn, args)
        return _ManualTask(task, self._call_later(seconds, self._wake, task.start))

    def _new_task(self, fn: Callable[..., Any], args: tuple) -> _TaskGreenlet:
        def body() -> None:  # a crash is the task's, reported, and not the hub's
            try:
                fn(*args)
            except self.killed:
                pass
            except BaseException as exc:
                log.exception("ManualClockHub task %r failed", fn)
                self.failures.append(exc)

        return _TaskGreenlet(self, body)

    def event(self) -> _Event:
        return _Event()

    @contextlib.contextmanager
    def timeout(self, seconds: Optional[float], exception: Optional[BaseException] = None
                ) -> Iterator[None]:
        """Raise ``exception`` (default: a :attr:`Timeout`) in the calling task if it is
        still blocked inside the block after ``seconds`` of virtual time (None: never)."""
        if seconds is None:
            yield
            return
        error = self.Timeout(seconds) if exception is None else exception
        timer = self._call_later(seconds, self._interrupt, _current_task("timeout()", self), error)
        try:
            yield
        finally:
            timer.cancel()

    def run_in_thread(self, fn: Callable[..., T], *args: Any, timeout: Optional[float] = None) -> T:
        """Call ``fn(*args)`` as if in an OS thread taking ``thread_call_seconds``.

        The caller waits that long, then ``fn`` is called in it.  If it stops
        waiting first (``ThreadCallTimeout`` after a shorter ``timeout``, a hub
        timeout, a kill), ``fn`` is still called when the thread would have
        finished, in a task of its own, and its outcome is dropped.
        """
        took = self.thread_call_seconds
        if took <= 0:
            return fn(*args)
        finished = self._now + took
        try:
            if timeout is not None and timeout < took:
                self.sleep(timeout)
                raise ThreadCallTimeout(f"call did not finish within {timeout} s")
            self.sleep(took)
        except BaseException:  # the "thread" runs on; what it returns is dropped
            self.spawn_after(finished - self._now, capture, fn, args)
            raise
        return fn(*args)

    def wait_readable(self, fd: int) -> None:
        raise NotImplementedError(_NO_IO)

    def wait_writable(self, fd: int) -> None:
        raise NotImplementedError(_NO_IO)

    def lock(self) -> _TaskLock:
        return _TaskLock()

    def current_task(self) -> Any:
        return greenlet.getcurrent()
