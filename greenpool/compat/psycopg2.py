"""``psycopg2.pool`` on greenpool: the same classes, green-aware, without the known defects.

Moving is one import (``ksycopg2.pool`` has the same API; pass ``driver=ksycopg2``)::

    from psycopg2 import pool               ->  from greenpool.compat import psycopg2 as pool
    from psycopg2.pool import ThreadedConnectionPool
                                            ->  from greenpool.compat.psycopg2 import ...

Kept
----
* ``SimpleConnectionPool``, ``ThreadedConnectionPool`` and
  ``PersistentConnectionPool(minconn, maxconn, *args, **kwargs)``, built on
  ``AbstractConnectionPool``; ``*args``/``**kwargs`` go to the driver's
  ``connect``: a DSN string, keywords, or one positional dict (as in the
  KingbaseES examples).
* ``minconn`` connections are opened at once (a connect error raises from
  the constructor); at most ``maxconn`` are open.
* ``getconn(key=None)``: the same key returns the same connection until it is
  put back; without a key a new one is made up.  ``putconn(conn, key=None,
  close=False)``: the connection is rolled back if left in a transaction or
  in error, dropped if closed or broken; ``close=True`` closes it and frees
  its slot; a connection the pool does not know raises
  ``PoolError("trying to put unkeyed connection")``.  ``closeall()``,
  ``closed``, ``minconn``, ``maxconn``; ``getconn()`` or a second
  ``closeall()`` after ``closeall()`` raise ``PoolError("connection pool is
  closed")``.
* ``getconn()`` returns the driver's own connection object, so
  ``type(conn)``, ``conn.closed`` and ``psycopg2.extras``/``register_type``
  work.  (With ``tpool=True`` it is a proxy that runs each call in an OS
  thread.)  ``putconn`` accepts it, or the raw connection from
  ``cursor.connection``.
* ``PoolError`` is a ``psycopg2.Error`` (when psycopg2 is installed) and a
  :class:`greenpool.PoolError`.
* ``PersistentConnectionPool``: ``getconn()`` and ``putconn(conn=None,
  close=False)`` keyed by the caller (it was removed from psycopg2 2.9; it
  is kept here).

Fixed
-----
* When every connection is in use, ``getconn()`` waits, first come first
  served, up to ``timeout`` seconds (default 30; None waits for ever)
  instead of raising "connection pool exhausted" at once.
  ``exhausted="raise"`` (or ``timeout=0``) restores the immediate error;
  both raise ``PoolError("connection pool exhausted ...")``.  Waiting green
  threads never block the hub.
* Idle connections above ``minconn`` are kept for ``max_idle`` seconds (60)
  instead of being closed as soon as they are put back.
* Broken connections are not handed out: one known to be closed, or whose
  socket shows the server hung up, is replaced without a round trip, and one
  idle for ``check_interval`` seconds (0.5) or more is checked first
  (``check="ping"``: ``SELECT 1``, rolled back so the connection is handed
  out outside a transaction; SQL text or a callable also work; ``"off"``).
* ``PersistentConnectionPool`` keys by the current green thread (OS thread
  on the threads hub): one connection per green thread, returned to the pool
  when that green thread ends instead of staying checked out for ever.
* Every class is safe for threads and green threads (``SimpleConnectionPool``
  included); same-key ``getconn()`` calls racing each other share one
  connection.
* On eventlet/gevent the psycopg2 wait callback is installed if none is set
  (:func:`greenpool.make_psycopg2_green`), so queries block only their green
  thread.  A ``connect_timeout`` keyword goes to libpq and is enforced by the
  pool as well, since libpq ignores it in green mode.

Deliberately different
----------------------
* ``closeall()`` closes idle connections at once and checked-out ones when
  they are put back, never under their holder's feet; ``putconn()`` after
  ``closeall()`` closes the connection quietly instead of raising, so
  ``finally: pool.putconn(conn)`` survives shutdown.
* Connections are opened by the pool in the background, not in the caller
  of ``getconn()``, and a connect that fails is retried while the caller
  waits.  A ``getconn()`` that finds no idle connection but room in the pool
  waits for the one being opened for it, up to the ``connect_timeout``
  keyword if given, else 5 s, even with ``exhausted="raise"`` or
  ``timeout=0``.  Connect errors are not raised directly: a caller that
  gets no connection in time while connects fail gets
  ``PoolError("connection pool could not connect: ...")``, which is also an
  instance of the connect error's class (``psycopg2.OperationalError``, or
  :class:`greenpool.ConnectTimeout` when ``connect_timeout`` ran out) and
  has it as its ``__cause__``.
* ``minconn``/``maxconn`` must be integers (0 <= minconn <= maxconn, maxconn
  >= 1); strings are not converted.

Keyword-only options of every class: ``driver`` (the DB-API module or
connect callable; psycopg2 by default), ``timeout``, ``exhausted``
(``"wait"`` or ``"raise"``), ``max_idle`` (60 s), ``max_age`` (None),
``check`` ("ping"), ``check_interval`` (0.5 s), ``tpool`` (False: run the
driver in place; True: in OS threads), ``hub`` and ``name``.  ``getconn`` also takes ``timeout=``.
"""

from __future__ import annotations

import importlib
import itertools
import logging
from typing import Any, Hashable, Optional

from ..connections import TpooledConnectionPool
from ..drivers import make_psycopg2_green
from ..errors import PoolClosed, PoolTimeout
from ..errors import PoolError as _GreenPoolError
from ..hubs import HubSpec, resolve_hub
from ..proxy import PooledConnectionWrapper, ThreadProxy
from ..validation import check_int, check_seconds
from . import (
    DEFAULT_MAX_IDLE,
    CompatPool,
    connect_bound,
    make_core,
    merge_mapping_arg,
    timeout_error,
)

__all__ = [
    "AbstractConnectionPool",
    "SimpleConnectionPool",
    "ThreadedConnectionPool",
    "PersistentConnectionPool",
    "PoolError",
]

log = logging.getLogger(__name__)

_MISSING: Any = object()

try:
    _DriverError: type[Exception] = importlib.import_module("psycopg2").Error
except ImportError:  # pragma: no cover - psycopg2 is optional (ksycopg2 users)
    _DriverError = Exception


class PoolError(_GreenPoolError, _DriverError):  # type: ignore[misc, valid-type]
    """psycopg2.pool's error: the pool is exhausted or closed, or a put was wrong."""


_EXHAUSTED = ("wait", "raise")


class _Checkout:
    """One connection checked out under a key."""

    __slots__ = ("lease", "conn", "raw")

    def __init__(self, lease: PooledConnectionWrapper, raw: Any, conn: Any) -> None:
        self.lease = lease
        #: The driver's connection, and what getconn() returns: the same, or its
        #: OS-thread proxy.
        self.raw = raw
        self.conn = conn

    def owns(self, conn: Any) -> bool:
        return conn is self.conn or conn is self.raw


class AbstractConnectionPool(CompatPool):
    """Key-based pooling shared by the public classes (see the module docstring)."""

    def __init__(
        self,
        minconn: int,
        maxconn: int,
        *args: Any,
        driver: Any = None,
        timeout: Optional[float] = 30.0,
        exhausted: str = "wait",
        max_idle: Optional[float] = DEFAULT_MAX_IDLE,
        max_age: Optional[float] = None,
        check: Any = "ping",
        check_interval: float = 0.5,
        tpool: bool = False,
        hub: HubSpec = None,
        name: Optional[str] = None,
        **kwargs: Any,
    ) -> None:
        self.minconn = check_int("minconn", minconn)
        self.maxconn = check_int("maxconn", maxconn, 1)
        if self.minconn > self.maxconn:
            raise ValueError(f"minconn ({minconn}) must not exceed maxconn ({maxconn})")
        if exhausted not in _EXHAUSTED:
            raise ValueError(f"exhausted must be 'wait' or 'raise', got {exhausted!r}")
        self.timeout = check_seconds("timeout", timeout)
        self.exhausted = exhausted
        module = importlib.import_module("psycopg2") if driver is None else driver
        chosen = resolve_hub(hub)
        if chosen.green and not tpool and getattr(module, "__name__", "") == "psycopg2":
            _ensure_green(chosen)
        args, kwargs = merge_mapping_arg(args, kwargs)
        core = make_core(
            module,
            tpool=tpool,
            min_size=self.minconn,
            max_size=self.maxconn,
            max_idle=max_idle,
            max_age=max_age,
            connect_timeout=connect_bound(kwargs),
            check=check,  # the core rolls back a transaction its check opened
            check_interval=check_interval,
            hub=chosen,
            name=name,
            args=args,
            kwargs=kwargs,
        )
        super().__init__(core)
        # getconn() hands out the driver's connection; behind a tpooled pool on a green
        # hub, a proxy running each of its calls in an OS thread.
        self._proxied = isinstance(core, TpooledConnectionPool) and chosen.green
        self._by_conn: dict[int, Hashable] = {}
        self._counter = itertools.count(1)
        self._closeall_called = False

    @property
    def closed(self) -> bool:
        """True once :meth:`closeall` was called."""
        return self._closeall_called

    # -- the original's protected API --------------------------------------------------

    def _getkey(self) -> int:
        """A new unique key (1, 2, 3, ... as in psycopg2)."""
        return next(self._counter)

    def _getconn(self, key: Optional[Hashable] = None, *, timeout: Any = _MISSING) -> Any:
        """The connection for ``key`` (a new key if None), waiting for one if all are in use.

        ``timeout`` overrides the pool's for this call.  Raises
        :class:`PoolError` when none comes back in time or the pool is closed.
        """
        if self._closeall_called:
            raise PoolError("connection pool is closed")
        self._return_ended()
        if key is None:
            key = self._getkey()
        if timeout is _MISSING:
            timeout = 0.0 if self.exhausted == "raise" else self.timeout
        else:
            timeout = check_seconds("timeout", timeout)
        try:
            taken = self._keyed(key, lambda: self._take(key, timeout), timeout)
        except PoolTimeout as exc:
            raise timeout_error(
                exc,
                PoolError(f"connection pool exhausted (no connection within {timeout} s)"),
                PoolError,
                "connection pool could not connect",
            )
        except PoolClosed:
            raise PoolError("connection pool is closed") from None
        return taken.conn

    def _take(self, key: Hashable, timeout: Optional[float]) -> _Checkout:
        lease = self._lease(timeout)
        raw = self._core.raw_connection(lease)
        taken = _Checkout(lease, raw, ThreadProxy(raw, self.hub) if self._proxied else raw)
        with self._lock:
            self._by_conn[id(taken.conn)] = self._by_conn[id(raw)] = key
        return taken

    def _putconn(self, conn: Any, key: Optional[Hashable] = None, close: bool = False) -> None:
        """Put a connection back (``close=True``: close it and free its slot)."""
        self._return_ended()
        if key is None:
            key = self._key_of(conn)
        taken = self._keys.get(key)
        if taken is None or (conn is not None and not taken.owns(conn)):
            raise PoolError("trying to put unkeyed connection")
        self._keys.pop(key)
        self._give(taken, close)

    def _closeall(self) -> None:
        """Close the pool: idle connections now, checked-out ones when put back."""
        if self._closeall_called:
            raise PoolError("connection pool is closed")
        self._closeall_called = True
        self._core.close()

    # -- internals ---------------------------------------------------------------------

    def _key_of(self, conn: Any) -> Hashable:
        with self._lock:
            key = self._by_conn.get(id(conn))
        if key is None:
            raise PoolError("trying to put unkeyed connection")
        return key

    def _give(self, taken: _Checkout, close: bool) -> None:
        with self._lock:
            self._by_conn.pop(id(taken.conn), None)
            self._by_conn.pop(id(taken.raw), None)
        if close:
            self._core.discard(taken.lease, "putconn(close=True)")
        else:
            self._core.put(taken.lease)

    def _release(self, handle: Any, lease: PooledConnectionWrapper) -> None:
        self._give(handle, False)

    def _ended(self, value: Any) -> None:
        self._give(value, False)


class SimpleConnectionPool(AbstractConnectionPool):
    """A pool with the psycopg2 API; unlike the original, safe across green threads and threads."""

    getconn = AbstractConnectionPool._getconn
    putconn = AbstractConnectionPool._putconn
    closeall = AbstractConnectionPool._closeall


class ThreadedConnectionPool(AbstractConnectionPool):
    """A pool with the psycopg2 API, for threads and green threads alike."""

    getconn = AbstractConnectionPool._getconn
    putconn = AbstractConnectionPool._putconn
    closeall = AbstractConnectionPool._closeall


class PersistentConnectionPool(AbstractConnectionPool):
    """One connection per green thread (per OS thread on the threads hub).

    ``getconn()`` returns the calling green thread's connection, taking one
    (and waiting for it, as the other pools do) on its first call;
    ``putconn()`` gives it back early.  When the green thread ends, its
    connection goes back to the pool by itself (at the pool's next
    operation, or within moments: see :mod:`greenpool.compat`).
    """

    def getconn(self, *, timeout: Any = _MISSING) -> Any:
        """The calling green thread's connection."""
        return self._getconn(self.task_key(), timeout=timeout)

    def putconn(self, conn: Any = None, close: bool = False) -> None:
        """Give back the calling green thread's connection (``conn`` may be omitted)."""
        self._putconn(conn, self.task_key(), close)

    def closeall(self) -> None:
        """Close the pool: idle connections now, checked-out ones when given back."""
        self._closeall()


def _ensure_green(hub: Any) -> None:
    """Install greenpool's psycopg2 wait callback unless the program set one."""
    extensions = importlib.import_module("psycopg2.extensions")
    if extensions.get_wait_callback() is None:
        make_psycopg2_green(hub)
        log.info("installed a psycopg2 wait callback for the %s hub", hub.name)

