"""Uncontended checkout + return of one connection, on a fake driver, per pool.

    .venv/bin/python benchmarks/checkout.py [--rounds 7]
    .venv/bin/python benchmarks/checkout.py --instructions   # needs valgrind

Measures the pool's own cost per cycle (``get()`` then ``put()``, including
greenpool's status-aware reset check) against peers in the same run:
eventlet.db_pool, psycopg2.pool (``ThreadedConnectionPool``; it cannot wait,
so this is its best case), DBUtils PooledDB, SQLAlchemy's QueuePool (if
installed), and two floors: the minimal fair FIFO pool of ``contended.py``
(a lock, a deque and no wrapper: a bare FIFO hand-off) and a bare deque pop
and append.  The driver is a minimal in-process fake, so the figures are
pool overhead only; greenpool sees it through its generic driver profile,
whose transaction-status look is a Python method reading two attributes.
One more row, for reference, runs greenpool on a real in-memory sqlite3
connection, whose status look is one C attribute read (as psycopg2's is
one C call).  Rounds are interleaved and the median of per-round
figures is reported, with each contender's cost as a ratio to greenpool on
eventlet.  greenpool's ratios to the peers the target names (the figures to
compare across machines) come from paired windows instead: in each round,
short windows of the peer and of greenpool alternate, peer first and last,
so that both share the machine's state of the moment; the median over
rounds is reported with the quartiles of the per-round ratios.

The issue's target, 1.2 us on green hubs where eventlet.db_pool costs 2.0 to
3.5 us, psycopg2.pool 1.4 to 2.0 us and a bare FIFO hand-off 0.9 us, is
checked as ratios: at most 0.6x eventlet.db_pool, 0.86x psycopg2.pool and
1.33x the FIFO hand-off.  ``--instructions`` counts CPU instructions per
cycle under callgrind instead: the same ratios, free of the noise of a shared
machine.  Instructions are not time: the contenders are all interpreted
Python on the same interpreter, but greenpool's two clock reads per cycle
spend some 40 ns each in ``clock_gettime`` on this machine, far more than
their instruction count says, so its time ratios run above its instruction
ratios.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Optional

warnings.filterwarnings("ignore")
sys.path.insert(0, __file__.rsplit("/benchmarks/", 1)[0])
sys.path.insert(0, __file__.rsplit("/", 1)[0])

import greenpool  # noqa: E402

CYCLES = 50_000
#: The target's ratios come from paired windows of WINDOW cycles (see paired_ratio):
#: the speed of this shared machine drifts by a fifth within a second, which
#: contenders measured a second apart in the same round do not share.
WINDOW, PAIRS = 5_000, 3
REFERENCE = "greenpool Raw, hub=eventlet"
EVENTLET = "eventlet.db_pool.RawConnectionPool"
PSYCOPG2 = "psycopg2.pool.ThreadedConnectionPool"
FIFO = "minimal FIFO pool (bare hand-off)"
SQLITE3 = "greenpool Raw on sqlite3, hub=eventlet"
#: The issue's target (1.2 us) as ratios to the peers it names, from its own figures.
TARGETS = {EVENTLET: 1.2 / 2.0, PSYCOPG2: 1.2 / 1.4, FIFO: 1.2 / 0.9}


class _Info:
    transaction_status = 0  # psycopg2's "idle", read by psycopg2.pool on return


class FakeConnection:
    """Just enough DB-API for a pool: nothing is ever open, rollback is free."""

    in_transaction = False
    closed = 0
    info = _Info()

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
    # A real driver whose transaction status is one C attribute (the fake driver above
    # goes through the generic profile: two Python attribute reads in a Python method).
    lite = greenpool.RawConnectionPool(sqlite3, 0, 4, database=":memory:", hub="eventlet")

    def cycle_sqlite3(pool=lite):
        conn = pool.get()
        pool.put(conn)

    found[SQLITE3] = cycle_sqlite3
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
    try:
        import psycopg2.pool

        class FakePsycopg2Pool(psycopg2.pool.ThreadedConnectionPool):
            """psycopg2's own pool code, connecting to the fake driver."""

            def _connect(self, key=None):
                conn = FakeConnection()
                if key is not None:
                    self._used[key] = conn
                    self._rused[id(conn)] = key
                else:
                    self._pool.append(conn)
                return conn

        ppool = FakePsycopg2Pool(1, 4)

        def cycle_psycopg2(pool=ppool):
            pool.putconn(pool.getconn())

        found[PSYCOPG2] = cycle_psycopg2
    except ImportError:
        pass
    from contended import FifoPool  # noqa: E402 - benchmarks/ is on sys.path

    fifo = FifoPool(FakeConnection, 4, greenpool.hubs.resolve_hub("eventlet"))

    def cycle_fifo(pool=fifo):
        pool.put(pool.get())

    found[FIFO] = cycle_fifo
    free = deque([FakeConnection()])

    def cycle_bare(free=free):
        conn = free.popleft()
        free.append(conn)

    found["bare deque pop + append (floor)"] = cycle_bare
    return found


def ns_per_cycle(cycle, cycles: int = CYCLES) -> float:
    start = time.perf_counter()
    for _ in range(cycles):
        cycle()
    return (time.perf_counter() - start) / cycles * 1e9


def paired_ratio(mine: Callable[[], None], peer: Callable[[], None]) -> float:
    """``mine``'s cost per cycle over ``peer``'s, from short windows that alternate
    (peer, mine, peer, ..., peer): the two share the machine's state of the moment."""
    mine_ns = peer_ns = 0.0
    for _ in range(PAIRS):
        peer_ns += ns_per_cycle(peer, WINDOW)
        mine_ns += ns_per_cycle(mine, WINDOW)
    peer_ns += ns_per_cycle(peer, WINDOW)
    return (mine_ns / PAIRS) / (peer_ns / (PAIRS + 1))


def run_cycles(label: str, count: int) -> None:
    """Child of --instructions: ``count`` cycles of one contender, nothing else."""
    cycle = contenders()[label]
    for _ in range(count):
        cycle()


def collected(label: str, count: int) -> int:
    """Instructions of a whole child run of ``count`` cycles, counted by callgrind."""
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
         sys.executable, __file__, "--cycles-of", label, str(count)],
        capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},  # same dict layouts in every run
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    assert found, done.stderr
    return int(found.group(1))


def instructions_per_cycle(labels: list[str]) -> dict[str, float]:
    """Per cycle: the difference between a long run and a short one (start-up cancels)."""
    short, long = 1_000, 11_000
    jobs = [(label, count) for label in labels for count in (short, long)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as workers:
        totals = dict(zip(jobs, workers.map(lambda job: collected(*job), jobs)))
    return {label: (totals[label, long] - totals[label, short]) / (long - short)
            for label in labels}


def print_target(ratio_to: Callable[..., Optional[float]]) -> None:
    """The target's readings: greenpool/eventlet's ratio to each peer it names."""
    for peer, target in TARGETS.items():
        r = ratio_to(peer)
        if r is None:
            print(f"  vs {peer}: not installed")
            continue
        verdict = "PASS" if r <= target else "MISS"
        print(f"  vs {peer:38s} x{r:.2f} (target <= x{target:.2f})  {verdict}")
    lite = ratio_to(FIFO, SQLITE3)
    if lite is not None:
        print(f"  (on sqlite3, whose status look is one C attribute read: x{lite:.2f} the "
              "FIFO hand-off)")


def count_instructions() -> None:
    if shutil.which("valgrind") is None:
        sys.exit("--instructions needs valgrind (Debian package valgrind)")
    labels = [REFERENCE, "greenpool Raw, hub=gevent", SQLITE3, *TARGETS]
    known = contenders()
    counts = instructions_per_cycle([label for label in labels if label in known])
    print("uncontended get()+put(): CPU instructions per cycle (callgrind; repeatable, "
          "unlike timings)")
    for label, count in counts.items():
        print(f"  {label:38s} {count:8.0f}")
    print("\ngreenpool Raw on eventlet against the issue's target, as instruction ratios:")
    print_target(lambda peer, mine=REFERENCE: counts[mine] / counts[peer]
                 if peer in counts and mine in counts else None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--instructions", action="store_true",
                        help="count CPU instructions per cycle under valgrind instead of timing")
    parser.add_argument("--cycles-of", nargs=2, metavar=("LABEL", "COUNT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.cycles_of:
        run_cycles(args.cycles_of[0], int(args.cycles_of[1]))
        return
    if args.instructions:
        count_instructions()
        return
    found = contenders()
    for cycle in found.values():
        ns_per_cycle(cycle)  # warm up, open the connection
    samples: dict = {label: [] for label in found}
    for _ in range(args.rounds):
        for label, cycle in found.items():
            samples[label].append(ns_per_cycle(cycle))
    # The table's ratios per round (contenders of one round ran within a second or two
    # of each other); the target's from paired windows, per round.
    def ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(samples[a], samples[b]))

    pairings = [(REFERENCE, peer) for peer in TARGETS if peer in found]
    if FIFO in found:
        pairings.append((SQLITE3, FIFO))
    paired: dict = {pairing: [] for pairing in pairings}
    for _ in range(args.rounds):
        for mine, peer in pairings:
            paired[mine, peer].append(paired_ratio(found[mine], found[peer]))

    print(f"uncontended get()+put(): median of {args.rounds} interleaved rounds x {CYCLES}")
    for label, values in samples.items():
        ns = statistics.median(values)
        print(f"  {label:38s} {ns / 1000:6.2f} us/cycle   cost vs greenpool/eventlet "
              f"x{ratio(label, REFERENCE):.2f}")
    print("\ngreenpool Raw on eventlet against the issue's target (1.2 us where eventlet.db_pool "
          "costs 2.0-3.5 us,\npsycopg2.pool 1.4-2.0 us and a bare FIFO hand-off 0.9 us), as "
          f"ratios to the same peers here\n(median over {args.rounds} rounds of {PAIRS} paired "
          f"windows of {WINDOW} cycles each):")
    print_target(lambda peer, mine=REFERENCE: statistics.median(paired[mine, peer])
                 if (mine, peer) in paired else None)
    short = {EVENTLET: "eventlet.db_pool", PSYCOPG2: "psycopg2.pool", FIFO: "FIFO"}
    print("  per-round ratios, quartiles: " + ", ".join(
        f"{'' if mine == REFERENCE else 'sqlite3 '}vs {short[peer]} {q[0]:.2f}-{q[2]:.2f}"
        for (mine, peer), values in paired.items() if len(values) > 1
        for q in [statistics.quantiles(values, n=4)]))


if __name__ == "__main__":
    main()
