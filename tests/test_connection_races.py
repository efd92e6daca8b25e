"""close() and drain() meeting work in flight, on the manual clock: a connect the
pool's growth started, and a return whose cleanup is still running.

The contract (greenpool/connections.py): after ``close()`` no connection is
kept open ("connections still checked out are closed when they come back");
after ``drain()`` "checked-out ones are closed when they come back; new
checkouts get new connections".  On ManualClockHub the close or drain lands at
an exact instant inside the connect or the cleanup, so each case is
deterministic, on every test process, through the public API only.
"""

from __future__ import annotations

import pytest

from greenpool import PoolClosed, RawConnectionPool
from tests.support.fakedb import make_fakedb
from tests.support.manual_hub import ManualClockHub
from tests.support.tasks import Spawned

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def hub() -> ManualClockHub:
    """A fresh manual-clock hub (shadows conftest's process hub for this module)."""
    return ManualClockHub()


@pytest.fixture
def db():
    return make_fakedb()


def slow_connects(hub, db, seconds):
    """Each connect takes ``seconds`` of virtual time."""
    db.connect_hook = lambda: hub.sleep(seconds)


def test_a_connect_in_flight_when_the_pool_closes_is_closed_when_it_lands(hub, db):
    slow_connects(hub, db, 1)

    def main():
        pool = RawConnectionPool(db, max_size=1, hub=hub)
        caller = Spawned(hub, pool.get, 10)  # queues; the pool starts a connect
        hub.sleep(0.5)
        pool.close()
        assert isinstance(caller.outcome(), PoolClosed)
        hub.sleep(1)  # the connect lands at t=1
        return pool.stats().size, pool.stats().idle, db.connects, db.closes

    assert hub.run(main) == (0, 0, 1, 1)
    assert hub.failures == []


def test_a_connection_returned_while_the_pool_closes_is_closed(hub, db):
    def main():
        pool = RawConnectionPool(db, max_size=1, hub=hub, cleanup=lambda conn: hub.sleep(0.2))
        conn = pool.get()
        raw = pool.raw_connection(conn)
        returning = Spawned(hub, pool.put, conn)  # its cleanup runs from t=0 to t=0.2
        hub.sleep(0.1)
        pool.close()
        returning.wait()
        return raw.closed, pool.stats().size, db.closes == db.connects

    assert hub.run(main) == (1, 0, True)


def test_a_connection_returned_during_a_drain_is_not_handed_out_again(hub, db):
    def main():
        pool = RawConnectionPool(db, max_size=1, hub=hub, cleanup=lambda conn: hub.sleep(0.2))
        try:
            conn = pool.get()
            first = pool.raw_connection(conn)
            returning = Spawned(hub, pool.put, conn)  # its cleanup runs from t=0 to t=0.2
            hub.sleep(0.1)
            pool.drain()  # every connection is to be replaced
            returning.wait()
            again = pool.get(timeout=5)
            return pool.raw_connection(again) is first, first.closed, db.connects
        finally:
            pool.close()

    assert hub.run(main) == (False, 1, 2)


def test_a_connect_in_flight_during_a_drain_is_not_handed_out(hub, db):
    """It may have been opened with the old settings (a password rotation): the
    caller it was meant for gets a connection opened after the drain."""
    slow_connects(hub, db, 1)

    def main():
        pool = RawConnectionPool(db, max_size=1, hub=hub)
        try:
            caller = Spawned(hub, pool.get, 10)  # queues; the pool starts a connect
            hub.sleep(0.5)
            pool.connect_kwargs = {**pool.connect_kwargs, "password": "rotated"}
            pool.drain()
            conn = caller.wait()
            raw = pool.raw_connection(conn)
            return raw.kwargs.get("password"), hub.monotonic(), db.connects, db.closes
        finally:
            pool.close()

    assert hub.run(main) == ("rotated", 2.0, 2, 1)

