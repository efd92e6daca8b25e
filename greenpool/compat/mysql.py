"""``mysql.connector.pooling`` on greenpool, with PyMySQL or mysql-connector-python.

Moving is one import::

    from mysql.connector import pooling     ->  from greenpool.compat import mysql as pooling
    mysql.connector.connect(pool_name=...)  ->  greenpool.compat.mysql.connect(pool_name=...)

Kept
----
* ``MySQLConnectionPool(pool_size=5, pool_name=None, pool_reset_session=True,
  **dbconfig)`` (the original's argument order) with ``get_connection()``,
  ``set_config(**dbconfig)``, ``add_connection(cnx=None)``, ``pool_name``,
  ``pool_size``, ``reset_session``; with ``dbconfig`` the pool opens
  ``pool_size`` connections at once (a connect error raises from the
  constructor), without it none (and ``get_connection``/``add_connection``
  raise ``PoolError("Connection configuration not available")``).
* ``PooledMySQLConnection``: every attribute of the driver's connection is
  reachable; ``close()`` (or the end of a ``with`` block) gives it back to
  the pool, resetting the session first when ``pool_reset_session``;
  ``config()`` raises ``PoolError``; ``pool_name`` (and ``pool``, the pool
  itself).
* ``connect(**kwargs)``: with any of ``pool_name``, ``pool_size``,
  ``pool_reset_session``, creates or reuses the named pool (named from host,
  port, user and database when ``pool_name`` is missing, joined by ``_``)
  and returns a pooled connection; ``PoolError("Size can not be changed for
  active pools.")`` for another ``pool_size``; without them, a plain driver
  connection.  ``generate_pool_name(**kwargs)``.
* Pool names: letters, digits and ``._:-*$#`` (the rule mysql-connector
  enforces), at most ``CNX_POOL_MAXNAMESIZE`` (64) characters; ``pool_size``
  from 1 to ``CNX_POOL_MAXSIZE`` (32).  Invalid values raise
  :class:`PoolArgumentError`, an ``AttributeError`` as in the original and a
  ``ValueError``, naming the argument.
* When every connection is in use, ``get_connection()`` raises
  ``PoolError("Failed getting connection; pool exhausted")`` at once.
* After ``set_config(**dbconfig)`` new connections use the new settings;
  idle ones are closed, and those checked out are closed when they come back
  so that they are reopened with the new settings.

Fixed
-----
* ``get_connection()`` can wait for a connection instead:
  ``timeout=`` seconds on the pool or the call (None waits for ever; the
  default 0 keeps the original's immediate error).  Waiters are served first
  come first served and never block the hub.
* The 32-connection cap is only a default: ``max_pool_size=`` per pool (or
  the module's ``CNX_POOL_MAXSIZE``) raises it.
* A ``PooledMySQLConnection`` dropped without ``close()`` does not lose its
  slot for good: once it is garbage collected the pool closes the
  connection (its state is unknown) and frees the slot.
* Broken connections are not handed out: a closed one, or one whose socket
  shows the server hung up, is replaced; one idle for ``check_interval``
  (0.5 s) or more is pinged first (``check="ping"``).
* Idle connections are closed after ``max_idle`` seconds (60; None keeps
  them) and the pool tops itself back up to ``min_size`` (default
  ``pool_size`` when configured at construction, as the original fills up).
* The registry behind ``connect()`` never holds a lock while a pool is being
  opened; concurrent first calls for one name share one pool.

Drivers
-------
PyMySQL by default (``driver=None``; mysql-connector-python when PyMySQL is
not installed), or ``driver="mysql.connector"``/``"pymysql"``/a module or
connect callable.  mysql-connector-python's C extension blocks the hub, so
on eventlet/gevent ``use_pure=True`` is passed unless ``dbconfig`` says
otherwise.  The session reset on return uses the driver's ``reset_session()``
(mysql-connector), ``COM_RESET_CONNECTION`` followed by PyMySQL's own
session set-up (charset, ``sql_mode``, ``init_command``, autocommit), or a
rollback for other drivers.

Deliberately different
----------------------
* Connections are opened by the pool in the background, not in the caller,
  and a connect that fails is retried while the caller waits.  A
  ``get_connection()`` that finds no idle connection but room in the pool
  waits for the one being opened for it, up to the ``connect_timeout`` (or
  ``connection_timeout``) keyword if given, else 5 s, even with the default
  ``timeout=0``.  Connect errors are not raised directly: a caller that gets
  no connection in time while connects fail gets ``PoolError("Failed getting
  connection; could not connect: ...")``, which is also an instance of the
  driver's error (PyMySQL's ``OperationalError``, mysql-connector's
  ``InterfaceError``...) and has it as its ``__cause__``.
  ``add_connection()`` has the pool open the connection in the background
  and keep it (the pool's ``min_size`` is raised by one).
* Configuration is checked against the driver's ``connect`` signature
  (PyMySQL) or ``MySQLConnection.config`` (mysql-connector):
  ``PoolError("Connection configuration not valid: ...")`` either way.
* ``close()`` on the pool (new) closes idle connections now and the others
  as they come back; ``close_pools()`` closes every pool made by
  ``connect()``.
* Keyword-only greenpool options, never sent to the driver: ``timeout``,
  ``max_pool_size``, ``min_size``, ``max_idle`` (60 s), ``max_age`` (None),
  ``check``, ``check_interval``, ``driver``, ``tpool``, ``hub``.
* ``PoolError`` is a :class:`greenpool.PoolError` and, when
  mysql-connector-python is installed, its ``errors.PoolError``.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import re
from typing import Any, Callable, Optional, cast

from ..connections import cleanup_rollback
from ..drivers import describe_target
from ..errors import ConnectionReturned, PoolClosed, PoolTimeout
from ..errors import PoolError as _GreenPoolError
from ..hubs import HubSpec, resolve_hub
from ..proxy import PooledConnectionWrapper
from ..validation import check_int, check_seconds
from . import (
    DEFAULT_MAX_IDLE,
    CompatPool,
    OnceMap,
    PooledConnection,
    connect_bound,
    make_core,
    timeout_error,
)

__all__ = [
    "CNX_POOL_ARGS",
    "CNX_POOL_MAXNAMESIZE",
    "CNX_POOL_MAXSIZE",
    "MySQLConnectionPool",
    "PoolArgumentError",
    "PoolError",
    "PooledMySQLConnection",
    "close_pools",
    "connect",
    "generate_pool_name",
]

log = logging.getLogger(__name__)

#: The default largest ``pool_size`` (mysql-connector's hard limit; a default here).
CNX_POOL_MAXSIZE = 32
CNX_POOL_MAXNAMESIZE = 64
#: Characters a pool name may not contain.
CNX_POOL_NAMEREGEX = re.compile(r"[^a-zA-Z0-9._:\-*$#]")
CNX_POOL_ARGS = ("pool_name", "pool_size", "pool_reset_session")

_MISSING: Any = object()

try:
    _DriverPoolError: type[Exception] = importlib.import_module(
        "mysql.connector.errors"
    ).PoolError
except ImportError:  # mysql-connector-python is optional
    _DriverPoolError = Exception


class PoolError(_GreenPoolError, _DriverPoolError):  # type: ignore[misc, valid-type]
    """mysql.connector's pool error: exhausted, not configured, or misused."""


class PoolArgumentError(ValueError, AttributeError):
    """An invalid ``pool_name`` or ``pool_size`` (an AttributeError, as mysql-connector raises)."""


def generate_pool_name(**kwargs: Any) -> str:
    """A pool name from host, port, user and database (those given), joined by ``_``."""
    parts = [str(kwargs[key]) for key in ("host", "port", "user", "database") if key in kwargs]
    if not parts:
        raise PoolError("Failed generating pool name; specify pool_name")
    return "_".join(parts)


def _check_pool_name(name: Any) -> str:
    if not isinstance(name, str):
        raise TypeError(f"pool_name must be a string, got {name!r}")
    if not name or CNX_POOL_NAMEREGEX.search(name):
        raise PoolArgumentError(
            f"pool_name {name!r} contains illegal characters "
            "(allowed: letters, digits and ._:-*$#)"
        )
    if len(name) > CNX_POOL_MAXNAMESIZE:
        raise PoolArgumentError(
            f"pool_name {name!r} is too long ({len(name)} > {CNX_POOL_MAXNAMESIZE} characters)"
        )
    return name


def _check_pool_size(size: Any, limit: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int):
        raise TypeError(f"pool_size must be an integer, got {size!r}")
    if not 0 < size <= limit:
        raise PoolArgumentError(
            f"pool_size must be higher than 0 and lower or equal to {limit}, got {size!r} "
            "(max_pool_size= raises the limit)"
        )
    return size


def _resolve_driver(driver: Any) -> Any:
    """The DB-API module (or connect callable) for ``driver``; PyMySQL first by default."""
    if driver is None:
        for name in ("pymysql", "mysql.connector"):
            try:
                return importlib.import_module(name)
            except ImportError:
                continue
        raise ImportError("greenpool.compat.mysql needs PyMySQL or mysql-connector-python")
    if isinstance(driver, str):
        return importlib.import_module(driver)
    if callable(getattr(driver, "connect", None)) or callable(driver):
        return driver
    raise TypeError(f"driver must be a module name, a DB-API module or a callable, got {driver!r}")


def _is_connector(module: Any) -> bool:
    return str(getattr(module, "__name__", "")).startswith("mysql.connector")


def _connect_fn(module: Any) -> Callable[..., Any]:
    connect = getattr(module, "connect", None)
    return connect if callable(connect) else module


def _validate_config(module: Any, config: dict[str, Any]) -> None:
    """PoolError("Connection configuration not valid: ...") for arguments the driver refuses."""
    try:
        if _is_connector(module):
            module.MySQLConnection().config(**config)
            return
        try:
            signature = inspect.signature(_connect_fn(module))
        except (TypeError, ValueError):  # a builtin without a signature: let connect() judge
            return
        signature.bind(**config)
    except (TypeError, AttributeError) as exc:
        raise PoolError(f"Connection configuration not valid: {exc}") from exc


#: PyMySQL's COM_RESET_CONNECTION command byte (MySQL 5.7.3+, MariaDB 10.2.4+).
_COM_RESET_CONNECTION = 0x1F


def reset_session(raw: Any) -> None:
    """The session reset done on return when ``pool_reset_session`` is true.

    mysql-connector: ``reset_session()``.  PyMySQL: ``COM_RESET_CONNECTION``
    (which also rolls back), then the session set-up PyMySQL does on connect.
    Other drivers: a rollback.  A reset that fails closes the connection.
    """
    reset = getattr(raw, "reset_session", None)
    if callable(reset):
        reset()
        return
    if not (hasattr(raw, "_execute_command") and hasattr(raw, "set_character_set")):
        raw.rollback()
        return
    # PyMySQL's own command API: it has no public call for COM_RESET_CONNECTION.
    raw._execute_command(_COM_RESET_CONNECTION, b"")
    raw._read_ok_packet()
    raw.set_character_set(raw.charset, raw.collation)
    setup: list[tuple[str, Optional[tuple[Any, ...]]]] = []
    if getattr(raw, "sql_mode", None) is not None:
        setup.append(("SET sql_mode=%s", (raw.sql_mode,)))
    if getattr(raw, "init_command", None) is not None:
        setup.append((raw.init_command, None))
    if setup:
        cursor = raw.cursor()
        try:
            for sql, params in setup:
                cursor.execute(sql, params)
        finally:
            cursor.close()
    if getattr(raw, "autocommit_mode", None) is not None:
        raw.autocommit(raw.autocommit_mode)


class PooledMySQLConnection(PooledConnection):
    """A connection from a :class:`MySQLConnectionPool`; ``close()`` gives it back."""

    __slots__ = ()

    @staticmethod
    def config(**kwargs: Any) -> None:
        """Pooled connections are configured through the pool: always raises PoolError."""
        raise PoolError(
            "Configuration for pooled connections should be done through the pool itself"
        )

    @property
    def pool(self) -> MySQLConnectionPool:
        """The pool the connection belongs to."""
        return cast(MySQLConnectionPool, self._owner)

    @property
    def pool_name(self) -> str:
        """The name of the pool the connection belongs to."""
        return self.pool.pool_name


class MySQLConnectionPool(CompatPool):
    """A pool of MySQL/MariaDB connections (see the module docstring)."""

    _returned_error = ConnectionReturned

    def __init__(
        self,
        pool_size: int = 5,
        pool_name: Optional[str] = None,
        pool_reset_session: bool = True,
        *,
        timeout: Optional[float] = 0.0,
        max_pool_size: Optional[int] = None,
        min_size: Optional[int] = None,
        max_idle: Optional[float] = DEFAULT_MAX_IDLE,
        max_age: Optional[float] = None,
        check: Any = "ping",
        check_interval: float = 0.5,
        driver: Any = None,
        tpool: bool = False,
        hub: HubSpec = None,
        **dbconfig: Any,
    ) -> None:
        limit = check_int(
            "max_pool_size", CNX_POOL_MAXSIZE if max_pool_size is None else max_pool_size, 1
        )
        self._pool_size = _check_pool_size(pool_size, limit)
        self._pool_name = _check_pool_name(pool_name or generate_pool_name(**dbconfig))
        self._reset_session = bool(pool_reset_session)
        self.timeout = check_seconds("timeout", timeout)
        self._module = _resolve_driver(driver)
        chosen = resolve_hub(hub)
        self._green_pure = chosen.green and not tpool
        config = self._prepare(dbconfig)
        if min_size is None:
            min_size = self._pool_size if config else 0
        min_size = check_int("min_size", min_size)
        if min_size > self._pool_size:
            raise ValueError(f"min_size ({min_size}) must not exceed pool_size ({pool_size})")
        if min_size and not config:
            raise PoolError("Connection configuration not available")
        core = make_core(
            self._module,
            tpool=tpool,
            min_size=min_size,
            max_size=self._pool_size,
            max_idle=max_idle,
            max_age=max_age,
            connect_timeout=connect_bound(config, "connect_timeout", "connection_timeout"),
            cleanup=reset_session if self._reset_session else cleanup_rollback,
            check=check,
            check_interval=check_interval,
            hub=chosen,
            name=self._pool_name,
            kwargs=config,
        )
        super().__init__(core)
        self._configured = bool(config)

    @property
    def pool_name(self) -> str:
        """The pool's name."""
        return self._pool_name

    @property
    def pool_size(self) -> int:
        """The most connections the pool holds."""
        return self._pool_size

    @property
    def reset_session(self) -> bool:
        """Whether the session is reset when a connection comes back."""
        return self._reset_session

    def _prepare(self, dbconfig: dict[str, Any]) -> dict[str, Any]:
        config = dict(dbconfig)
        if not config:
            return config
        if _is_connector(self._module) and self._green_pure:
            config.setdefault("use_pure", True)  # the C extension would block the hub
        _validate_config(self._module, config)
        return config

    def set_config(self, **dbconfig: Any) -> None:
        """Use these connection arguments from now on.

        Idle connections are closed now; checked-out ones are closed when they
        come back, so every connection is reopened with the new settings.
        Raises PoolError for arguments the driver does not accept.
        """
        if not dbconfig:
            return
        config = self._prepare(dbconfig)
        core = self._core
        core.connect_kwargs = config
        core.target = describe_target((), config)
        self._configured = True
        core.drain()

    def add_connection(self, cnx: Any = None) -> None:
        """Open one more connection and keep it in the pool, or give back ``cnx``.

        The pool opens the connection in the background and keeps at least
        that many open from now on (its ``min_size`` is raised), as
        mysql-connector keeps every connection it adds.  Raises PoolError
        when the pool already holds ``pool_size`` connections, has no
        configuration, or ``cnx`` is not one of this pool's.
        """
        if cnx is not None:
            if isinstance(cnx, PooledMySQLConnection) and cnx.pool is self:
                cnx.close()
                return
            raise PoolError("Connection instance not subclass of MySQLConnection from this pool")
        if not self._configured:
            raise PoolError("Connection configuration not available")
        core = self._core
        size = core.stats().size  # opening ones included
        if size >= core.max_size:
            raise PoolError("Failed adding connection; queue is full")
        core.min_size = max(core.min_size, size + 1)
        # The pool tops itself up to min_size when it is offered free slots; resizing
        # to the same size offers them now (there is no seam to open one directly).
        core.resize(core.max_size)

    def get_connection(self, *, timeout: Any = _MISSING) -> PooledMySQLConnection:
        """A pooled connection; PoolError when none is free (after ``timeout`` seconds).

        With room in the pool, the connection opened for the call is waited
        for whatever the timeout (up to the connect timeout, else 5 s).
        """
        if not self._configured:
            raise PoolError("Connection configuration not available")
        if timeout is _MISSING:
            timeout = self.timeout
        else:
            timeout = check_seconds("timeout", timeout)
        try:
            lease = self._lease(timeout)
        except PoolTimeout as exc:
            raise timeout_error(
                exc,
                PoolError("Failed getting connection; pool exhausted"),
                PoolError,
                "Failed getting connection; could not connect",
            )
        except PoolClosed:
            raise PoolError(f"Failed getting connection; pool {self._pool_name!r} is closed")
        return PooledMySQLConnection(self, lease, lease)

    def _release(self, handle: Any, lease: PooledConnectionWrapper) -> None:
        self._core.put(lease)

    def _remove_connections(self) -> int:
        """Close the idle connections; how many were closed (as in mysql-connector)."""
        idle = self._core.stats().idle
        self._core.clear()
        return idle

    def close(self) -> None:
        """Close the pool: idle connections now, the others as they come back."""
        self._core.close()


_POOLS: OnceMap[MySQLConnectionPool] = OnceMap()


def connect(*args: Any, **kwargs: Any) -> Any:
    """A pooled connection if pool arguments are given, else a plain driver connection.

    With ``pool_name``, ``pool_size`` or ``pool_reset_session``, the named
    pool (named by :func:`generate_pool_name` when ``pool_name`` is missing)
    is created on first use and reused after; the other keywords configure
    it as :class:`MySQLConnectionPool` does.
    """
    if not any(key in kwargs for key in CNX_POOL_ARGS):
        module = _resolve_driver(kwargs.pop("driver", None))
        return _connect_fn(module)(*args, **kwargs)
    name = _check_pool_name(kwargs.get("pool_name") or generate_pool_name(**kwargs))
    kwargs["pool_name"] = name
    pool = _POOLS.get_or_make(
        name, lambda: MySQLConnectionPool(**kwargs), resolve_hub(kwargs.get("hub"))
    )
    if "pool_size" in kwargs and kwargs["pool_size"] != pool.pool_size:
        raise PoolError("Size can not be changed for active pools.")
    return pool.get_connection()


def close_pools() -> None:
    """Close every pool :func:`connect` made, and forget them."""
    for pool in _POOLS.pop_all():
        pool.close()
