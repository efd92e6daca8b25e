"""What happens to a connection at checkout and at return.

:class:`Vetting` decides, without touching the pool's queue:

* at checkout (:meth:`Vetting.checkout_problem`), whether an idle
  connection may be handed out: age and drain first, then the local tests
  (the driver's closed flag, the socket), and a round trip (the pool's
  ``check``) only for a connection not used within ``check_interval`` or
  older than the last disconnect;
* at return (:meth:`Vetting.return_problem`), whether it may be reused and
  what it needs first: one local look at its state
  (:meth:`~greenpool.drivers.Driver.return_state`), then the cleanup (by
  default the rollback, skipped when no transaction is open).

Both return the reason to close the connection, or None to keep it.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, Callable, Optional

from . import upkeep
from .drivers import Driver, ReturnState
from .errors import PoolClosed, PoolTimeout
from .health import socket_watch
from .pool import Pool

if TYPE_CHECKING:  # pragma: no cover
    from .connections import BaseConnectionPool
    from .entry import ConnectionEntry

__all__ = ["Vetting", "vet_at_checkout", "cleanup_rollback", "LOST_REASONS", "DEFAULT"]

log = logging.getLogger(__name__)

#: A connection given back less than this long ago (seconds) is handed out without
#: the socket test: the test is for connections that sat idle (a server hanging up
#: on them), and one passed straight from a caller to a waiter was not idle.
SOCKET_TEST_AFTER = 0.005

#: Reasons to close a returned connection that count as "lost" in the stats.
LOST_REASONS = frozenset(
    {"closed by its user or server", "cleanup failed", "returned in the middle of a query"}
)


def cleanup_rollback(conn: Any) -> None:
    """The default cleanup on return: roll back whatever the caller left open.

    The pool skips the round trip when the driver can tell that no
    transaction is open (psycopg2, PyMySQL, sqlite3).
    """
    conn.rollback()


_IDLE, _CLOSED, _BUSY = ReturnState.IDLE, ReturnState.CLOSED, ReturnState.BUSY

#: The ``timeout`` or ``cleanup`` argument not given: the pool's own is used.
DEFAULT: Any = type("Default", (), {"__repr__": lambda self: "<the pool's default>"})()

#: What counts as "the connection is bad" when the driver's own errors are unknown.
_ANY_ERROR: tuple[type[BaseException], ...] = (Exception,)


def driver_errors(module: Any) -> tuple[type[BaseException], ...]:
    """The exceptions that mean a check or cleanup failed: the driver's own (PEP 249
    ``Error``) and socket errors.  Anything else raised meanwhile is the caller's,
    and propagates after the connection is closed."""
    for candidate in (module, sys.modules.get(getattr(module, "__name__", "").split(".")[0])):
        error = getattr(candidate, "Error", None)
        if isinstance(error, type) and issubclass(error, Exception):
            return (error, OSError)
    return _ANY_ERROR


class Vetting:
    """The checkout and return tests of one pool.

    ``blocking`` runs driver calls that may block (in place, or in an OS
    thread for ``TpooledConnectionPool``).  ``suspect_before``: every
    connection last known good before this monotonic time gets the round
    trip at its next checkout (set when a disconnect is seen).
    """

    def __init__(
        self,
        driver: Driver,
        errors: tuple[type[BaseException], ...],
        check: Optional[Callable[[Any], Any]],
        check_interval: float,
        cleanup: Optional[Callable[[Any], Any]],
        blocking: Callable[..., Any],
        label: str,
        reuse: bool = True,
    ) -> None:
        self.driver = driver
        self.reuse = reuse  # false with max_idle=0: every returned connection is closed
        self.errors = errors
        self.check = check
        self.check_interval = check_interval
        self.cleanup = cleanup
        self._blocking = blocking
        self._label = label
        self.suspect_before = float("-inf")

    def watch(self, entry: ConnectionEntry) -> None:
        """Set up the socket test of a new connection (only when checks are on)."""
        if self.check is not None:
            entry.fd = self.driver.fileno(entry.conn)
            entry.watch = socket_watch(entry.fd)

    def socket_readable(self, entry: ConnectionEntry) -> bool:
        """The zero-round-trip test: the server hung up, or spoke unasked."""
        watch = entry.watch
        return watch is not None and bool(watch.poll(0))

    def checkout_problem(self, entry: ConnectionEntry, now: float) -> Optional[str]:
        """Why a pooled connection must not be handed out, or None if it may."""
        check = self.check
        if check is None:
            return None
        conn = entry.conn
        driver = self.driver
        if driver.is_closed(conn):
            return "found closed at checkout"
        if self._socket_hung_up(entry):
            self.suspect_before = now
            return "server hung up while it was idle"
        if now - entry.last_used < self.check_interval and entry.last_used > self.suspect_before:
            return None
        try:
            self._blocking(check, conn)
            if driver.return_state(conn) is ReturnState.DIRTY:
                self._blocking(conn.rollback)  # the check must not leave a transaction open
        except self.errors as exc:
            self.suspect_before = now
            log.warning("%s: connection #%d failed its health check, closing it: %s",
                        self._label, entry.serial, type(exc).__name__)
            return "failed its health check"
        return None

    def _socket_hung_up(self, entry: ConnectionEntry) -> bool:
        # The watch follows the driver's descriptor, which changes if the user
        # reconnected the connection (PyMySQL's ping(reconnect=True)).
        fd = self.driver.fileno(entry.conn)
        if fd != entry.fd:
            entry.fd = fd
            entry.watch = socket_watch(fd)
        watch = entry.watch
        return watch is not None and bool(watch.poll(0))

    def return_problem(
        self,
        entry: ConnectionEntry,
        now: float,
        generation: int,
        cleanup: Any,
        state: ReturnState,
    ) -> Optional[str]:
        """Whether a returned connection may be reused; the reason to close it, or
        None once it is clean.

        ``generation`` is the pool's (a drained connection is not reused);
        ``cleanup`` the caller's (None for none), or :data:`DEFAULT` for the
        pool's; ``state`` what :meth:`Driver.return_state` read.
        """
        if entry.generation != generation:
            return "drained"
        # Only age counts here: the time it was checked out is not idle time.
        if now >= entry.expires_at or not self.reuse:
            return "expired"
        if cleanup is DEFAULT:
            cleanup = self.cleanup
        conn = entry.conn
        if state is _IDLE:
            if cleanup is cleanup_rollback or cleanup is None:
                return None  # nothing to roll back
        elif state is _CLOSED:
            return "closed by its user or server"
        elif state is _BUSY:
            return "returned in the middle of a query"
        elif cleanup is None:
            return None
        try:
            self._blocking(cleanup, conn)
        except self.errors as exc:
            log.warning("%s: cleanup of connection #%d failed, closing it: %s",
                        self._label, entry.serial, type(exc).__name__)
            return "cleanup failed"
        return None


def vet_at_checkout(
    pool: BaseConnectionPool,
    entry: ConnectionEntry,
    now: float,
    started: float,
    timeout: Optional[float],
) -> tuple[ConnectionEntry, float]:
    """Look closer at a connection about to be handed out; while it is bad, close it
    and take another, within the ``timeout`` of the caller's ``get()`` that
    ``started`` then (None: for ever).  The connection and the time it was
    found good."""
    deadline = None if timeout is None else started + timeout
    while True:
        if pool.closed:
            pool._discard_entry(entry, "pool closed", lost=False)
            raise PoolClosed(f"{pool._label()} was closed during get()")
        try:
            problem = _checkout_problem(pool, entry, now)
        except BaseException:
            pool._discard_entry(entry, "interrupted during its health check", lost=True)
            raise
        if problem is None:
            entry.touch(now, pool._quiet)
            return entry, now
        pool._discard_entry(entry, problem, lost=problem not in ("expired", "drained"))
        left = None if deadline is None else max(0.0, deadline - pool._clock())
        try:
            entry = Pool.get(pool, left)
        except PoolTimeout:
            raise pool._growth.timeout_error(timeout)  # naming the caller's timeout
        now = pool._clock()


def _checkout_problem(
    pool: BaseConnectionPool, entry: ConnectionEntry, now: float
) -> Optional[str]:
    if not entry.lent and entry.generation == pool._generation:
        return None  # new: its connect was its test (even with max_age=0)
    if upkeep.is_expired(pool, entry, now, pool.current_size):
        return "expired"
    if entry.generation != pool._generation:
        return "drained"
    vetting = pool._vetting
    if now < entry.vetted_until and not vetting.socket_readable(entry):
        return None  # only the socket test was due, and it passed
    problem = vetting.checkout_problem(entry, now)
    if problem is not None and problem != "found closed at checkout":
        pool._revet_all()  # a dead connection makes the older ones suspect
    return problem
