"""The connection pools' upkeep: the jobs their maintenance tasks run.

* :func:`sweep` closes idle connections past ``max_idle``/``max_age``,
  reclaims abandoned checkouts and tops the pool up to ``min_size``; it
  returns when it should run next (the soonest possible expiry), so the
  task sleeps until then.
* :func:`report_leaks` logs connections held past ``leak_timeout``.
* :func:`reclaim_orphans` closes connections whose wrappers were garbage
  collected while checked out (queued by the wrapper's ``__del__``).
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .administration import PoolAdministration
    from .connections import BaseConnectionPool
    from .entry import ConnectionEntry

__all__ = [
    "sweep", "report_leaks", "note_taker", "reclaim_orphans", "is_expired", "expiry", "ORPHAN_POLL"
]

log = logging.getLogger("greenpool.connections")

_INF = float("inf")

#: While callers wait, how often maintenance looks for garbage-collected checkouts.
ORPHAN_POLL = 1.0


def reclaim_orphans(pool: PoolAdministration) -> None:
    """Close the connections of checkouts garbage collected without being returned."""
    while pool._orphans:
        try:
            entry = pool._orphans.popleft()
        except IndexError:
            return
        with pool._lock:
            if not entry.in_use:
                continue  # revoked by close(timeout) since
            entry.in_use = False
        log.warning(
            "%s: connection #%d was garbage collected without being returned; closing it%s",
            pool._label(), entry.serial,
            f" (taken at:\n{entry.taken_stack})" if entry.taken_stack
            else " (pass leak_timeout= to log where it was taken)",
        )
        pool._end_lease(entry)
        pool._discard_entry(entry, "orphaned", lost=True)


def is_expired(pool: BaseConnectionPool, entry: ConnectionEntry, now: float, size: int) -> bool:
    """Past max_age, or idle past max_idle while the pool (of ``size``) is above
    min_size."""
    if now >= entry.expires_at:
        return True
    max_idle = pool.max_idle
    return max_idle is not None and now - entry.last_used >= max_idle and size > pool.min_size


def expiry(
    pool: BaseConnectionPool, entry: Optional[ConnectionEntry], idle_since: float
) -> float:
    """When ``entry`` (None: a connection of any age), idle from ``idle_since``
    on, may expire; a pool of at most ``min_size`` keeps its idle connections
    until they are too old."""
    expires_at = _INF if entry is None else entry.expires_at
    if pool.max_idle is None or pool.current_size <= pool.min_size:
        return expires_at
    return min(expires_at, idle_since + pool.max_idle)


def sweep(pool: BaseConnectionPool) -> Optional[float]:
    """Close idle connections past max_idle/max_age, reclaim orphans, top up to
    min_size; return when to sweep next."""
    reclaim_orphans(pool)
    now = pool._clock()
    expired: list[ConnectionEntry] = []
    with pool._lock:
        if pool._closed:
            return None
        for entry in list(pool.free_items):
            if is_expired(pool, entry, now, pool.current_size):
                pool.free_items.remove(entry)
                pool.current_size -= 1
                expired.append(entry)
        # A connection in use is looked at when it comes back (age included), and can
        # expire idle no sooner than max_idle from now.
        soonest = min(
            (expiry(pool, e, e.last_used) for e in pool.free_items),
            default=_INF,
        )
        if len(pool.free_items) < len(pool._entries):
            soonest = min(soonest, expiry(pool, None, now))
        waiting = bool(pool._waiters)
    for entry in expired:
        log.debug("%s: connection #%d expired", pool._label(), entry.serial)
        pool._retire(entry, "expired")
    if expired:
        pool._grow()  # back up to min_size
    if waiting:
        soonest = min(soonest, now + ORPHAN_POLL)
    return None if soonest == _INF else soonest


def report_leaks(pool: BaseConnectionPool) -> Optional[float]:
    """Log connections held past ``leak_timeout`` (once each); the next deadline."""
    leak_timeout = pool.leak_timeout
    if leak_timeout is None:
        return None
    now = pool._clock()
    with pool._lock:
        held = [e for e in pool._entries if e.in_use and not e.leak_reported]
    pending = []
    for entry in held:
        due = entry.taken_at + leak_timeout
        if now < due:
            pending.append(due)
            continue
        entry.leak_reported = True
        log.warning(
            "%s: connection #%d has been checked out for %.1f s (leak_timeout=%s s); "
            "taken at:\n%s",
            pool._label(), entry.serial, now - entry.taken_at, leak_timeout,
            entry.taken_stack,
        )
    return min(pending, default=None)


def revoke_checked_out(pool: PoolAdministration, timeout: float) -> None:
    """``close(timeout)``'s end: close the connections still checked out under
    their users, whose next use fails."""
    with pool._lock:
        revoked = [entry for entry in pool._entries if entry.in_use]
        for entry in revoked:
            entry.revoked = True
            entry.in_use = False
    for entry in revoked:
        pool._end_lease(entry)
        log.warning(
            "%s: closing connection #%d still checked out after close(timeout=%s)",
            pool._label(), entry.serial, timeout,
        )
        pool._discard_entry(entry, "pool closed under its user", lost=False)


def note_taker(pool: BaseConnectionPool, entry: ConnectionEntry, now: float) -> None:
    """Record where a connection is checked out (the caller of ``get()``), for the
    leak report; made only when ``leak_timeout`` is set."""
    entry.leak_reported = False
    entry.taken_stack = "".join(traceback.format_stack(sys._getframe(2), limit=12))
    pool._leak_task.schedule(now + pool.leak_timeout)  # type: ignore[operator]
