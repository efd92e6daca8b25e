"""Randomized stress of the generic Pool: thousands of get/put/timeout/kill/create-failure
events per hub, with the invariants checked after every step.

Invariants: items held by workers + idle + being created <= current_size <= max_size
(equal whenever no hand-off is in flight, and at the end), no item held by two workers,
and every get either returns, times out, or is interrupted: nobody hangs.
"""

from __future__ import annotations

import itertools
import random

import pytest

from greenpool import Pool, PoolTimeout
from tests.support.tasks import Spawned, wait_until

SEEDS = range(5)
WORKERS = 16
OPS_PER_WORKER = 80
MAX_SIZE = 4


class CreateFailed(Exception):
    pass


class Interrupted(Exception):
    pass


class Checker:
    def __init__(self, pool):
        self.pool = pool
        self.held = {}
        self.events = 0

    def check(self):
        pool = self.pool
        with pool._lock:
            idle = len(pool.free_items)
            size = pool.current_size
            creating = pool._creating
            idle_ids = {id(i) for i in pool.free_items}
        assert size <= MAX_SIZE, size  # may exceed a shrunk max_size until items return
        assert len(self.held) + idle + creating <= size, (len(self.held), idle, creating, size)
        assert not (idle_ids & set(self.held)), "an item is both idle and held"
        self.events += 1

    def took(self, item, who):
        assert id(item) not in self.held, f"{item} handed to {who} while held by another"
        self.held[id(item)] = who

    def gave(self, item):
        del self.held[id(item)]


@pytest.mark.parametrize("seed", SEEDS)
def test_random_schedule_loses_nothing(hub, seed):
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
        error = task.outcome(timeout=60)
        assert error is None or isinstance(error, BaseException)
    hub.sleep(0.01)

    # Quiescent: everything back, nothing counted twice, nobody waiting.
    assert checker.held == {}
    assert pool.waiting() == 0
    assert pool.current_size == len(pool.free_items) <= MAX_SIZE
    assert pool._creating == 0
    assert pool.free() == MAX_SIZE
    got = [pool.get(timeout=0) for _ in range(MAX_SIZE)]
    assert len({id(i) for i in got}) == MAX_SIZE
    assert checker.events > 1000, checker.events
    assert outcomes["got"] > 0 and outcomes["timeout"] > 0
    assert pool.stats().create_failures > 0
    if green:
        assert killed > 0


def test_stress_waiters_all_finish(hub):
    """Many waiters with mixed deadlines against a tiny pool: each is served or times out."""
    pool = Pool(hub=hub, max_size=2, create=object)
    results = []

    def worker(n):
        try:
            with pool.item(timeout=0.05 if n % 3 else None):
                hub.sleep(0.001)
            results.append("ok")
        except PoolTimeout:
            results.append("timeout")

    tasks = [Spawned(hub, worker, n) for n in range(100)]
    for task in tasks:
        task.wait(30)
    assert len(results) == 100
    wait_until(hub, lambda: pool.free() == 2)
