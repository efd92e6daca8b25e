"""Watching a connection pool through its public seams, for tests.

* :class:`Recorder` is a :class:`~greenpool.events.PoolObserver` that writes
  down every event with the hub's time, so a test can ask *when* a connection
  was closed or a caller gave up instead of reading the pool's internals.
* :func:`connects_taking` makes a manual-clock hub on which each connect takes
  a given virtual time, for either pool class.
* :func:`run_on_manual_clock` makes a pool on a
  :class:`~tests.support.manual_hub.ManualClockHub`, runs a test body with it in
  virtual time and closes it afterwards: timing tests (``max_idle``,
  ``max_age``, ``leak_timeout``, waits and back-off) assert exact times and
  never really sleep.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

from greenpool import TpooledConnectionPool
from greenpool.events import PoolObserver
from greenpool.hubs import Hub
from tests.support.manual_hub import ManualClockHub


class Event(NamedTuple):
    at: float  # the hub's monotonic time
    name: str  # connected, connect_failed, checked_out, checked_in, discarded, timed_out
    args: tuple


class Recorder(PoolObserver):
    """Records the events of the pools it is added to: ``pool.add_observer(Recorder(hub))``."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.events: list[Event] = []

    def _note(self, name: str, *args: Any) -> None:
        self.events.append(Event(self.hub.monotonic(), name, args))

    def connected(self, pool: Any, seconds: float) -> None:
        self._note("connected", seconds)

    def connect_failed(self, pool: Any, error: BaseException) -> None:
        self._note("connect_failed", error)

    def checked_out(self, pool: Any, waited: float) -> None:
        self._note("checked_out", waited)

    def checked_in(self, pool: Any, used: float) -> None:
        self._note("checked_in", used)

    def discarded(self, pool: Any, reason: str, lost: bool) -> None:
        self._note("discarded", reason, lost)

    def timed_out(self, pool: Any, waited: float) -> None:
        self._note("timed_out", waited)

    def named(self, name: str) -> list[Event]:
        """The events called ``name``, in order."""
        return [event for event in self.events if event.name == name]

    def times(self, name: str) -> list[float]:
        """When the events called ``name`` happened."""
        return [event.at for event in self.named(name)]

    def closed_at(self, reason: str) -> list[float]:
        """When connections were closed for ``reason`` (such as "expired")."""
        return [event.at for event in self.named("discarded") if event.args[0] == reason]

    def reasons(self) -> list[str]:
        """Why each connection was closed, in order."""
        return [event.args[0] for event in self.named("discarded")]

    def errors(self) -> list[BaseException]:
        """The connect errors, in order."""
        return [event.args[0] for event in self.named("connect_failed")]


def run_on_manual_clock(
    hub: Any,
    pool_cls: type,
    db: Any,
    body: Callable[[Any], Any],
    *args: Any,
    record: Optional[Recorder] = None,
    **options: Any,
) -> Any:
    """Make ``pool_cls(db, *args, hub=hub, **options)`` inside ``hub.run()``, call
    ``body(pool)``, close the pool; return what ``body`` returned.

    ``record`` is added as an observer before ``body`` runs.  Afterwards no task
    of the hub may have failed.
    """

    def main() -> Any:
        pool = pool_cls(db, *args, hub=hub, **options)
        try:
            if record is not None:
                pool.add_observer(record)
            return body(pool)
        finally:
            pool.close()

    result = hub.run(main)
    assert hub.failures == [], hub.failures
    return result


def connects_taking(pool_cls: type, db: Any, seconds: float) -> ManualClockHub:
    """A manual-clock hub on which each connect of a ``pool_cls`` pool takes ``seconds``.

    A green connect sleeps in the driver (the fake's ``connect_hook``), where
    ``connect_timeout`` interrupts it.  A tpooled connect waits that long for its
    "OS thread" (``thread_call_seconds``; every other driver call of that pool
    takes as long), and one abandoned at ``connect_timeout`` still arrives later.
    """
    if issubclass(pool_cls, TpooledConnectionPool):
        return ManualClockHub(thread_call_seconds=seconds)
    hub = ManualClockHub()
    db.connect_hook = lambda: hub.sleep(seconds)
    return hub
