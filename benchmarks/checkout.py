"""Uncontended checkout + return of one connection, on a fake driver, per pool.

    .venv/bin/python benchmarks/checkout.py [--rounds 5]

Measures the pool's own cost per cycle (``get()`` then ``put()``, including
greenpool's status-aware reset check) against peers in the same run:
eventlet.db_pool, DBUtils PooledDB, SQLAlchemy's QueuePool (if installed),
and a bare FIFO hand-off (a deque pop and append: the floor).  The driver is
a minimal in-process fake, so the figures are pool overhead only.  Rounds are
interleaved and the median of per-round figures is reported, with each
contender's cost as a ratio to greenpool on eventlet.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections import deque

warnings.filterwarnings("ignore")
sys.path.insert(0, __file__.rsplit("/benchmarks/", 1)[0])

import greenpool  # noqa: E402

CYCLES = 50_000


class FakeConnection:
    """Just enough DB-API for a pool: nothing is ever open, rollback is free."""

    in_transaction = False
    closed = 0

    def rollback(self) -> None:
        pass

    def commit(self) -> None:
        pass

    def close(self) -> None:
        self.closed = 1

    def cursor(self) -> FakeConnection:
        return self  # a cursor too, for the health check's SELECT 1

    def execute(self, sql: str) -> None:
        pass

    def fetchall(self) -> list:
        return [(1,)]


class FakeModule:
    __name__ = "benchfake"
    threadsafety = 1
    OperationalError = type("OperationalError", (Exception,), {})
    InterfaceError = type("InterfaceError", (Exception,), {})
    InternalError = type("InternalError", (Exception,), {})

    @staticmethod
    def connect(*args: object, **kwargs: object) -> FakeConnection:
        return FakeConnection()


def contenders() -> dict:
    found = {}
    for hub in ("eventlet", "gevent", "threads"):
        pool = greenpool.RawConnectionPool(FakeModule, 0, 4, hub=hub)

        def cycle(pool=pool):
            conn = pool.get()
            pool.put(conn)

        found[f"greenpool Raw, hub={hub}"] = cycle
        with_item = pool

        def cycle_item(pool=with_item):
            with pool.item():
                pass

        if hub == "eventlet":
            found["greenpool Raw item(), hub=eventlet"] = cycle_item
    try:
        from eventlet import db_pool

        epool = db_pool.RawConnectionPool(FakeModule, 0, 4)

        def cycle_eventlet(pool=epool):
            conn = pool.get()
            pool.put(conn)

        found["eventlet.db_pool.RawConnectionPool"] = cycle_eventlet
    except ImportError:
        pass
    try:
        from dbutils.pooled_db import PooledDB

        dpool = PooledDB(FakeModule, maxcached=4, maxconnections=4, blocking=True)

        def cycle_dbutils(pool=dpool):
            pool.connection().close()

        found["DBUtils PooledDB"] = cycle_dbutils
    except ImportError:
        pass
    try:
        from sqlalchemy.pool import QueuePool

        qpool = QueuePool(FakeModule.connect, pool_size=4, max_overflow=0)

        def cycle_sqlalchemy(pool=qpool):
            pool.connect().close()

        found["SQLAlchemy QueuePool"] = cycle_sqlalchemy
    except ImportError:
        pass
    free = deque([FakeConnection()])

    def cycle_bare(free=free):
        conn = free.popleft()
        free.append(conn)

    found["bare FIFO hand-off (floor)"] = cycle_bare
    return found


def ns_per_cycle(cycle) -> float:
    start = time.perf_counter()
    for _ in range(CYCLES):
        cycle()
    return (time.perf_counter() - start) / CYCLES * 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    found = contenders()
    for cycle in found.values():
        ns_per_cycle(cycle)  # warm up, open the connection
    samples: dict = {label: [] for label in found}
    for _ in range(args.rounds):
        for label, cycle in found.items():
            samples[label].append(ns_per_cycle(cycle))
    reference = statistics.median(samples["greenpool Raw, hub=eventlet"])
    print(f"uncontended get()+put(): median of {args.rounds} interleaved rounds x {CYCLES}")
    for label, values in samples.items():
        ns = statistics.median(values)
        ratio = ns / reference
        print(f"  {label:38s} {ns / 1000:6.2f} us/cycle   cost vs greenpool/eventlet x{ratio:.2f}")


if __name__ == "__main__":
    main()
