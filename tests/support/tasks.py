"""Hub-neutral helpers for tests: start a task, join it, poll a condition."""

from __future__ import annotations

from typing import Any, Callable

from greenpool.hubs import Hub


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

    def wait(self, timeout: float = 10.0) -> Any:
        """The task's return value; re-raises its exception; AssertionError if it hangs."""
        assert self.done.wait(timeout), "task did not finish in time"
        if self.error is not None:
            raise self.error
        return self.value

    def outcome(self, timeout: float = 10.0) -> BaseException | None:
        """Wait for the task and return its exception (None if it returned)."""
        assert self.done.wait(timeout), "task did not finish in time"
        return self.error

    def kill(self) -> None:
        self.task.cancel()


def wait_until(hub: Hub, condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` (yielding to other tasks) until true; AssertionError on timeout."""
    deadline = hub.monotonic() + timeout
    while not condition():
        if hub.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        hub.sleep(0.001)



def queue_two(hub: Hub, pool: Any, timeout: float,
              expire: tuple[float, BaseException] | None = None) -> tuple[Spawned, Spawned]:
    """On a full ``pool``: queue a ``pool.get()`` (within a hub timeout of ``expire``'s
    seconds, raising its exception, when given), then a ``pool.get(timeout)`` behind
    it.  Returns both tasks, in line."""

    def first_in_line() -> Any:
        if expire is None:
            return pool.get()
        with hub.timeout(*expire):
            return pool.get()

    ahead = Spawned(hub, first_in_line)
    wait_until(hub, lambda: pool.waiting() == 1)
    behind = Spawned(hub, pool.get, timeout)
    wait_until(hub, lambda: pool.waiting() == 2)
    return ahead, behind
