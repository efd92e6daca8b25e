"""Hub-neutral helpers for tests: start a task, join it, poll a condition, run a body.

The deadlines here only bound how long a broken test takes to fail: they are
generous so that a loaded machine never trips them.  Timing itself is tested
on :class:`~tests.support.manual_hub.ManualClockHub`, where time is virtual.
"""

from __future__ import annotations

from typing import Any, Callable

from greenpool.hubs import Hub
from tests.support.manual_hub import ManualClockHub

#: How long a test waits for something that should happen promptly before failing.
PATIENCE = 30.0


class Spawned:
    """A task started on ``hub`` whose result or exception can be collected."""

    def __init__(self, hub: Hub, fn: Callable[..., Any], *args: Any) -> None:
        self.hub = hub
        self.done = hub.event()
        self.value: Any = None
        self.error: BaseException | None = None
        self.task = hub.spawn(self._run, fn, args)

    def _run(self, fn: Callable[..., Any], args: tuple) -> None:
        try:
            self.value = fn(*args)
        except BaseException as exc:  # recorded for the test to inspect
            self.error = exc
        finally:
            self.done.set()

    def wait(self, timeout: float = PATIENCE) -> Any:
        """The task's return value; re-raises its exception; AssertionError if it hangs."""
        assert self.done.wait(timeout), "task did not finish in time"
        if self.error is not None:
            raise self.error
        return self.value

    def outcome(self, timeout: float = PATIENCE) -> BaseException | None:
        """Wait for the task and return its exception (None if it returned)."""
        assert self.done.wait(timeout), "task did not finish in time"
        return self.error

    def kill(self) -> None:
        self.task.cancel()


def wait_until(hub: Hub, condition: Callable[[], bool], timeout: float = PATIENCE) -> None:
    """Poll ``condition`` (yielding to other tasks) until true; AssertionError on timeout."""
    deadline = hub.monotonic() + timeout
    while not condition():
        if hub.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        hub.sleep(0.001)


def run_on(hub: Hub, fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn(*args)`` as a task of ``hub``: inside :meth:`ManualClockHub.run` on the
    manual clock, in place (the test's own task) on the real hubs."""
    if isinstance(hub, ManualClockHub):
        return hub.run(fn, *args)
    return fn(*args)


def queue_two(hub: Hub, pool: Any, timeout: float,
              expire: tuple[float, BaseException] | None = None) -> tuple[Spawned, Spawned]:
    """On a full ``pool``: queue a ``pool.get()`` (within a hub timeout of ``expire``'s
    seconds, raising its exception, when given), then a ``pool.get(timeout)`` behind
    it.  Returns both tasks, in line.

    Each is known to have queued from ``stats().waits``, which only grows: a short
    ``expire`` may have taken the first out of the line again by then."""

    def first_in_line() -> Any:
        if expire is None:
            return pool.get()
        with hub.timeout(*expire):
            return pool.get()

    queued = pool.stats().waits
    ahead = Spawned(hub, first_in_line)
    wait_until(hub, lambda: pool.stats().waits == queued + 1)
    behind = Spawned(hub, pool.get, timeout)
    wait_until(hub, lambda: pool.stats().waits == queued + 2)
    return ahead, behind
