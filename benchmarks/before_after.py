"""greenpool before and after a change, measured in the same run, interleaved.

    .venv/bin/python benchmarks/before_after.py              # before = 6839bf4, after = this tree
    .venv/bin/python benchmarks/before_after.py --quick      # smoke run: 3 rounds, short windows
    .venv/bin/python benchmarks/before_after.py --only uncontended --rounds 15
    .venv/bin/python benchmarks/before_after.py --before /tmp/gp-before --after /tmp/gp-after

"before" is a checkout of greenpool (default: a git worktree of 6839bf4, the
code before the core rebuild, made or refreshed under the system temp dir);
"after" is the tree this script lives in unless ``--after`` names another.
Every measurement runs in a subprocess of its own, per hub and per version,
that puts its tree first on ``sys.path`` and checks that ``greenpool`` was
imported from there (the report shows each ``greenpool.__file__``).  The
subprocesses of the two versions alternate round by round (before, after;
after, before; ...) so that both share the machine's state of the moment,
and each figure is the median over rounds.

1. Uncontended ``get()`` + ``put()`` of one connection, per cycle, on the
   eventlet, gevent and threads hubs (each subprocess monkey patched for its
   hub, as an application is), on two drivers:

   * sqlite3 in memory: a driver greenpool has a profile for;
   * a fake driver shaped like psycopg 3 that greenpool has no profile for
     (module ``fakepsycopg3``): ``closed`` and ``info.transaction_status`` are
     Python properties, ``info`` a new object per read, ``commit()`` and
     ``rollback()`` take a lock and run a generator that returns at once when
     no transaction is open, as psycopg 3's do.  This is the path every
     driver without a profile takes.

   In each subprocess eventlet.db_pool's ``RawConnectionPool`` runs on the
   same driver as the reference, in short windows (2,000 cycles) that
   alternate with greenpool's, eventlet.db_pool first and last: each pool's
   cost is the median of its windows, and greenpool / eventlet.db_pool the
   median over greenpool's windows of its cost over that of the two
   eventlet.db_pool windows either side.  Reported per hub and driver: the
   three, each as its median over rounds per version, and after/before per
   round and its median.
   The after/before that the budget reads is that of greenpool / eventlet.db_pool:
   eventlet.db_pool is the same code in both versions, so dividing by it
   cancels the machine's speed of the moment, which can differ between two
   subprocesses seconds apart by more than the budget's 1.3x on a shared
   machine (the eventlet.db_pool rows' own after/before shows by how much).

2. Contention, through ``contended.py`` (beside this script): 200 green
   threads on 10 connections, PostgreSQL and MariaDB, ``SELECT 1`` and the
   2 ms sleeping query, on eventlet and gevent.  Each subprocess runs one
   round of it for one hub and database (``contended.main()`` with
   ``--rounds 1``) restricted to greenpool Raw, the minimal FIFO reference and
   the peer libraries (``--quick``: eventlet.db_pool Raw only), each paired
   with an ideal of its own.  Reported per version: each contender's ratio
   to ideal (median over rounds), starved workers (worst round), after/before
   per round.

Budget lines (PASS / FAIL; TIE where the rounds cannot tell two pools apart),
for "after":

* uncontended get+put at most 1.3x before (every hub; greenpool /
  eventlet.db_pool after over before) and at most 0.6x eventlet.db_pool
  (eventlet hub; the other hubs are shown for information), on sqlite3 and
  on the no-profile path;
* contended, greenpool Raw, every cell (hub, database, query): median ratio to
  ideal within 0.03 of before's; at least 0.80 of ideal on ``SELECT 1`` and
  0.95 on the 2 ms query; no starved worker in any round; ahead of every
  fair peer (a peer library that starved nobody in any round), judged as in
  ``contended.py``: the sign test over paired rounds (``paired.py``), else the
  medians when more than 0.02 apart, else TIE.

Time: a full run (9 rounds) takes about 16 minutes, nearly all of it the
contended part (about 100 s a round); ``--only uncontended`` a minute or two;
``--quick`` about 2.5 minutes.  A child that fails, or is still running after
its timeout (a hang: 300 s contended, 120 s uncontended), is killed and ends
the run with the tail of its stderr.  SQLAlchemy's QueuePool is a peer only
where SQLAlchemy is installed.
"""

from __future__ import annotations

import argparse
import enum
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import types
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BEFORE_COMMIT = "6839bf4"

HUBS = ("eventlet", "gevent", "threads")
CONTENDED_HUBS = ("eventlet", "gevent")
DBS = ("postgres", "mariadb")
QUERIES = ("select", "sleep")
QUERY_LABEL = {"select": "SELECT 1", "sleep": "sleep 2 ms"}
DRIVERS = ("sqlite3", "fake")
DRIVER_LABEL = {"sqlite3": "sqlite3 (profiled)", "fake": "fake psycopg 3 (no profile)"}
RELATIVE = "greenpool / eventlet.db_pool"

#: Contended contenders (parts of contended.py's labels): greenpool Raw, the FIFO
#: reference and the peer libraries.  ``ideal`` always runs.
CONTENDED_ONLY = ("greenpool Raw", "FIFO", "eventlet.db_pool", "psycopg2.pool", "DBUtils",
                  "SQLAlchemy")
GREENPOOL_RAW = "greenpool Raw"

#: The budget.
MAX_VS_BEFORE = 1.3
MAX_VS_EVENTLET = 0.6
MAX_DROP = 0.03
MIN_IDEAL = {"select": 0.80, "sleep": 0.95}
TIE_MARGIN = 0.02  # as contended.TIE_MARGIN


# -- in a child: the tree, the hub ------------------------------------------------------


def patch(hub: str) -> None:
    """Monkey patch this process for ``hub``, as an application on it would be."""
    if hub == "eventlet":
        import eventlet

        eventlet.monkey_patch()
    elif hub == "gevent":
        from gevent import monkey

        monkey.patch_all()


def import_greenpool(tree: str) -> types.ModuleType:
    """Import greenpool from ``tree`` (and nowhere else) and return it."""
    sys.path.insert(0, tree)
    import greenpool

    expected = os.path.join(os.path.realpath(tree), "greenpool", "")
    if not os.path.realpath(greenpool.__file__).startswith(expected):
        raise SystemExit(f"greenpool came from {greenpool.__file__}, not from {tree}")
    return greenpool


# -- the fake psycopg 3 ------------------------------------------------------------------

FAKE_NAME = "fakepsycopg3"  # a module name greenpool has no profile for


class TransactionStatus(enum.IntEnum):
    """psycopg.pq.TransactionStatus."""

    IDLE = 0
    ACTIVE = 1
    INTRANS = 2
    INERROR = 3
    UNKNOWN = 4


class _PGconn:
    """libpq's connection; psycopg 3 reads these through C getters."""

    def __init__(self) -> None:
        self.status = 0  # CONNECTION_OK; 1 is CONNECTION_BAD
        self.transaction_status = 0


class ConnectionInfo:
    __module__ = FAKE_NAME

    def __init__(self, pgconn: _PGconn) -> None:
        self.pgconn = pgconn

    @property
    def transaction_status(self) -> TransactionStatus:
        return TransactionStatus(self.pgconn.transaction_status)


class Cursor:
    __module__ = FAKE_NAME

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._rows: list[tuple[int]] = []

    def execute(self, query: str, params: Any = None) -> Cursor:
        if not self.connection.autocommit:  # psycopg 3 opens a transaction first
            self.connection.pgconn.transaction_status = TransactionStatus.INTRANS
        self._rows = [(1,)]
        return self

    def fetchall(self) -> list[tuple[int]]:
        rows, self._rows = self._rows, []
        return rows

    def close(self) -> None:
        pass


class Connection:
    """The parts of ``psycopg.Connection`` a pool touches, at psycopg 3's Python cost."""

    __module__ = FAKE_NAME

    def __init__(self) -> None:
        self.pgconn = _PGconn()
        self.lock = threading.Lock()
        self.autocommit = False

    @property
    def closed(self) -> bool:
        return self.pgconn.status == 1

    @property
    def broken(self) -> bool:
        return self.closed

    @property
    def info(self) -> ConnectionInfo:
        return ConnectionInfo(self.pgconn)  # a new one per read, as in psycopg 3

    def cursor(self) -> Cursor:
        return Cursor(self)

    def commit(self) -> None:
        with self.lock:
            self._wait(self._end_transaction())

    def rollback(self) -> None:
        with self.lock:
            self._wait(self._end_transaction())

    def close(self) -> None:
        self.pgconn.status = 1

    def _end_transaction(self) -> Any:
        if self.pgconn.transaction_status == TransactionStatus.IDLE:
            return  # no round trip when no transaction is open
        self.pgconn.transaction_status = TransactionStatus.IDLE
        yield  # where psycopg 3 sends COMMIT or ROLLBACK and waits for the answer

    @staticmethod
    def _wait(gen: Any) -> Any:
        try:
            while True:
                next(gen)
        except StopIteration as done:
            return done.value


def fake_psycopg3() -> types.ModuleType:
    """The fake driver's module, registered as ``fakepsycopg3``."""
    module = types.ModuleType(FAKE_NAME)
    module.apilevel, module.threadsafety, module.paramstyle = "2.0", 2, "pyformat"
    error = type("Error", (Exception,), {"__module__": FAKE_NAME})
    database_error = type("DatabaseError", (error,), {"__module__": FAKE_NAME})
    module.Error, module.DatabaseError = error, database_error
    module.Warning = type("Warning", (Exception,), {"__module__": FAKE_NAME})
    module.InterfaceError = type("InterfaceError", (error,), {"__module__": FAKE_NAME})
    for name in ("DataError", "OperationalError", "IntegrityError", "InternalError",
                 "ProgrammingError", "NotSupportedError"):
        setattr(module, name, type(name, (database_error,), {"__module__": FAKE_NAME}))
    module.Connection, module.Cursor = Connection, Cursor
    module.connect = lambda *args, **kwargs: Connection()
    sys.modules[FAKE_NAME] = module
    return module


# -- in a child: the measurements -----------------------------------------------------


def us_per_cycle(cycle: Callable[[], None], cycles: int) -> float:
    start = time.perf_counter()
    for _ in range(cycles):
        cycle()
    return (time.perf_counter() - start) / cycles * 1e6


def getput(pool: Any) -> Callable[[], None]:
    get, put = pool.get, pool.put

    def cycle() -> None:
        put(get())

    return cycle


def uncontended_child(args: argparse.Namespace) -> dict[str, Any]:
    """greenpool and eventlet.db_pool on each driver, in alternating windows."""
    patch(args.hub)
    greenpool = import_greenpool(args.tree)
    import sqlite3

    from eventlet import db_pool

    window, pairs = (1_000, 6) if args.quick else (2_000, 20)
    drivers = {"sqlite3": (sqlite3, {"database": ":memory:"}), "fake": (fake_psycopg3(), {})}
    found: dict[str, Any] = {"greenpool": greenpool.__file__}
    for name, (module, kwargs) in drivers.items():
        mine = getput(greenpool.RawConnectionPool(module, min_size=0, max_size=4,
                                                  hub=args.hub, **kwargs))
        peer = getput(db_pool.RawConnectionPool(module, min_size=0, max_size=4, **kwargs))
        us_per_cycle(mine, 5 * window)  # warm up, open the connection
        us_per_cycle(peer, 5 * window)
        peer_us = [us_per_cycle(peer, window)]
        mine_us = []
        for _ in range(pairs):
            mine_us.append(us_per_cycle(mine, window))
            peer_us.append(us_per_cycle(peer, window))
        # Each greenpool window against the eventlet.db_pool windows either side of it;
        # medians, so that a window the scheduler cut into does not count.
        ratios = [m / ((a + b) / 2) for m, a, b in zip(mine_us, peer_us, peer_us[1:])]
        found[name] = {"greenpool": statistics.median(mine_us),
                       "eventlet.db_pool": statistics.median(peer_us),
                       RELATIVE: statistics.median(ratios)}
    return found


def contended_child(args: argparse.Namespace) -> dict[str, Any]:
    """One round of contended.py for one hub and database, with this tree's greenpool."""
    patch(args.hub)
    greenpool = import_greenpool(args.tree)
    with tempfile.NamedTemporaryFile("r", suffix=".json") as out:
        sys.argv = ["contended.py", "--hub", args.hub, "--db", args.db, "--rounds", "1",
                    "--only", ",".join(CONTENDED_ONLY), "--json", out.name]
        if args.quick:
            sys.argv.append("--quick")
        # contended.py patches again (a no-op) and imports greenpool: the one above.
        import contended

        contended.main()
        records = json.load(out)
    return {"greenpool": greenpool.__file__, "records": records}


# -- the trees ------------------------------------------------------------------------


def git(*argv: str, cwd: str = ROOT) -> str:
    return subprocess.run(["git", "-C", cwd, *argv], check=True, capture_output=True,
                          text=True).stdout.strip()


def before_tree(commit: str) -> str:
    """A git worktree of ``commit`` under the temp dir: made, or refreshed if it moved."""
    path = os.path.join(tempfile.gettempdir(), f"greenpool-before-{commit}")
    wanted = git("rev-parse", f"{commit}^{{commit}}")
    if not os.path.isdir(path):
        git("worktree", "prune")
        git("worktree", "add", "--detach", path, wanted)
        return path
    ours = os.path.realpath(git("rev-parse", "--git-common-dir"))
    theirs = os.path.realpath(os.path.join(path, git("rev-parse", "--git-common-dir", cwd=path)))
    if ours != theirs:
        raise SystemExit(f"{path} exists and is not a worktree of {ROOT}: remove it or "
                         "pass --before")
    if git("rev-parse", "HEAD", cwd=path) != wanted or git("status", "--porcelain",
                                                            "--untracked-files=no", cwd=path):
        git("checkout", "--force", "--detach", wanted, cwd=path)  # in that worktree only
    return path


def describe_tree(path: str) -> str:
    try:
        head = git("rev-parse", "--short", "HEAD", cwd=path)
        dirty = git("status", "--porcelain", "--untracked-files=all", "greenpool", cwd=path)
    except (subprocess.CalledProcessError, FileNotFoundError):
        return path
    return f"{path} (commit {head}{', greenpool/ modified' if dirty else ''})"


# -- running the children ----------------------------------------------------------------

#: Seconds a child may take (a normal one: 1-2 s uncontended, 5-20 s contended).
CHILD_TIMEOUT = {"uncontended": 120, "contended": 300}


def log(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass
class Runner:
    """Runs child measurements and remembers where each version's greenpool came from."""

    trees: dict[str, str]  # version -> path
    quick: bool
    imported: dict[str, str] = field(default_factory=dict)  # version -> greenpool.__file__
    seconds: dict[str, float] = field(default_factory=dict)  # part -> time spent

    def run(self, part: str, version: str, hub: str, db: str = "") -> dict[str, Any]:
        tree = self.trees[version]
        argv = [sys.executable, os.path.abspath(__file__), "--child", part, "--tree", tree,
                "--hub", hub]
        if db:
            argv += ["--db", db]
        if self.quick:
            argv.append("--quick")
        env = dict(os.environ, PYTHONPATH=tree, PYTHONWARNINGS="ignore")
        started = time.monotonic()
        what = f"{part} child ({version}: {tree}, hub {hub} {db})"
        try:
            done = subprocess.run(argv, env=env, capture_output=True, text=True,
                                  timeout=CHILD_TIMEOUT[part])
        except subprocess.TimeoutExpired as exc:  # run() has killed it
            raise SystemExit(f"{what} still running after {exc.timeout:g} s, killed:\n"
                             f"{tail(exc.stderr)}")
        spent = time.monotonic() - started
        self.seconds[part] = self.seconds.get(part, 0.0) + spent
        if done.returncode != 0:
            raise SystemExit(f"{what} failed, exit status {done.returncode}:\n"
                             f"{tail(done.stderr)}")
        found = json.loads(done.stdout.strip().splitlines()[-1])
        self.imported.setdefault(version, found["greenpool"])
        log(f"    {version:6s} {hub:8s} {db:8s} {spent:5.1f} s")
        return found


def tail(output: Any, lines: int = 25) -> str:
    if isinstance(output, bytes):
        output = output.decode(errors="replace")
    return "\n".join((output or "").strip().splitlines()[-lines:])


def orders(rounds: int) -> list[tuple[str, str]]:
    """Version order per round: before, after; after, before; ..."""
    return [("before", "after") if r % 2 == 0 else ("after", "before") for r in range(rounds)]


# -- summarising ----------------------------------------------------------------------


def med(values: list[Optional[float]]) -> Optional[float]:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def fmt(value: Optional[float], spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def per_round(after: list[Optional[float]], before: list[Optional[float]]) -> list[Optional[float]]:
    return [a / b if a is not None and b else None for a, b in zip(after, before)]


def rounds_text(values: list[Optional[float]]) -> str:
    return " ".join(fmt(v) for v in values)


@dataclass
class Verdict:
    item: str
    ok: Optional[bool]  # None: TIE
    detail: str

    def line(self) -> str:
        word = "TIE" if self.ok is None else "PASS" if self.ok else "FAIL"
        return f"  {word:4s}  {self.item}\n        {self.detail}"


def worst(cells: dict[str, Optional[float]], lowest: bool) -> tuple[str, Optional[float]]:
    present = {k: v for k, v in cells.items() if v is not None}
    if not present:
        return "-", None
    key = (min if lowest else max)(present, key=lambda k: present[k])
    return key, present[key]


# -- uncontended ----------------------------------------------------------------------


def run_uncontended(runner: Runner, rounds: int) -> list[Verdict]:
    # samples[version][hub] = one child's figures per round
    samples: dict[str, dict[str, list[dict[str, Any]]]] = {"before": {}, "after": {}}
    for r, order in enumerate(orders(rounds)):
        log(f"uncontended, round {r + 1} of {rounds}")
        for hub in HUBS:
            for version in order:
                samples[version].setdefault(hub, []).append(runner.run("uncontended", version,
                                                                       hub))

    def series(version: str, hub: str, driver: str, row: str) -> list[Optional[float]]:
        """Per round: us per cycle of one pool, or greenpool's over eventlet.db_pool's."""
        return [s[driver][row] for s in samples[version][hub]]

    def after_before(hub: str, driver: str, row: str) -> list[Optional[float]]:
        return per_round(series("after", hub, driver, row), series("before", hub, driver, row))

    print(f"\nuncontended get()+put(): medians over {rounds} rounds; after/before per round "
          "in round order.\nThe ratio rows come from alternating windows in each subprocess: "
          "their after/before is greenpool's\nown, the machine's speed of the moment cancelled "
          "(eventlet.db_pool is the same code in both\nversions: its own after/before is that "
          "speed's drift between subprocesses)")
    print(f"  {'hub':8s} {'driver':28s} {'':30s} {'before':>6s} {'after':>6s} {'a/b':>5s}  "
          "per-round after/before")
    for hub in HUBS:
        for driver in DRIVERS:
            for i, row in enumerate(("greenpool", "eventlet.db_pool", RELATIVE)):
                label = row if row == RELATIVE else f"{row}, us per cycle"
                ratios = after_before(hub, driver, row)
                print(f"  {hub if i == 0 else '':8s} {DRIVER_LABEL[driver] if i == 0 else '':28s} "
                      f"{label:30s} {fmt(med(series('before', hub, driver, row))):>6s} "
                      f"{fmt(med(series('after', hub, driver, row))):>6s} "
                      f"{fmt(med(ratios)):>5s}  {rounds_text(ratios)}")

    verdicts = []
    for driver in DRIVERS:
        what = "sqlite3 (profiled)" if driver == "sqlite3" else "no-profile path (fake psycopg 3)"
        slowdown = {hub: med(after_before(hub, driver, RELATIVE)) for hub in HUBS}
        raw = {hub: med(after_before(hub, driver, "greenpool")) for hub in HUBS}
        hub, value = worst(slowdown, lowest=False)
        verdicts.append(Verdict(
            f"uncontended get+put <= {MAX_VS_BEFORE:g}x before, {what}",
            value is not None and value <= MAX_VS_BEFORE,
            f"worst {hub} x{fmt(value)}: " + ", ".join(
                f"{h} x{fmt(v)} (us: x{fmt(raw[h])})" for h, v in slowdown.items())))
        ratio = {hub: med(series("after", hub, driver, RELATIVE)) for hub in HUBS}
        before = med(series("before", "eventlet", driver, RELATIVE))
        verdicts.append(Verdict(
            f"uncontended get+put <= {MAX_VS_EVENTLET:g}x eventlet.db_pool, {what}",
            ratio["eventlet"] is not None and ratio["eventlet"] <= MAX_VS_EVENTLET,
            f"eventlet x{fmt(ratio['eventlet'])} (before x{fmt(before)}); for information: "
            f"gevent x{fmt(ratio['gevent'])}, threads x{fmt(ratio['threads'])}"))
    return verdicts


# -- contended ------------------------------------------------------------------------


@dataclass
class Series:
    """One contender in one cell (hub, database, query) of one version, round by round."""

    kind: str = ""  # contended.py's contender kind: "greenpool", "peer", ...
    ratios: list[Optional[float]] = field(default_factory=list)  # to ideal
    starved: list[int] = field(default_factory=list)
    errors: int = 0

    @property
    def ratio(self) -> Optional[float]:
        return med(self.ratios)

    @property
    def fair(self) -> bool:
        return not self.errors and not any(self.starved) and None not in self.ratios


Cells = dict[tuple[str, str, str], dict[str, Series]]  # (hub, db, query) -> label -> series


def collect(cells: Cells, hub: str, records: list[dict[str, Any]]) -> None:
    for rec in records:
        if rec["kind"] == "ideal":
            continue
        for query in QUERIES:
            for sample in rec["samples"].get(query, []):
                series = cells.setdefault((hub, rec["db"], query), {}).setdefault(
                    rec["label"], Series(rec["kind"]))
                series.ratios.append(sample["ratio"])
                series.starved.append(sample["starved"])
                series.errors += sample["errors"]


def against_fair_peers(ours: Series, peers: dict[str, Series]) -> tuple[Optional[bool], str]:
    """Ahead of every fair peer (True), behind one (False), not told apart (None)."""
    import paired  # beside this script

    fair = {label: s for label, s in peers.items() if s.kind == "peer" and s.fair}
    if not fair:
        return True, "no fair peer"
    judged = []
    for label, peer in fair.items():
        comparison = paired.compare(ours.ratios, peer.ratios)
        verdict = comparison.verdict
        if verdict is None:
            margin = (ours.ratio or 0.0) - (peer.ratio or 0.0)
            verdict = margin > 0 if abs(margin) > TIE_MARGIN else None
        judged.append((verdict, comparison, label, peer))
    rank = {False: 0, None: 1, True: 2}
    verdict, comparison, label, peer = min(judged, key=lambda j: (rank[j[0]], -j[1].p_ahead))
    return verdict, f"{label} {fmt(peer.ratio)}, {comparison.describe()}"


def run_contended(runner: Runner, rounds: int) -> list[Verdict]:
    cells: dict[str, Cells] = {"before": {}, "after": {}}
    for r, order in enumerate(orders(rounds)):
        log(f"contended, round {r + 1} of {rounds}")
        for hub in CONTENDED_HUBS:
            for db in DBS:
                for version in order:
                    found = runner.run("contended", version, hub, db)
                    collect(cells[version], hub, found["records"])

    print(f"\ncontended (200 green threads, 10 connections): ratio to ideal, medians over "
          f"{rounds} rounds; starved: worst round;\nafter/before per round in round order "
          "(each version's peers ran in that version's subprocesses)")
    keys = sorted(set(cells["before"]) | set(cells["after"]),
                  key=lambda k: (CONTENDED_HUBS.index(k[0]), DBS.index(k[1]),
                                 QUERIES.index(k[2])))
    for key in keys:
        hub, db, query = key
        print(f"\n  {hub} / {db} / {QUERY_LABEL[query]}")
        print(f"  {'contender':28s} {'before':>6s} {'after':>6s} {'a-b':>6s} "
              f"{'starved b/a':>11s}  per-round after/before")
        labels = list(cells["after"].get(key, {}))
        labels += [x for x in cells["before"].get(key, {}) if x not in labels]
        for label in labels:
            before = cells["before"].get(key, {}).get(label, Series())
            after = cells["after"].get(key, {}).get(label, Series())
            drop = (after.ratio - before.ratio
                    if after.ratio is not None and before.ratio is not None else None)
            starved = (f"{max(before.starved, default=0)}/{max(after.starved, default=0)}")
            errors = (f"  errors {before.errors}/{after.errors}"
                      if before.errors or after.errors else "")
            print(f"  {label:28s} {fmt(before.ratio):>6s} {fmt(after.ratio):>6s} "
                  f"{fmt(drop, '+.2f'):>6s} {starved:>11s}  "
                  f"{rounds_text(per_round(after.ratios, before.ratios))}{errors}")

    drops: dict[str, Optional[float]] = {}
    floors: dict[str, dict[str, Optional[float]]] = {"select": {}, "sleep": {}}
    starved: dict[str, int] = {}
    versus: list[tuple[str, Optional[bool], str]] = []
    for key in keys:
        name = " ".join(key[:2]) + " " + QUERY_LABEL[key[2]]
        before = cells["before"].get(key, {}).get(GREENPOOL_RAW)
        after = cells["after"].get(key, {}).get(GREENPOOL_RAW)
        if before is None or after is None:
            continue
        drops[name] = (after.ratio - before.ratio
                       if after.ratio is not None and before.ratio is not None else None)
        floors[key[2]][name] = after.ratio
        starved[name] = max(after.starved, default=0)
        ahead, why = against_fair_peers(after, cells["after"][key])
        versus.append((name, ahead, why))

    verdicts = []
    name, value = worst(drops, lowest=True)
    verdicts.append(Verdict(f"contended: every cell within {MAX_DROP:g} of before",
                            bool(drops) and None not in drops.values() and value is not None
                            and value >= -MAX_DROP,
                            f"worst {name} {fmt(value, '+.2f')}"))
    for query, need in MIN_IDEAL.items():
        name, value = worst(floors[query], lowest=True)
        verdicts.append(Verdict(f"contended: >= {need:.2f} of ideal on {QUERY_LABEL[query]}",
                                bool(floors[query]) and value is not None and value >= need,
                                f"lowest {name} {fmt(value)}"))
    hungry = {name: n for name, n in starved.items() if n}
    verdicts.append(Verdict("contended: no starved worker", bool(starved) and not hungry,
                            ", ".join(f"{k}: {n}" for k, n in hungry.items()) or "none"))
    behind = [(n, why) for n, ok, why in versus if ok is False]
    ties = [(n, why) for n, ok, why in versus if ok is None]
    ok = False if behind or not versus else None if ties else True
    shown = behind or ties
    verdicts.append(Verdict("contended: ahead of every fair peer", ok,
                            "; ".join(f"{n}: {why}" for n, why in shown)
                            or f"all {len(versus)} cells"))
    return verdicts


# -- main -----------------------------------------------------------------------------


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", choices=("uncontended", "contended"), required=True)
    parser.add_argument("--tree", required=True)
    parser.add_argument("--hub", choices=HUBS, required=True)
    parser.add_argument("--db", choices=DBS)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    found = (uncontended_child if args.child == "uncontended" else contended_child)(args)
    log(f"greenpool imported from {found['greenpool']}")
    print(json.dumps(found))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=None,
                        help="interleaved rounds (9; --quick: 3)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 3 rounds, short windows, contended.py's --quick "
                        "contenders (eventlet.db_pool the only peer)")
    parser.add_argument("--only", choices=("uncontended", "contended"),
                        help="run one part only")
    parser.add_argument("--before", help="the 'before' tree (default: a git worktree of "
                        f"{BEFORE_COMMIT} under {tempfile.gettempdir()}, made or refreshed)")
    parser.add_argument("--before-commit", default=BEFORE_COMMIT,
                        help=f"the commit of the default 'before' worktree ({BEFORE_COMMIT})")
    parser.add_argument("--after", default=ROOT, help=f"the 'after' tree (default: {ROOT})")
    args = parser.parse_args()
    rounds = args.rounds or (3 if args.quick else 9)
    if rounds <= 0:
        parser.error("--rounds must be positive")
    before = os.path.abspath(args.before) if args.before else before_tree(args.before_commit)
    trees = {"before": before, "after": os.path.abspath(args.after)}
    for version, tree in trees.items():
        if not os.path.isfile(os.path.join(tree, "greenpool", "__init__.py")):
            parser.error(f"the {version} tree {tree} has no greenpool/__init__.py")
    # A SIGTERM ends the run like Ctrl-C: subprocess.run() then kills the running child.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    runner = Runner(trees, args.quick)
    started = time.monotonic()
    verdicts = []
    if args.only != "contended":
        verdicts += run_uncontended(runner, rounds)
    if args.only != "uncontended":
        verdicts += run_contended(runner, rounds)
    spent = time.monotonic() - started
    print(f"\nbefore: {describe_tree(trees['before'])}\n  imported {runner.imported['before']}")
    print(f"after:  {describe_tree(trees['after'])}\n  imported {runner.imported['after']}")
    notes = [f"{rounds} round{'s' if rounds > 1 else ''}"]
    if args.quick:
        notes.append("--quick: a smoke run")
    if rounds < 5:
        notes.append("fewer than 5 rounds: the sign test cannot decide")
    print(f"\nbudget, for after ({'; '.join(notes)}):")
    for verdict in verdicts:
        print(verdict.line())
    parts = ", ".join(f"{part} {seconds / 60:.1f} min" for part, seconds in runner.seconds.items())
    print(f"\ntook {spent / 60:.1f} min ({parts})")


if __name__ == "__main__":
    if "--child" in sys.argv:
        child_main(sys.argv[1:])
    else:
        main()
