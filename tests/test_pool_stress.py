"""Randomized stress of the generic Pool: thousands of get/put/timeout/kill/create-failure
events per hub, with the invariants checked after every step.

Invariants, read through ``stats()`` and ``free_items`` only: items held by workers
<= in use (= size - idle - creating), size <= MAX_SIZE, no item held by two workers
or both held and idle, and every get either returns, times out, fails to create, or
is interrupted: nobody hangs.  At the end everything is back and idle.

Each schedule runs on the process's hub and on ManualClockHub; on the manual clock a
seed replays the same schedule every time, whatever the machine's load.
"""

from __future__ import annotations

import itertools
import random

import pytest

from greenpool import Pool, PoolTimeout
from tests.support.manual_hub import ManualClockHub
from tests.support.tasks import Spawned, run_on

SEEDS = range(5)
WORKERS = 16
OPS_PER_WORKER = 80
MAX_SIZE = 4


class CreateFailed(Exception):
    pass


class Interrupted(Exception):
    pass


@pytest.fixture(params=["process-hub", "manual-clock"])
def any_hub(request, hub):
    return hub if request.param == "process-hub" else ManualClockHub()


class Checker:
    """What the workers hold, checked against the pool's own account of itself."""

    def __init__(self, pool):
        self.pool = pool
        self.held = {}
        self.events = 0
        # Held across each check, so that what workers hold cannot change during it:
        # an item they hold stays in use throughout (took() follows get(), gave()
        # precedes put()).  Never held across a switch.
        self.lock = pool.hub.lock()

    def check(self):
        with self.lock:
            s = self.pool.stats()
            idle_ids = {id(i) for i in tuple(self.pool.free_items)}
            held = len(self.held)
            overlap = idle_ids & set(self.held)
            self.events += 1
        assert s.size == s.idle + s.in_use + s.creating, s
        assert s.size <= MAX_SIZE, s  # may exceed a shrunk max_size until items return
        assert held <= s.in_use, (held, s)
        assert not overlap, "an item is both idle and held"

    def took(self, item, who):
        with self.lock:
            assert id(item) not in self.held, f"{item} handed to {who} while held by another"
            self.held[id(item)] = who

    def gave(self, item):
        with self.lock:
            del self.held[id(item)]


@pytest.mark.parametrize("seed", SEEDS)
def test_random_schedule_loses_nothing(any_hub, seed):
    hub = any_hub
    rng = random.Random(seed)
    ids = itertools.count()
    create_calls = itertools.count()
    green = hub.green

    def create():
        if rng.random() < 0.3:
            hub.sleep(rng.random() * 0.002)
        if next(create_calls) % 4 == 1 or rng.random() < 0.1:
            raise CreateFailed()
        return [next(ids)]

    pool = Pool(hub=hub, max_size=MAX_SIZE, create=create)
    checker = Checker(pool)
    outcomes = {"got": 0, "timeout": 0, "create_failed": 0, "interrupted": 0}

    def one_op(worker):
        timeout = None if rng.random() < 0.5 else rng.random() * 0.004
        try:
            if green and rng.random() < 0.05:
                with hub.timeout(rng.random() * 0.003, Interrupted()):
                    item = pool.get(timeout)
            else:
                item = pool.get(timeout)
        except PoolTimeout:
            outcomes["timeout"] += 1
            checker.check()
            return
        except CreateFailed:
            outcomes["create_failed"] += 1
            checker.check()
            return
        except Interrupted:
            outcomes["interrupted"] += 1
            checker.check()
            return
        checker.took(item, worker)
        outcomes["got"] += 1
        checker.check()
        try:
            if rng.random() < 0.7:
                hub.sleep(rng.random() * 0.002)
        finally:
            checker.gave(item)
            pool.put(item)
            checker.check()

    def worker(n):
        for _ in range(OPS_PER_WORKER):
            one_op(n)

    def main():
        tasks = [Spawned(hub, worker, n) for n in range(WORKERS)]
        killed = 0
        # A disturber: resize the pool (retiring items, so new ones get created) and, on
        # green hubs, kill random workers mid-flight and start replacements.
        for _ in range(30):
            hub.sleep(rng.random() * 0.01)
            pool.resize(rng.randint(1, MAX_SIZE))
            checker.check()
            victim = rng.randrange(len(tasks))
            if green and not tasks[victim].done.is_set():
                tasks[victim].kill()
                killed += 1
                tasks.append(Spawned(hub, worker, len(tasks)))
        pool.resize(MAX_SIZE)
        for task in tasks:
            error = task.outcome(timeout=120)
            assert error is None or isinstance(error, hub.killed), error
        return killed

    killed = run_on(hub, main)

    # Quiescent: everything back, nothing counted twice, nobody waiting.
    assert checker.held == {}
    s = pool.stats()
    assert (s.waiting, s.in_use, s.creating) == (0, 0, 0), s
    assert s.size == s.idle == len(pool.free_items) <= MAX_SIZE
    assert pool.free() == MAX_SIZE
    got = [pool.get(timeout=0) for _ in range(MAX_SIZE)]
    assert len({id(i) for i in got}) == MAX_SIZE
    assert checker.events > 1000, checker.events
    assert outcomes["got"] > 0 and outcomes["timeout"] > 0
    assert s.create_failures > 0
    if green:
        assert killed > 0


def test_many_waiters_with_mixed_deadlines_each_are_served_or_time_out(any_hub):
    hub = any_hub
    pool = Pool(hub=hub, max_size=2, create=object)
    results = []

    def worker(n):
        try:
            with pool.item(timeout=0.05 if n % 3 else None):
                hub.sleep(0.001)
            results.append("ok")
        except PoolTimeout:
            results.append("timeout")

    def main():
        tasks = [Spawned(hub, worker, n) for n in range(100)]
        for task in tasks:
            task.wait(120)

    run_on(hub, main)
    assert len(results) == 100 and "ok" in results
    s = pool.stats()
    assert (s.waiting, s.in_use, s.creating, pool.free()) == (0, 0, 0, 2), s
