"""What a pool's operator does with the pool as a whole.

:class:`PoolAdministration` holds the connection pools' operations on every
connection at once (observe, clear, drain, close, make room) and their
state as a whole (``closed``, ``stats()``, ``repr``); the connection pools
inherit them.  Checkout and return, which are per connection, live in
:mod:`greenpool.connections`.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Deque, Optional

from . import upkeep, validation
from .entry import ConnectionEntry
from .events import ConnectionPoolStats, PoolObserver
from .pool import Pool
from .proxy import PooledConnectionWrapper

if TYPE_CHECKING:  # pragma: no cover
    from .events import ConnectionCounters
    from .maintenance import Scheduler

__all__ = ["PoolAdministration"]

log = logging.getLogger("greenpool.connections")


class PoolAdministration(Pool[ConnectionEntry]):
    """A pool of connections, with the operations on all of them at once.

    The base of :class:`~greenpool.BaseConnectionPool`, which sets the
    attributes declared here and provides the methods stubbed here.
    """

    __slots__ = ()

    target: str
    _counters: ConnectionCounters
    _entries: set[ConnectionEntry]
    _generation: int
    _observers: list[PoolObserver]
    _orphans: Deque[ConnectionEntry]
    _scheduler: Scheduler

    def _grow(self) -> None:
        raise NotImplementedError

    def _revet_all(self) -> None:
        raise NotImplementedError

    def _retire(self, entry: ConnectionEntry, reason: str = "retired") -> None:
        raise NotImplementedError

    def _discard_entry(self, entry: ConnectionEntry, reason: str, lost: bool) -> None:
        raise NotImplementedError

    def _end_lease(self, entry: ConnectionEntry) -> None:
        raise NotImplementedError

    def _check_in(self, conn: Any) -> Optional[ConnectionEntry]:
        raise NotImplementedError

    def add_observer(self, observer: PoolObserver) -> None:
        """Tell ``observer`` (a :class:`~greenpool.events.PoolObserver`) of every event."""
        self._observers = [*self._observers, observer]

    def remove_observer(self, observer: PoolObserver) -> None:
        """Stop telling ``observer``; unknown observers are ignored."""
        self._observers = [o for o in self._observers if o is not observer]

    def _notify(self, event: str, *args: Any) -> None:
        for observer in self._observers:
            getattr(observer, event)(self, *args)

    def reclaim_abandoned(self) -> None:
        """Close now the connections of checkouts garbage collected without being
        returned, freeing their slots (and ``limiter`` items).

        The pool does it by itself at its next :meth:`get` and, while callers
        wait, every second; a pool sharing a ``limiter`` with others may call
        this when a caller waits for the limiter.
        """
        upkeep.reclaim_orphans(self)

    def close_idle(self, count: int = 1) -> int:
        """Close up to ``count`` idle connections, least recently used first; how many."""
        count = validation.check_int("count", count)
        taken: list[ConnectionEntry] = []
        with self._lock:
            while self.free_items and len(taken) < count:
                # The least recently used is at the end for a stack, the front otherwise.
                taken.append(self.free_items.pop() if self.order_as_stack
                             else self.free_items.popleft())
            self.current_size -= len(taken)
        for entry in taken:
            self._retire(entry, "closed to make room")
        return len(taken)

    def clear(self) -> None:
        """Close every idle connection now (checked-out ones are untouched).

        New connections are opened for callers waiting meanwhile; the pool is
        topped up to ``min_size`` again only as its connections are used.
        """
        with self._lock:
            idle = list(self.free_items)
            self.free_items.clear()
            self.current_size -= len(idle)
        for entry in idle:
            self._retire(entry, "cleared")
        if self._waiters:
            self._grow()

    # -- eventlet.db_pool's own helpers, kept for code that calls them -------------------

    def _unwrap_connection(self, conn: Any) -> Any:
        """The driver's connection behind ``conn``, taken out of the pool for good
        (its slot freed); None for anything that is not a live wrapper.  As in
        eventlet, any object with a true ``_base`` attribute gives that."""
        if isinstance(conn, PooledConnectionWrapper):
            entry = self._check_in(conn)
            if entry is None:
                return None
            self._end_lease(entry)
            with self._lock:
                self._entries.discard(entry)
            self._release_slot()
            return entry.conn
        return getattr(conn, "_base", None) if conn else None

    def _safe_close(self, conn: Any, quiet: bool = False) -> None:
        """``conn.close()``, logging what it raises (unless ``quiet``) instead of raising."""
        try:
            conn.close()
        except AttributeError:
            pass  # None, or not a connection
        except Exception as exc:
            if not quiet:
                log.warning("%s: closing a connection raised %s", self._label(), exc)

    def close(self, timeout: Optional[float] = None) -> None:
        """Close the pool: no further checkouts, idle connections closed at once.

        Waiters get :class:`~greenpool.errors.PoolClosed`.  Connections still
        checked out are closed when they come back; with ``timeout`` (seconds),
        ``close`` waits up to that long for them and then closes them under
        their users (whose next use fails).  Idempotent.
        """
        timeout = validation.check_seconds("timeout", timeout)
        self._close_waiters()
        self._scheduler.stop()
        self._revet_all()  # returns from now on take the long way, which closes them
        self.clear()
        if timeout is not None:
            deadline = self._clock() + timeout
            while self._entries and self._clock() < deadline:
                self.hub.sleep(min(0.01, max(0.0, deadline - self._clock())))
            upkeep.revoke_checked_out(self, timeout)
        log.debug("%s: closed", self._label())

    def drain(self) -> None:
        """Replace every connection without failing requests.

        Idle connections are closed now; checked-out ones are closed when
        they come back; new checkouts get new connections.  For a failover or
        a password rotation (change ``connect_kwargs`` first).
        """
        with self._lock:
            self._generation += 1
        self._revet_all()
        log.info("%s: draining: every connection will be replaced", self._label())
        self.clear()

    def stats(self) -> ConnectionPoolStats:
        """A snapshot: pool sizes plus connection counters."""
        base = Pool.stats(self)
        with self._lock:
            counters = self._counters.snapshot()
        counters["wait_time"] = self._wait_time
        return ConnectionPoolStats(**base.__dict__, **counters)

    def __repr__(self) -> str:
        s = Pool.stats(self)
        state = " closed" if self._closed else ""
        return (
            f"<{self._label()}{state} {s.in_use} in use, {s.idle} idle, {s.waiting} waiting, "
            f"max {s.max_size}, {self.target}, hub {self.hub.name}>"
        )
