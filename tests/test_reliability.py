"""Reliability features of the connection pools, on the fake driver, on every hub.

Deterministic cases for issue 5: interrupted connects and hand-offs, the
health check at checkout, disconnect handling, reconnect back-off,
``max_waiting``, ``leak_timeout``, ``close(timeout)``, ``drain()``,
``stats()`` and bad input.  The seeded soak is in test_soak.py, the real
servers in test_faults_real.py.
"""

from __future__ import annotations

import logging
import os
import socket

import greenlet
import pytest

from greenpool import (
    ConnectTimeout,
    DatabaseUnavailable,
    ForeignConnection,
    PoolClosed,
    PoolTimeout,
    RawConnectionPool,
    TooManyWaiters,
    TpooledConnectionPool,
)
from greenpool.connections import SOCKET_TEST_AFTER
from greenpool.drivers import Driver, driver_for
from tests.conftest import SECRET
from tests.support.tasks import Spawned, wait_until


class Interrupted(BaseException):
    """Stands in for a hub Timeout or a kill where a real one cannot be raised (threads)."""


# -- fixtures and shared checks ---------------------------------------------------------------


def assert_quiescent(pool, db, hub, timeout=5.0):
    """Nothing in use, nothing being created, counters consistent, no stray connection.

    Connections that arrive after their connect timed out in an OS thread are closed
    when they arrive, so the open-connection count may need a moment to settle.
    """
    stats = pool.stats()
    assert stats.size == stats.idle + stats.in_use + stats.creating <= stats.max_size, stats
    assert (stats.in_use, stats.creating, stats.waiting) == (0, 0, 0), stats
    assert stats.opened - stats.closed == stats.size, stats
    assert pool.free() == pool.max_size, stats
    wait_until(hub, lambda: len(db.open_connections()) == pool.current_size, timeout=timeout)


def raw_of(conn):
    """The driver's connection behind a checked-out wrapper."""
    return conn._entry.conn


def counting_check(seen, bad=()):
    """A check= callable that records the ids it sees and fails for those in ``bad``."""

    def check(raw):
        seen.append(raw.id)
        if raw.id in bad:
            raise raw.db.OperationalError("fake: health check failed")

    return check


def checkout_all(pool, n):
    """Check out n connections at once and return them all (so n are idle)."""
    conns = [pool.get(timeout=2) for _ in range(n)]
    ids = [raw_of(c).id for c in conns]
    for conn in conns:
        pool.put(conn)
    return ids


# -- interrupted connects and hand-offs -----------------------------------------------------


def _interruptions(hub):
    return {
        "hub-timeout": lambda: hub.Timeout(),
        "greenlet-exit": lambda: greenlet.GreenletExit(),
        "base-exception": lambda: Interrupted(),
    }


@pytest.mark.parametrize("kind", ["hub-timeout", "greenlet-exit", "base-exception"])
def test_interrupted_connect_passes_the_slot_to_a_queued_waiter(make_pool, db, hub, kind):
    # (On the threads hub, "hub-timeout" is the builtin TimeoutError: an ordinary error.)
    error = _interruptions(hub)[kind]
    calls = []
    queued = []

    def hook():
        calls.append(1)
        if len(calls) == 1:
            for _ in range(2500):  # until the waiter is queued (at most 5 s)
                if queued:
                    break
                db.sleep(0.002)  # green, or an OS thread's sleep (tpooled)
            raise error()

    db.connect_hook = hook
    pool = make_pool(max_size=1, reconnect_backoff=(0.01, 0.05))
    first = Spawned(hub, pool.get, 5)
    wait_until(hub, lambda: pool.stats().creating == 1)
    waiter = Spawned(hub, pool.get, 5)
    wait_until(hub, lambda: pool.waiting() == 1)
    queued.append(1)
    assert type(first.outcome()) is type(error())
    conn = waiter.wait()
    assert raw_of(conn).id == 1 and db.connect_attempts == 2
    pool.put(conn)
    assert_quiescent(pool, db, hub)
    assert pool.stats().connect_failures == 1


def test_driver_timeout_error_is_not_reported_as_a_connect_timeout(make_pool, db, hub):
    def hook():
        raise TimeoutError("the driver's own timeout")

    db.connect_hook = hook
    pool = make_pool(max_size=1, connect_timeout=5)
    start = hub.monotonic()
    with pytest.raises(TimeoutError) as info:
        pool.get(timeout=1)
    assert hub.monotonic() - start < 1
    assert pool.stats().connect_timeouts == 0
    assert not isinstance(info.value, ConnectTimeout), info.value


def test_base_exception_in_an_os_thread_reaches_the_caller(db, hub):
    # eventlet.tpool's worker thread dies on a BaseException other than its Timeout
    # (tpool.EXC_CLASSES): the hub adapter must carry it back itself.
    def cleanup(raw):
        raise Interrupted()

    pool = TpooledConnectionPool(db, max_size=1, cleanup=cleanup, hub=hub)
    conn = pool.get()
    conn.cursor().execute("UPDATE t SET x = 1")

    class Hung(Exception):
        pass

    try:
        with pytest.raises(Interrupted):
            with hub.timeout(2, Hung("put() hung")):
                pool.put(conn)
        assert pool.current_size == 0
        wait_until(hub, lambda: db.connections[0].closed == 1)
    finally:
        pool.close()


def test_caller_deadline_during_connect_frees_the_slot(make_pool, db, green_hub):
    hub = green_hub
    db.connect_delay = 0.5
    pool = make_pool(max_size=1, connect_timeout=5)

    def get_with_deadline():
        with hub.timeout(0.05, Interrupted()):
            return pool.get(5)

    first = Spawned(hub, get_with_deadline)
    wait_until(hub, lambda: pool.stats().creating == 1)
    waiter = Spawned(hub, pool.get, 5)
    assert isinstance(first.outcome(), Interrupted)
    conn = waiter.wait()
    pool.put(conn)
    assert_quiescent(pool, db, hub)
    # The interrupted connect left nothing behind, not even in an OS thread (tpooled).
    wait_until(hub, lambda: db.connects - db.closes == 1)


def test_waiter_killed_at_the_instant_of_hand_off(make_pool, db, green_hub):
    hub = green_hub
    pool = make_pool(max_size=1)
    held = pool.get()
    raw = raw_of(held)
    dispatched = []
    real_dispatch = pool._dispatch

    def dispatch(entry):
        dispatched.append(entry)
        real_dispatch(entry)

    pool._dispatch = dispatch
    waiter = Spawned(hub, pool.get, 5)
    wait_until(hub, lambda: pool.waiting() == 1)
    # The connection is handed to the waiter, which dies before it runs to take it.
    # eventlet delivers a kill at once, gevent at the next loop turn, in order.
    if hub.name == "gevent":
        waiter.kill()
        pool.put(held)
    else:
        pool.put(held)
        waiter.kill()
    assert isinstance(waiter.outcome(), greenlet.GreenletExit)
    # put() handed it to the waiter itself; the dying waiter passed it on.
    assert len(dispatched) == 1
    assert pool.free() == 1 and pool.waiting() == 0
    again = pool.get(timeout=0)
    assert raw_of(again) is raw and db.connects == 1
    pool.put(again)
    assert_quiescent(pool, db, hub)


def _hand_off_when_the_wait_ends(pool, held, then=None):
    """Make the next waiter's wait end (timed out) just before the hand-off reaches it."""
    real_wait = pool._wait_for_event
    calls = []

    def wait(event, timeout):
        calls.append(timeout)
        real_wait(event, timeout)
        pool.put(held)  # the hand-off lands between the timeout and the waiter's bookkeeping
        if then is not None:
            raise then

    pool._wait_for_event = wait
    pool._plain_wait = False
    return calls


def test_waiter_timing_out_at_the_instant_of_hand_off_takes_it(make_pool, db, hub):
    pool = make_pool(max_size=1)
    held = pool.get()
    raw = raw_of(held)
    calls = _hand_off_when_the_wait_ends(pool, held)
    conn = pool.get(timeout=0.01)  # served, not a PoolTimeout, and nothing lost
    assert raw_of(conn) is raw and calls == [0.01]
    pool.put(conn)
    assert_quiescent(pool, db, hub)


def test_waiter_interrupted_at_the_instant_of_hand_off_passes_it_on(make_pool, db, hub):
    pool = make_pool(max_size=1)
    held = pool.get()
    raw = raw_of(held)
    calls = _hand_off_when_the_wait_ends(pool, held, then=Interrupted())
    with pytest.raises(Interrupted):
        pool.get(timeout=0.01)
    del pool._wait_for_event
    pool._plain_wait = True
    assert calls == [0.01]
    assert pool.free() == 1
    conn = pool.get(timeout=0)
    assert raw_of(conn) is raw and db.connects == 1
    pool.put(conn)
    assert_quiescent(pool, db, hub)


def test_failing_rollback_on_return_gives_the_waiter_a_new_connection(make_pool, db, hub, caplog):
    pool = make_pool(max_size=1)
    conn = pool.get()
    conn.cursor().execute("UPDATE t SET x = 1")  # opens a transaction: return rolls back
    waiter = Spawned(hub, pool.get, 5)
    wait_until(hub, lambda: pool.waiting() == 1)
    db.fail_rollback = True
    with caplog.at_level(logging.WARNING, logger="greenpool"):
        pool.put(conn)
    fresh = waiter.wait()
    assert raw_of(fresh).id == 2 and db.connections[0].closed == 1
    assert "cleanup of connection #1 failed" in caplog.text
    db.fail_rollback = False
    pool.put(fresh)
    assert pool.stats().lost == 1
    assert_quiescent(pool, db, hub)


def test_failing_close_still_frees_the_slot(make_pool, db, hub):
    pool = make_pool(max_size=1)
    conn = pool.get()
    raw_of(conn).disconnect()
    db.fail_close = True
    pool.put(conn)  # closed because broken; close() raises; the slot is freed anyway
    db.fail_close = False
    with pool.item(timeout=1) as again:
        assert again.id == 2
    assert_quiescent(pool, db, hub)


# -- health check at checkout ---------------------------------------------------------------


def test_closed_connection_is_replaced_at_checkout_without_a_round_trip(make_pool, db, hub):
    seen = []
    # Past check_interval (0 here) the closed flag is read; within it, the socket test
    # sees a closed connection (the fake driver has no socket; see test_connections_real).
    pool = make_pool(max_size=2, check=counting_check(seen), check_interval=0)
    ids = checkout_all(pool, 2)
    db.connections[0].disconnect()  # the server dropped an idle connection
    db.connections[1].close()  # a user closed one behind the pool's back
    conns = [pool.get(timeout=1) for _ in range(2)]
    assert sorted(raw_of(c).id for c in conns) == [3, 4]
    assert seen == []  # the closed flag is read locally
    for conn in conns:
        pool.put(conn)
    assert set(ids) == {1, 2} and all(c.closed == 1 for c in db.connections[:2])
    assert pool.stats().lost == 2
    assert_quiescent(pool, db, hub)


class SocketDriver(Driver):
    """The generic driver, with a socket of our choosing per fake connection."""

    def __init__(self, filenos):
        self.filenos = filenos

    def fileno(self, conn):
        return self.filenos.get(conn.id)


def test_readable_socket_means_hung_up_no_round_trip(make_pool, db, hub):
    seen = []
    pool = make_pool(max_size=2, check=counting_check(seen), check_interval=0)
    checkout_all(pool, 2)
    ours = {}
    servers = {}
    for conn_id in (1, 2):
        client, server = socket.socketpair()
        ours[conn_id] = client
        servers[conn_id] = server
    try:
        pool._driver = SocketDriver({k: s.fileno() for k, s in ours.items()})
        servers[1].sendall(b"E")  # e.g. PostgreSQL's FATAL message before it hangs up
        servers[1].close()
        before = hub.monotonic()
        a = pool.get(timeout=1)
        b = pool.get(timeout=1)
        got = sorted(raw_of(c).id for c in (a, b))
        # #1 discarded unchecked; #2 (socket quiet) checked with a round trip; #3 is new.
        assert got == [2, 3], got
        assert seen == [2]
        assert db.connections[0].closed == 1
        assert pool._suspect_before >= before
        pool.put(a)
        pool.put(b)
    finally:
        for sock in list(ours.values()) + list(servers.values()):
            sock.close()
    assert_quiescent(pool, db, hub)


def test_readable_socket_of_a_recently_used_connection(make_pool, db, hub):
    seen = []
    pool = make_pool(max_size=1, check=counting_check(seen))  # check_interval 0.5 s
    client, server = socket.socketpair()
    try:
        pool._driver = SocketDriver({1: client.fileno()})
        with pool.item():
            pass
        server.close()  # the server hung up a moment after the connection was returned
        hub.sleep(SOCKET_TEST_AFTER * 2)
        with pool.item(timeout=1) as conn:
            assert conn.id == 2
        assert seen == []
    finally:
        client.close()


def test_connection_handed_straight_back_skips_the_socket_test(make_pool, db, hub):
    """Within SOCKET_TEST_AFTER of its return a connection is reused untested: it was
    not idle, and a busy pool would otherwise pay a system call per checkout."""
    pool = make_pool(max_size=1, check=counting_check([]))
    client, server = socket.socketpair()
    try:
        pool._driver = SocketDriver({1: client.fileno()})
        pool._clock = lambda: 100.0  # no time passes between return and checkout
        with pool.item():
            pass
        server.close()
        with pool.item(timeout=1) as conn:
            assert conn.id == 1
        pool._clock = hub.monotonic
    finally:
        client.close()


def test_closed_connection_is_replaced_at_checkout_once_check_interval_passed(
    make_pool, db, hub
):
    seen = []
    pool = make_pool(max_size=2, check=counting_check(seen), check_interval=0.05)
    checkout_all(pool, 2)
    db.connections[0].disconnect()
    db.connections[1].close()
    hub.sleep(0.06)
    conns = [pool.get(timeout=1) for _ in range(2)]
    assert sorted(raw_of(c).id for c in conns) == [3, 4] and seen == []
    for conn in conns:
        pool.put(conn)
    assert_quiescent(pool, db, hub)


def test_check_interval_skips_the_round_trip_for_recently_used(make_pool, db, hub):
    seen = []
    pool = make_pool(max_size=1, check=counting_check(seen), check_interval=0.5)
    with pool.item():
        pass  # brand new: never checked
    assert seen == []
    for _ in range(5):
        with pool.item():
            pass
    assert seen == []  # used within check_interval
    hub.sleep(0.55)
    with pool.item():
        pass
    assert seen == [1]
    with pool.item():
        pass
    assert seen == [1]


def test_check_interval_zero_checks_every_reuse(make_pool, db, hub):
    seen = []
    pool = make_pool(max_size=1, check=counting_check(seen), check_interval=0)
    for _ in range(4):
        with pool.item():
            pass
    assert seen == [1, 1, 1]


def test_failed_check_closes_and_takes_another_within_the_timeout(make_pool, db, hub, caplog):
    seen = []
    pool = make_pool(max_size=3, check=counting_check(seen, bad={2, 3}), check_interval=0)
    checkout_all(pool, 3)  # idle, most recent first: 3, 2, 1
    with caplog.at_level(logging.WARNING, logger="greenpool"):
        start = hub.monotonic()
        with pool.item(timeout=1) as conn:
            assert conn.id == 1
        assert hub.monotonic() - start < 1
    assert seen == [3, 2, 1]
    assert "failed its health check" in caplog.text and SECRET not in caplog.text
    assert [c.closed for c in db.connections] == [0, 1, 1]
    assert_quiescent(pool, db, hub)


def test_timeout_covers_the_whole_get_when_a_connection_fails_its_check(make_pool, db, hub):
    seen = []
    bad = set()
    pool = make_pool(max_size=1, check=counting_check(seen, bad), check_interval=0)
    held = pool.get()
    bad.add(raw_of(held).id)  # it fails its check at its next checkout
    caller = Spawned(hub, _timed_get, pool, hub, 0.5)
    wait_until(hub, lambda: pool.waiting() == 1)

    def take_the_freed_slot():
        with pool.item(timeout=5):
            hub.sleep(1.0)

    other = Spawned(hub, take_the_freed_slot)
    wait_until(hub, lambda: pool.waiting() == 2)
    hub.sleep(0.45)
    pool.put(held)  # to the caller: it fails its check, the slot goes to the other waiter
    exc, elapsed = caller.wait()
    other.wait()
    assert isinstance(exc, PoolTimeout) and seen == [1]
    assert 0.5 <= elapsed < 0.85, elapsed  # not 0.95 s: counted from the call


def test_all_idle_connections_bad_opens_a_new_one(make_pool, db, hub):
    seen = []
    pool = make_pool(max_size=2, check=counting_check(seen, bad={1, 2}), check_interval=0)
    checkout_all(pool, 2)
    with pool.item(timeout=1) as conn:
        assert conn.id == 3
    assert_quiescent(pool, db, hub)


def test_disconnect_makes_older_connections_suspect(make_pool, db, hub):
    seen = []
    pool = make_pool(max_size=3, check=counting_check(seen), check_interval=60)
    checkout_all(pool, 3)
    with pytest.raises(db.OperationalError):
        with pool.item() as conn:
            victim = raw_of(conn)
            victim.disconnect()  # the server restarted ...
            conn.cursor().execute("SELECT 1")  # ... and the query fails
    assert victim.closed == 1
    # The others were used within check_interval, but before the disconnect: checked.
    conns = [pool.get(timeout=1) for _ in range(2)]
    assert sorted(seen) == sorted(raw_of(c).id for c in conns) and len(seen) == 2
    for conn in conns:
        pool.put(conn)
    with pool.item():
        pass
    assert len(seen) == 2  # checked once; not suspect any more


def test_sql_and_ping_checks(pool_cls, db, hub):
    sql_pool = pool_cls(db, max_size=1, check="SELECT 1", check_interval=0, hub=hub)
    for _ in range(2):
        with sql_pool.item():
            pass
    assert db.connections[0].queries == ["SELECT 1"]
    sql_pool.close()
    ping_pool = pool_cls(db, max_size=1, check_interval=0, hub=hub)  # check="ping"
    for _ in range(2):
        with ping_pool.item():
            pass
    assert db.connections[1].queries == ["SELECT 1"]  # the generic driver pings with SQL
    ping_pool.close()


def test_check_callable_gets_the_raw_connection(make_pool, db):
    got = []
    pool = make_pool(max_size=1, check=got.append, check_interval=0)
    for _ in range(2):
        with pool.item():
            pass
    assert got == [db.connections[0]]


@pytest.mark.parametrize("off", ["off", None, False])
def test_check_off_does_no_round_trip(make_pool, db, off):
    pool = make_pool(max_size=1, check=off, check_interval=0)
    for _ in range(3):
        with pool.item():
            pass
    assert db.connections[0].queries == [] and db.pings == 0


class Deadline(Exception):
    """A caller's deadline raised by ``hub.timeout(s, Deadline())``: eventlet and gevent
    let the exception be any class, and ordinary ones are common."""


def test_caller_deadline_during_the_health_check_is_raised(make_pool, db, green_hub):
    hub = green_hub

    def slow_check(raw):
        hub.sleep(0.3)

    pool = make_pool(max_size=1, check=slow_check, check_interval=0)
    with pool.item():
        pass
    start = hub.monotonic()
    with pytest.raises(Deadline):
        with hub.timeout(0.05, Deadline()):
            pool.get(timeout=1)
    assert hub.monotonic() - start < 0.25
    assert_quiescent(pool, db, hub)


def test_caller_deadline_during_cleanup_is_raised(make_pool, db, green_hub):
    hub = green_hub
    pool = make_pool(max_size=1)
    conn = pool.get()
    conn.cursor().execute("UPDATE t SET x = 1")
    db.rollback_delay = 0.3
    with pytest.raises(Deadline):
        with hub.timeout(0.05, Deadline()):
            pool.put(conn)
    assert_quiescent(pool, db, hub)


# -- disconnect handling ----------------------------------------------------------------------


def test_disconnect_error_in_block_closes_the_connection(make_pool, db, hub):
    pool = make_pool(max_size=1)
    with pytest.raises(db.OperationalError):
        with pool.item() as conn:
            raw_of(conn).disconnect()
            conn.cursor().execute("SELECT 1")
    assert db.connections[0].closed == 1 and pool.current_size == 0
    with pool.item() as conn:
        assert conn.id == 2
    assert pool.stats().lost == 1
    assert_quiescent(pool, db, hub)


def test_ordinary_error_in_block_keeps_the_connection(make_pool, db, hub):
    pool = make_pool(max_size=1)
    with pytest.raises(ValueError):
        with pool.item() as conn:
            conn.cursor().execute("UPDATE t SET x = 1")
            raise ValueError("application bug")
    assert db.rollbacks == 1 and db.connections[0].closed == 0
    with pool.item() as conn:
        assert conn.id == 1


def test_base_exception_in_block_closes_the_connection(make_pool, db, hub):
    pool = make_pool(max_size=1)
    with pytest.raises(Interrupted):
        with pool.item() as conn:
            conn.cursor().execute("SELECT 1")
            raise Interrupted()
    assert db.connections[0].closed == 1
    with pool.item() as conn:
        assert conn.id == 2
    assert_quiescent(pool, db, hub)


def test_hub_timeout_mid_query_closes_the_connection(make_pool, db, green_hub):
    hub = green_hub
    pool = make_pool(max_size=1)
    db.query_delay = 1.0
    with pytest.raises(hub.Timeout):
        with hub.timeout(0.05, None):
            with pool.item() as conn:
                conn.cursor().execute("SELECT 1")
    db.query_delay = 0
    wait_until(hub, lambda: db.connections[0].closed == 1)
    with pool.item() as conn:
        assert conn.id == 2
    assert_quiescent(pool, db, hub)


def test_kill_mid_query_closes_the_connection(make_pool, db, green_hub):
    hub = green_hub
    pool = make_pool(max_size=1)
    db.query_delay = 1.0
    started = hub.event()

    def query():
        with pool.item() as conn:
            started.set()
            conn.cursor().execute("SELECT 1")

    task = Spawned(hub, query)
    assert started.wait(2)
    task.kill()
    assert isinstance(task.outcome(), greenlet.GreenletExit)
    db.query_delay = 0
    wait_until(hub, lambda: db.connections[0].closed == 1)
    with pool.item(timeout=1) as conn:
        assert conn.id == 2
    assert_quiescent(pool, db, hub)


def test_put_of_a_closed_or_broken_connection_closes_it(make_pool, db, hub):
    pool = make_pool(max_size=1)
    conn = pool.get()
    raw_of(conn).disconnect()
    pool.put(conn)
    conn = pool.get()
    assert raw_of(conn).id == 2
    raw_of(conn).close()
    pool.put(conn)
    assert [c.closed for c in db.connections] == [1, 1]
    assert pool.stats().lost == 2
    assert_quiescent(pool, db, hub)


@pytest.mark.parametrize(
    "code, gone",
    [
        (2006, True),  # server has gone away
        (2013, True),  # lost connection during query
        (2014, True),  # commands out of sync
        (2055, True),  # lost connection, system error
        (1927, True),  # MariaDB: connection was killed
        (4031, True),  # MySQL 8: disconnected after inactivity
        (1317, False),  # KILL QUERY: the connection is still good
        (1213, False),  # deadlock
        (1064, False),  # syntax error
    ],
)
def test_mysql_disconnect_codes(code, gone):
    pymysql = pytest.importorskip("pymysql")
    driver = driver_for(pymysql)

    class Conn:
        open = True

    assert driver.is_disconnect(Conn(), pymysql.err.OperationalError(code, "x")) is gone
    closed = Conn()
    closed.open = False
    assert driver.is_disconnect(closed, pymysql.err.ProgrammingError(1064, "x"))


def test_psycopg2_disconnect_classes():
    psycopg2 = pytest.importorskip("psycopg2")
    driver = driver_for(psycopg2)

    class Conn:
        closed = 0

    conn = Conn()
    assert driver.is_disconnect(conn, psycopg2.OperationalError("server closed"))
    assert driver.is_disconnect(conn, psycopg2.InterfaceError("connection already closed"))
    assert not driver.is_disconnect(conn, psycopg2.ProgrammingError("syntax"))
    assert not driver.is_disconnect(conn, ValueError("application"))
    conn.closed = 2
    assert driver.is_disconnect(conn, ValueError("anything, once the connection is broken"))


# -- reconnect back-off ------------------------------------------------------------------------


def _timed_get(pool, hub, timeout):
    start = hub.monotonic()
    try:
        conn = pool.get(timeout=timeout)
    except Exception as exc:
        return exc, hub.monotonic() - start
    pool.put(conn)
    return None, hub.monotonic() - start


def test_backoff_lets_one_caller_try_per_step(make_pool, db, hub):
    db.outage = True
    pool = make_pool(max_size=10, reconnect_backoff=(0.05, 0.2), connect_timeout=1)
    with pytest.raises(db.OperationalError):
        pool.get(timeout=1)
    assert db.connect_attempts == 1
    timeout = 0.6
    tasks = [Spawned(hub, _timed_get, pool, hub, timeout) for _ in range(10)]
    results = [task.wait(10) for task in tasks]
    attempts = db.connect_attempts - 1
    # Delays 0.05, 0.1, 0.2, 0.2 ... (x0.8-1.2): about 4 trials in 0.6 s, never 10.
    assert 1 <= attempts <= 6, attempts
    unavailable = [exc for exc, _ in results if isinstance(exc, DatabaseUnavailable)]
    tried = [exc for exc, _ in results if isinstance(exc, db.OperationalError)]
    assert len(tried) == attempts and len(unavailable) == 10 - attempts, results
    for exc in unavailable:
        assert isinstance(exc.__cause__, db.OperationalError)
        assert SECRET not in str(exc)
    for _, elapsed in results:
        assert elapsed < timeout + 0.5, results
    assert_quiescent(pool, db, hub)

    db.outage = False  # the database is back: the next request gets through
    before = db.connect_attempts
    with pool.item(timeout=1) as conn:
        assert conn
    assert db.connect_attempts == before + 1
    held = [pool.get(timeout=0) for _ in range(3)]  # the gate is open again: no waiting
    for conn in held:
        pool.put(conn)
    assert_quiescent(pool, db, hub)


def test_backoff_caller_without_timeout_waits_for_the_next_trial(make_pool, db, hub):
    db.outage = True
    pool = make_pool(max_size=2, reconnect_backoff=(0.05, 0.05))
    with pytest.raises(db.OperationalError):
        pool.get()
    hub.spawn_after(0.02, setattr, db, "outage", False)
    start = hub.monotonic()
    with pool.item() as conn:  # waits out the back-off, then connects
        assert conn.id == 1
    assert 0.03 <= hub.monotonic() - start < 1.0


def test_connect_timeouts_count_as_failures_for_the_backoff(make_pool, db, hub):
    db.connect_delay = 0.5
    pool = make_pool(max_size=2, connect_timeout=0.02, reconnect_backoff=(0.2, 0.2))
    with pytest.raises(ConnectTimeout):
        pool.get(timeout=1)
    with pytest.raises(DatabaseUnavailable) as info:
        pool.get(timeout=0.05)  # within the back-off: no second attempt
    assert isinstance(info.value.__cause__, ConnectTimeout)
    assert db.connect_attempts <= 1  # (an OS-thread connect may not even have started)
    assert pool.stats().connect_timeouts == 1
    assert_quiescent(pool, db, hub)


def test_burst_of_simultaneous_failures_is_one_backoff_step(make_pool, db, hub):
    db.outage = True
    db.connect_delay = 0.02  # all 8 callers are connecting before the first fails
    pool = make_pool(max_size=8, reconnect_backoff=(0.05, 2.0))
    tasks = [Spawned(hub, _timed_get, pool, hub, 1) for _ in range(8)]
    for task in tasks:
        task.wait(10)
    assert db.connect_attempts == 8
    db.outage = False
    exc, elapsed = _timed_get(pool, hub, 5)
    assert exc is None
    assert elapsed < 0.5, elapsed  # one step (0.05 s), not the cap (2 s)


# -- limits, leaks, close, drain ----------------------------------------------------------


def test_max_waiting_refuses_at_once(make_pool, db, hub):
    pool = make_pool(max_size=1, max_waiting=2)
    held = pool.get()
    waiters = [Spawned(hub, pool.get, 5) for _ in range(2)]
    wait_until(hub, lambda: pool.waiting() == 2)
    start = hub.monotonic()
    with pytest.raises(TooManyWaiters, match="max_waiting=2"):
        pool.get(timeout=5)
    assert hub.monotonic() - start < 0.5  # at once, not after the 5 s
    pool.put(held)
    for task in waiters:
        pool.put(task.wait())
    assert_quiescent(pool, db, hub)


def _take_a_connection_here(pool):
    return pool.get()


def _leak_records(caplog):
    return [
        r
        for r in caplog.records
        if r.name == "greenpool.connections" and "leak_timeout" in r.getMessage()
    ]


def test_leak_timeout_logs_once_with_the_stack(make_pool, db, hub, caplog):
    pool = make_pool(max_size=2, leak_timeout=0.05)
    with caplog.at_level(logging.WARNING, logger="greenpool.connections"):
        with pool.item():
            pass  # returned in time: not reported
        conn = _take_a_connection_here(pool)
        wait_until(hub, lambda: _leak_records(caplog), timeout=3)
        hub.sleep(0.2)
        records = _leak_records(caplog)
        assert len(records) == 1
        message = records[0].getMessage()
        assert records[0].levelno == logging.WARNING
        assert "_take_a_connection_here" in message and "test_reliability.py" in message
        assert SECRET not in message
        pool.put(conn)
        conn = _take_a_connection_here(pool)  # a new checkout is watched anew
        wait_until(hub, lambda: len(_leak_records(caplog)) == 2, timeout=3)
        pool.put(conn)


def test_no_leak_report_without_leak_timeout(make_pool, hub, caplog):
    pool = make_pool(max_size=1)
    with caplog.at_level(logging.WARNING, logger="greenpool.connections"):
        conn = pool.get()
        hub.sleep(0.1)
        pool.put(conn)
    assert _leak_records(caplog) == []


def test_close_with_timeout_waits_for_checked_out_connections(make_pool, db, hub):
    pool = make_pool(max_size=2)
    a, b = pool.get(), pool.get()
    hub.spawn_after(0.05, pool.put, a)
    hub.spawn_after(0.1, pool.put, b)
    start = hub.monotonic()
    pool.close(timeout=5)
    assert 0.09 <= hub.monotonic() - start < 2
    assert db.open_connections() == [] and pool.current_size == 0


def test_close_with_timeout_returns_once_everything_is_closed(make_pool, db, hub):
    pool = make_pool(max_size=1)
    conn = pool.get()
    raw = raw_of(conn)
    real_close = raw.close

    def slow_close():
        hub.sleep(0.3)
        real_close()

    raw.close = slow_close
    hub.spawn_after(0.05, pool.put, conn)
    pool.close(timeout=5)
    assert raw.closed == 1 and pool.current_size == 0


def test_close_with_timeout_closes_what_is_still_out(make_pool, db, hub, caplog):
    pool = make_pool(max_size=3)
    held, idle = pool.get(), pool.get()
    pool.put(idle)
    waiter_pool_full = [pool.get(), pool.get()]
    waiter = Spawned(hub, pool.get, 5)
    wait_until(hub, lambda: pool.waiting() == 1)
    start = hub.monotonic()
    with caplog.at_level(logging.WARNING, logger="greenpool"):
        pool.close(timeout=0.1)
    assert 0.1 <= hub.monotonic() - start < 1
    assert isinstance(waiter.outcome(), PoolClosed)
    assert db.open_connections() == []
    assert "still checked out after close(timeout=0.1)" in caplog.text
    with pytest.raises(db.InterfaceError):
        held.cursor()  # closed under its user
    for conn in [held, *waiter_pool_full]:
        pool.put(conn)  # silently accepted
    with pytest.raises(ForeignConnection):
        pool.put(held)  # but only once
    stats = pool.stats()
    assert (stats.size, stats.in_use, stats.idle) == (0, 0, 0)
    assert stats.opened == stats.closed == 3
    with pytest.raises(PoolClosed):
        pool.get()


def test_drain_replaces_every_connection_without_failing_requests(make_pool, db, hub):
    pool = make_pool(max_size=4)
    db.query_delay = 0.002
    errors = []
    stop = hub.event()

    def worker():
        while not stop.is_set():
            try:
                with pool.item(timeout=5) as conn:
                    conn.cursor().execute("SELECT 1")
            except Exception as exc:  # collected for the assertion below
                errors.append(exc)
            hub.sleep(0.001)

    tasks = [Spawned(hub, worker) for _ in range(8)]
    wait_until(hub, lambda: db.connects == 4)
    hub.sleep(0.02)
    old = [c for c in db.connections if c.closed == 0]
    pool.connect_kwargs["password"] = "rotated"
    pool.drain()
    wait_until(hub, lambda: all(c.closed == 1 for c in old), timeout=5)
    hub.sleep(0.02)
    stop.set()
    for task in tasks:
        task.wait(10)
    assert errors == []
    assert len(old) == 4 and db.connects >= 8
    new = [c for c in db.connections if c.closed == 0]
    assert new and all(c.kwargs["password"] == "rotated" for c in new)
    assert_quiescent(pool, db, hub)


def test_drain_closes_checked_out_connections_on_return(make_pool, db, hub):
    pool = make_pool(max_size=2)
    out = pool.get()
    pool.put(pool.get(timeout=0))  # one idle too
    pool.drain()
    assert pool.current_size == 1 and db.closes == 1
    pool.put(out)
    assert db.closes == 2 and pool.current_size == 0
    with pool.item() as conn:
        assert conn.id == 3


def test_connect_in_flight_at_close_is_not_handed_out(make_pool, db, hub):
    db.connect_delay = 0.2
    pool = make_pool(max_size=1)
    getter = Spawned(hub, pool.get, 5)
    wait_until(hub, lambda: db.connect_attempts == 1)
    pool.close()
    outcome = getter.outcome()
    if not isinstance(outcome, PoolClosed):
        pool.put(getter.value)
    assert isinstance(outcome, PoolClosed)
    wait_until(hub, lambda: db.open_connections() == [])


def test_connect_in_flight_at_drain_is_replaced(make_pool, db, hub):
    db.connect_delay = 0.2
    pool = make_pool(max_size=1)
    getter = Spawned(hub, pool.get, 5)
    wait_until(hub, lambda: db.connect_attempts == 1)
    pool.connect_kwargs["password"] = "rotated"
    pool.drain()
    conn = getter.wait()
    assert raw_of(conn).kwargs["password"] == SECRET  # opened before the drain
    pool.put(conn)
    assert db.connections[0].closed == 1  # so it is replaced on return


# -- stats ------------------------------------------------------------------------------------


def test_stats_count_every_event(make_pool, db, hub):
    pool = make_pool(max_size=2, max_age=60, reconnect_backoff=(0.01, 0.01), connect_timeout=0.05)
    a = pool.get()
    b = pool.get()
    with pytest.raises(PoolTimeout):
        pool.get(timeout=0.01)
    pool.put(a)
    raw_of(b).disconnect()
    pool.put(b)  # lost
    with pytest.raises(ForeignConnection):
        pool.put(b)  # bad return
    db.connect_error = db.OperationalError("refused")
    pool.clear()
    with pytest.raises(db.OperationalError):
        pool.get()
    hub.sleep(0.02)
    db.connect_delay = 0.5
    with pytest.raises(ConnectTimeout):
        pool.get()
    db.connect_delay = 0
    hub.sleep(0.03)
    with pool.item(timeout=1):
        pass
    s = pool.stats()
    assert s.size == s.idle + s.in_use + s.creating <= s.max_size
    assert (s.size, s.idle, s.in_use, s.creating, s.waiting) == (1, 1, 0, 0, 0)
    assert (s.opened, s.closed) == (3, 2)
    assert (s.connect_failures, s.connect_timeouts) == (2, 1)
    assert (s.lost, s.bad_returns, s.timeouts, s.waits) == (1, 1, 1, 1)
    assert s.created == 3 and s.create_failures == 2
    assert s.usage_time > 0


def test_stats_wait_and_usage_time(make_pool, db, hub):
    pool = make_pool(max_size=1)
    held = pool.get()
    hub.spawn_after(0.1, pool.put, held)
    with pool.item(timeout=5):
        pass
    stats = pool.stats()
    assert stats.usage_time >= 0.09
    assert 0.09 <= stats.wait_time < 5, stats


def test_stats_invariant_under_load(make_pool, db, hub):
    pool = make_pool(max_size=3)
    db.query_delay = 0.001
    snapshots = []

    def worker():
        for _ in range(20):
            with pool.item(timeout=5) as conn:
                conn.cursor().execute("SELECT 1")
                snapshots.append(pool.stats())

    tasks = [Spawned(hub, worker) for _ in range(6)]
    for task in tasks:
        task.wait(20)
    for s in snapshots:
        assert s.size == s.idle + s.in_use + s.creating <= s.max_size
        assert s.in_use >= 1
    assert_quiescent(pool, db, hub)
    assert pool.stats().requests >= 120


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"check": 42}, TypeError, "check must be"),
        ({"check": ""}, ValueError, "check must be"),
        ({"check": "   "}, ValueError, "check must be"),
        ({"check_interval": -1}, ValueError, "check_interval must be >= 0"),
        ({"check_interval": None}, TypeError, "check_interval must be a number"),
        ({"check_interval": "1s"}, TypeError, "check_interval must be a number"),
        ({"check_interval": float("nan")}, ValueError, "check_interval"),
        ({"leak_timeout": -0.1}, ValueError, "leak_timeout must be >= 0"),
        ({"leak_timeout": "soon"}, TypeError, "leak_timeout must be a number"),
        ({"reconnect_backoff": (0, 1)}, ValueError, "reconnect_backoff"),
        ({"reconnect_backoff": (2.0, 1.0)}, ValueError, "reconnect_backoff"),
        ({"reconnect_backoff": (0.1,)}, ValueError, "reconnect_backoff"),
        ({"reconnect_backoff": (0.1, "x")}, ValueError, "reconnect_backoff"),
        ({"reconnect_backoff": (-1.0, 1.0)}, ValueError, "reconnect_backoff"),
        ({"reconnect_backoff": (float("nan"), 1.0)}, ValueError, "reconnect_backoff"),
        ({"reconnect_backoff": 0.5}, ValueError, "reconnect_backoff"),
        ({"connect_kwargs": [("password", SECRET)]}, TypeError, "connect_kwargs must be a dict"),
        ({"connect_kwargs": "password=x"}, TypeError, "connect_kwargs must be a dict"),
        ({"max_waiting": -1}, ValueError, "max_waiting must be >= 0"),
        ({"max_waiting": 1.5}, TypeError, "max_waiting must be an integer"),
    ],
)
def test_bad_reliability_options_name_the_option(pool_cls, db, hub, kwargs, error, text):
    with pytest.raises(error, match=text) as info:
        pool_cls(db, hub=hub, password=SECRET, **kwargs)
    assert SECRET not in str(info.value)


def test_close_timeout_is_validated(make_pool):
    pool = make_pool()
    with pytest.raises(ValueError, match="timeout must be >= 0"):
        pool.close(timeout=-1)


def test_connect_kwargs_reach_the_driver_and_stay_out_of_reprs(make_pool, db, caplog):
    pool = make_pool(connect_kwargs={"connect_timeout": 9, "password": SECRET, "user": "u"})
    with caplog.at_level(logging.DEBUG, logger="greenpool"):
        with pool.item() as conn:
            text = repr(pool) + repr(conn) + str(pool.stats())
    _, kwargs = db.connect_calls[0]
    assert kwargs["connect_timeout"] == 9 and kwargs["password"] == SECRET
    assert SECRET not in text and SECRET not in caplog.text


@pytest.mark.parametrize(
    "module, seconds, expected",
    [
        ("psycopg2", 0.2, 2),
        ("psycopg2", 5, 6),
        ("pymysql", 0.2, 1.2),
        ("pymysql", None, None),
    ],
)
def test_driver_connect_timeout_is_set_above_the_pools(hub, module, seconds, expected):
    mod = pytest.importorskip(module)
    pool = RawConnectionPool(mod, connect_timeout=seconds, hub=hub, host="127.0.0.1")
    assert pool.connect_kwargs.get("connect_timeout") == expected
    pool.close()
    own = RawConnectionPool(
        mod, connect_timeout=seconds, hub=hub, connect_kwargs={"connect_timeout": 30}
    )
    assert own.connect_kwargs["connect_timeout"] == 30
    own.close()


def test_foreign_connection_changes_nothing(make_pool, db, hub):
    pool = make_pool(max_size=2)
    other = make_pool(max_size=2)
    mine = pool.get()
    theirs = other.get()
    before = pool.stats()
    for bad in (theirs, db.connect(), object()):
        with pytest.raises(ForeignConnection):
            pool.put(bad)
    after = pool.stats()
    assert (after.size, after.idle, after.in_use) == (before.size, before.idle, before.in_use)
    assert after.bad_returns == before.bad_returns + 3
    assert theirs and mine
    other.put(theirs)
    pool.put(mine)


def test_socket_test_works_for_descriptors_past_select_limit():
    """select() cannot take descriptors of 1024 and above, which busy servers reach."""
    import resource

    from greenpool.health import socket_hung_up

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft <= 1500:
        pytest.skip(f"needs more than 1500 open files (RLIMIT_NOFILE is {soft})")
    client, server = socket.socketpair()
    high = os.dup2(client.fileno(), 1500)
    try:
        assert socket_hung_up(high) is False
        server.sendall(b"E")
        assert socket_hung_up(high) is True
    finally:
        os.close(high)
        client.close()
        server.close()
    assert socket_hung_up(high) is True  # closed descriptor: gone
    assert socket_hung_up(None) is False
