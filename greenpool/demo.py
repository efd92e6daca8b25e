"""The greenpool demo: many green threads sharing a few connections.

    python -m greenpool demo [--hub eventlet|gevent|threads] [--workers 200]
                             [--size 10] [--seconds 5] [--dsn URL] [--pool raw|tpooled]

By default it uses SQLite from the standard library (a file in a temporary
directory), so it needs no server.  ``--dsn postgresql://user@host:port/db``
uses psycopg2 (made green with a wait callback), ``--dsn
mysql://user:password@host:port/db`` uses PyMySQL.  Each worker loops: check a
connection out, write a row and read a count (holding the connection for a
simulated millisecond of network time), give it back, then do a millisecond
of other work.  While it runs it prints progress; at the end, throughput,
waits for a connection, connections opened and reused, and how evenly the
workers were served.

This module prints: it is a command-line program, not library code.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import urllib.parse
from typing import Any


def _pick_hub(requested: str) -> str:
    if requested != "auto":
        return requested
    for name in ("eventlet", "gevent"):
        try:
            __import__(name)
        except ImportError:
            continue
        return name
    return "threads"


def _patch(hub: str) -> None:
    if hub == "eventlet":
        import warnings

        warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
        import eventlet

        eventlet.monkey_patch()
    elif hub == "gevent":
        from gevent import monkey

        monkey.patch_all()


def _connect_spec(dsn: str | None) -> tuple[Any, tuple, dict, str, str]:
    """(module, args, kwargs, label, SQL placeholder) for ``--dsn``."""
    if not dsn or dsn.startswith("sqlite:"):
        import sqlite3

        path = dsn[len("sqlite:"):] if dsn else ""
        path = path or os.path.join(tempfile.mkdtemp(prefix="greenpool-demo-"), "demo.db")
        return sqlite3, (path,), {"check_same_thread": False}, f"SQLite {path}", "?"
    url = urllib.parse.urlsplit(dsn)
    kwargs: dict[str, Any] = {"host": url.hostname or "127.0.0.1"}
    if url.port:
        kwargs["port"] = url.port
    if url.username:
        kwargs["user"] = urllib.parse.unquote(url.username)
    if url.password:
        kwargs["password"] = urllib.parse.unquote(url.password)
    database = url.path.lstrip("/") or "test"
    if url.scheme.startswith("postgres"):
        import psycopg2

        kwargs["dbname"] = database
        return psycopg2, (), kwargs, f"PostgreSQL {kwargs['host']}/{database}", "%s"
    if url.scheme.startswith("mysql") or url.scheme.startswith("mariadb"):
        import pymysql

        kwargs["database"] = database
        kwargs.setdefault("ssl_disabled", True)  # else each connect sets up TLS, costly in CPU
        return pymysql, (), kwargs, f"MySQL {kwargs['host']}/{database}", "%s"
    raise SystemExit(f"--dsn: unsupported scheme {url.scheme!r} (postgresql, mysql, sqlite)")


def _parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m greenpool demo", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--hub", choices=("auto", "eventlet", "gevent", "threads"),
                        default="auto", help="default: eventlet, else gevent, else threads")
    parser.add_argument("--workers", type=int, default=200, help="green threads (200)")
    parser.add_argument("--size", type=int, default=10, help="pool max_size (10)")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to run (5)")
    parser.add_argument("--dsn", help="postgresql://... or mysql://... (default: SQLite)")
    parser.add_argument("--pool", choices=("raw", "tpooled"), default="raw")
    return parser.parse_args(argv)


def _report(stats: Any, done_per_worker: list[int], waits: list[float], elapsed: float,
            rows: int) -> bool:
    """Print the summary; whether the run was right (every row there, nobody starved)."""
    total = sum(done_per_worker)
    waits.sort()
    p50 = waits[len(waits) // 2] * 1000 if waits else 0.0
    p99 = waits[int(len(waits) * 0.99)] * 1000 if waits else 0.0
    starved = sum(1 for n in done_per_worker if n == 0)
    print(f"done: {total} transactions in {elapsed:.1f} s ({total / elapsed:.0f}/s), "
          f"{rows} rows written")
    print(f"waits for a connection: {stats.waits} of {stats.requests} checkouts waited; "
          f"p50 {p50:.1f} ms, p99 {p99:.1f} ms")
    print(f"connections: {stats.opened} opened for {stats.requests} checkouts "
          f"(each reused {stats.requests / max(1, stats.opened):.0f} times on average), "
          f"{stats.closed} closed")
    print(f"fairness: per worker min {min(done_per_worker)}, "
          f"median {statistics.median(done_per_worker):.0f}, max {max(done_per_worker)}; "
          f"{starved} starved")
    return rows == total and starved == 0 and stats.in_use == 0


def main(argv: list[str]) -> int:
    args = _parse_args(argv)
    hub_name = _pick_hub(args.hub)
    _patch(hub_name)

    import greenpool
    from greenpool.hubs import resolve_hub

    hub = resolve_hub(hub_name)
    module, cargs, ckwargs, label, mark = _connect_spec(args.dsn)
    if module.__name__ == "psycopg2" and args.pool == "raw":
        greenpool.make_psycopg2_green(hub)
    workers = args.workers if hub.green else min(args.workers, 64)
    pool_class = (
        greenpool.RawConnectionPool if args.pool == "raw" else greenpool.TpooledConnectionPool
    )
    # min_size = max_size: the connections are opened before the clock starts.
    pool = pool_class(module, args.size, args.size, 30, 300, 5, greenpool.cleanup_rollback,
                      *cargs, hub=hub, name="demo", **ckwargs)
    print(f"greenpool demo: {workers} {'green ' if hub.green else ''}threads on hub "
          f"{hub.name}, {pool_class.__name__} of {args.size} connections to {label}")
    if not hub.green:
        print("  (eventlet and gevent are not installed here: plain threads instead; "
              "python3 examples/demo.py sets them up)")

    table = f"greenpool_demo_{os.getpid()}"
    with pool.item() as conn:
        cur = conn.cursor()
        cur.execute(f"CREATE TABLE {table} (worker INTEGER, n INTEGER)")
        conn.commit()

    done_per_worker = [0] * workers
    waits: list[float] = []
    stop_at = hub.monotonic() + args.seconds
    finished = []

    def worker(number: int) -> None:
        n = 0
        try:
            while hub.monotonic() < stop_at:
                asked = hub.monotonic()
                with pool.item() as conn:
                    waits.append(hub.monotonic() - asked)
                    cur = conn.cursor()
                    cur.execute(f"INSERT INTO {table} VALUES ({mark}, {mark})", (number, n))
                    cur.execute(f"SELECT COUNT(*) FROM {table} WHERE worker = {mark}", (number,))
                    cur.fetchall()
                    conn.commit()
                    hub.sleep(0.001)  # the network time of a real query
                n += 1
                done_per_worker[number] = n
                hub.sleep(0.001)  # the rest of the request's work
        finally:
            finished.append(number)

    started = hub.monotonic()
    for number in range(workers):
        hub.spawn(worker, number)
    while len(finished) < workers:
        hub.sleep(0.5)
        s = pool.stats()
        elapsed = hub.monotonic() - started
        total = sum(done_per_worker)
        print(f"  {elapsed:4.1f} s  {total:6d} transactions  {total / elapsed:7.0f}/s  "
              f"in use {s.in_use}, idle {s.idle}, waiting {s.waiting}", flush=True)
    elapsed = hub.monotonic() - started

    with pool.item() as conn:
        cur = conn.cursor()
        cur.execute(f"SELECT COUNT(*) FROM {table}")
        (rows,) = cur.fetchone()
        cur.execute(f"DROP TABLE {table}")
        conn.commit()
    stats = pool.stats()
    pool.close()

    ok = _report(stats, done_per_worker, waits, elapsed, rows)
    print("demo OK" if ok else "demo FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
