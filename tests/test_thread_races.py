"""Returns racing other OS threads: a second put() of the same wrapper, close(),
drain() and resize() (threads hub only: green tasks do not preempt each other).

put()'s short path reads the connection's state before it takes the pool's
lock; these tests check that what another thread changed meanwhile is seen
under the lock, so that no connection is filed twice, kept by a closed pool,
kept after a drain or kept above a shrunk size.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from typing import Any, Callable, Iterator

import pytest

from greenpool import ForeignConnection, PoolClosed

ROUNDS = 200


@pytest.fixture(autouse=True)
def os_threads(hub: Any) -> Iterator[None]:
    """Skip on green hubs; switch OS threads as often as CPython allows."""
    if hub.green:
        pytest.skip("needs OS threads (the threads hub): green tasks do not preempt")
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


def widen_the_window(pool: Any) -> Any:
    """Make put() sleep between its first look and its lock, where the races are."""
    probe = pool._idle_probe

    def sleepy_probe(conn: Any) -> Any:
        time.sleep(0.0001)
        return probe(conn)

    pool._idle_probe = sleepy_probe
    return pool


def run_threads(count: int, target: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            target(i)
        except BaseException as exc:  # reported by the test thread below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
        assert not thread.is_alive(), "a thread is still running after 30 s"
    if errors:
        raise errors[0]


def race(pool: Any, action: Callable[[], None], workers: int = 4) -> None:
    """``workers`` threads get() and put() on ``pool`` until ``action``, run in one
    more thread once they are under way, has returned (or the pool is closed)."""
    stop = threading.Event()

    def run(i: int) -> None:
        if i == workers:
            time.sleep(random.random() * 0.002)  # the workers in mid-loop
            try:
                action()
            finally:
                stop.set()
            return
        while not stop.is_set():
            try:
                conn = pool.get()
            except PoolClosed:
                return
            pool.put(conn)

    run_threads(workers + 1, run)


def test_the_same_wrapper_put_by_two_threads_is_filed_once(make_pool, db):
    # A third thread checks the connection out again as soon as it can: the put()
    # that comes second must not take it back from under that thread.
    pool = widen_the_window(make_pool(max_size=1))
    for _ in range(ROUNDS):
        conn = pool.get()
        start = threading.Barrier(3)
        outcomes: list[str] = []
        taken: list[Any] = []

        def run(i: int, conn: Any = conn, start: Any = start, outcomes: Any = outcomes,
                taken: Any = taken) -> None:
            start.wait()
            if i == 2:
                taken.append(pool.get(timeout=5))
                return
            try:
                pool.put(conn)
                outcomes.append("returned")
            except ForeignConnection:
                outcomes.append("refused")

        run_threads(3, run)
        assert sorted(outcomes) == ["refused", "returned"]
        assert not pool.free_items and taken[0]._entry.in_use  # still the taker's alone
        pool.put(taken[0])
        assert len(pool.free_items) == 1 and pool.current_size == 1
    assert db.connects == 1


def test_returns_racing_close_leave_no_connection_open(make_pool, db):
    for _ in range(ROUNDS // 2):
        pool = widen_the_window(make_pool(max_size=4))
        race(pool, pool.close)
        assert not pool.free_items and pool.current_size == 0
    assert db.closes == db.connects


def test_returns_racing_drain_keep_no_drained_connection(make_pool, db):
    pool = widen_the_window(make_pool(max_size=4))

    def drain_repeatedly() -> None:
        for _ in range(ROUNDS):
            pool.drain()

    race(pool, drain_repeatedly)
    assert all(entry.generation == pool._generation for entry in pool.free_items)
    assert db.connects - db.closes == pool.current_size == len(pool.free_items)


def test_returns_racing_a_shrink_keep_no_surplus(make_pool, db):
    for _ in range(ROUNDS // 2):
        pool = widen_the_window(make_pool(max_size=4))
        race(pool, lambda pool=pool: pool.resize(1))
        assert pool.current_size <= 1 and len(pool.free_items) == pool.current_size
        pool.close()
    assert db.closes == db.connects
