"""DatabaseConnector: one connection pool per (host, database), for sharded and multi-tenant apps.

``DatabaseConnector(module, credentials, conn_pool=None, *args, **kwargs)``
keeps ``eventlet.db_pool.DatabaseConnector``'s API and finishes it:

* the database keyword follows the driver (``dbname`` for psycopg2,
  ``database`` for PyMySQL, MySQLdb, sqlite3 and the rest), overridable with
  ``database_keyword=`` (``"db"`` gives eventlet's MySQLdb behaviour);
* a host may carry a port (``"db3:5433"``, ``"[::1]:5433"``) or take it from
  its credentials entry; pools are keyed by :class:`PoolKey`;
* two tasks asking for the same new pool at the same moment get the same
  pool, on every hub; a failed creation is retried by the next caller;
* :meth:`DatabaseConnector.close` closes every pool, :meth:`~DatabaseConnector.pools`
  and :meth:`~DatabaseConnector.stats` show them;
* a host without credentials (and no ``'default'``) raises :class:`UnknownHost`
  (a ``KeyError``) naming the host and never a password.

The pools are instances of ``conn_pool`` itself.  A
:class:`~greenpool.BaseConnectionPool` pool opens its connections in the
background: a caller never sees a connect error, it waits for a returned
connection or a new one and gets :class:`~greenpool.errors.PoolTimeout`
when its own timeout runs out (its ``__cause__`` is the last connect
error).  With ``timeout=None`` (the pools' default) a caller waits for ever,
so give the pools a ``timeout``.

Beyond eventlet, for pools of :class:`~greenpool.BaseConnectionPool` subclasses:

``max_total`` -- one cap across every host.
    It caps **connections in use** (checkouts) *and* **connections open**.
    Every pool gets the same ``limiter``: a :class:`~greenpool.TokenPool` of
    ``max_total`` tokens.  Each checkout first takes a token, in one FIFO
    queue shared by every pool and within the caller's timeout, and gives it
    back when the connection is returned, discarded, or reclaimed after its
    wrapper was garbage collected.  So a caller waiting on host A is served,
    in arrival order, as soon as a connection comes back on any host.  A
    caller whose timeout runs out while waiting for a token gets a
    :class:`~greenpool.errors.PoolTimeout` naming ``max_total``; one whose
    timeout runs out later, waiting for its pool, gets the pool's.  Capping
    checkouts alone would let idle connections pile up across a hundred
    shards, so before each connect (the pools' ``before_connect`` hook) the
    connector closes idle connections of the pools with the most idle ones
    until the connections open fit under ``max_total``; when every one is in
    use, the connect waits for one to come back, up to the pool's
    ``connect_timeout``, and then goes ahead.  While callers wait for a
    token, checkouts garbage collected unreturned in any pool are reclaimed
    every second.  Tokens are taken
    per checkout rather than per open connection because a per-connection
    token makes a returned connection useless to the waiter of its own pool
    (it would have to be closed and reopened to move its token).
    ``min_size`` must be 0 with ``max_total``: connections kept open per
    pool are exactly what the cap is there to prevent.

``max_pool_idle`` -- pools nobody used for this many seconds are closed and forgotten.
    "Used" means a :meth:`~DatabaseConnector.get` of the pool, a checkout
    from it, or a connection of it still out; the next ``get(host, db)``
    makes a fresh pool.  Call ``get(host, db)`` each time rather than keeping
    the pool object when this is on: a kept pool that sat unused past the
    limit raises :class:`~greenpool.errors.PoolClosed`.

``failure_threshold`` / ``backoff`` -- stop connecting to a host that keeps failing.
    After ``failure_threshold`` (3) consecutive failed connects to a host
    (any database on it; a :class:`~greenpool.errors.ConnectTimeout` counts),
    the pools' ``before_connect`` hook refuses connects to that host with
    :class:`~greenpool.errors.DatabaseUnavailable` for ``backoff`` (5 s),
    without contacting it.  A pool takes a refusal as a failed connect: it
    backs off (its ``reconnect_backoff``) and tries again while callers
    wait, and a caller whose timeout runs out meanwhile gets a
    :class:`~greenpool.errors.PoolTimeout` whose ``__cause__`` is the
    ``DatabaseUnavailable`` (whose own ``__cause__`` is the host's last
    connect error).  Once the back-off is over, one connect is let through as
    a trial (the others are still refused): success ends the back-off,
    failure starts another.  Opening is logged as a warning, closing as
    info.  Idle connections already open keep being handed out (subject to
    the pool's health check).  Refusals are counted in the pools'
    ``connect_failures`` but never as failures of the host.  The unit is the
    host because that is what goes down; the price is that a tenant whose
    database was dropped can, after three straight failures, hold up new
    connects to its host for a few seconds.  A pool with ``min_size``
    opens those connections in its constructor, so ``get(host, db)`` for a
    new pool of a host that fails fast raises the ``DatabaseUnavailable``.

Credentials never appear in logs, reprs or messages: hosts, ports and
database names do.
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple

from . import validation
from .connections import BaseConnectionPool, ConnectionPool
from .drivers import driver_for
from .errors import ConnectTimeout, DatabaseUnavailable, PoolClosed, PoolError, PoolTimeout
from .events import PoolObserver
from .hubs import Event, Hub, HubSpec, resolve_hub
from .maintenance import MaintenanceTask, Scheduler
from .pool import Token, TokenPool

__all__ = [
    "DatabaseConnector",
    "PoolKey",
    "ConnectorStats",
    "UnknownHost",
    "split_host",
]

log = logging.getLogger(__name__)

#: While callers wait for a ``max_total`` token, how often (seconds) the pools'
#: abandoned checkouts are reclaimed, so that their tokens come back.
RECLAIM_POLL = 1.0

#: Keywords that name the database for some driver; the one the connector uses replaces them.
_DATABASE_ALIASES = ("db", "database", "dbname")
#: Drivers that have no server to name: no host keyword is passed to them.
_NO_HOST_DRIVERS = frozenset({"sqlite3"})
#: Making room under max_total when nothing is idle yet: the first and the longest
#: pause between looks, and how long to look when the pool has no connect_timeout.
_ROOM_PAUSE = 0.002
_ROOM_PAUSE_MAX = 0.05
_ROOM_WAIT = 5.0

_INF = float("inf")
_UNSET: Any = object()

_BRACKETED = re.compile(r"^\[(?P<host>[^\]]*)\](?::(?P<port>.*))?$")


class UnknownHost(PoolError, KeyError):
    """No credentials for a host, and no ``'default'`` entry.

    A :class:`KeyError` as well, like the lookup that failed; the message
    names the host and the hosts that do have credentials, never their values.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class PoolKey(NamedTuple):
    """What a pool is kept under.

    ``host`` is lower case and without its port; ``port`` is None for the
    driver's default.
    """

    host: str
    port: Optional[int]
    database: str

    @property
    def address(self) -> str:
        """``host`` or ``host:port`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port is None else f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.address}/{self.database}"


def _parse_port(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"{where}: port must be an integer, got {type(value).__name__}")
    if isinstance(value, str):
        if not value.isdigit():
            raise ValueError(f"{where}: port must be a number from 1 to 65535, got {value!r}")
        value = int(value)
    if not 1 <= value <= 65535:
        raise ValueError(f"{where}: port must be a number from 1 to 65535, got {value!r}")
    return value


def split_host(host: str) -> Tuple[str, Optional[int]]:
    """Split a host into name and port: ``"db3:5433"`` -> ``("db3", 5433)``.

    ``"[::1]:5433"`` -> ``("::1", 5433)`` and ``"db3"`` -> ``("db3", None)``;
    a bare IPv6 address (``"::1"``) has no port.  Raises :class:`TypeError`
    for a non-string and :class:`ValueError` for a bad port.
    """
    if not isinstance(host, str):
        raise TypeError(f"host must be a string, got {host!r}")
    match = _BRACKETED.match(host)
    if match:
        name, port = match.group("host"), match.group("port")
    elif host.count(":") == 1:
        name, port = host.split(":")
    else:
        return host, None
    if port is None:
        return name, None
    return name, _parse_port(port, f"host {host!r}")


@dataclass(frozen=True)
class ConnectorStats:
    """A snapshot of a connector: every pool's stats and the totals across them.

    ``size`` counts connections open or being opened; ``checkouts`` and
    ``checkout_waiting`` are the callers holding and waiting for a
    ``max_total`` token (both 0 without ``max_total``); ``failing_hosts``
    lists the hosts currently failing fast.
    """

    name: Optional[str]
    pools: Dict[PoolKey, Any]
    size: int
    in_use: int
    idle: int
    waiting: int
    max_total: Optional[int]
    checkouts: int
    checkout_waiting: int
    failing_hosts: Tuple[str, ...]


class _Slot:
    """A pool the connector keeps, and when it was last seen in use."""

    __slots__ = ("pool", "last_used", "requests")

    def __init__(self, pool: Any, now: float) -> None:
        self.pool = pool
        self.last_used = now
        self.requests = 0



class _HostHealth:
    """The fail-fast state of one host: counting failures, refusing connects, or on trial."""

    __slots__ = ("address", "failures", "open_until", "trial", "trial_until", "last_error")

    def __init__(self, address: str) -> None:
        self.address = address
        self.failures = 0
        #: While refusing connects: until when (then one trial is let through).
        self.open_until: Optional[float] = None
        #: The task making the trial connect, and when to stop waiting for its outcome.
        self.trial: Any = None
        self.trial_until = _INF
        self.last_error: Optional[BaseException] = None

    def backing_off(self, now: float) -> bool:
        return self.open_until is not None and (self.trial is not None or now < self.open_until)


class _HostGate:
    """Fail-fast for every host of a connector: refuses connects to failing hosts.

    :meth:`check` runs in a pool's ``before_connect`` hook, :meth:`connected`
    and :meth:`failed` in its observer; all three run in the task that makes
    the connect, which is how a trial's outcome is told from the outcomes of
    connects that were already under way.  State changes under one lock
    that is never held across a yield; log lines are written after.
    """

    def __init__(self, threshold: int, backoff: float, hub: Hub, label: str) -> None:
        self.threshold = threshold
        self.backoff = backoff
        self.hub = hub
        self.label = label
        self.lock = hub.lock()
        self.hosts: Dict[Tuple[str, Optional[int]], _HostHealth] = {}

    def check(self, key: PoolKey, connect_timeout: Optional[float]) -> None:
        """Raise DatabaseUnavailable while ``key``'s host is backing off.

        After the back-off the first connect through becomes the trial; if its
        outcome never comes (``connect_timeout`` plus ``backoff`` later),
        another connect may try.
        """
        if not self.hosts:
            return
        now = self.hub.monotonic()
        with self.lock:
            health = self.hosts.get((key.host, key.port))
            if health is None or health.open_until is None:
                return
            if health.trial is not None and now >= health.trial_until:
                health.trial = None
            if health.trial is None and now >= health.open_until:
                health.trial = self.hub.current_task()
                limit = _INF if connect_timeout is None else connect_timeout
                health.trial_until = now + limit + self.backoff
                return
            remaining = max(0.0, health.open_until - now)
            failures, last, on_trial = health.failures, health.last_error, health.trial
        state = "a trial connect is under way" if on_trial is not None else (
            f"failing fast for {remaining:.1f} s more"
        )
        raise DatabaseUnavailable(
            f"{self.label}: {key.address} failed {failures} connects in a row "
            f"(last: {type(last).__name__}); {state}"
        ) from last

    def failed(self, key: PoolKey, error: BaseException) -> None:
        """A connect to ``key``'s host failed (in the task that tried it)."""
        task = self.hub.current_task()
        now = self.hub.monotonic()
        with self.lock:
            health = self.hosts.get((key.host, key.port))
            on_trial = False
            if health is not None and health.trial is task:
                health.trial = None
                on_trial = True
            if not _is_connect_error(error):
                return  # refused by this gate or by the pool: says nothing about the host
            if health is None:
                health = self.hosts[(key.host, key.port)] = _HostHealth(key.address)
            health.failures += 1
            health.last_error = error
            opens = on_trial or health.failures >= self.threshold
            if opens:
                health.open_until = now + self.backoff
            failures = health.failures
        if on_trial:
            log.warning(
                "%s: trial connect to %s failed (%s); failing fast for another %.1f s",
                self.label, key.address, type(error).__name__, self.backoff,
            )
        elif opens and failures == self.threshold:
            log.warning(
                "%s: %d connects in a row to %s failed (last: %s); failing fast for %.1f s",
                self.label, failures, key.address, type(error).__name__, self.backoff,
            )

    def connected(self, key: PoolKey) -> None:
        """A connect to ``key``'s host succeeded: its back-off, if any, is over."""
        if not self.hosts:
            return
        with self.lock:
            health = self.hosts.pop((key.host, key.port), None)
        if health is not None and health.open_until is not None:
            log.info(
                "%s: %s is reachable again after %d failed connects; back-off over",
                self.label, key.address, health.failures,
            )

    def failing_hosts(self) -> Tuple[str, ...]:
        """The hosts refusing connects now, sorted."""
        now = self.hub.monotonic()
        with self.lock:
            return tuple(sorted(h.address for h in self.hosts.values() if h.backing_off(now)))


class _CapTokens(TokenPool):
    """The ``max_total`` tokens, shared by every pool of a connector as its ``limiter``.

    :meth:`get` names the cap in its errors and calls ``on_wait`` when the
    caller has to wait (see :meth:`_MaxTotal.reclaim_abandoned`).
    :meth:`close` (the pool's own) wakes every waiter with PoolClosed.
    """

    def __init__(
        self, max_total: int, hub: Hub, name: str, label: str, on_wait: Callable[[], None]
    ) -> None:
        self.cap = max_total
        self.cap_label = label
        self.cap_on_wait = on_wait
        super().__init__(0, max_total, hub=hub, name=name)

    @property
    def cap_closed(self) -> bool:
        return self.closed

    def get(self, timeout: Optional[float] = None) -> Token:
        if self.closed:
            raise PoolClosed(f"{self.cap_label} is closed")
        if not self.free():
            self.cap_on_wait()
        try:
            return super().get(timeout)
        except PoolTimeout:
            raise PoolTimeout(
                f"{self.cap_label}: all max_total={self.cap} connections are in use "
                f"and none came back within {timeout} s"
            ) from None
        except PoolClosed:
            raise PoolClosed(
                f"{self.cap_label} was closed while waiting for a connection"
            ) from None


class _MaxTotal:
    """``max_total`` across the pools of a connector.

    ``limiter`` is given to every pool; :meth:`make_room` runs before each
    of their connects.  While callers wait for a token, a maintenance task
    reclaims the checkouts of any pool that were garbage collected
    unreturned (a pool reclaims its own at its next ``get()``, which a
    caller of another pool waiting for the cap does not make).
    """

    def __init__(self, max_total: int, hub: Hub, name: Optional[str], label: str) -> None:
        self.max_total = max_total
        self.hub = hub
        self.label = label
        self.lock = hub.lock()
        self.pools: weakref.WeakSet[BaseConnectionPool] = weakref.WeakSet()
        self.closing = 0  # idle connections being closed to make room
        self.rooming = 0  # connects waiting in make_room()
        task = self.reclaim_task = MaintenanceTask(
            self, hub, _MaxTotal.reclaim_abandoned, "abandoned checkout reclaim"
        )

        def on_wait() -> None:
            task.schedule(hub.monotonic() + RECLAIM_POLL)

        self.limiter = _CapTokens(
            max_total, hub, f"{name} max_total" if name else "max_total", label, on_wait
        )

    def track(self, pool: BaseConnectionPool) -> None:
        """Count ``pool``'s connections (as long as it lives: closed pools' checkouts too)."""
        with self.lock:
            self.pools.add(pool)

    def close(self) -> None:
        self.reclaim_task.stop()
        self.limiter.close()

    def reclaim_abandoned(self) -> Optional[float]:
        """Reclaim garbage-collected checkouts of every pool while callers wait for a
        token (each gives its token back); when to look again."""
        if self.limiter.cap_closed or not self.limiter.waiting():
            return None
        with self.lock:
            pools = list(self.pools)
        for pool in pools:
            pool.reclaim_abandoned()
        return self.hub.monotonic() + RECLAIM_POLL

    def make_room(self, pool: BaseConnectionPool) -> None:
        """Before a connect of ``pool``: close idle connections until the new one fits.

        What must fit are the connections open (idle or in use), those being
        closed and the connects already let through; connects still waiting
        here do not count until they are let through, so they cannot hold each
        other up.  The pools with the most idle connections give theirs up
        first.  When nothing is idle (every connection in use), it looks again
        until one comes back or the pool's ``connect_timeout`` (5 s if None)
        has passed, then connects anyway.
        """
        limit = _ROOM_WAIT if pool.connect_timeout is None else pool.connect_timeout
        deadline = self.hub.monotonic() + limit
        pause = _ROOM_PAUSE
        with self.lock:
            self.rooming += 1
        waiting = True
        try:
            while True:
                with self.lock:
                    over, idle = self._over_locked()
                    if over <= 0 or self.hub.monotonic() >= deadline:
                        self.rooming -= 1
                        waiting = False
                        break
                    shed = []
                    for other, count in idle:
                        shed.append((other, min(over, count)))
                        over -= count
                        if over <= 0:
                            break
                    # Counted until closed: a pool frees the slot before the close is done.
                    self.closing += sum(count for _, count in shed)
                if not shed:
                    self.hub.sleep(pause)
                    pause = min(2 * pause, _ROOM_PAUSE_MAX)
                for other, count in shed:
                    self._close_idle(other, count)
        finally:
            if waiting:
                with self.lock:
                    self.rooming -= 1
        if over > 0:
            log.debug(
                "%s: %s connects with %d connection(s) over max_total=%d, none idle",
                self.label, pool.name, over, self.max_total,
            )

    def _over_locked(self) -> Tuple[int, List[Tuple[BaseConnectionPool, int]]]:
        """How many connections a new one would put over the cap, and the pools with
        idle connections (most first).  Under the lock, which nobody takes while
        holding a pool's, so that the decision and the counts it uses agree."""
        total = self.closing + 1 - self.rooming  # connects waiting here count for nothing
        idle = []
        for pool in self.pools:
            s = pool.stats()
            total += s.size
            if s.idle:
                idle.append((pool, s.idle))
        idle.sort(key=lambda pi: pi[1], reverse=True)
        return total - self.max_total, idle

    def _close_idle(self, pool: BaseConnectionPool, count: int) -> None:
        try:
            closed = pool.close_idle(count)
        finally:
            with self.lock:
                self.closing -= count
        if closed:
            log.debug(
                "%s: closed %d idle connection(s) of %s to make room (max_total=%d)",
                self.label, closed, pool.name, self.max_total,
            )


class _PoolHooks(PoolObserver):
    """One pool's ``before_connect`` hook and observer.

    Before each connect: the host's fail-fast check, the user's own
    ``before_connect`` (``then``), and making room under ``max_total``.
    After each connect: its outcome, for the fail-fast state.  The observer
    is added at the first connect (which may come from the pool's
    constructor, for ``min_size``).
    """

    def __init__(
        self,
        key: PoolKey,
        gate: Optional[_HostGate],
        cap: Optional[_MaxTotal],
        then: Optional[Callable[[Any], Any]],
        hub: Hub,
    ) -> None:
        self.key = key
        self.gate = gate
        self.cap = cap
        self.then = then
        self.lock = hub.lock()
        self.observing = False

    def __call__(self, pool: BaseConnectionPool) -> None:
        if self.gate is not None:
            if not self.observing:
                with self.lock:
                    if not self.observing:
                        self.observing = True
                        pool.add_observer(self)
            self.gate.check(self.key, pool.connect_timeout)
        if self.then is not None:
            self.then(pool)
        if self.cap is not None:
            self.cap.make_room(pool)

    def connected(self, pool: BaseConnectionPool, seconds: float) -> None:
        if self.gate is not None:
            self.gate.connected(self.key)

    def connect_failed(self, pool: BaseConnectionPool, error: BaseException) -> None:
        if self.gate is not None:
            self.gate.failed(self.key, error)


class DatabaseConnector:
    """One connection pool per (host, database), created on first use.

    ``module`` is the DB-API module (or connect callable); ``credentials``
    maps a host (``"db3"``, ``"db3:5433"``) to the connect arguments for it
    (user, password, port, ...), with ``'default'`` used for hosts not
    listed; the mapping is read at each pool creation, so later additions
    count.  ``conn_pool`` is the pool class (default
    :class:`~greenpool.ConnectionPool`); every pool is an instance of it.
    ``*args`` and ``**kwargs`` go to every pool (pool options such as
    ``min_size``, ``max_size``, ``timeout``, then connect arguments), as in
    eventlet.

    Keyword-only:

    * ``database_keyword`` (None: the driver's -- ``dbname`` for psycopg2,
      ``database`` otherwise; ``"db"`` for eventlet's MySQLdb behaviour).
    * ``host_keyword`` ("host"; None passes no host, the default for sqlite3).
    * ``max_total`` (None): the most connections in use, and open, across all
      pools; callers beyond it wait in one FIFO queue.
    * ``max_pool_idle`` (None: never): seconds after which an unused pool is closed.
    * ``failure_threshold`` (3; None disables) consecutive connect failures
      to a host make the pools stop connecting to it for ``backoff`` (5.0)
      seconds.
    * ``hub``, ``name`` (shown in reprs and logs, and prefixed to pool names).

    ``max_total`` and the fail-fast back-off need a
    :class:`~greenpool.BaseConnectionPool` subclass as ``conn_pool``; other
    classes are built as eventlet did, with neither.  They are given to the
    pools as their ``limiter`` and ``before_connect`` options: a
    ``before_connect`` of your own is called after the connector's check;
    a ``limiter`` of your own cannot be combined with ``max_total``.
    """

    def __init__(
        self,
        module: Any,
        credentials: Mapping,
        conn_pool: Optional[Callable[..., Any]] = None,
        *args: Any,
        database_keyword: Optional[str] = None,
        host_keyword: Optional[str] = _UNSET,
        max_total: Optional[int] = None,
        max_pool_idle: Optional[float] = None,
        failure_threshold: Optional[int] = 3,
        backoff: float = 5.0,
        hub: HubSpec = None,
        name: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        if not (callable(getattr(module, "connect", None)) or callable(module)):
            raise TypeError(f"module must be a DB-API module or a connect callable, got {module!r}")
        if not isinstance(credentials, Mapping):
            raise TypeError(
                "credentials must be a mapping of host to connect arguments, "
                f"got {type(credentials).__name__}"
            )
        if conn_pool is None:
            conn_pool = ConnectionPool
        elif not callable(conn_pool):
            raise TypeError(f"conn_pool must be a pool class, got {conn_pool!r}")
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a string, got {name!r}")
        driver = driver_for(module)
        if database_keyword is None:
            database_keyword = driver.database_keyword
        self.database_keyword: str = _keyword("database_keyword", database_keyword)
        if host_keyword is _UNSET:
            host_keyword = None if driver.name in _NO_HOST_DRIVERS else "host"
        self.host_keyword: Optional[str] = (
            None if host_keyword is None else _keyword("host_keyword", host_keyword)
        )
        self.max_total = validation.check_optional_int("max_total", max_total, minimum=1)
        self.max_pool_idle = validation.check_seconds("max_pool_idle", max_pool_idle)
        if self.max_pool_idle == 0:
            raise ValueError("max_pool_idle must be > 0 seconds (None: never), got 0")
        self.failure_threshold = validation.check_optional_int(
            "failure_threshold", failure_threshold, minimum=1
        )
        backoff_seconds = validation.check_seconds("backoff", backoff, allow_none=False)
        if not backoff_seconds:
            raise ValueError(f"backoff must be > 0 seconds, got {backoff!r}")
        self.backoff: float = backoff_seconds
        self.hub: Hub = resolve_hub(hub)
        self.name = name
        self._module = module
        self._driver_name = driver.name
        self._credentials = credentials
        self._args = args
        self._kwargs = kwargs
        self._pool_class: Callable[..., Any] = conn_pool
        self._managed = isinstance(conn_pool, type) and issubclass(conn_pool, BaseConnectionPool)
        self._check_pool_options(conn_pool)
        self._lock = self.hub.lock()
        self._pools: Dict[PoolKey, _Slot] = {}
        self._pending: Dict[PoolKey, Event] = {}
        self._closed = False
        self._scheduler = Scheduler(self, self.hub)
        self._idle_task = self._scheduler.task(DatabaseConnector._sweep, "idle pool sweep")
        self._gate: Optional[_HostGate] = None
        if self._managed and self.failure_threshold is not None:
            self._gate = _HostGate(self.failure_threshold, self.backoff, self.hub, self._label())
        self._cap: Optional[_MaxTotal] = None
        if self.max_total is not None:
            self._cap = _MaxTotal(self.max_total, self.hub, name, self._label())

    def _check_pool_options(self, conn_pool: Any) -> None:
        """The pool options that concern the connector's own: max_total's and the hooks."""
        kwargs = self._kwargs
        if not self._managed and self.max_total is not None:
            raise TypeError(
                "max_total needs conn_pool to be a greenpool.BaseConnectionPool subclass, "
                f"got {conn_pool!r}"
            )
        if self.max_total is not None:
            min_size = self._args[0] if self._args else kwargs.get("min_size", 0)
            if min_size:
                raise ValueError(
                    f"min_size must be 0 when max_total is set (got min_size={min_size!r}): "
                    "connections kept open in every pool would defeat the cap"
                )
            if kwargs.get("limiter") is not None:
                raise ValueError("limiter cannot be combined with max_total, which makes its own")
        if self._managed:
            validation.check_callable("before_connect", kwargs.get("before_connect"))

    # -- lookup ----------------------------------------------------------------------

    def credentials_for(self, host: str) -> Dict[str, Any]:
        """A copy of the connect arguments for ``host``.

        Looked up as given (``"db3:5433"``), then without its port
        (``"db3"``), then ``'default'``; :class:`UnknownHost` when none exists.
        """
        name, port = split_host(host)
        candidates = [host] if port is None else [host, name]
        for candidate in candidates + ["default"]:
            if candidate in self._credentials:
                entry = self._credentials[candidate]
                if not isinstance(entry, Mapping):
                    raise TypeError(
                        f"credentials[{candidate!r}] must be a mapping of connect arguments, "
                        f"got {type(entry).__name__}"
                    )
                return dict(entry)
        known = ", ".join(sorted(map(str, self._credentials))) or "none"
        raise UnknownHost(
            f"{self._label()}: no credentials for host {host!r} and no 'default' entry "
            f"(hosts with credentials: {known})"
        )

    def key_for(self, host: str, dbname: str) -> PoolKey:
        """The :class:`PoolKey` that ``get(host, dbname)`` uses.

        The port is the one in ``host``, else the one in the host's credentials.
        """
        if not isinstance(dbname, str):
            raise TypeError(f"dbname must be a string, got {dbname!r}")
        name, port = split_host(host)
        if port is None:
            creds_port = self.credentials_for(host).get("port")
            if creds_port is not None:
                port = _parse_port(creds_port, f"credentials for {host!r}")
        return PoolKey(name.lower(), port, dbname)

    def _pool_kwargs(self, host: str, dbname: str) -> Dict[str, Any]:
        """The keyword arguments of the pool for ``get(host, dbname)``."""
        name, port = split_host(host)
        kwargs = dict(self._kwargs)
        if self.host_keyword is not None:
            kwargs[self.host_keyword] = name
            if port is not None:
                kwargs["port"] = port
        creds = self.credentials_for(host)
        if port is not None:
            creds.pop("port", None)  # "db3:5433" is more specific than the entry's port
        kwargs.update(creds)  # credentials may name the real host, as in eventlet
        for alias in _DATABASE_ALIASES:
            kwargs.pop(alias, None)
        kwargs[self.database_keyword] = dbname
        return kwargs

    # -- pools -------------------------------------------------------------------------

    def get(self, host: str, dbname: str) -> Any:
        """The pool for ``dbname`` on ``host``, created on first use.

        Concurrent first calls for the same pair wait for one creation and get
        the same pool.  Raises :class:`UnknownHost` for a host without
        credentials and :class:`~greenpool.errors.PoolClosed` after :meth:`close`.
        """
        key = self.key_for(host, dbname)
        while True:
            with self._lock:
                if self._closed:
                    raise PoolClosed(f"{self._label()} is closed")
                slot = self._pools.get(key)
                if slot is not None:
                    slot.last_used = self.hub.monotonic()
                    return slot.pool
                pending = self._pending.get(key)
                creator = pending is None
                if pending is None:
                    pending = self._pending[key] = self.hub.event()
            if creator:
                return self._create_pool(key, host, dbname, pending)
            # Another task is creating it: wait, then look again (and create it
            # ourselves if that creation failed).
            pending.wait()

    def _create_pool(self, key: PoolKey, host: str, dbname: str, pending: Event) -> Any:
        pool = None
        try:
            pool = self._new_pool(key, self._pool_kwargs(host, dbname))
        finally:
            with self._lock:
                del self._pending[key]
                closed = self._closed
                if pool is not None and not closed:
                    self._pools[key] = _Slot(pool, self.hub.monotonic())
            pending.set()
        if closed and pool is not None:
            pool.close()
            raise PoolClosed(f"{self._label()} was closed while a pool for {key} was being made")
        log.debug("%s: new pool for %s", self._label(), key)
        if self.max_pool_idle is not None:
            self._idle_task.schedule(self.hub.monotonic() + self.max_pool_idle)
        return pool

    def _new_pool(self, key: PoolKey, kwargs: Dict[str, Any]) -> Any:
        """Build the pool for ``key`` (override point, like urllib3's ``_new_pool``)."""
        if not self._managed:
            return self._pool_class(self._module, *self._args, **kwargs)
        if self._gate is not None or self._cap is not None:
            kwargs["before_connect"] = _PoolHooks(
                key, self._gate, self._cap, kwargs.get("before_connect"), self.hub
            )
        if self._cap is not None:
            kwargs["limiter"] = self._cap.limiter
        label = f"{self.name}:{key}" if self.name else str(key)
        pool = self._pool_class(self._module, *self._args, hub=self.hub, name=label, **kwargs)
        if self._cap is not None:
            self._cap.track(pool)
        return pool

    def pools(self) -> Dict[PoolKey, Any]:
        """The pools kept now, by key (a snapshot)."""
        with self._lock:
            return {key: slot.pool for key, slot in self._pools.items()}

    def stats(self) -> ConnectorStats:
        """Every pool's ``stats()`` and the totals (see :class:`ConnectorStats`)."""
        pools = self.pools().items()
        per_pool = {key: pool.stats() for key, pool in pools if hasattr(pool, "stats")}
        limiter = self._cap.limiter.stats() if self._cap is not None else None
        return ConnectorStats(
            name=self.name,
            pools=per_pool,
            size=sum(s.size for s in per_pool.values()),
            in_use=sum(s.in_use for s in per_pool.values()),
            idle=sum(s.idle for s in per_pool.values()),
            waiting=sum(s.waiting for s in per_pool.values()),
            max_total=self.max_total,
            checkouts=0 if limiter is None else limiter.in_use,
            checkout_waiting=0 if limiter is None else limiter.waiting,
            failing_hosts=() if self._gate is None else self._gate.failing_hosts(),
        )

    def clear(self, timeout: Optional[float] = None) -> None:
        """Close every pool and forget them; the connector stays usable (new pools on demand).

        ``timeout`` as in :meth:`close`.
        """
        with self._lock:
            slots = list(self._pools.values())
            self._pools.clear()
        self._close_pools(slots, timeout)

    def close(self, timeout: Optional[float] = None) -> None:
        """Close every pool; later :meth:`get` calls raise PoolClosed.  Idempotent.

        Callers waiting for a ``max_total`` token get PoolClosed.  Connections
        still checked out are closed when they are returned; with ``timeout``
        (seconds, shared by all pools) ``close`` waits that long for them, then
        closes them under their users (see ``BaseConnectionPool.close``).
        """
        with self._lock:
            self._closed = True
            slots = list(self._pools.values())
            self._pools.clear()
        self._scheduler.stop()
        if self._cap is not None:
            self._cap.close()
        self._close_pools(slots, timeout)
        log.debug("%s: closed", self._label())

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def _close_pools(self, slots: List[_Slot], timeout: Optional[float] = None) -> None:
        timeout = validation.check_seconds("timeout", timeout)
        deadline = None if timeout is None else self.hub.monotonic() + timeout
        for slot in slots:
            try:
                if deadline is None:
                    slot.pool.close()
                else:
                    slot.pool.close(max(0.0, deadline - self.hub.monotonic()))
            except Exception:  # one broken pool must not keep the others open
                log.exception("%s: closing %r failed", self._label(), slot.pool)

    def __enter__(self) -> DatabaseConnector:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- maintenance ------------------------------------------------------------------

    def _sweep(self) -> Optional[float]:
        """Close pools unused for ``max_pool_idle``; when to look next."""
        limit = self.max_pool_idle
        if limit is None:
            return None
        now = self.hub.monotonic()
        evicted: List[Tuple[PoolKey, _Slot]] = []
        with self._lock:
            if self._closed:
                return None
            slots = list(self._pools.items())
        # stats() takes each pool's lock: read them outside the connector's.
        activity = [(key, slot, _activity(slot.pool)) for key, slot in slots]
        with self._lock:
            for key, slot, (busy, requests) in activity:
                if self._pools.get(key) is not slot:
                    continue  # cleared or replaced meanwhile
                if busy or requests != slot.requests:
                    slot.last_used = now
                    slot.requests = requests
                elif now - slot.last_used >= limit:
                    evicted.append((key, slot))
                    del self._pools[key]
            deadlines = [slot.last_used + limit for slot in self._pools.values()]
        for key, slot in evicted:
            log.info(
                "%s: closing the pool for %s, unused for %.1f s (max_pool_idle)",
                self._label(), key, now - slot.last_used,
            )
        self._close_pools([slot for _, slot in evicted])
        return min(deadlines, default=None)

    # -- display ------------------------------------------------------------------------

    def _label(self) -> str:
        return f"DatabaseConnector {self.name!r}" if self.name else "DatabaseConnector"

    def __repr__(self) -> str:
        with self._lock:
            pools = [slot.pool for slot in self._pools.values()]
        size = sum(getattr(p, "current_size", 0) for p in pools)
        cap = f", max_total {self.max_total}" if self.max_total is not None else ""
        state = " closed" if self._closed else ""
        return (
            f"<{self._label()}{state} {self._driver_name}, {len(pools)} pools, "
            f"{size} connections{cap}, hub {self.hub.name}>"
        )


def _keyword(option: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{option} must be a string, got {value!r}")
    if not value.isidentifier():
        raise ValueError(f"{option} must be a keyword argument name, got {value!r}")
    return value


def _is_connect_error(exc: BaseException) -> bool:
    """A failure of the connect itself (driver error, ConnectTimeout), not a refusal by
    greenpool (such as the fail-fast gate's DatabaseUnavailable)."""
    if not isinstance(exc, Exception):
        return False
    return not isinstance(exc, PoolError) or isinstance(exc, ConnectTimeout)


def _activity(pool: Any) -> Tuple[bool, int]:
    """(connections out, waiters or connects under way?; checkouts so far) for eviction."""
    stats = getattr(pool, "stats", None)
    if stats is None:
        return False, 0
    s = stats()
    return bool(s.in_use or s.waiting or s.creating), s.requests
