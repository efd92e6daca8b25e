"""Pool events, for ``stats()`` and for metrics exporters.

A :class:`PoolObserver` is told of every connect, checkout, checkin,
discard and timeout of the pools it is added to
(:meth:`~greenpool.BaseConnectionPool.add_observer`).  Its methods are
called in the task that caused the event, outside the pool's lock, and
must not block or raise; the default methods do nothing, so an observer
overrides only what it needs.  ``stats()`` reads :class:`ConnectionCounters`,
which the pool keeps at the same points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .pool import PoolStats

if TYPE_CHECKING:  # pragma: no cover
    from .connections import BaseConnectionPool

__all__ = ["PoolObserver", "ConnectionCounters", "ConnectionPoolStats"]


class PoolObserver:
    """Receives a pool's events; subclass it and override what you need.

    Times are in seconds; ``pool`` is the pool the event happened in.
    """

    def connected(self, pool: BaseConnectionPool, seconds: float) -> None:
        """A new connection was opened; the connect took ``seconds``."""

    def connect_failed(self, pool: BaseConnectionPool, error: BaseException) -> None:
        """A connect attempt failed (``error`` may be a ConnectTimeout)."""

    def checked_out(self, pool: BaseConnectionPool, waited: float) -> None:
        """A caller got a connection after ``waited`` seconds in ``get()``."""

    def checked_in(self, pool: BaseConnectionPool, used: float) -> None:
        """A connection held for ``used`` seconds came back (kept or not)."""

    def discarded(self, pool: BaseConnectionPool, reason: str, lost: bool) -> None:
        """A connection was closed; ``lost``: it broke or was abandoned in use,
        rather than expiring or being retired."""

    def timed_out(self, pool: BaseConnectionPool, waited: float) -> None:
        """A caller's ``get()`` gave up after ``waited`` seconds."""


class ConnectionCounters:
    """The counters behind :meth:`~greenpool.BaseConnectionPool.stats`, updated by
    the pool at the same points as it tells its observers, under its own lock."""

    __slots__ = (
        "opened", "closed", "connect_failures", "connect_timeouts", "expired", "lost",
        "bad_returns", "orphans", "wait_time", "usage_time",
    )

    def __init__(self) -> None:
        self.opened = self.closed = self.connect_failures = self.connect_timeouts = 0
        self.expired = self.lost = self.orphans = self.bad_returns = 0
        self.wait_time = self.usage_time = 0.0

    def discarded(self, reason: str, lost: bool) -> None:
        self.closed += 1
        if lost:
            self.lost += 1
        if reason == "expired":
            self.expired += 1
        elif reason == "orphaned":
            self.orphans += 1

    def snapshot(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True)
class ConnectionPoolStats(PoolStats):
    """:class:`~greenpool.pool.PoolStats` plus connection counters (from
    :class:`~greenpool.events.ConnectionCounters`): connections ``opened`` and
    ``closed``, ``connect_failures`` (``connect_timeouts`` among them),
    ``expired``, ``lost`` (broken or abandoned in use), ``bad_returns``
    (refused ``put()`` calls), ``orphans`` (garbage-collected checkouts), and
    seconds spent waiting in ``get()`` and holding connections."""

    opened: int
    closed: int
    connect_failures: int
    connect_timeouts: int
    expired: int
    lost: int
    bad_returns: int
    orphans: int
    wait_time: float
    usage_time: float
