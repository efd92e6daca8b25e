"""Growing a connection pool off the request path.

A caller that finds no idle connection queues and asks the pool to grow;
:class:`Growth` opens connections in tasks of their own, never in a
caller, so a caller's fate is not tied to one connect attempt: it is served
by whichever comes first, a returned connection or a new one.

Growth is bounded by ``max_size`` and by connects in flight: at most one
per waiter (and per missing ``min_size`` connection), :data:`MAX_CONNECTING`
at once, and one at a time while connects fail.  A failed or timed-out
connect backs off (:class:`~greenpool.backoff.Backoff`) and is retried while
anyone waits; callers fail only when their own timeout runs out.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Optional

from .backoff import Backoff, one_line
from .errors import PoolTimeout
from .pool import Pool

if TYPE_CHECKING:  # pragma: no cover
    from .connections import BaseConnectionPool

__all__ = ["Growth", "MAX_CONNECTING"]

log = logging.getLogger(__name__)

#: The most connects one pool has in flight at once while connects succeed.
MAX_CONNECTING = 4


class Growth:
    """Decides when a pool opens connections, and opens them.

    Its decisions are made under the pool's lock; connects run in tasks
    spawned on the pool's hub (OS threads on the threads hub).
    """

    def __init__(self, pool: BaseConnectionPool, backoff: Backoff) -> None:
        self._pool = pool
        self.backoff = backoff
        self._retry_armed = False

    def grow(self) -> None:
        """Open connections for waiters (and up to ``min_size``), in the background.

        Called, never yielding, when a caller queues and when a slot is freed.
        """
        pool = self._pool
        with pool._lock:
            if pool._closed:
                return
            count, retry = self._plan_locked(
                len(pool._waiters), pool._creating, pool.min_size - pool.current_size
            )
            count = max(0, min(count, pool.max_size - pool.current_size))
            for _ in range(count):
                pool._reserve_locked()
        if retry:
            self._arm_retry()
        for _ in range(count):
            pool.hub.spawn(self._open_one)

    def _plan_locked(self, waiting: int, creating: int, missing: int) -> tuple[int, bool]:
        """How many connects to start now, and whether to look again after the
        back-off delay.  Each of the ``waiting`` callers wants a connect beyond
        the ``creating`` ones in flight; ``missing`` slots below ``min_size``
        want one each."""
        wanted = max(waiting - creating, missing)
        if wanted <= 0:
            return 0, False
        backoff = self.backoff
        if not backoff.failing:
            return min(wanted, MAX_CONNECTING - creating), False
        if creating or self._retry_armed:
            return 0, False  # one attempt at a time while connects fail
        if self._pool._clock() < backoff.next_try:
            self._retry_armed = True
            return 0, True
        return 1, False

    def _arm_retry(self) -> None:
        """Look again when the back-off delay has passed."""
        pool = self._pool
        pool.hub.spawn_after(max(0.0, self.backoff.next_try - pool._clock()), self._retry)

    def _retry(self) -> None:
        pool = self._pool
        with pool._lock:
            self._retry_armed = False
        if not pool.closed:
            self.grow()

    def _open_one(self) -> None:
        pool = self._pool
        with pool._lock:
            # Served meanwhile by a returned connection, and not needed for min_size?
            unwanted = not pool._waiters and pool.current_size > pool.min_size
        if unwanted:
            pool._release_slot(creating=True)
            return
        step = self.backoff.steps
        try:
            entry = pool.create()
        except BaseException as exc:
            self._failed(exc, step)
            if not isinstance(exc, Exception):
                raise
            return
        self.backoff.succeeded()
        pool._add_created(entry)
        self.grow()  # more callers may have queued than connects were in flight

    def _failed(self, exc: BaseException, step: int) -> None:
        pool = self._pool
        if isinstance(exc, Exception):
            self.backoff.failed(exc, pool._clock(), step)
        with pool._lock:
            pool._create_failures += 1
        pool._release_slot(creating=True)  # grows again, after the back-off delay

    def timeout_error(self, timeout: Optional[float]) -> PoolTimeout:
        """The error for a caller whose ``timeout`` ran out: what the pool holds, and
        the last connect error (its text, chained) while connects fail."""
        pool = self._pool
        stats = Pool.stats(pool)
        last = self.backoff.last_error
        cause = ""
        if last is not None:
            cause = f"; last connect error: {type(last).__name__}: {one_line(last)[:300]}"
        error = PoolTimeout(
            f"{pool._label()}: no connection within {timeout:.3g} s "
            f"({stats.in_use} in use, {stats.idle} idle, {stats.creating} connecting, "
            f"{stats.waiting} waiting, max {stats.max_size}){cause}"
        )
        error.__cause__ = last
        return error
