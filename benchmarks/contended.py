"""Connection pools under contention on a real database: speed and fairness.

    .venv/bin/python benchmarks/contended.py [--hub eventlet|gevent|threads]
        [--seconds 1.5] [--slices 3] [--workers 200] [--threads 32] [--size 8]
        [--db postgres|mariadb|both] [--ideal-cap 32] [--retry-sleep 0.001]

With ``--hub`` the process monkey patches itself for that hub (before any
other import) and measures there; without it, it runs itself once per hub,
each in a subprocess, and prints one combined table (about 2 minutes).

Workload: W workers (green threads; on the threads hub W = min(--workers,
--threads) OS threads) loop: check a connection out, run one query on a new
cursor, fetch, return the connection.  Two scenarios: ``SELECT 1``, where the
client's CPU is the limit, and a query sleeping 1 ms on the server
(``pg_sleep``/``SLEEP``), where the number of connections is.  Connections
are in autocommit mode (psycopg2 through a connection factory, PyMySQL by
keyword), so a query is one round trip and a pool needs no rollback on
return, unless it rolls back regardless.

Speed is reported as ratios against two baselines measured in the same
process, interleaved with the pools, since machines are shared and absolute
numbers drift:

* ``ideal``: each worker owns a dedicated connection; no pool.  The number of
  dedicated connections is capped at ``--ideal-cap`` (32), so with more
  workers the ideal runs with 32, and its *total* throughput is the
  reference.  On ``SELECT 1`` one client process saturates with a handful
  of connections (8 and 64 dedicated connections give the same rate), so
  scaling up per worker would report a rate nobody reaches; on the sleeping
  query the ideal grows with its connections (it measures what S
  connections cost, not the pool).  32 rather than 64: PostgreSQL allows 100
  connections here, shared with other test runs, and the pools keep theirs
  open too.
* ``ideal-S``: S workers, each owning one of S dedicated connections: what a
  perfect pool of S connections would deliver (no checkout, no idle
  connection).  pool / ideal-S is the pool's own efficiency.

Every contender (baselines included) is built once per database, and the
measured time (``--seconds`` per contender and scenario) is cut into
``--slices`` that rotate through the contenders, so that a burst of load
from elsewhere hits them all alike.  Workers persist across slices, parked
between them; each slice starts with a 0.05 s warm-up outside the window.

Contenders (pools of ``--size`` S connections, library defaults otherwise):

* greenpool ``RawConnectionPool`` and ``TpooledConnectionPool`` (Tpooled is
  skipped for PyMySQL on gevent: PyMySQL's patched sockets belong to the
  hub's thread);
* on eventlet, ``eventlet.db_pool.RawConnectionPool`` and
  ``TpooledConnectionPool``; note that they roll back on every return (a
  round trip on PyMySQL);
* for PostgreSQL, ``psycopg2.pool.ThreadedConnectionPool(S, S)``: it raises
  PoolError when exhausted, so callers must retry, here in a loop with a
  ``--retry-sleep`` (1 ms) hub sleep; and it closes every connection
  returned beyond ``minconn``, so ``minconn`` must equal ``maxconn`` to pool
  at all;
* on the threads hub, DBUtils ``PooledDB(maxconnections=S, blocking=True)``;
  its defaults ping (PyMySQL: a round trip) at checkout and roll back at
  return, both while holding its pool lock.

psycopg2 is made green (``greenpool.make_psycopg2_green``) on green hubs,
except while a Tpooled pool runs: a Tpooled user keeps the driver blocking
and lets the pool move its calls to OS threads.

Per contender and scenario: queries/s; ratios; fairness as Jain's index
over the workers' completed operations (1.0: all equal; 1/W: one worker did
everything); min/median/max operations per worker; starved workers (none
completed in the whole measured time); checkout wait p50/p99 over the
checkouts completed in the windows, and the longest wait, counting for
workers still waiting when a window closed the wait so far (so a starved
worker shows in the max).  No
figure is asserted: this is a measuring tool.
"""

from __future__ import annotations

import sys
import warnings


def _hub_from_argv(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg == "--hub" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--hub="):
            return arg.split("=", 1)[1]
    return None


warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
HUB = _hub_from_argv(sys.argv[1:])
if HUB == "eventlet":
    import eventlet

    eventlet.monkey_patch()
elif HUB == "gevent":
    from gevent import monkey

    monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from dataclasses import asdict, dataclass, field  # noqa: E402
from typing import Any, Callable, Optional, cast  # noqa: E402

sys.path.insert(0, __file__.rsplit("/benchmarks/", 1)[0])

import greenpool  # noqa: E402

HUBS = ("eventlet", "gevent", "threads")
#: Each slice runs this long before its window opens.
SLICE_WARMUP = 0.05

PG = {
    "host": os.environ.get("GREENPOOL_PG_HOST", "127.0.0.1"),
    "port": int(os.environ.get("GREENPOOL_PG_PORT", "5432")),
    "user": "postgres",
    "dbname": "test",
}
MARIADB = {
    "host": os.environ.get("GREENPOOL_MYSQL_HOST", "127.0.0.1"),
    "port": int(os.environ.get("GREENPOOL_MYSQL_PORT", "3306")),
    "user": "root",
    "password": "",
    "database": "test",
    "autocommit": True,
}
SCENARIOS = {
    "postgres": {"SELECT 1": "SELECT 1", "sleep 1ms": "SELECT pg_sleep(0.001)"},
    "mariadb": {"SELECT 1": "SELECT 1", "sleep 1ms": "SELECT SLEEP(0.001)"},
}

Checkout = Callable[[], Any]
Checkin = Callable[[Any], None]


# -- hub plumbing -----------------------------------------------------------------------


def start(fn: Callable[..., None], *args: Any) -> Callable[[], None]:
    """Run ``fn(*args)`` as a worker of this process's hub; return its join."""
    if HUB == "eventlet":
        return eventlet.spawn(fn, *args).wait
    if HUB == "gevent":
        import gevent

        return gevent.spawn(fn, *args).join
    thread = threading.Thread(target=fn, args=args, daemon=True)
    thread.start()
    return thread.join


def hub_sleep(seconds: float) -> None:
    greenpool.resolve_hub(HUB).sleep(seconds)


def set_psycopg2_green(green: bool) -> None:
    """Install (or remove, for the Tpooled pools) the green wait callback."""
    import psycopg2.extensions

    if green and HUB != "threads":
        greenpool.make_psycopg2_green(HUB)
    else:
        psycopg2.extensions.set_wait_callback(None)


# -- databases ------------------------------------------------------------------------


def db_module(db: str) -> Any:
    if db == "postgres":
        import psycopg2

        return psycopg2
    import pymysql

    return pymysql


def connect_kwargs(db: str) -> dict[str, Any]:
    if db == "mariadb":
        return dict(MARIADB)
    import psycopg2.extensions

    class AutocommitConnection(psycopg2.extensions.connection):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.autocommit = True

    return dict(PG, connection_factory=AutocommitConnection)


def query(conn: Any, sql: str) -> None:
    cur = conn.cursor()
    cur.execute(sql)
    cur.fetchall()
    cur.close()


def close_quietly(conn: Any) -> None:
    try:
        conn.close()
    except Exception:  # noqa: S110 - already broken: nothing to keep
        pass


# -- measuring ------------------------------------------------------------------------


@dataclass
class Window:
    """What one contender did in one scenario, summed over its slices."""

    sql: str
    workers: int
    measuring: bool = False
    elapsed: float = 0.0
    ops: list[int] = field(default_factory=list)
    waits: list[float] = field(default_factory=list)
    open_waits: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ops = [0] * self.workers


class Contender:
    """A pool (``get``/``put``) or dedicated connections (``conns``) and its parked workers.

    Workers run while ``running``; otherwise they wait at ``gate``.  ``busy[i]``
    is False once worker i is parked, so a slice can end cleanly.
    """

    def __init__(self, label: str, workers: int, *, get: Optional[Checkout] = None,
                 put: Optional[Checkin] = None, close: Callable[[], None] = lambda: None,
                 conns: Optional[list[Any]] = None, green: bool = True, note: str = "") -> None:
        self.label = label
        self.workers = workers
        self.get, self.put, self.close = get, put, close
        self.conns = conns
        self.green = green
        self.note = note
        self.windows: dict[str, Window] = {}
        self.window: Optional[Window] = None
        self.running = False
        self.shutdown = False
        self.gate = threading.Event()
        self.busy = [False] * workers
        self.since: list[Optional[float]] = [None] * workers
        self.joins: list[Callable[[], None]] = []

    def prefill(self, size: int) -> None:
        """Open the pool's connections before any measuring (all checked out, then back)."""
        if self.get is None or self.put is None:
            return
        conns = [self.get() for _ in range(size)]
        for conn in conns:
            self.put(conn)

    def start_workers(self) -> None:
        self.joins = [start(self._work, i) for i in range(self.workers)]

    def _work(self, i: int) -> None:
        get, put, since, busy = self.get, self.put, self.since, self.busy
        own = self.conns[i] if self.conns is not None else None
        clock = time.perf_counter
        while True:
            if not self.running:
                busy[i] = False
                self.gate.wait()
                if self.shutdown:
                    return
                busy[i] = True
                continue
            w = cast(Window, self.window)  # set before running is
            try:
                if get is None or put is None:
                    query(own, w.sql)
                    if w.measuring:
                        w.ops[i] += 1
                    continue
                t0 = since[i] = clock()
                conn = get()
                wait = clock() - t0
                since[i] = None
                try:
                    query(conn, w.sql)
                finally:
                    put(conn)
                if w.measuring:
                    w.ops[i] += 1
                    w.waits.append(wait)
            except Exception as exc:  # reported with the results; the run goes on
                since[i] = None
                w.errors.append(repr(exc))
                hub_sleep(0.01)

    def run_slice(self, scenario: str, seconds: float, psycopg2_used: bool) -> None:
        w = self.windows[scenario]
        if psycopg2_used:
            set_psycopg2_green(self.green)
        self.window = w
        self.running = True
        self.gate.set()
        hub_sleep(SLICE_WARMUP)
        started = time.perf_counter()
        w.measuring = True
        hub_sleep(seconds)
        w.measuring = False
        ended = time.perf_counter()
        w.elapsed += ended - started
        w.open_waits.extend(ended - s for s in list(self.since) if s is not None)
        self.gate.clear()
        self.running = False
        while any(self.busy):
            hub_sleep(0.001)

    def stop(self) -> None:
        self.shutdown = True
        self.gate.set()
        for join in self.joins:
            join()
        self.close()


@dataclass
class Result:
    hub: str
    db: str
    scenario: str
    contender: str
    workers: int
    seconds: float
    qps: float
    jain: float
    ops_min: int
    ops_median: float
    ops_max: int
    starved: int
    wait_p50_ms: Optional[float]
    wait_p99_ms: Optional[float]
    wait_max_ms: Optional[float]
    errors: int = 0
    note: str = ""
    x_ideal: Optional[float] = None
    x_ideal_s: Optional[float] = None


def jain(values: list[int]) -> float:
    """Jain's fairness index: 1.0 when all equal, 1/n when one value holds everything."""
    total = sum(values)
    squares = sum(v * v for v in values)
    return total * total / (len(values) * squares) if squares else 0.0


def percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def summarise(db: str, scenario: str, c: Contender) -> Result:
    w = c.windows[scenario]
    ops = w.ops
    waits = sorted(w.waits)
    ms: list[Optional[float]] = [None, None, None]
    if c.get is not None and (waits or w.open_waits):
        longest = max(waits[-1:] + w.open_waits)
        if waits:
            ms[:2] = [percentile(waits, 0.5) * 1e3, percentile(waits, 0.99) * 1e3]
        ms[2] = longest * 1e3
    return Result(
        hub=str(HUB),
        db=db,
        scenario=scenario,
        contender=c.label,
        workers=w.workers,
        seconds=w.elapsed,
        qps=sum(ops) / w.elapsed if w.elapsed else 0.0,
        jain=jain(ops),
        ops_min=min(ops),
        ops_median=statistics.median(ops),
        ops_max=max(ops),
        starved=sum(1 for n in ops if n == 0),
        wait_p50_ms=ms[0],
        wait_p99_ms=ms[1],
        wait_max_ms=ms[2],
        errors=len(w.errors),
        note=(w.errors[0] if w.errors else c.note)[:90],
    )


# -- contenders -----------------------------------------------------------------------
# Each builder returns a Contender, or None where it does not apply.


def ideal(db: str, args: argparse.Namespace, workers: int) -> list[Contender]:
    count = min(workers, args.ideal_cap)
    set_psycopg2_green(True)
    module, kwargs = db_module(db), connect_kwargs(db)
    conns: list[Any] = []
    note = ""
    for _ in range(count):
        try:
            conns.append(module.connect(**kwargs))
        except Exception as exc:  # the server's connection limit, most likely
            note = f"only {len(conns)} of {count} connections: {exc!r}"
            break

    def close() -> None:
        for conn in conns:
            close_quietly(conn)

    size = min(args.size, len(conns))
    return [
        Contender(f"ideal ({len(conns)} dedicated)", len(conns), conns=conns, close=close,
                  note=note),
        Contender(f"ideal-S ({size} dedicated)", size, conns=conns[:size]),
    ]


def greenpool_raw(db: str, args: argparse.Namespace, workers: int) -> Optional[Contender]:
    set_psycopg2_green(True)
    pool = greenpool.RawConnectionPool(db_module(db), max_size=args.size, hub=HUB,
                                       **connect_kwargs(db))
    return Contender("greenpool Raw", workers, get=pool.get, put=pool.put, close=pool.close)


def greenpool_tpooled(db: str, args: argparse.Namespace, workers: int) -> Optional[Contender]:
    if db == "mariadb" and HUB == "gevent":
        return None
    set_psycopg2_green(False)
    pool = greenpool.TpooledConnectionPool(db_module(db), max_size=args.size, hub=HUB,
                                           **connect_kwargs(db))
    return Contender("greenpool Tpooled", workers, get=pool.get, put=pool.put,
                     close=pool.close, green=False)


def eventlet_db_pool(tpooled: bool) -> Callable[..., Optional[Contender]]:
    def build(db: str, args: argparse.Namespace, workers: int) -> Optional[Contender]:
        if HUB != "eventlet":
            return None
        import eventlet.db_pool

        set_psycopg2_green(not tpooled)
        cls = eventlet.db_pool.TpooledConnectionPool if tpooled else (
            eventlet.db_pool.RawConnectionPool)
        pool = cls(db_module(db), max_size=args.size, **connect_kwargs(db))
        label = "eventlet.db_pool " + ("Tpooled" if tpooled else "Raw")
        return Contender(label, workers, get=pool.get, put=pool.put, close=pool.clear,
                         green=not tpooled)

    return build


def psycopg2_threaded(db: str, args: argparse.Namespace, workers: int) -> Optional[Contender]:
    if db != "postgres":
        return None
    import psycopg2.pool

    set_psycopg2_green(True)
    # minconn = maxconn: it closes every connection returned beyond minconn.
    pool = psycopg2.pool.ThreadedConnectionPool(args.size, args.size, **connect_kwargs(db))
    retry_sleep = args.retry_sleep

    def get() -> Any:
        # It raises PoolError when exhausted instead of waiting: callers must retry.
        while True:
            try:
                return pool.getconn()
            except psycopg2.pool.PoolError:
                hub_sleep(retry_sleep)

    return Contender("psycopg2 Threaded+retry", workers, get=get, put=pool.putconn,
                     close=pool.closeall)


def dbutils_pooled_db(db: str, args: argparse.Namespace, workers: int) -> Optional[Contender]:
    if HUB != "threads":
        return None
    from dbutils.pooled_db import PooledDB

    pool = PooledDB(db_module(db), maxconnections=args.size, blocking=True,
                    **connect_kwargs(db))
    return Contender("DBUtils PooledDB", workers, get=pool.connection,
                     put=lambda conn: conn.close(), close=pool.close)


POOLS: list[Callable[[str, argparse.Namespace, int], Optional[Contender]]] = [
    greenpool_raw,
    greenpool_tpooled,
    eventlet_db_pool(tpooled=False),
    eventlet_db_pool(tpooled=True),
    psycopg2_threaded,
    dbutils_pooled_db,
]


def reachable(db: str) -> str:
    """An empty string if the database answers, else why not."""
    set_psycopg2_green(True)
    try:
        close_quietly(db_module(db).connect(**connect_kwargs(db)))
    except Exception as exc:
        return repr(exc)
    return ""


def bench_db(db: str, args: argparse.Namespace, workers: int,
             log: Callable[[str], None]) -> list[Result]:
    contenders = ideal(db, args, workers)
    try:
        for build in POOLS:
            c = build(db, args, workers)
            if c is not None:
                contenders.append(c)
        for c in contenders:
            if db == "postgres":
                set_psycopg2_green(c.green)
            c.prefill(args.size)
            for scenario, sql in SCENARIOS[db].items():
                c.windows[scenario] = Window(sql, c.workers)
            c.start_workers()
        slice_seconds = args.seconds / args.slices
        for k in range(args.slices):
            log(f"  {db}: slice {k + 1} of {args.slices}")
            for scenario in SCENARIOS[db]:
                for c in contenders:
                    c.run_slice(scenario, slice_seconds, db == "postgres")
    finally:
        for c in contenders:
            c.stop()
    results = []
    for scenario in SCENARIOS[db]:
        group = [summarise(db, scenario, c) for c in contenders]
        ideal_qps, ideal_s_qps = group[0].qps, group[1].qps
        for r in group:
            r.x_ideal = r.qps / ideal_qps if ideal_qps else None
            r.x_ideal_s = r.qps / ideal_s_qps if ideal_s_qps else None
            log(f"  {db:8s} {scenario:9s} {r.contender:26s} {r.qps:9.0f} q/s  "
                f"Jain {r.jain:.3f}  starved {r.starved}")
        results.extend(group)
    return results


# -- output ---------------------------------------------------------------------------


def fmt(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


HEADER = (
    f"{'hub':8s} {'contender':26s} {'W':>4s} {'q/s':>7s} {'x ideal':>7s} {'x id-S':>6s} "
    f"{'Jain':>6s} {'ops/worker min/med/max':>23s} {'starved':>7s} "
    f"{'wait ms p50/p99/max':>20s}"
)


def row(r: Result) -> str:
    ops = f"{r.ops_min}/{r.ops_median:g}/{r.ops_max}"
    waits = (
        f"{fmt(r.wait_p50_ms, '.2f')}/{fmt(r.wait_p99_ms, '.1f')}/{fmt(r.wait_max_ms, '.0f')}"
    )
    line = (
        f"{r.hub:8s} {r.contender:26s} {r.workers:4d} {r.qps:7.0f} {fmt(r.x_ideal, '.2f'):>7s} "
        f"{fmt(r.x_ideal_s, '.2f'):>6s} {r.jain:6.3f} {ops:>23s} {r.starved:7d} {waits:>20s}"
    )
    if r.errors:
        line += f"  {r.errors} errors: {r.note}"
    elif r.note:
        line += f"  ({r.note})"
    return line


def print_table(results: list[Result], args: argparse.Namespace) -> None:
    print(
        f"\ncontended checkout + query + return: pools of S={args.size}, {args.seconds:g} s "
        f"per contender in {args.slices} interleaved slices; ratios against the baselines "
        "of the same hub process"
    )
    keys: list[tuple[str, str]] = []
    for r in results:
        if (r.db, r.scenario) not in keys:
            keys.append((r.db, r.scenario))
    for db, scenario in keys:
        print(f"\n{db} / {scenario}")
        print(HEADER)
        for r in results:
            if (r.db, r.scenario) == (db, scenario):
                print(row(r))


def child_argv(args: argparse.Namespace, hub: str, out: str) -> list[str]:
    argv = [sys.executable, __file__, "--hub", hub, "--json", out, "--db", args.db]
    for name in ("seconds", "slices", "workers", "threads", "size", "ideal_cap", "retry_sleep"):
        argv += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    return argv


def run_all_hubs(args: argparse.Namespace) -> None:
    results: list[Result] = []
    for hub in HUBS:
        with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
            print(f"hub {hub} ...", file=sys.stderr, flush=True)
            done = subprocess.run(child_argv(args, hub, out.name), stdout=subprocess.DEVNULL)
            if done.returncode != 0:
                print(f"hub {hub}: failed with exit status {done.returncode}", file=sys.stderr)
                continue
            results.extend(Result(**d) for d in json.load(out))
    print_table(results, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--hub", choices=HUBS,
                        help="measure on this hub (default: each hub in a subprocess)")
    parser.add_argument("--seconds", type=float, default=1.5,
                        help="measured time per contender and scenario (1.5)")
    parser.add_argument("--slices", type=int, default=3,
                        help="interleaved slices the measured time is cut into (3)")
    parser.add_argument("--workers", type=int, default=200, help="green workers (200)")
    parser.add_argument("--threads", type=int, default=32,
                        help="most workers on the threads hub (32)")
    parser.add_argument("--size", type=int, default=8, help="pool max_size S (8)")
    parser.add_argument("--db", choices=("postgres", "mariadb", "both"), default="both")
    parser.add_argument("--ideal-cap", type=int, default=32,
                        help="most dedicated connections for the ideal baseline (32)")
    parser.add_argument("--retry-sleep", type=float, default=0.001,
                        help="psycopg2.pool callers' sleep before retrying (0.001 s)")
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in ("seconds", "slices", "workers", "threads", "size", "ideal_cap", "retry_sleep"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    if args.hub is None:
        run_all_hubs(args)
        return
    workers = args.workers if HUB != "threads" else min(args.workers, args.threads)
    dbs = ("postgres", "mariadb") if args.db == "both" else (args.db,)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    results: list[Result] = []
    for db in dbs:
        why = reachable(db)
        if why:
            log(f"{db}: unreachable, skipped: {why}")
            continue
        results.extend(bench_db(db, args, workers, log))
    if args.json:
        with open(args.json, "w") as out:
            json.dump([asdict(r) for r in results], out)
    else:
        print_table(results, args)


if __name__ == "__main__":
    main()
