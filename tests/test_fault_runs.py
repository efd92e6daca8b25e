"""Acceptance tests for the pool's fault behaviour: connect faults fail no caller that
can still wait, and nothing a caller does to its own checkout loses a slot.

The contract (design.md, "Revisions after the first build"), through the public API:

* A ``get()`` that finds nothing idle queues first come, first served, and the pool
  opens connections in the background, up to ``max_size``.  The caller gets whichever
  comes first: a returned connection or a new one.
* A failed or timed-out connect backs off and is retried while anyone waits; it fails
  no caller whose own timeout has not run out.  When it runs out the caller gets
  ``PoolTimeout``, whose message says how long it waited, what the pool holds (its
  connections in use and idle) and the last connect error's text (never the
  password), with that error chained as ``__cause__``.
* ``connect_timeout`` bounds each attempt; a connection that arrives after its attempt
  timed out is closed.
* No slot is lost and no connection is handed to two users, whatever interrupts a
  caller: a hub ``Timeout``, ``kill()``, an exception.

The focused cases come first; :func:`test_faulty_run_loses_nothing_and_fails_nobody_early`
is the seeded 5,000-checkout run (kills and hub Timeouts on the green hubs only: they
cannot interrupt an OS thread).  Every test runs on every hub (one process per hub, see
tests/hub_pytest.py) and for both RawConnectionPool and TpooledConnectionPool.
Set GREENPOOL_FAULT_SEED to replay the run with another seed.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

import pytest

from greenpool import PoolTimeout
from tests.conftest import SECRET
from tests.support.connect_faults import ConnectFaults
from tests.support.tasks import Spawned, wait_until

SEED = int(os.environ.get("GREENPOOL_FAULT_SEED", "20250101"))
#: For anything that only has to happen "eventually" (a late connect closing, growth).
SETTLE = 15.0


def timer_slack(timeout: float) -> float:
    """How much earlier than its timeout (by time.monotonic) a wait may end and still
    count as "ran out".  Hub timers are not exact: gevent's (libev's) run from the
    loop's cached time, which lags by however long the loop's current turn has been
    running, so under load a timed wait can end tens of milliseconds early.  The
    failures this file looks for come far earlier: at once, or at connect_timeout."""
    return max(0.05, 0.2 * timeout)


# -- shared checks -----------------------------------------------------------------------


def connection_id(conn: Any) -> int:
    """The fake driver's id of the connection behind ``conn``, asked through DB-API."""
    cursor = conn.cursor()
    try:
        cursor.execute("SELECT CONNECTION_ID()")
        return int(cursor.fetchone()[0])
    finally:
        cursor.close()


def settle(pool: Any, db: Any, hub: Any) -> None:
    """Wait until nobody waits, nothing is being opened, and every connection the fake
    driver still has open is one the pool counts (late arrivals closed)."""

    def settled() -> bool:
        s = pool.stats()
        return (
            s.waiting == 0
            and s.creating == 0
            and s.in_use == 0
            and len(db.open_connections()) == s.size
        )

    try:
        wait_until(hub, settled, timeout=SETTLE)
    except AssertionError:
        raise AssertionError(
            f"pool did not settle within {SETTLE} s: {pool.stats()}; "
            f"fake driver has {len(db.open_connections())} connections open"
        ) from None


def pool_problems(pool: Any, db: Any, hub: Any) -> list[str]:
    """What is wrong with a pool that should be whole and idle (empty list: nothing).

    Nothing in use, ``size == idle + in_use + creating <= max_size``, no more fake
    connections open than ``max_size``, every open fake connection held by the pool,
    and every slot usable: ``max_size`` checkouts held at once, each within a generous
    timeout, on distinct open connections.
    """
    problems = []
    try:
        settle(pool, db, hub)
    except AssertionError as exc:
        problems.append(str(exc))
    s = pool.stats()
    if s.size != s.idle + s.in_use + s.creating:
        problems.append(f"size != idle + in_use + creating: {s}")
    if s.in_use or s.waiting:
        problems.append(f"connections in use or callers waiting after the run: {s}")
    if s.size > s.max_size:
        problems.append(f"size above max_size: {s}")
    if len(db.open_connections()) > s.max_size:
        problems.append(
            f"{len(db.open_connections())} fake connections open, max_size {s.max_size}"
        )
    held = []
    try:
        for _ in range(s.max_size):
            held.append(pool.get(timeout=SETTLE))
    except BaseException as exc:  # reported with the rest
        problems.append(
            f"only {len(held)} of max_size={s.max_size} checkouts succeeded at once: "
            f"{type(exc).__name__}: {exc} ({pool.stats()})"
        )
    try:
        ids = [connection_id(conn) for conn in held]
    except Exception as exc:  # reported with the rest
        problems.append(f"a connection checked out after the run does not work: {exc!r}")
        ids = []
    try:
        if len(set(ids)) != len(ids):
            problems.append(f"one connection handed out twice at once: ids {sorted(ids)}")
        stray = [c for c in db.open_connections() if c.id not in ids]
        if stray and len(ids) == s.max_size:
            problems.append(
                "fake connections open but not in the pool (id, queries run on it): "
                f"{[(c.id, len(c.queries)) for c in stray]}"
            )
    finally:
        for conn in held:
            pool.put(conn)
    # Connections past max_age are closed as they come back: fewer may be left.
    s = pool.stats()
    if s.in_use or s.size != s.idle + s.creating or s.size > len(held):
        problems.append(f"after giving the {len(held)} back: {s}")
    return problems


def check_pool_timeout(exc: BaseException, timeout: float, waited: float) -> list[str]:
    """A PoolTimeout is due only once the caller's own timeout ran out, never names the
    password, and is a PoolTimeout (not a connect error, not DatabaseUnavailable)."""
    problems = []
    if waited < timeout - timer_slack(timeout):
        problems.append(
            f"{type(exc).__name__} after {waited:.3f} s of a {timeout:.3f} s timeout: {exc}"
        )
    if SECRET in str(exc) or SECRET in repr(exc.__cause__):
        problems.append(f"the password shows in {type(exc).__name__}: {exc}")
    return problems


# -- focused cases -----------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_connect_error_fails_no_caller_that_can_still_wait(make_pool, db, hub):
    """The database refuses connects for a while; a caller with a long timeout gets a
    connection once it is back, not the connect error."""
    pool = make_pool(max_size=2, connect_timeout=1, reconnect_backoff=(0.01, 0.1))
    db.outage = True
    outage_over = hub.spawn_after(0.3, setattr, db, "outage", False)
    try:
        conn = pool.get(timeout=SETTLE)
    finally:
        outage_over.cancel()
        db.outage = False
    try:
        # It waited through at least one refused connect.
        assert db.connect_attempts > db.connects, (db.connect_attempts, db.connects)
        connection_id(conn)  # a working connection
    finally:
        pool.put(conn)
    assert pool_problems(pool, db, hub) == []


@pytest.mark.timeout(60)
def test_pool_timeout_names_the_wait_the_pool_and_the_last_connect_error(make_pool, db, hub):
    """Connects keep failing: the caller waits out its own timeout, then gets a
    PoolTimeout saying how long it waited, what the pool holds and the last connect
    error (chained as __cause__), and not the password."""
    pool = make_pool(max_size=2, connect_timeout=1, reconnect_backoff=(0.01, 0.05))
    held = pool.get(timeout=5)  # the pool holds one connection, in use
    db.outage = True
    timeout = 0.3
    started = hub.monotonic()
    try:
        with pytest.raises(PoolTimeout) as info:
            pool.get(timeout=timeout)
        waited = hub.monotonic() - started
    finally:
        db.outage = False
    exc = info.value
    message = str(exc)
    assert check_pool_timeout(exc, timeout, waited) == []
    assert db.connect_attempts >= 2, "the pool never tried to open a connection"
    # How long it waited: a number of seconds at least about the timeout.
    seconds = [float(m) for m in re.findall(r"(\d+(?:\.\d+)?)\s*(?:s|sec|seconds)\b", message)]
    assert any(s >= timeout - timer_slack(timeout) for s in seconds), (
        f"no wait of about {timeout} s in {message!r}"
    )
    # What the pool holds: its connections in use and idle.
    assert re.search(r"\bin use\b", message) and re.search(r"\bidle\b", message), message
    # The last connect error: its text, and the exception itself as the cause.
    assert "fakedb: server unreachable" in message, message
    assert isinstance(exc.__cause__, db.OperationalError), repr(exc.__cause__)
    pool.put(held)
    assert pool_problems(pool, db, hub) == []


@pytest.mark.timeout(60)
def test_a_connection_that_arrives_after_its_connect_timed_out_is_closed(make_pool, db, hub):
    """The first connect attempt outlasts connect_timeout: the caller is served by a
    retry within its own timeout, and the late connection (if the driver ever makes it)
    is closed, not leaked."""
    faults = ConnectFaults(db, script=[(0.6, False)]).install()
    pool = make_pool(max_size=2, connect_timeout=0.1, reconnect_backoff=(0.01, 0.05))
    conn = pool.get(timeout=SETTLE)
    try:
        assert faults.attempts >= 2, "served by the attempt that timed out"
        connection_id(conn)
    finally:
        pool.put(conn)
    # The late connection (made in an OS thread: tpooled, or the threads hub) comes
    # 0.6 s after its attempt began; once made, the pool must close it.  A green
    # connect (raw, eventlet/gevent) is interrupted instead and makes none.
    wait_until(hub, lambda: faults.in_flight == 0, timeout=SETTLE)
    hub.sleep(0.05)  # from the hook's end to the fake's connection object
    assert pool_problems(pool, db, hub) == []


@pytest.mark.timeout(60)
def test_a_returned_connection_serves_a_waiter_before_a_slow_connect(make_pool, db, hub):
    """Room to grow, but connecting is slow: the waiter gets the connection another
    caller returns meanwhile, and the new one joins the pool (or is closed) later."""
    faults = ConnectFaults(db, script=[(0.0, False), (3.0, False)]).install()
    pool = make_pool(max_size=2, connect_timeout=10)
    first = pool.get(timeout=5)
    first_id = connection_id(first)
    waiter = Spawned(hub, lambda: pool.get(timeout=SETTLE))
    # The second connect is under way (whoever makes it).
    wait_until(hub, lambda: faults.attempts >= 2, timeout=SETTLE)
    pool.put(first)
    second = waiter.wait(SETTLE)
    try:
        assert connection_id(second) == first_id, (
            "the waiter was not served by the connection returned meanwhile"
        )
    finally:
        pool.put(second)
    wait_until(hub, lambda: pool.stats().creating == 0, timeout=SETTLE)
    assert pool_problems(pool, db, hub) == []


# -- the run --------------------------------------------------------------------------------

CHECKOUTS = 5000
MAX_SIZE = 8
GREEN_WORKERS = 50
THREAD_WORKERS = 12
CONNECT_TIMEOUT = 0.05
#: Each caller's own timeout, drawn per checkout (long enough for timer_slack to leave
#: a check: a PoolTimeout before 0.2 s is always early).
CALLER_TIMEOUT = (0.25, 1.0)
#: Share of checkouts wrapped in a hub Timeout, and its length (green hubs).
HUB_TIMEOUT_RATE = 0.15
HUB_TIMEOUT = (0.001, 0.03)
#: How long a caller holds its connection.
HOLD = (0.0, 0.003)
#: Between two kills (green hubs).
KILL_EVERY = (0.001, 0.01)


@dataclass
class RunLog:
    """What the workers saw."""

    served: int = 0
    pool_timeouts: int = 0
    #: PoolTimeouts a little (within timer_slack) before the caller's timeout: allowed,
    #: reported.
    early_timeouts: int = 0
    hub_timeouts: int = 0
    killed: int = 0
    kills_sent: int = 0
    #: (what, detail) for every outcome the contract forbids.
    wrong: list = field(default_factory=list)
    #: connection id -> job holding it.
    held: dict = field(default_factory=dict)
    double: list = field(default_factory=list)


class FaultRun:
    """CHECKOUTS checkouts by many workers against a pool whose connects misbehave."""

    def __init__(self, hub: Any, pool: Any, seed: int) -> None:
        self.hub = hub
        self.pool = pool
        self.seed = seed
        self.log = RunLog()
        self.lock = hub.lock()
        self.next_job = 0
        self.workers: list[Spawned] = []
        self.started: set[int] = set()

    # -- jobs ---------------------------------------------------------------------------

    def take_job(self) -> Optional[int]:
        with self.lock:
            if self.next_job >= CHECKOUTS:
                return None
            self.next_job += 1
            return self.next_job

    def use(self, conn: Any, job: int, hold: float) -> None:
        """Run a query, hold the connection a moment, run another: all as its only user."""
        cid = connection_id(conn)
        log = self.log
        with self.lock:
            other = log.held.get(cid)
            if other is not None:
                log.double.append((cid, other, job))
            log.held[cid] = job
        try:
            if hold:
                self.hub.sleep(hold)
            if connection_id(conn) != cid:
                log.double.append((cid, "changed under its user", job))
        finally:
            with self.lock:
                if log.held.get(cid) == job:
                    del log.held[cid]

    def checkout(self, job: int, rng: random.Random) -> None:
        hub, pool, log = self.hub, self.pool, self.log
        timeout = rng.uniform(*CALLER_TIMEOUT)
        hold = rng.uniform(*HOLD)
        with_item = rng.random() < 0.5
        deadline: Any = None
        if hub.green and rng.random() < HUB_TIMEOUT_RATE:
            deadline = hub.Timeout(rng.uniform(*HUB_TIMEOUT))
        started = hub.monotonic()
        entered: Optional[float] = None
        try:
            with deadline if deadline is not None else contextlib.nullcontext():
                if with_item:
                    with pool.item(timeout) as conn:
                        entered = hub.monotonic()
                        self.use(conn, job, hold)
                else:
                    conn = pool.get(timeout=timeout)
                    entered = hub.monotonic()
                    try:
                        self.use(conn, job, hold)
                    finally:
                        pool.put(conn)
            log.served += 1
        except PoolTimeout as exc:
            waited = hub.monotonic() - started
            if entered is not None:
                log.wrong.append(("PoolTimeout after the checkout", f"{exc!r}"))
            else:
                if timeout - timer_slack(timeout) <= waited < timeout:
                    log.early_timeouts += 1
                for problem in check_pool_timeout(exc, timeout, waited):
                    log.wrong.append((type(exc).__name__ + " before the caller's timeout",
                                      problem))
            log.pool_timeouts += 1
            exc.__traceback__ = None
        except hub.killed:
            log.killed += 1
            raise
        except BaseException as exc:  # judged below: only our own hub Timeout is fine
            if deadline is not None and exc is deadline:
                log.hub_timeouts += 1
                return
            waited = hub.monotonic() - started
            if entered is not None:
                where = "while held"
            elif waited < timeout - timer_slack(timeout):
                where = "before the caller's timeout ran out"
            else:
                where = "instead of PoolTimeout once the caller's timeout ran out"
            log.wrong.append(
                (f"{type(exc).__module__}.{type(exc).__name__} {where}",
                 f"{exc} (after {waited:.3f} s of a {timeout:.3f} s timeout)")
            )
            exc.__traceback__ = None

    def worker(self, wid: int) -> None:
        rng = random.Random(f"{self.seed}-worker-{wid}")
        with self.lock:
            self.started.add(wid)
        while True:
            job = self.take_job()
            if job is None:
                return
            try:
                self.checkout(job, rng)
            except self.hub.killed as exc:
                # Die, but keep no frame of the checkout alive (as a real killed task):
                # a traceback kept in Spawned.error would hold its connection.
                exc.__traceback__ = None
                raise exc from None

    def spawn_worker(self) -> None:
        wid = len(self.workers)
        self.workers.append(Spawned(self.hub, self.worker, wid))

    def killer(self) -> None:
        """Kill a random started worker now and then, and start another in its place."""
        rng = random.Random(f"{self.seed}-killer")
        while self.next_job < CHECKOUTS:
            self.hub.sleep(rng.uniform(*KILL_EVERY))
            live = [
                w for wid, w in enumerate(self.workers)
                if wid in self.started and not w.done.is_set()
            ]
            if not live:
                return
            rng.choice(live).kill()
            self.log.kills_sent += 1
            self.spawn_worker()

    def run(self) -> None:
        hub = self.hub
        for _ in range(GREEN_WORKERS if hub.green else THREAD_WORKERS):
            self.spawn_worker()
        killer = Spawned(hub, self.killer) if hub.green else None
        if killer is not None:
            killer.wait(120)
        # Workers started by the killer are in the list before it returns.
        for task in list(self.workers):
            error = task.outcome(120)
            if error is not None and not isinstance(error, hub.killed):
                self.log.wrong.append(("a worker died", repr(error)))


def summarise(wrong: list) -> str:
    kinds = Counter(what for what, _ in wrong)
    lines = [f"{len(wrong)} outcomes the contract forbids:"]
    for what, count in kinds.most_common():
        example = next(detail for w, detail in wrong if w == what)
        example = re.sub(r"\s+", " ", example)[:300]
        lines.append(f"  {count} x {what}; e.g. {example}")
    return "\n".join(lines)


@pytest.mark.timeout(180)
def test_faulty_run_loses_nothing_and_fails_nobody_early(make_pool, db, hub):
    """5,000 checkouts, 50 green threads (12 OS threads on the threads hub), max_size 8;
    connects fail (30 %) or are slow (15 %, often past connect_timeout); connections
    expire quickly so that the pool keeps reconnecting; on green hubs 15 % of checkouts
    run under a short hub Timeout and workers are killed while they wait or hold.

    Afterwards: every slot usable, stats consistent, no connection open in the fake
    driver beyond the pool's, none ever held by two workers at once; and no caller was
    failed except by a PoolTimeout once its own timeout ran out, or by what we injected.
    """
    faults = ConnectFaults(
        db,
        seed=f"{SEED}-connects",
        fail_rate=0.3,
        slow_rate=0.15,
        slow=(0.02, 0.15),
        fast=(0.0, 0.003),
        slow_threshold=CONNECT_TIMEOUT,
    ).install()
    pool = make_pool(
        max_size=MAX_SIZE,
        max_idle=0.2,
        max_age=0.1,
        connect_timeout=CONNECT_TIMEOUT,
        reconnect_backoff=(0.005, 0.05),
    )
    run = FaultRun(hub, pool, SEED)
    run.run()
    faults.quiet()
    log = run.log
    outcome = (
        f"{type(pool).__name__}, hub {hub.name}, seed {SEED}: {log.served} served, "
        f"{log.pool_timeouts} PoolTimeouts ({log.early_timeouts} slightly early), "
        f"{log.hub_timeouts} hub Timeouts, {log.killed} killed ({log.kills_sent} kills sent); "
        f"connects: {faults.attempts} attempts, {faults.failures} failed, {faults.slow} past "
        f"connect_timeout; {db.connects} made; pool {pool.stats()}"
    )
    problems = pool_problems(pool, db, hub)
    if log.double:
        problems.append(f"connections held by two workers at once: {log.double[:5]}")
    if log.wrong:
        problems.append(summarise(log.wrong))
    assert not problems, outcome + "\n" + "\n".join(problems)
    # The run did what it says (else the checks above prove little).
    assert faults.failures and faults.slow, outcome
    assert log.served >= CHECKOUTS // 10, outcome
    if hub.green:
        assert log.hub_timeouts and log.killed, outcome
    pool.close()
    wait_until(hub, lambda: not db.open_connections(), timeout=SETTLE)
