"""Background maintenance: small named tasks, each run by the hub when it is due.

A :class:`MaintenanceTask` calls ``job(owner)`` at the time it was last
scheduled for; the job returns when it wants to run next (a monotonic time)
or None.  The task holds its owner (a pool, a connector, a compat pool)
only weakly: an owner that is dropped is collected, and its tasks end at
their next wake-up.  :class:`Scheduler` groups an owner's tasks so that
they stop together.

The connection pools use it for the idle/age sweep, leak reports and the
reclaim of garbage-collected checkouts; the connector and the compat pools
use the same mechanism for their own periodic work.
"""

from __future__ import annotations

import logging
import weakref
from typing import Any, Callable, Generic, Optional, TypeVar

from .hubs import Hub, Task
from .hubs.base import original_lock

__all__ = ["MaintenanceTask", "Scheduler"]

log = logging.getLogger(__name__)

OwnerT = TypeVar("OwnerT")

_INF = float("inf")

#: Never wake sooner than this after being scheduled, so that deadlines close
#: together share one wake-up.
MIN_DELAY = 0.01


class MaintenanceTask(Generic[OwnerT]):
    """Runs ``job(owner)`` no later than the earliest time it was scheduled for.

    ``job`` returns the monotonic time of its next run, or None to wait until
    :meth:`schedule` is called again.  An exception in the job is logged and
    the job retried a second later.  ``name`` appears in logs.
    """

    def __init__(
        self, owner: OwnerT, hub: Hub, job: Callable[[OwnerT], Optional[float]], name: str
    ) -> None:
        self._owner: Callable[[], Optional[OwnerT]] = weakref.ref(owner)
        self._hub = hub
        self._job = job
        self.name = name
        self._lock = original_lock()
        self._task: Optional[Task] = None
        #: When the next run is due (monotonic), infinity when none is scheduled.
        self.due = _INF
        self._stopped = False

    def schedule(self, when: Optional[float]) -> None:
        """Make sure the job runs no later than monotonic time ``when`` (None: no change)."""
        if when is None or self._stopped or self.due <= when:
            return
        with self._lock:
            if self._stopped or self.due <= when:
                return
            old, self._task = self._task, None
            self.due = when
            delay = max(MIN_DELAY, when - self._hub.monotonic())
            self._task = self._hub.spawn_after(delay, self._run, when)
        if old is not None:
            old.cancel()

    def _run(self, when: float) -> None:
        with self._lock:
            if self.due != when:  # superseded by an earlier schedule()
                return
            self.due = _INF
            self._task = None
        owner = self._owner()
        if owner is None or self._stopped:
            return
        try:
            next_run = self._job(owner)
        except Exception:  # a failing job must not end maintenance for good
            log.exception("%s of %r failed; retrying in 1 s", self.name, owner)
            next_run = self._hub.monotonic() + 1.0
        del owner
        self.schedule(next_run)

    def stop(self) -> None:
        """Cancel the pending run; later :meth:`schedule` calls do nothing."""
        with self._lock:
            self._stopped = True
            task, self._task = self._task, None
            self.due = _INF
        if task is not None:
            task.cancel()

    @property
    def stopped(self) -> bool:
        return self._stopped


class Scheduler:
    """An owner's maintenance tasks, made with :meth:`task` and stopped together."""

    def __init__(self, owner: Any, hub: Hub) -> None:
        self._owner = weakref.ref(owner)
        self._hub = hub
        self._tasks: list[MaintenanceTask[Any]] = []

    def task(self, job: Callable[[Any], Optional[float]], name: str) -> MaintenanceTask[Any]:
        """A new task running ``job(owner)`` (see :class:`MaintenanceTask`)."""
        owner = self._owner()
        if owner is None:
            raise RuntimeError("the scheduler's owner is gone")
        task: MaintenanceTask[Any] = MaintenanceTask(owner, self._hub, job, name)
        self._tasks.append(task)
        return task

    def stop(self) -> None:
        """Stop every task."""
        for task in self._tasks:
            task.stop()
