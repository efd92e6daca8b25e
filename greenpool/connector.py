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

Beyond eventlet, for pools of :class:`~greenpool.BaseConnectionPool` subclasses:

``max_total`` -- one cap across every host.
    It caps **connections in use** (checkouts) *and* **connections open**.
    Each checkout first takes a token from one FIFO queue shared by every
    pool (waiting at most the ``get()`` timeout), and gives it back exactly
    once when the connection is returned, discarded, or garbage collected
    unreturned.  So a caller waiting on host A is served, in arrival order,
    as soon as a connection comes back on any host.  Capping checkouts alone
    would still let idle connections pile up across a hundred shards, so a
    pool that must open a connection while ``max_total`` are already open
    first closes an idle connection of another pool (the pool with the most
    idle ones).  Tokens are taken per checkout rather than per open
    connection because a per-connection token makes a returned connection
    useless to the waiter of its own pool (it would have to be closed and
    reopened to move its token), which turns every return under contention
    into a reconnect.  ``min_size`` must be 0 with ``max_total``: connections
    kept open per pool are exactly what the cap is there to prevent.

``max_pool_idle`` -- pools nobody used for this many seconds are closed and forgotten.
    "Used" means a :meth:`~DatabaseConnector.get` of the pool, a checkout
    from it, or a connection of it still out; the next ``get(host, db)``
    makes a fresh pool.  Call ``get(host, db)`` each time rather than keeping
    the pool object when this is on: a kept pool that sat unused past the
    limit raises :class:`~greenpool.errors.PoolClosed`.

``failure_threshold`` / ``backoff`` -- fail fast on a host that keeps failing.
    After ``failure_threshold`` (3) consecutive failed connects to a host
    (any database on it), connects to that host raise
    :class:`~greenpool.errors.DatabaseUnavailable` at once for ``backoff``
    (5 s) instead of making every request wait up to ``connect_timeout``.
    Then one caller makes a trial connect (the others still fail fast): success
    closes the back-off, failure opens it for another ``backoff``.  Opening is
    logged as a warning, closing as info.  Idle connections already open keep
    being handed out (subject to the pool's health check).  This sits in front
    of each pool's own ``reconnect_backoff`` gate, which still spaces out the
    connects of one pool; a fail-fast refusal is not counted by that gate.
    The unit is the host because that is what goes down; the price is that
    a tenant whose database was dropped can, after three straight failures,
    make new connects to its host fail fast for a few seconds (connections
    already open are not affected).

Credentials never appear in logs, reprs or messages: hosts, ports and
database names do.
"""

from __future__ import annotations

import logging
import re
import sys
import types
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Tuple, cast

from . import _checks
from .connections import _MISSING, BaseConnectionPool, ConnectionPool, _Entry
from .drivers import driver_for
from .errors import ConnectTimeout, DatabaseUnavailable, PoolClosed, PoolError, PoolTimeout
from .hubs import Event, Hub, HubSpec, resolve_hub
from .maintenance import MaintenanceTask
from .pool import Token, TokenPool
from .proxy import PooledConnectionWrapper

__all__ = [
    "DatabaseConnector",
    "PoolKey",
    "ConnectorStats",
    "UnknownHost",
    "split_host",
]

log = logging.getLogger(__name__)

#: Keywords that name the database for some driver; the one the connector uses replaces them.
_DATABASE_ALIASES = ("db", "database", "dbname")
#: Drivers that have no server to name: no host keyword is passed to them.
_NO_HOST_DRIVERS = frozenset({"sqlite3"})
#: How often a caller waiting for a max_total token looks for garbage-collected checkouts.
_ORPHAN_POLL = 1.0

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
    """The fail-fast state of one host: counting failures, backing off, or on trial.

    Changed only under the connector's lock; the caller logs what the
    methods return, after releasing it.
    """

    __slots__ = ("address", "failures", "open_until", "on_trial", "last_error")

    def __init__(self, address: str) -> None:
        self.address = address
        self.failures = 0
        self.open_until: Optional[float] = None
        self.on_trial = False
        self.last_error: Optional[BaseException] = None


class _TokenLimiter(TokenPool):
    """The ``max_total`` tokens: FIFO, and waiters reclaim garbage-collected checkouts."""

    def __init__(self, connector: DatabaseConnector, max_total: int) -> None:
        self._connector_ref = weakref.ref(connector)
        label = f"{connector.name} max_total" if connector.name else "max_total"
        super().__init__(0, max_total, hub=connector.hub, name=label)

    def _wait_for_event(self, event: Any, timeout: Optional[float]) -> None:
        # A checkout whose wrapper was dropped gives its token back only when its pool
        # notices; the pool may be idle, so the waiters look for it themselves.
        hub = self.hub
        deadline = None if timeout is None else hub.monotonic() + timeout
        while True:
            left = None if deadline is None else deadline - hub.monotonic()
            if left is not None and left <= 0:
                return
            if event.wait(_ORPHAN_POLL if left is None else min(left, _ORPHAN_POLL)):
                return
            connector = self._connector_ref()
            if connector is not None:
                connector._collect_orphans()


class _ConnectorPool(BaseConnectionPool):
    """Mixed in before the user's pool class: the connector's hooks.

    * ``get`` takes a ``max_total`` token first; the checkout gives it back
      exactly once (returned, discarded, or collected unreturned);
    * ``_create_item`` fails fast while the host is backing off and reports
      the outcome of the connect; ``create`` (the connect itself, after the
      pool's reconnect gate) first makes room under ``max_total``.
    """

    def __init__(self, *args: Any, _connector: DatabaseConnector, _key: PoolKey, **kwargs: Any):
        self._connector = _connector
        self._key = _key
        self._checkout_tokens: Dict[_Entry, Token] = {}
        super().__init__(*args, **kwargs)
        _connector._track(self)

    def get(self, timeout: Optional[float] = _MISSING) -> PooledConnectionWrapper:  # type: ignore[override]
        if timeout is _MISSING:
            timeout = self.timeout
        connector = self._connector
        token = None
        if connector._limiter is not None:
            started = self.hub.monotonic()
            token = connector._take_token(timeout)
            if timeout is not None:
                timeout = max(0.0, timeout - (self.hub.monotonic() - started))
        try:
            conn = super().get(timeout)
        except BaseException:
            connector._give_token(token)
            raise
        entry = conn._cell.entry
        if entry is not None:
            if self._track_takers and self.leak_timeout is None:
                frame = sys._getframe(1)  # get() above recorded this frame: name the caller's
                entry.taken_where = (frame.f_code, frame.f_lasti)
            if token is not None:
                self._checkout_tokens[entry] = token
        return conn

    # The token is claimed *before* the entry can go back to the idle list: once there,
    # another task may check it out and file its own token under the same entry.
    # dict.pop is atomic, so exactly one path claims each token.

    def put(self, conn: Any, cleanup: Any = _MISSING) -> None:
        entry = conn._entry if isinstance(conn, PooledConnectionWrapper) else None
        token = None if entry is None else self._checkout_tokens.pop(entry, None)
        try:
            super().put(conn, cleanup)
        finally:
            self._connector._give_token(token)

    def _discard(self, entry: _Entry, why: str, lost: bool = False) -> None:
        token = self._checkout_tokens.pop(entry, None)
        try:
            super()._discard(entry, why, lost)
        finally:
            self._connector._give_token(token)

    def _create_item(self, deadline: Optional[float]) -> _Entry:
        # Before the pool's own reconnect gate, so that failing fast here is not
        # taken by the gate for one more failed connect.
        connector = self._connector
        on_trial = connector._before_connect(self._key)
        try:
            entry = super()._create_item(deadline)
        except BaseException as exc:
            connector._connect_failed(self._key, exc, on_trial)
            raise
        connector._connect_succeeded(self._key)
        return entry

    def create(self) -> _Entry:
        self._connector._make_room()
        return super().create()

    def _shed_idle(self) -> Optional[_Entry]:
        """Take the least recently used idle connection out of the pool (caller closes it)."""
        with self._lock:
            if not self.free_items:
                return None
            entry = self.free_items.pop()
            self.current_size -= 1
        return entry


_connector_classes: Dict[type, type] = {}


def _connector_class(cls: type) -> type:
    """``cls`` with :class:`_ConnectorPool` mixed in (made once per class, same name)."""
    made = _connector_classes.get(cls)
    if made is None:
        made = types.new_class(cls.__name__, (_ConnectorPool, cls))
        made.__qualname__ = cls.__qualname__
        made.__module__ = cls.__module__
        made = _connector_classes.setdefault(cls, made)
    return made


class DatabaseConnector:
    """One connection pool per (host, database), created on first use.

    ``module`` is the DB-API module (or connect callable); ``credentials``
    maps a host (``"db3"``, ``"db3:5433"``) to the connect arguments for it
    (user, password, port, ...), with ``'default'`` used for hosts not
    listed; the mapping is read at each pool creation, so later additions
    count.  ``conn_pool`` is the pool class (default
    :class:`~greenpool.ConnectionPool`); ``*args`` and ``**kwargs`` go to every
    pool (pool options such as ``min_size``, ``max_size``, ``timeout``, then
    connect arguments), as in eventlet.

    Keyword-only:

    * ``database_keyword`` (None: the driver's -- ``dbname`` for psycopg2,
      ``database`` otherwise; ``"db"`` for eventlet's MySQLdb behaviour).
    * ``host_keyword`` ("host"; None passes no host, the default for sqlite3).
    * ``max_total`` (None): the most connections in use, and open, across all
      pools; callers beyond it wait in one FIFO queue.
    * ``max_pool_idle`` (None: never): seconds after which an unused pool is closed.
    * ``failure_threshold`` (3; None disables) consecutive connect failures
      to a host make it fail fast for ``backoff`` (5.0) seconds.
    * ``hub``, ``name`` (shown in reprs and logs, and prefixed to pool names).

    ``max_total`` and the fail-fast back-off need a
    :class:`~greenpool.BaseConnectionPool` subclass as ``conn_pool``; other
    classes are built as eventlet did, with neither.
    """

    def __init__(
        self,
        module: Any,
        credentials: Mapping,
        conn_pool: Optional[Callable[..., Any]] = None,
        *args: Any,
        database_keyword: Optional[str] = None,
        host_keyword: Optional[str] = _MISSING,
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
        if host_keyword is _MISSING:
            host_keyword = None if driver.name in _NO_HOST_DRIVERS else "host"
        self.host_keyword: Optional[str] = (
            None if host_keyword is None else _keyword("host_keyword", host_keyword)
        )
        self.max_total = _checks.check_optional_int("max_total", max_total, minimum=1)
        self.max_pool_idle = _checks.check_seconds("max_pool_idle", max_pool_idle)
        if self.max_pool_idle == 0:
            raise ValueError("max_pool_idle must be > 0 seconds (None: never), got 0")
        self.failure_threshold = _checks.check_optional_int(
            "failure_threshold", failure_threshold, minimum=1
        )
        backoff_seconds = _checks.check_seconds("backoff", backoff, allow_none=False)
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
        self._managed = isinstance(conn_pool, type) and issubclass(conn_pool, BaseConnectionPool)
        if self._managed:
            self._pool_class: Callable[..., Any] = _connector_class(cast(type, conn_pool))
        else:
            self._pool_class = conn_pool
            if self.max_total is not None:
                raise TypeError(
                    "max_total needs conn_pool to be a greenpool.BaseConnectionPool subclass, "
                    f"got {conn_pool!r}"
                )
        if self.max_total is not None:
            min_size = args[0] if args else kwargs.get("min_size", 0)
            if min_size:
                raise ValueError(
                    f"min_size must be 0 when max_total is set (got min_size={min_size!r}): "
                    "connections kept open in every pool would defeat the cap"
                )
        self._lock = self.hub.lock()
        self._pools: Dict[PoolKey, _Slot] = {}
        self._pending: Dict[PoolKey, Event] = {}
        self._health: Dict[Tuple[str, Optional[int]], _HostHealth] = {}
        self._live: weakref.WeakSet[_ConnectorPool] = weakref.WeakSet()
        self._closed = False
        self._limiter: Optional[_TokenLimiter] = (
            None if self.max_total is None else _TokenLimiter(self, self.max_total)
        )
        self._sweeper: Optional[MaintenanceTask[DatabaseConnector]] = (
            None if self.max_pool_idle is None
            else MaintenanceTask(self, self.hub, DatabaseConnector._sweep, "idle pool sweep")
        )

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
        if self._sweeper is not None and self.max_pool_idle is not None:
            self._sweeper.schedule(self.hub.monotonic() + self.max_pool_idle)
        return pool

    def _new_pool(self, key: PoolKey, kwargs: Dict[str, Any]) -> Any:
        """Build the pool for ``key`` (override point, like urllib3's ``_new_pool``)."""
        if not self._managed:
            return self._pool_class(self._module, *self._args, **kwargs)
        label = f"{self.name}:{key}" if self.name else str(key)
        return self._pool_class(
            self._module, *self._args,
            _connector=self, _key=key, hub=self.hub, name=label, **kwargs,
        )

    def pools(self) -> Dict[PoolKey, Any]:
        """The pools kept now, by key (a snapshot)."""
        with self._lock:
            return {key: slot.pool for key, slot in self._pools.items()}

    def stats(self) -> ConnectorStats:
        """Every pool's ``stats()`` and the totals (see :class:`ConnectorStats`)."""
        pools = self.pools().items()
        per_pool = {key: pool.stats() for key, pool in pools if hasattr(pool, "stats")}
        limiter = self._limiter.stats() if self._limiter is not None else None
        now = self.hub.monotonic()
        with self._lock:
            failing = tuple(
                sorted(h.address for h in self._health.values() if _backing_off(h, now))
            )
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
            failing_hosts=failing,
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
        if self._sweeper is not None:
            self._sweeper.stop()
        if self._limiter is not None:
            self._limiter._close_waiters()
        self._close_pools(slots, timeout)
        log.debug("%s: closed", self._label())

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def _close_pools(self, slots: List[_Slot], timeout: Optional[float] = None) -> None:
        timeout = _checks.check_seconds("timeout", timeout)
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

    # -- max_pool_idle ----------------------------------------------------------------

    def _sweep(self) -> Optional[float]:
        """Close pools unused for ``max_pool_idle``; the next time to look (for the Sweeper)."""
        limit = self.max_pool_idle
        if limit is None:
            return None
        now = self.hub.monotonic()
        evicted: List[Tuple[PoolKey, _Slot]] = []
        with self._lock:
            if self._closed:
                return None
            for key, slot in list(self._pools.items()):
                busy, requests = _activity(slot.pool)
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

    # -- max_total ------------------------------------------------------------------------

    def _track(self, pool: _ConnectorPool) -> None:
        with self._lock:
            self._live.add(pool)

    def _take_token(self, timeout: Optional[float]) -> Optional[Token]:
        limiter = self._limiter
        if limiter is None:
            return None
        try:
            return limiter.get(timeout)
        except PoolTimeout:
            raise PoolTimeout(
                f"{self._label()}: all max_total={self.max_total} connections are in use "
                f"and none came back within {timeout} s"
            ) from None
        except PoolClosed:
            raise PoolClosed(f"{self._label()} was closed while waiting for a connection") from None

    def _give_token(self, token: Optional[Token]) -> None:
        if token is not None and self._limiter is not None:
            self._limiter.put(token)

    def _make_room(self) -> None:
        """Before a connect under ``max_total``: close idle connections until it fits.

        The new connection's slot is already counted in its pool, so the sum of
        pool sizes must come down to ``max_total``.  Checkouts hold tokens, so
        whenever the sum is over, idle connections exist to close.
        """
        if self.max_total is None:
            return
        shed: List[Tuple[_ConnectorPool, _Entry]] = []
        with self._lock:
            pools = list(self._live)
            excess = sum(p.current_size for p in pools) - self.max_total
            pools.sort(key=lambda p: len(p.free_items), reverse=True)
            for pool in pools:
                while excess > 0:
                    entry = pool._shed_idle()
                    if entry is None:
                        break
                    shed.append((pool, entry))
                    excess -= 1
        for pool, entry in shed:
            log.debug(
                "%s: closing idle connection #%d of %s to make room (max_total=%d)",
                self._label(), entry.serial, pool._key, self.max_total,
            )
            pool._retire(entry)

    def _collect_orphans(self) -> None:
        with self._lock:
            pools = [p for p in self._live if p._orphans]
        for pool in pools:
            pool._collect_orphans()

    # -- fail fast ----------------------------------------------------------------------

    def _before_connect(self, key: PoolKey) -> bool:
        """Raise DatabaseUnavailable while the host backs off; True if this connect is the trial."""
        if self.failure_threshold is None or not self._health:
            return False
        now = self.hub.monotonic()
        with self._lock:
            health = self._health.get((key.host, key.port))
            if health is None or health.open_until is None:
                return False
            if not health.on_trial and now >= health.open_until:
                health.on_trial = True
                return True
            remaining = max(0.0, health.open_until - now)
            failures, last = health.failures, health.last_error
        state = "a trial connect is under way" if remaining == 0 else (
            f"failing fast for {remaining:.1f} s more"
        )
        raise DatabaseUnavailable(
            f"{self._label()}: {key.address} failed {failures} connects in a row "
            f"(last: {type(last).__name__}); {state}"
        ) from last

    def _connect_failed(self, key: PoolKey, exc: BaseException, on_trial: bool) -> None:
        if self.failure_threshold is None or not _is_connect_error(exc):
            # Interrupted (kill, the caller's timeout) or refused by the pool itself:
            # says nothing about the host.  A trial that never finished is retried.
            if on_trial:
                with self._lock:
                    health = self._health.get((key.host, key.port))
                    if health is not None:
                        health.on_trial = False
            return
        now = self.hub.monotonic()
        with self._lock:
            health = self._health.get((key.host, key.port))
            if health is None:
                health = self._health[(key.host, key.port)] = _HostHealth(key.address)
            health.failures += 1
            health.last_error = exc
            health.on_trial = False
            opens = on_trial or health.failures >= self.failure_threshold
            if opens:
                health.open_until = now + self.backoff
            failures = health.failures
        if on_trial:
            log.warning(
                "%s: trial connect to %s failed (%s); failing fast for another %.1f s",
                self._label(), key.address, type(exc).__name__, self.backoff,
            )
        elif opens and failures == self.failure_threshold:
            log.warning(
                "%s: %d connects in a row to %s failed (last: %s); failing fast for %.1f s",
                self._label(), failures, key.address, type(exc).__name__, self.backoff,
            )

    def _connect_succeeded(self, key: PoolKey) -> None:
        if self.failure_threshold is None or not self._health:
            return
        with self._lock:
            health = self._health.pop((key.host, key.port), None)
        if health is not None and health.open_until is not None:
            log.info(
                "%s: %s is reachable again after %d failed connects; back-off over",
                self._label(), key.address, health.failures,
            )

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
    """A failure of the connect itself (driver error, ConnectTimeout).

    Not a kill or the caller's own timeout (BaseException), nor a refusal by the pool.
    """
    if not isinstance(exc, Exception):
        return False
    return not isinstance(exc, PoolError) or isinstance(exc, ConnectTimeout)


def _backing_off(health: _HostHealth, now: float) -> bool:
    return health.open_until is not None and (health.on_trial or now < health.open_until)


def _activity(pool: Any) -> Tuple[bool, int]:
    """(connections out, waiters or connects under way?; checkouts so far) for eviction."""
    stats = getattr(pool, "stats", None)
    if stats is None:
        return False, 0
    s = stats()
    return bool(s.in_use or s.waiting or s.creating), s.requests
