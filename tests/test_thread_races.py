"""Returns racing other OS threads: a second put() of the same wrapper, close(),
drain() and resize() (threads hub only: green tasks do not preempt each other).

put() checks the connection in under the pool's lock, then looks at the
connection's state (the driver's ``return_state``) and files it outside the
lock.  These tests widen that look, with a driver whose connections are slow
to report their state, and check through the public API that what another
thread changed meanwhile is honoured: no connection filed twice, kept open by a
closed pool, handed out again after a drain, or kept above a shrunk size.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from typing import Any, Callable, Iterator

import pytest

from greenpool import PoolClosed
from tests.support.fakedb import FakeConnection, FakeDB, original_sleep
from tests.support.tasks import PATIENCE, wait_until

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


class SlowStateConnection(FakeConnection):
    """Reading ``in_transaction`` (what the pool looks at on every return) takes a
    moment, during which other threads run."""

    @property  # type: ignore[override]
    def in_transaction(self) -> bool:
        original_sleep()(0.0001)
        return self.__dict__["in_transaction"]

    @in_transaction.setter
    def in_transaction(self, value: bool) -> None:
        self.__dict__["in_transaction"] = value


class SlowStateDB(FakeDB):
    def connect(self, *args: Any, **kwargs: Any) -> FakeConnection:
        conn = super().connect(*args, **kwargs)
        conn.__class__ = SlowStateConnection
        return conn


@pytest.fixture
def db() -> FakeDB:
    """The fake driver, with connections slow to report their state (shadows conftest's)."""
    return SlowStateDB("fakedb")


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
        thread.join(PATIENCE)
        assert not thread.is_alive(), f"a thread is still running after {PATIENCE} s"
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
                conn = pool.get(timeout=PATIENCE)
            except PoolClosed:
                return
            pool.put(conn)

    run_threads(workers + 1, run)


def settled(hub: Any, pool: Any) -> None:
    """Wait for connects still in flight (the pool grows in the background) to land."""
    wait_until(hub, lambda: pool.stats().creating == 0)


def test_the_same_wrapper_put_by_two_threads_is_filed_once(make_pool, db, hub):
    # A wrapper already returned is left alone by put(), as close() twice is; a third
    # thread checks the connection out again as soon as it can: the put() that comes
    # second must not take it back from under that thread, nor file it twice.
    pool = make_pool(max_size=1)
    for _ in range(ROUNDS):
        conn = pool.get(timeout=PATIENCE)
        start = threading.Barrier(3)
        outcomes: list[str] = []
        taken: list[Any] = []

        def run(i: int, conn: Any = conn, start: Any = start, outcomes: Any = outcomes,
                taken: Any = taken) -> None:
            start.wait()
            if i == 2:
                taken.append(pool.get(timeout=PATIENCE))
                return
            pool.put(conn)
            outcomes.append("returned")

        run_threads(3, run)
        assert outcomes == ["returned", "returned"] and not conn
        s = pool.stats()
        assert taken[0] and (s.in_use, s.idle) == (1, 0), s  # still the taker's alone
        pool.put(taken[0])
        assert len(pool.free_items) == 1 and pool.current_size == 1
    assert db.connects == 1


def test_returns_racing_close_leave_no_connection_open(make_pool, db, hub):
    for _ in range(ROUNDS // 2):
        pool = make_pool(max_size=4)
        race(pool, pool.close)
        settled(hub, pool)
        assert (pool.stats().size, len(pool.free_items)) == (0, 0), pool
    assert db.closes == db.connects, db.open_connections()


def test_returns_racing_drain_never_hand_out_a_drained_connection(make_pool, db, hub):
    pool = make_pool(max_size=4)
    opened_before: set[int] = set()

    def drain_repeatedly() -> None:
        for _ in range(ROUNDS):
            opened_before.update(c.id for c in list(db.connections))
            pool.drain()

    race(pool, drain_repeatedly)
    settled(hub, pool)
    conns = [pool.get(timeout=PATIENCE) for _ in range(pool.max_size)]
    ids = {pool.raw_connection(conn).id for conn in conns}
    assert not ids & opened_before, "a connection opened before the last drain came back"
    for conn in conns:
        pool.put(conn)
    settled(hub, pool)
    assert db.connects - db.closes == pool.current_size == len(pool.free_items)


def test_returns_racing_a_shrink_keep_no_surplus(make_pool, db, hub):
    for _ in range(ROUNDS // 2):
        pool = make_pool(max_size=4)
        race(pool, lambda pool=pool: pool.resize(1))
        settled(hub, pool)
        assert pool.current_size <= 1 and len(pool.free_items) == pool.current_size, pool
        pool.close()
    assert db.closes == db.connects, db.open_connections()
