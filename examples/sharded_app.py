"""A sharded WSGI app: each request goes to its shard's database through a DatabaseConnector.

    python3 examples/sharded_app.py --port 8080 [--hub gevent|eventlet]
        [--pg 127.0.0.1:5432] [--mysql 127.0.0.1:3306]

Three shards live on two servers: the PostgreSQL databases ``test`` and
``test_shard2`` and the MariaDB database ``test`` (create the second one
with ``createdb -h 127.0.0.1 -U postgres test_shard2``).  One
``DatabaseConnector`` per server keeps a pool per database, opened on first
use, with a cap on connections across its databases, idle pools closed
after five minutes, and fail-fast on a server that keeps refusing.

    GET /shard/<key>/whoami  the shard's database, as the database itself names it,
                             and its pool's stats; a numeric key n is shard n % 3,
                             any other key is hashed (a tenant name, say)
    GET /stats               every pool of both connectors
    GET /health              {"ok": true}

Answers are JSON; a shard whose database cannot be reached answers 503.
The server is gevent's ``pywsgi`` or ``eventlet.wsgi``, monkey patched
before anything else is imported; SIGTERM stops it and closes the pools.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import zlib
from typing import Any, Callable, Iterable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a fresh clone, uninstalled

log = logging.getLogger("sharded_app")

#: (server, database) per shard.
SHARDS = (("postgresql", "test"), ("postgresql", "test_shard2"), ("mariadb", "test"))
#: How each server names the database a connection is using.
WHOAMI = {"postgresql": "SELECT current_database()", "mariadb": "SELECT DATABASE()"}
_ROUTE = re.compile(r"^/shard/(?P<key>[^/]+)/whoami$")

StartResponse = Callable[..., Any]


def shard_for(key: str) -> int:
    """Shard ``int(key) % 3`` for a number, a stable hash of the key otherwise."""
    number = int(key) if key.isdigit() else zlib.crc32(key.encode("utf-8"))
    return number % len(SHARDS)


def pool_summary(stats: Any) -> dict[str, int]:
    fields = ("size", "in_use", "idle", "waiting", "requests", "opened", "closed")
    return {name: getattr(stats, name) for name in fields}


class ShardedApp:
    """The WSGI application: one connector per server, routing by shard."""

    def __init__(self, hub: str, pg: str, mysql: str) -> None:
        import psycopg2
        import pymysql

        import greenpool
        from greenpool.connector import DatabaseConnector

        greenpool.make_psycopg2_green(hub)  # psycopg2 is C: make it wait on the hub
        self.errors: tuple[type[BaseException], ...] = (
            greenpool.PoolError,
            psycopg2.Error,
            pymysql.Error,
        )
        common: dict[str, Any] = {
            "max_size": 4,  # per database
            "timeout": 5,  # the longest a request waits for a connection
            "connect_timeout": 3,
            "max_total": 6,  # per server, across its databases
            "max_pool_idle": 300,
            "hub": hub,
        }
        self.hosts = {"postgresql": pg, "mariadb": mysql}
        self.connectors = {
            "postgresql": DatabaseConnector(
                psycopg2,
                {"default": {"user": "postgres"}},
                greenpool.RawConnectionPool,
                name="postgresql",
                **common,
            ),
            "mariadb": DatabaseConnector(
                pymysql,
                {"default": {"user": "root", "password": ""}},
                greenpool.RawConnectionPool,
                name="mariadb",
                **common,
            ),
        }

    def whoami(self, key: str) -> dict[str, Any]:
        shard = shard_for(key)
        server, database = SHARDS[shard]
        pool = self.connectors[server].get(self.hosts[server], database)
        with pool.item() as conn:
            cursor = conn.cursor()
            cursor.execute(WHOAMI[server])
            (name,) = cursor.fetchone()
            cursor.close()
        return {
            "key": key,
            "shard": shard,
            "server": server,
            "database": name,
            "pool": pool_summary(pool.stats()),
        }

    def stats(self) -> dict[str, Any]:
        answer = {}
        for server, connector in self.connectors.items():
            s = connector.stats()
            answer[server] = {
                "pools": {str(key): pool_summary(p) for key, p in s.pools.items()},
                "size": s.size,
                "checkouts": s.checkouts,
                "max_total": s.max_total,
                "failing_hosts": list(s.failing_hosts),
            }
        return answer

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") != "GET":
            return _json(start_response, 405, {"error": "only GET"})
        if path == "/health":
            return _json(start_response, 200, {"ok": True})
        if path == "/stats":
            return _json(start_response, 200, self.stats())
        match = _ROUTE.match(path)
        if match is None:
            return _json(start_response, 404, {"error": f"no route for {path}"})
        try:
            return _json(start_response, 200, self.whoami(match.group("key")))
        except self.errors as exc:
            log.warning("shard %s: %s", match.group("key"), type(exc).__name__)
            return _json(start_response, 503, {"error": type(exc).__name__})

    def close(self) -> None:
        for connector in self.connectors.values():
            connector.close()


def _json(start_response: StartResponse, status: int, body: Any) -> list[bytes]:
    reasons = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Unavailable"}
    data = json.dumps(body).encode("utf-8")
    start_response(
        f"{status} {reasons[status]}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(data)))],
    )
    return [data]


def serve(hub: str, host: str, port: int, app: ShardedApp) -> None:
    """Serve until SIGTERM or Ctrl-C."""
    import signal

    if hub == "gevent":
        import gevent
        from gevent.pywsgi import WSGIServer

        server = WSGIServer((host, port), app, log=None)
        gevent.signal_handler(signal.SIGTERM, server.stop)
        print(f"listening on http://{host}:{port} (gevent)", flush=True)
        server.serve_forever()
    else:
        import eventlet
        import eventlet.wsgi

        def stop(signum: int, frame: Any) -> None:
            raise SystemExit(0)

        signal.signal(signal.SIGTERM, stop)
        sock = eventlet.listen((host, port))
        print(f"listening on http://{host}:{port} (eventlet)", flush=True)
        eventlet.wsgi.server(sock, app, log_output=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--hub", choices=("gevent", "eventlet"), default="gevent")
    parser.add_argument("--pg", default="127.0.0.1:5432", help="PostgreSQL host:port")
    parser.add_argument("--mysql", default="127.0.0.1:3306", help="MariaDB host:port")
    args = parser.parse_args()
    if args.hub == "eventlet":
        import eventlet

        eventlet.monkey_patch()
    else:
        from gevent import monkey

        monkey.patch_all()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = ShardedApp(args.hub, args.pg, args.mysql)
    try:
        serve(args.hub, args.host, args.port, app)
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        app.close()
        print("stopped; pools closed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
