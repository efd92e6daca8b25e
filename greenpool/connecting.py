"""Opening one connection within ``connect_timeout``, on any hub.

A green connect is interrupted with the hub's timeout.  A connect in an OS
thread (``TpooledConnectionPool``, or any pool on the threads hub) is waited
for with a timeout; if it arrives after its attempt gave up, it is closed,
never orphaned.  For drivers with a profile, the driver's own connect
timeout is set a little above the pool's as a backstop, unless given.
"""

from __future__ import annotations

import logging
import types
from typing import Any, Callable, Optional

from .drivers import Driver
from .errors import ConnectTimeout
from .hubs import Hub
from .hubs.base import ThreadCallTimeout, original_lock

__all__ = ["Opener", "close_quietly", "connect_function"]

log = logging.getLogger(__name__)


def connect_function(db_module: Any) -> tuple[Any, Callable[..., Any]]:
    """The DB-API module (None if only a callable was given) and its connect."""
    if isinstance(db_module, types.ModuleType) or callable(getattr(db_module, "connect", None)):
        return db_module, db_module.connect
    if callable(db_module):
        return None, db_module
    raise TypeError(
        f"db_module must be a DB-API module or a connect callable, got a {type(db_module).__name__}"
    )


def close_quietly(conn: Any, label: str) -> None:
    """Close a raw connection; a failure is logged (the connection is gone anyway)."""
    try:
        conn.close()
    except Exception as exc:
        log.debug("%s: closing a connection raised %s", label, type(exc).__name__)


class _ConnectDeadline(BaseException):
    """Raised into a green connect at ``connect_timeout``.

    A BaseException, not an OSError, so that drivers that turn socket errors
    into their own (PyMySQL does) let it through.
    """


class _PendingConnect:
    """A connect running in an OS thread that its attempt may stop waiting for.

    The connection is the attempt's once :meth:`deliver` hands it over;
    until then :meth:`abandon` closes it, now or when it arrives.
    """

    def __init__(self, connect: Callable[[], Any], label: str) -> None:
        self._connect = connect
        self._label = label
        self._lock = original_lock()
        self._abandoned = False
        self._delivered = False
        self._conn: Any = None

    def run(self) -> Any:
        conn = self._connect()
        with self._lock:
            late = self._abandoned
            if not late:
                self._conn = conn
        if late:
            log.info("%s: a connection arrived after its connect timed out; closing it",
                     self._label)
            close_quietly(conn, self._label)
        return conn

    def deliver(self, conn: Any) -> Any:
        """The attempt got ``conn``: from now on it is the attempt's to close."""
        with self._lock:
            self._delivered = True
            self._conn = None
        return conn

    def abandon(self) -> None:
        """The attempt is over: a connection it did not get is closed."""
        with self._lock:
            if self._delivered:
                return
            self._abandoned = True
            conn, self._conn = self._conn, None
        if conn is not None:
            close_quietly(conn, self._label)


class Opener:
    """Opens raw connections: ``connect(*args, **kwargs)`` within ``connect_timeout``.

    ``in_thread``: run the connect in an OS thread (always so on a hub that
    cannot interrupt green code).  ``configure`` is called with each new raw
    connection before it joins the pool.
    """

    def __init__(
        self,
        connect: Callable[..., Any],
        args: tuple,
        kwargs: dict[str, Any],
        *,
        hub: Hub,
        driver: Driver,
        connect_timeout: Optional[float],
        in_thread: bool,
        configure: Optional[Callable[[Any], Any]],
        label: str,
        target: str,
    ) -> None:
        self.connect = connect
        self.args = args
        self.kwargs = kwargs
        self._hub = hub
        self._driver = driver
        self.connect_timeout = connect_timeout
        self._in_thread = in_thread or not hub.can_interrupt
        self._configure = configure
        self._label = label
        self._target = target
        # The driver's own timeouts, a little longer than the pool's, unless given.
        self._backstop = {
            key: value
            for key, value in driver.connect_timeout_kwargs(connect_timeout).items()
            if key not in kwargs
        }

    def open(self) -> Any:
        """A new raw connection; ConnectTimeout past ``connect_timeout``."""
        seconds = self.connect_timeout
        if self._in_thread:
            pending = _PendingConnect(self._connect_configured, self._label)
            try:
                return pending.deliver(self._hub.run_in_thread(pending.run, timeout=seconds))
            except ThreadCallTimeout:
                pass  # raised below, outside this handler
            finally:
                pending.abandon()
        else:
            deadline = _ConnectDeadline()
            try:
                with self._hub.timeout(seconds, deadline):
                    return self._connect_configured()
            except _ConnectDeadline as exc:
                if exc is not deadline:
                    raise
            # Dropped: the interrupted connect's frames (and the half-open connection
            # in them) are let go at once, closing its socket.
            deadline.__traceback__ = None
            del deadline
        raise ConnectTimeout(
            f"{self._label}: connecting to {self._target} took longer than "
            f"connect_timeout={seconds} s"
        )

    def _connect_configured(self) -> Any:
        conn = self.connect(*self.args, **{**self.kwargs, **self._backstop})
        try:
            if self._backstop:
                self._driver.after_connect(conn, self._backstop)
            if self._configure is not None:
                self._configure(conn)
        except BaseException:
            close_quietly(conn, self._label)
            raise
        return conn
