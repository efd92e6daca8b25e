"""A seeded soak of the connection pool on the fake driver, on every hub.

10,000 checkouts per seed by 64 workers on ``max_size=8``, with faults drawn
from ``random.Random(seed)``: 3 % connect errors, 2 % connects slower than
``connect_timeout``, 3 % mid-query disconnects, 5 % caller deadlines (a hub
timeout around the use on green hubs, a short ``get(timeout)`` on threads) and
0.5 % kills (green hubs).  Connects are the pool's own business: their
failures must never reach a caller (the pool retries while callers wait), so a
caller sees only its own faults.  Afterwards nothing may be in use or leaked,
and ``max_size`` checkouts must succeed, on ``max_size`` distinct connections;
during the run no raw connection may ever be held by two workers.

:func:`run_soak` is also what ``benchmarks/fault_report.py`` runs.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

import pytest

from greenpool import PoolTimeout, RawConnectionPool, TpooledConnectionPool
from greenpool.hubs import Hub
from tests.support.fakedb import make_fakedb
from tests.support.tasks import Spawned, wait_until

pytestmark = pytest.mark.timeout(600)

SEEDS = range(20)
CHECKOUTS = 10_000
WORKERS = 64
MAX_SIZE = 8
CONNECT_TIMEOUT = 0.02
#: Short back-off: a soak with 5 % failed connects must not spend its time waiting.
RECONNECT_BACKOFF = (0.001, 0.01)
#: Generous: a request without an injected deadline that waits this long is a stall.
REQUEST_TIMEOUT = 10.0

P_CONNECT_ERROR = 0.03
P_SLOW_CONNECT = 0.02
P_DISCONNECT = 0.03
P_DEADLINE = 0.05
P_KILL = 0.005
MAX_HOLD = 0.001  # seconds a worker keeps its connection ("query time")
MAX_DEADLINE = 0.002


class CallerDeadline(BaseException):
    """Raised into a green worker by ``hub.timeout``, like an eventlet/gevent Timeout."""


@dataclass
class SoakResult:
    """What one soak run saw; ``problems`` lists everything that must not happen."""

    hub: str
    seed: int
    pool: str
    elapsed: float = 0.0
    outcomes: Counter = field(default_factory=Counter)
    double_handouts: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    invariant_breaks: list = field(default_factory=list)
    leaked_slots: int = 0
    in_use_at_end: int = 0
    stray_connections: int = 0
    final_checkouts: int = 0
    stats: Any = None

    @property
    def problems(self) -> list:
        found = [f"{n} double hand-outs" for n in [len(self.double_handouts)] if n]
        found += [f"unexpected {e}" for e in self.unexpected[:5]]
        found += self.invariant_breaks[:5]
        if self.leaked_slots:
            found.append(f"{self.leaked_slots} leaked slots")
        if self.in_use_at_end:
            found.append(f"{self.in_use_at_end} connections still in use")
        if self.stray_connections:
            found.append(f"{self.stray_connections} open connections outside the pool")
        if self.final_checkouts != MAX_SIZE:
            found.append(f"only {self.final_checkouts} of {MAX_SIZE} final checkouts")
        return found


class _Soak:
    def __init__(
        self, hub: Hub, seed: int, pool_cls: type, checkouts: int, workers: int
    ) -> None:
        self.hub = hub
        self.seed = seed
        self.checkouts = checkouts
        self.workers = workers
        self.db = db = make_fakedb()
        self.connect_rng = random.Random(f"connect/{seed}")
        db.connect_hook = self._connect_fault
        self.pool = pool_cls(
            db,
            max_size=MAX_SIZE,
            connect_timeout=CONNECT_TIMEOUT,
            reconnect_backoff=RECONNECT_BACKOFF,
            hub=hub,
            name=f"soak-{seed}",
        )
        self.result = SoakResult(hub.name, seed, pool_cls.__name__)
        self.holders: dict[int, int] = {}
        self.issued = 0
        self.lock = hub.lock()
        self.tasks: dict[int, Spawned] = {}

    # -- faults ------------------------------------------------------------------------

    def _connect_fault(self) -> None:
        r = self.connect_rng.random()
        if r < P_CONNECT_ERROR:
            raise self.db.OperationalError("soak: connect refused")
        if r < P_CONNECT_ERROR + P_SLOW_CONNECT:
            self.db.sleep(CONNECT_TIMEOUT * 3)  # green: interrupted; OS thread: arrives late

    def _ticket(self) -> bool:
        with self.lock:
            if self.issued >= self.checkouts:
                return False
            self.issued += 1
            return True

    # -- workers -----------------------------------------------------------------------

    def worker(self, me: int) -> None:
        rng = random.Random(f"worker/{self.seed}/{me}")
        while self._ticket():
            self.one_checkout(rng, me)

    def one_checkout(self, rng: random.Random, me: int) -> None:
        hub = self.hub
        r = rng.random()
        fault = None
        if r < P_DISCONNECT:
            fault = "disconnect"
        elif r < P_DISCONNECT + P_DEADLINE:
            fault = "deadline"
        elif r < P_DISCONNECT + P_DEADLINE + P_KILL and hub.green:
            fault = "kill"
        hold = rng.random() * MAX_HOLD
        outcome = self.result.outcomes
        try:
            if fault == "deadline" and hub.green:
                with hub.timeout(rng.random() * MAX_DEADLINE, CallerDeadline()):
                    self.use(me, hold, fault, REQUEST_TIMEOUT)
            elif fault == "deadline":
                self.use(me, hold, fault, rng.random() * MAX_DEADLINE)
            else:
                if fault == "kill":
                    hub.spawn_after(rng.random() * MAX_DEADLINE, self.tasks[me].kill)
                self.use(me, hold, fault, REQUEST_TIMEOUT)
            outcome["ok"] += 1
        except CallerDeadline:
            outcome["deadline"] += 1
        except PoolTimeout as exc:
            if fault != "deadline":
                self.result.unexpected.append(f"stalled request: {exc!r}")
            outcome["pool timeout"] += 1
        except self.db.OperationalError as exc:
            outcome["disconnect"] += 1
            if fault != "disconnect":  # a connect error reached a caller, say
                self.result.unexpected.append(repr(exc))
        except Exception as exc:  # recorded: the test fails on it
            self.result.unexpected.append(repr(exc))

    def use(self, me: int, hold: float, fault: Optional[str], timeout: float) -> None:
        with self.pool.item(timeout) as conn:
            raw = self.pool.raw_connection(conn)
            key = id(raw)
            other = self.holders.get(key)
            if other is not None:
                self.result.double_handouts.append((raw.id, other, me))
            self.holders[key] = me
            try:
                cursor = conn.cursor()
                if fault == "disconnect":
                    raw.disconnect()  # the server drops the connection mid-query
                cursor.execute("SELECT 1")
                if hold:
                    self.hub.sleep(hold)
                if cursor.fetchall() != [(1,)]:
                    self.result.unexpected.append("wrong result")
            finally:
                if self.holders.get(key) == me:
                    del self.holders[key]

    # -- the run -------------------------------------------------------------------------

    def check_invariants(self) -> None:
        stats = self.pool.stats()
        if not stats.size == stats.idle + stats.in_use + stats.creating <= MAX_SIZE:
            self.result.invariant_breaks.append(f"sizes: {stats}")
        # On a green hub nothing runs between these reads, so the holders are exact.
        if self.hub.green and len(self.holders) > stats.in_use:
            self.result.invariant_breaks.append(
                f"{len(self.holders)} holders but {stats.in_use} in use"
            )

    def supervise(self) -> None:
        """Run the workers; replace killed ones while checkouts remain."""
        hub = self.hub
        next_id = 0
        for _ in range(self.workers):
            self.tasks[next_id] = Spawned(hub, self.worker, next_id)
            next_id += 1
        while self.tasks:
            hub.sleep(0.005)
            self.check_invariants()
            for key, task in list(self.tasks.items()):
                if not task.done.is_set():
                    continue
                del self.tasks[key]
                if task.error is None:
                    continue
                if isinstance(task.error, hub.killed):
                    self.result.outcomes["killed"] += 1
                    with self.lock:
                        more = self.issued < self.checkouts
                    if more:
                        self.tasks[next_id] = Spawned(hub, self.worker, next_id)
                        next_id += 1
                else:
                    self.result.unexpected.append(f"worker died: {task.error!r}")

    def finish(self) -> None:
        hub, pool, db, result = self.hub, self.pool, self.db, self.result
        db.connect_hook = None
        # Connects abandoned in OS threads arrive late and are closed then.
        try:
            wait_until(hub, lambda: len(db.open_connections()) == pool.current_size, 5)
        except AssertionError:
            pass
        stats = pool.stats()
        result.stats = stats
        result.in_use_at_end = stats.in_use + stats.creating
        result.leaked_slots = MAX_SIZE - pool.free()
        result.stray_connections = len(db.open_connections()) - pool.current_size
        if stats.opened - stats.closed != stats.size:
            result.invariant_breaks.append(f"opened - closed != size: {stats}")
        held = []
        try:
            for _ in range(MAX_SIZE):  # missing connections are opened meanwhile
                held.append(pool.get(timeout=REQUEST_TIMEOUT))
        except Exception as exc:  # reported through final_checkouts
            result.unexpected.append(f"final checkout: {exc!r}")
        result.final_checkouts = len({id(pool.raw_connection(conn)) for conn in held})
        for conn in held:
            pool.put(conn)
        pool.close()

    def run(self) -> SoakResult:
        start = self.hub.monotonic()
        try:
            self.supervise()
        finally:
            self.finish()
        self.result.elapsed = self.hub.monotonic() - start
        return self.result


def run_soak(
    hub: Hub,
    seed: int,
    pool_cls: type = RawConnectionPool,
    checkouts: int = CHECKOUTS,
    workers: int = WORKERS,
) -> SoakResult:
    """One seeded soak run; see the module docstring."""
    return _Soak(hub, seed, pool_cls, checkouts, workers).run()


def _check(result: SoakResult, hub: Hub) -> None:
    assert result.problems == [], result.problems
    outcomes = result.outcomes
    total = sum(v for k, v in outcomes.items() if k != "killed")
    assert total + outcomes["killed"] == CHECKOUTS, outcomes  # each checkout ends somehow
    # Every kind of fault really happened: the callers' own ...
    assert outcomes["ok"] > CHECKOUTS * 0.7, outcomes
    assert outcomes["disconnect"] > 0, outcomes
    assert outcomes["deadline" if hub.green else "pool timeout"] > 0, outcomes
    if hub.green:
        assert outcomes["killed"] > 0, outcomes
    # ... and the connects' (which no caller saw).
    assert result.stats.connect_failures > result.stats.connect_timeouts > 0, result.stats


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_soak_raw(hub, seed):
    _check(run_soak(hub, seed), hub)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS[:3])
def test_soak_tpooled(green_hub, seed):
    # On the threads hub a tpooled pool makes its calls in place, as the raw one does.
    _check(run_soak(green_hub, seed, TpooledConnectionPool), green_hub)
