"""Private servers that accept only a few client connections (tests/support/servers.py).

For the "server full" load: the pool may hold more connections than the server
accepts, so some connects are refused while connections in use are about to
come back.

* :class:`LimitedPostgres`: ``max_connections = client_slots + reserved`` and
  ``superuser_reserved_connections = reserved``.  The pool connects as the
  non-superuser role :data:`APP_USER`, which gets exactly ``client_slots``
  connections (the next is refused: "remaining connection slots are reserved
  ..."), while the superuser keeps ``reserved`` slots for admin queries.
* :class:`LimitedMariaDB`: ``max_connections`` at MariaDB's floor of 10, all but
  ``client_slots`` of them held by idle root "ballast" connections, and a user
  :data:`APP_USER` without SUPER / CONNECTION ADMIN, which gets exactly
  ``client_slots`` connections (the next is refused: "Too many connections");
  root keeps MariaDB's one extra connection for admin queries.

Admin connections made while the pool runs would take one of the pool's slots
on PostgreSQL (a superuser takes a free ordinary slot first), so count server
connections only before or after a load.
"""

from __future__ import annotations

import contextlib
from typing import Any, Optional

from tests.support.servers import PrivateMariaDB, PrivatePostgres

__all__ = ["APP_USER", "APP_PASSWORD", "LimitedMariaDB", "LimitedPostgres", "server_connections"]

#: The ordinary (non-super) user the pools connect as.
APP_USER = "app"
APP_PASSWORD = "app-s3cret"


class LimitedPostgres(PrivatePostgres):
    """A private PostgreSQL giving ordinary users ``client_slots`` connections in all."""

    def __init__(self, client_slots: int = 5, reserved: int = 3, port: Optional[int] = None):
        super().__init__(port)
        self.client_slots = client_slots
        self.reserved = reserved

    def _server_argv(self) -> list[str]:
        # Later -c settings win over the base class's max_connections=200.
        return super()._server_argv() + [
            "-c", f"max_connections={self.client_slots + self.reserved}",
            "-c", f"superuser_reserved_connections={self.reserved}",
        ]

    def _bootstrap(self) -> None:
        super()._bootstrap()
        self.psql(f"CREATE ROLE {APP_USER} LOGIN PASSWORD '{APP_PASSWORD}'")
        self.psql(f"GRANT CONNECT ON DATABASE {self.dbname} TO {APP_USER}")

    def check_limit(self) -> None:
        """Fail unless the server is set up as this class says."""
        shown = self.psql("SHOW max_connections"), self.psql("SHOW superuser_reserved_connections")
        wanted = str(self.client_slots + self.reserved), str(self.reserved)
        if shown != wanted:
            raise AssertionError(f"max_connections, superuser_reserved_connections = {shown}")

    def app_kwargs(self) -> dict[str, Any]:
        """psycopg2 keyword arguments for the ordinary user."""
        return dict(self.connect_kwargs(), user=APP_USER, password=APP_PASSWORD)


class LimitedMariaDB:
    """Limit a private MariaDB to ``client_slots`` connections for :data:`APP_USER`.

    MariaDB's ``max_connections`` cannot go below 10, so the server is set to 10
    and the rest are taken by idle "ballast" connections (root's, opened by
    :meth:`apply`, closed by :meth:`release`).  The ordinary user then gets
    ``client_slots`` connections and the next is refused with "Too many
    connections"; root keeps MariaDB's one extra connection for admin queries.
    """

    #: The lowest max_connections MariaDB accepts.
    FLOOR = 10

    def __init__(self, server: PrivateMariaDB, client_slots: int = 5) -> None:
        self.server = server
        self.client_slots = client_slots
        self.ballast: list[Any] = []

    def _admin(self) -> Any:
        import pymysql

        return pymysql.connect(
            **self.server.connect_kwargs(), connect_timeout=5, autocommit=True
        )

    def apply(self) -> dict[str, Any]:
        """Set the limit up; return PyMySQL keyword arguments for the ordinary user."""
        server = self.server
        limit = max(self.FLOOR, self.client_slots)
        admin = self._admin()
        try:
            with admin.cursor() as cur:
                cur.execute(
                    f"CREATE USER IF NOT EXISTS '{APP_USER}'@'127.0.0.1' "
                    f"IDENTIFIED BY '{APP_PASSWORD}'"
                )
                cur.execute(f"GRANT SELECT ON `{server.database}`.* TO '{APP_USER}'@'127.0.0.1'")
                cur.execute(f"SET GLOBAL max_connections = {limit}")
                cur.execute("SELECT @@GLOBAL.max_connections")
                (shown,) = cur.fetchone()
                if int(shown) != limit:
                    raise AssertionError(f"max_connections = {shown}, wanted {limit}")
        finally:
            admin.close()
        self.release()
        try:
            for _ in range(limit - self.client_slots):
                self.ballast.append(self._admin())
        except BaseException:
            self.release()
            raise
        return dict(server.connect_kwargs(), user=APP_USER, password=APP_PASSWORD)

    def release(self) -> None:
        """Close the ballast connections."""
        while self.ballast:
            with contextlib.suppress(Exception):
                self.ballast.pop().close()


def server_connections(server: Any) -> int:
    """Connections of :data:`APP_USER` the server has now (admin ones not counted)."""
    if isinstance(server, PrivatePostgres):
        return int(
            server.psql(f"SELECT count(*) FROM pg_stat_activity WHERE usename = '{APP_USER}'")
        )
    import pymysql

    admin = pymysql.connect(**server.connect_kwargs(), connect_timeout=5, autocommit=True)
    try:
        with admin.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM information_schema.processlist WHERE user = %s",
                (APP_USER,),
            )
            return int(cur.fetchone()[0])
    finally:
        with contextlib.suppress(Exception):
            admin.close()
