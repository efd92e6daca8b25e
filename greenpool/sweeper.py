"""One sweeper per connection pool: closes connections past ``max_idle``/``max_age``.

The sweeper sleeps until the earliest moment an idle connection can expire,
asks the pool to sweep, and sleeps again.  It holds the pool only weakly, so
a pool that is dropped is collected and its sweeper ends at its next wake-up;
``stop()`` (called by the pool's ``close()``) cancels it at once.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any, Optional

from .hubs import Hub, Task
from .hubs.base import original_lock

if TYPE_CHECKING:  # pragma: no cover
    from .connections import BaseConnectionPool

log = logging.getLogger(__name__)

_INF = float("inf")

#: Never sleep less than this between sweeps, so expiries close together share one wake-up.
MIN_INTERVAL = 0.01


class Sweeper:
    """Schedules ``pool._sweep(now)`` at the earliest pending expiry."""

    def __init__(self, pool: BaseConnectionPool, hub: Hub) -> None:
        self._pool_ref: Any = weakref.ref(pool)
        self._hub = hub
        self._lock = original_lock()
        self._task: Optional[Task] = None
        #: The monotonic time of the next sweep, infinity when none is scheduled
        #: (read-only: a plain attribute, as every return of a connection reads it).
        self.next_run = _INF
        self._stopped = False

    def schedule(self, when: Optional[float]) -> None:
        """Make sure a sweep runs no later than monotonic time ``when`` (None: nothing to do)."""
        if when is None or self._stopped or self.next_run <= when:
            return
        with self._lock:
            if self._stopped or self.next_run <= when:
                return
            old, self._task = self._task, None
            self.next_run = when
            delay = max(MIN_INTERVAL, when - self._hub.monotonic())
            self._task = self._hub.spawn_after(delay, self._run, when)
        if old is not None:
            old.cancel()

    def _run(self, when: float) -> None:
        with self._lock:
            if self.next_run != when:  # superseded by an earlier schedule
                return
            self.next_run = _INF
            self._task = None
        pool = self._pool_ref()
        if pool is None or self._stopped:
            return
        try:
            next_when = pool._sweep()
        except Exception:  # a sweep must never kill the sweeper for good
            log.exception("sweeping %r failed; retrying in 1 s", pool)
            next_when = self._hub.monotonic() + 1.0
        del pool
        self.schedule(next_when)

    def stop(self) -> None:
        """Cancel the pending sweep; later :meth:`schedule` calls do nothing."""
        with self._lock:
            self._stopped = True
            task, self._task = self._task, None
            self.next_run = _INF
        if task is not None:
            task.cancel()
