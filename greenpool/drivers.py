"""What differs between DB-API drivers, in one place.

A :class:`Driver` answers the pool's questions about a connection without a
round trip where the driver allows it: is a transaction open, is the
connection closed, was an error a disconnect, how to ping it, which keyword
names the database.  :func:`driver_for` picks the profile from the module
or connection; unknown drivers get :class:`Driver`, whose answers are the
safe ones ("don't know": always roll back, never assume a disconnect).

:func:`make_psycopg2_green` installs a wait callback that makes psycopg2
cooperative on the active hub.
"""

from __future__ import annotations

import enum
import logging
import math
import re
from typing import Any, Optional

from .hubs import HubSpec, resolve_hub

__all__ = [
    "Driver",
    "ReturnState",
    "driver_for",
    "make_psycopg2_green",
    "describe_target",
]

log = logging.getLogger(__name__)


class ReturnState(enum.Enum):
    """What a returned connection needs, as far as the driver can tell locally."""

    IDLE = "idle"  # no transaction open: no rollback needed
    DIRTY = "dirty"  # a transaction may be open: roll back
    BUSY = "busy"  # a query is still running (its caller was interrupted): discard
    CLOSED = "closed"  # closed or broken: discard


_IDLE, _DIRTY, _BUSY, _CLOSED = (
    ReturnState.IDLE, ReturnState.DIRTY, ReturnState.BUSY, ReturnState.CLOSED
)


class Driver:
    """The generic profile: correct for any PEP 249 driver, if not the cheapest."""

    def return_state(self, conn: Any) -> ReturnState:
        """One local look at a returned connection (no round trip), made on every return.

        Drivers override it with a single cheap look (a driver that can tell a
        query is still running reports BUSY there); this generic one reads the
        ``closed`` and ``in_transaction`` attributes that many drivers have.
        """
        closed = getattr(conn, "closed", False)
        if closed is not False and isinstance(closed, (bool, int)) and closed:
            return _CLOSED
        return _IDLE if getattr(conn, "in_transaction", None) is False else _DIRTY

    name = "generic"
    #: The connect() keyword that names the database.
    database_keyword = "database"

    def in_transaction(self, conn: Any) -> Optional[bool]:
        """True/False when the driver can tell locally, None when it cannot."""
        value = getattr(conn, "in_transaction", None)
        return value if isinstance(value, bool) else None

    def is_closed(self, conn: Any) -> bool:
        """True when the connection is known to be closed or broken (no round trip)."""
        closed = getattr(conn, "closed", False)
        return bool(closed) if isinstance(closed, (bool, int)) else False

    def is_disconnect(self, conn: Any, error: BaseException) -> bool:
        """True when ``error`` means the connection to the server is gone."""
        return self.is_closed(conn)

    def is_busy(self, conn: Any) -> bool:
        """True when a query is still running (the caller was interrupted mid-query)."""
        return False

    def ping(self, conn: Any) -> None:
        """A cheap liveness round trip; raises if the connection is dead."""
        cursor = conn.cursor()
        try:
            cursor.execute("SELECT 1")
            cursor.fetchall()
        finally:
            cursor.close()

    def fileno(self, conn: Any) -> Optional[int]:
        """The connection's socket file descriptor, if the driver exposes it."""
        return None

    def connect_timeout_kwargs(self, seconds: Optional[float]) -> dict[str, Any]:
        """The driver's own connect-timeout argument, as a backstop to the pool's.

        The pool enforces ``connect_timeout`` itself; a connect it gave up on in
        an OS thread still ends, and closes its socket, once the driver's own
        timeout (slightly longer) fires.  Empty when the driver has none.
        """
        return {}

    def after_connect(self, conn: Any, backstop: dict[str, Any]) -> None:
        """Undo, on a fresh connection, what of ``backstop`` must not outlive the connect."""


class Psycopg2Driver(Driver):
    name = "psycopg2"
    database_keyword = "dbname"

    def in_transaction(self, conn: Any) -> Optional[bool]:
        try:
            status = conn.info.transaction_status
        except Exception:  # closed or very old psycopg2: we cannot tell
            return None
        # 0 idle, 1 active, 2 in transaction, 3 in error, 4 unknown (broken)
        return None if status == 4 else status != 0

    def is_closed(self, conn: Any) -> bool:
        return bool(conn.closed)

    def is_busy(self, conn: Any) -> bool:
        try:
            return bool(conn.info.transaction_status == 1)  # TRANSACTION_STATUS_ACTIVE
        except Exception:
            return False

    def return_state(self, conn: Any) -> ReturnState:
        if conn.closed:
            return _CLOSED
        # 0 idle, 1 active (mid-query), 2 in transaction, 3 in error, 4 unknown (broken)
        status = conn.get_transaction_status()
        if status == 0:
            return _IDLE
        if status == 1:
            return _BUSY
        return _CLOSED if status == 4 else _DIRTY

    def is_disconnect(self, conn: Any, error: BaseException) -> bool:
        if conn.closed:
            return True
        try:
            import psycopg2
        except ImportError:  # pragma: no cover - a psycopg2 connection implies psycopg2
            return False
        if isinstance(error, psycopg2.InterfaceError):
            return True
        if isinstance(error, psycopg2.OperationalError):
            # Query cancellation and statement timeouts are OperationalErrors too, but
            # they leave the connection open and usable.
            return getattr(error, "pgcode", None) not in ("57014",)
        return False

    def fileno(self, conn: Any) -> Optional[int]:
        try:
            return int(conn.fileno())
        except Exception:
            return None

    def ping(self, conn: Any) -> None:
        # Outside autocommit psycopg2 would send BEGIN first and leave the transaction
        # open for the next user; autocommit is a local switch while idle.
        if conn.autocommit or conn.get_transaction_status() != 0:
            super().ping(conn)
            return
        conn.autocommit = True
        try:
            super().ping(conn)
        finally:
            conn.autocommit = False

    def connect_timeout_kwargs(self, seconds: Optional[float]) -> dict[str, Any]:
        # libpq takes whole seconds and treats anything below 2 as 2.
        return {} if seconds is None else {"connect_timeout": max(2, math.ceil(seconds) + 1)}


#: PyMySQL/MySQLdb client error codes that mean the connection is gone.
MYSQL_DISCONNECT_CODES = frozenset(
    {
        2006,  # MySQL server has gone away
        2013,  # Lost connection to MySQL server during query
        2014,  # Commands out of sync
        2045,  # Can't open shared memory; no answer from server
        2055,  # Lost connection to MySQL server at '%s', system error
        1927,  # MariaDB: Connection was killed
        4031,  # MySQL 8: client disconnected by server after inactivity
    }
)


class MySQLDriver(Driver):
    """PyMySQL and MySQLdb (mysqlclient)."""

    name = "mysql"
    database_keyword = "database"

    def in_transaction(self, conn: Any) -> Optional[bool]:
        status = getattr(conn, "server_status", None)
        if not isinstance(status, int):
            return None
        if status & 1:  # SERVER_STATUS_IN_TRANS
            return True
        if status & 2:  # SERVER_STATUS_AUTOCOMMIT: nothing can be left open
            return False
        # Without autocommit a plain SELECT opens an InnoDB read view that the server
        # does not flag; only a rollback is sure to release it.
        return None

    def is_closed(self, conn: Any) -> bool:
        is_open = getattr(conn, "open", None)
        if isinstance(is_open, bool):
            return not is_open
        return False

    def return_state(self, conn: Any) -> ReturnState:
        if getattr(conn, "_sock", True) is None:  # PyMySQL drops its socket when broken
            return _CLOSED
        status = getattr(conn, "server_status", None)
        if not isinstance(status, int):
            return _CLOSED if self.is_closed(conn) else _DIRTY
        if status & 1:  # SERVER_STATUS_IN_TRANS
            return _DIRTY
        # SERVER_STATUS_AUTOCOMMIT: nothing can be left open.  Without autocommit a
        # plain SELECT opens an InnoDB read view that the server does not flag.
        return _IDLE if status & 2 else _DIRTY

    def is_disconnect(self, conn: Any, error: BaseException) -> bool:
        if self.is_closed(conn):
            return True
        args = getattr(error, "args", ())
        code = args[0] if args and isinstance(args[0], int) else None
        # 1317 (query interrupted, e.g. KILL QUERY) leaves the connection usable.
        return code in MYSQL_DISCONNECT_CODES

    def connect_timeout_kwargs(self, seconds: Optional[float]) -> dict[str, Any]:
        # PyMySQL's connect_timeout covers the TCP connect only; the server's greeting
        # is read under read_timeout, so that is bounded too (until connected).
        if seconds is None:
            return {}
        return {"connect_timeout": seconds + 1.0, "read_timeout": seconds + 1.0}

    def after_connect(self, conn: Any, backstop: dict[str, Any]) -> None:
        if "read_timeout" in backstop and hasattr(conn, "_read_timeout"):
            conn._read_timeout = None  # PyMySQL applies it again before its next read

    def ping(self, conn: Any) -> None:
        ping = getattr(conn, "ping", None)
        if ping is None:
            super().ping(conn)
            return
        try:
            ping(reconnect=False)
        except TypeError:  # MySQLdb's ping() takes no reconnect keyword
            ping()

    def fileno(self, conn: Any) -> Optional[int]:
        sock = getattr(conn, "_sock", None)
        try:
            return int(sock.fileno()) if sock is not None else None
        except Exception:
            return None


class SQLiteDriver(Driver):
    name = "sqlite3"
    database_keyword = "database"

    def return_state(self, conn: Any) -> ReturnState:
        try:
            in_transaction = conn.in_transaction
        except Exception:
            return _CLOSED
        return _DIRTY if in_transaction else _IDLE

    def is_closed(self, conn: Any) -> bool:
        try:
            conn.total_changes  # noqa: B018 - raises ProgrammingError once closed
        except Exception:
            return True
        return False


_GENERIC = Driver()
_BY_MODULE = {
    "psycopg2": Psycopg2Driver(),
    "pymysql": MySQLDriver(),
    "MySQLdb": MySQLDriver(),
    "sqlite3": SQLiteDriver(),
}
_BY_MODULE["_sqlite3"] = _BY_MODULE["sqlite3"]
_BY_MODULE["ksycopg2"] = _BY_MODULE["psycopg2"]  # KingbaseES: psycopg2's API and libpq


def driver_for(module_or_connection: Any) -> Driver:
    """The :class:`Driver` for a DB-API module, a connect callable or a connection."""
    obj = module_or_connection
    names = [getattr(obj, "__name__", None), getattr(obj, "__module__", None)]
    if not isinstance(obj, type):
        names.append(getattr(type(obj), "__module__", None))
    for name in names:
        if isinstance(name, str):
            driver = _BY_MODULE.get(name.split(".")[0])
            if driver is not None:
                return driver
    return _GENERIC


_DSN_KEYS = {"host", "hostaddr", "port", "dbname", "database", "db", "unix_socket"}


def describe_target(args: tuple, kwargs: dict) -> str:
    """A credential-free label such as ``127.0.0.1:5432/test`` for logs and reprs.

    Only host, port and database are used; users, passwords and every other
    connect argument are left out.
    """
    found: dict[str, str] = {}
    for key in _DSN_KEYS:
        if key in kwargs and kwargs[key] is not None:
            found[key] = str(kwargs[key])
    for arg in args:
        if isinstance(arg, dict):
            found.update({k: str(v) for k, v in arg.items() if k in _DSN_KEYS and v is not None})
        elif isinstance(arg, str):
            url = re.match(r"^\w+(?:\+\w+)?://(?:[^@/]*@)?([^/:?]*)(?::(\d+))?(?:/([^?]*))?", arg)
            if url:
                host, port, db = url.groups()
                parts = (("host", host), ("port", port), ("dbname", db))
                found.update({k: v for k, v in parts if v})
            else:
                for key, value in re.findall(r"(\w+)\s*=\s*('[^']*'|\S+)", arg):
                    if key in _DSN_KEYS:
                        found[key] = value.strip("'")
    if not found and args and isinstance(args[0], str) and "=" not in args[0]:
        return args[0]  # a file name, as for sqlite3
    host = found.get("host") or found.get("hostaddr") or found.get("unix_socket") or ""
    port = found.get("port")
    database = found.get("dbname") or found.get("database") or found.get("db") or ""
    label = f"{host}:{port}" if port else host
    return f"{label}/{database}" if database else (label or "?")


def make_psycopg2_green(hub: HubSpec = None) -> None:
    """Make psycopg2 cooperative on ``hub`` (default: the detected hub).

    Installs a wait callback (``psycopg2.extensions.set_wait_callback``) that
    waits for the connection's socket with the hub's own trampoline, so a
    query or connect blocks only its green thread, and a hub timeout or
    ``kill()`` can interrupt it (the connection is then cancelled and should
    be discarded).  On the threads hub it removes the callback.
    """
    import psycopg2.extensions

    chosen = resolve_hub(hub)
    if not chosen.green:
        psycopg2.extensions.set_wait_callback(None)
        return
    wait_read, wait_write = chosen.wait_readable, chosen.wait_writable

    poll_ok = psycopg2.extensions.POLL_OK
    poll_read = psycopg2.extensions.POLL_READ
    poll_write = psycopg2.extensions.POLL_WRITE

    def green_wait(conn: Any, timeout: Optional[float] = None) -> None:
        while True:
            state = conn.poll()
            if state == poll_ok:
                return
            if state == poll_read:
                wait_read(conn.fileno())
            elif state == poll_write:
                wait_write(conn.fileno())
            else:
                raise psycopg2.OperationalError(f"psycopg2: bad poll state {state!r}")

    psycopg2.extensions.set_wait_callback(green_wait)
    log.debug("psycopg2 wait callback installed for hub %s", chosen.name)
