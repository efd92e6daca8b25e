"""Reliability of the connection pools, on the fake driver, for both pool classes.

Deterministic cases: connects interrupted or failing (in the pool's own
growth, never in a caller), hand-offs interrupted at the worst moment, the
health check at checkout, disconnect handling, reconnect back-off,
``max_waiting``, ``leak_timeout``, ``close(timeout)``, ``drain()``, ``stats()``
and bad input.  The contract for connect failures: they fail no caller whose
timeout has not run out; when it runs out, the :class:`~greenpool.PoolTimeout`
names the last connect error and chains it (``__cause__``).

Cases about time run on :class:`~tests.support.manual_hub.ManualClockHub` and
assert exact virtual times; the others run on the hub of the test process.
The seeded soak is in test_soak.py, the real servers in test_faults_real.py.
"""

from __future__ import annotations

import logging
import os
import socket

import greenlet
import pytest

from greenpool import (
    ConnectTimeout,
    ForeignConnection,
    PoolClosed,
    PoolTimeout,
    RawConnectionPool,
    TooManyWaiters,
    TpooledConnectionPool,
)
from greenpool.drivers import driver_for
from greenpool.vetting import SOCKET_TEST_AFTER
from tests.conftest import SECRET
from tests.support.fakedb import make_fakedb
from tests.support.manual_hub import ManualClockHub
from tests.support.pool_events import Recorder, connects_taking, run_on_manual_clock
from tests.support.tasks import Spawned, wait_until

pytestmark = pytest.mark.timeout(120)


class Interrupted(BaseException):
    """Stands in for a hub Timeout or a kill where a real one cannot be raised (threads)."""


# -- fixtures and shared checks ---------------------------------------------------------------


@pytest.fixture
def manual() -> ManualClockHub:
    """A fresh manual-clock hub, for the cases about time."""
    return ManualClockHub()


def on_manual_clock(hub, pool_cls, db, body, **options):
    """``body(pool)`` on a pool of ``pool_cls`` on the manual clock ``hub``."""
    options.setdefault("host", "db1")
    options.setdefault("password", SECRET)
    return run_on_manual_clock(hub, pool_cls, db, body, **options)


def assert_quiescent(pool, db, hub, timeout=30.0):
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


def counting_check(seen, bad=()):
    """A check= callable that records the ids it sees and fails for those in ``bad``."""

    def check(raw):
        seen.append(raw.id)
        if raw.id in bad:
            raise raw.db.OperationalError("fake: health check failed")

    return check


def checkout_all(pool, n):
    """Check out n connections at once and return them all (so n are idle)."""
    conns = [pool.get(timeout=30) for _ in range(n)]
    ids = [pool.raw_connection(c).id for c in conns]
    for conn in conns:
        pool.put(conn)
    return ids


def _timed_get(pool, hub, timeout):
    """(the exception get() raised or None, seconds it took); a connection got is put back."""
    start = hub.monotonic()
    try:
        conn = pool.get(timeout=timeout)
    except Exception as exc:
        return exc, hub.monotonic() - start
    pool.put(conn)
    return None, hub.monotonic() - start


# -- connects that fail or are interrupted ----------------------------------------------------


def _interruptions(hub):
    return {
        "hub-timeout": lambda: hub.Timeout(),
        "greenlet-exit": lambda: greenlet.GreenletExit(),
        "base-exception": lambda: Interrupted(),
    }


# The growth task re-raises the interruption and ends: on the threads hub, an OS thread.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("kind", ["hub-timeout", "greenlet-exit", "base-exception"])
def test_interrupted_connect_fails_no_caller(make_pool, db, hub, kind):
    """A connect interrupted by a hub Timeout, GreenletExit or another BaseException
    is the pool's own business: its slot is offered again and every caller is served."""
    # (On the threads hub, "hub-timeout" is the builtin TimeoutError: an ordinary error.)
    error = _interruptions(hub)[kind]
    calls = []

    def hook():
        calls.append(1)
        if len(calls) == 1:
            raise error()

    db.connect_hook = hook
    pool = make_pool(max_size=1, reconnect_backoff=(0.01, 0.05))
    callers = [Spawned(hub, pool.get, 30) for _ in range(2)]
    # (OS threads may queue in either order: serve whichever got the connection.)
    wait_until(hub, lambda: any(caller.done.is_set() for caller in callers), timeout=30)
    callers.sort(key=lambda caller: not caller.done.is_set())
    for caller in callers:
        conn = caller.wait(60)
        assert pool.raw_connection(conn).id == 1
        pool.put(conn)
    assert (db.connect_attempts, db.connects) == (2, 1)
    assert_quiescent(pool, db, hub)


def test_connect_errors_fail_no_caller_before_its_timeout(manual, pool_cls, db):
    """A failing database: the caller waits its whole timeout while the pool retries,
    then gets a PoolTimeout naming the last connect error, chained as its cause."""
    db.connect_error = db.OperationalError(f"refused by the server of {db.__name__}")
    db.connect_error_sticky = True
    record = Recorder(manual)

    def body(pool):
        with pytest.raises(PoolTimeout) as info:
            pool.get(timeout=1.5)
        return info.value, manual.monotonic(), pool.stats()

    error, failed_at, stats = on_manual_clock(manual, pool_cls, db, body,
                                              reconnect_backoff=(0.1, 0.2), record=record)
    assert failed_at == 1.5
    assert error.__cause__ is db.connect_error
    assert "OperationalError: refused by the server of fakedb" in str(error)
    assert SECRET not in str(error)
    assert record.times("timed_out") == [1.5]
    assert stats.connect_failures == len(record.errors()) >= 5  # retried all along
    assert (stats.size, stats.timeouts, stats.connect_timeouts) == (0, 1, 0)


def test_a_connect_error_between_successes_is_never_seen(manual, pool_cls, db):
    """One refused connect among good ones: the caller is served by the retry."""
    db.connect_error = db.OperationalError("refused once")

    def body(pool):
        with pool.item(timeout=5) as conn:
            return conn.id, manual.monotonic(), pool.stats().connect_failures

    conn_id, served_at, failures = on_manual_clock(manual, pool_cls, db, body,
                                                   reconnect_backoff=(0.05, 0.05))
    assert (conn_id, failures) == (1, 1)
    assert 0.04 <= served_at <= 0.06  # one back-off step (0.05 s, jittered by 20 %)


def test_driver_timeout_error_is_not_reported_as_a_connect_timeout(manual, pool_cls, db):
    def hook():
        raise TimeoutError("the driver's own timeout")

    db.connect_hook = hook

    def body(pool):
        with pytest.raises(PoolTimeout) as info:
            pool.get(timeout=1)
        return info.value, manual.monotonic(), pool.stats()

    error, failed_at, stats = on_manual_clock(manual, pool_cls, db, body, connect_timeout=5)
    assert failed_at == 1.0
    assert type(error.__cause__) is TimeoutError and "TimeoutError" in str(error)
    assert stats.connect_timeouts == 0 and stats.connect_failures >= 1


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
            with hub.timeout(30, Hung("put() hung")):
                pool.put(conn)
        assert pool.current_size == 0
        wait_until(hub, lambda: db.connections[0].closed == 1, timeout=30)
    finally:
        pool.close()


def test_a_caller_giving_up_during_a_connect_leaves_it_to_the_next(pool_cls, db):
    """The connect is the pool's, not the caller's: a caller whose deadline ends
    while it is in flight leaves, and the connection serves the next caller."""
    hub = connects_taking(pool_cls, db, 0.5)

    def get_with_deadline(pool):
        with hub.timeout(0.05, Interrupted()):
            return pool.get(5)

    def body(pool):
        first = Spawned(hub, get_with_deadline, pool)
        second = Spawned(hub, pool.get, 5)
        assert isinstance(first.outcome(), Interrupted)
        gave_up_at = hub.monotonic()
        conn = second.wait()
        served_at = hub.monotonic()
        raw = pool.raw_connection(conn)
        pool.put(conn)
        assert_quiescent(pool, db, hub)
        return gave_up_at, served_at, raw.id, db.connect_attempts

    assert on_manual_clock(hub, pool_cls, db, body, max_size=1) == (0.05, 0.5, 1, 1)


# -- hand-offs interrupted at the worst moment ----------------------------------------------


def test_waiter_killed_at_the_instant_of_hand_off(make_pool, db, green_hub):
    hub = green_hub
    pool = make_pool(max_size=1)
    held = pool.get()
    raw = pool.raw_connection(held)
    waiter = Spawned(hub, pool.get, 30)
    wait_until(hub, lambda: pool.waiting() == 1)
    # The connection is handed to the waiter, which dies before it runs to take it.
    # eventlet delivers a kill at once, gevent at the next loop turn, in order.
    if hub.name == "gevent":
        waiter.kill()
        pool.put(held)
    else:
        pool.put(held)
        waiter.kill()
    assert isinstance(waiter.outcome(30), greenlet.GreenletExit)
    assert pool.free() == 1 and pool.waiting() == 0
    again = pool.get(timeout=0)
    assert pool.raw_connection(again) is raw and db.connects == 1
    pool.put(again)
    assert_quiescent(pool, db, hub)


def test_waiter_killed_after_the_hand_off_passes_it_on(manual, pool_cls, db):
    """On the manual clock the kill lands exactly between the hand-off and the
    waiter's next turn (a kill wins over a wake-up not yet delivered)."""
    def body(pool):
        held = pool.get()
        raw = pool.raw_connection(held)
        doomed = Spawned(manual, pool.get, 5)
        behind = Spawned(manual, pool.get, 5)
        manual.sleep(0)
        assert pool.waiting() == 2
        pool.put(held)  # handed to ``doomed`` ...
        doomed.kill()  # ... which dies before it runs
        assert isinstance(doomed.outcome(), greenlet.GreenletExit)
        conn = behind.wait()
        assert pool.raw_connection(conn) is raw
        pool.put(conn)
        assert_quiescent(pool, db, manual)
        return manual.monotonic(), db.connects

    assert on_manual_clock(manual, pool_cls, db, body, max_size=1) == (0.0, 1)


def test_waiter_timing_out_at_the_instant_of_hand_off_takes_it(manual, pool_cls, db):
    """The hand-off lands after the waiter's timeout fired but before it ran: it is
    served, not timed out, and nothing is lost."""
    def body(pool):
        held = pool.get()
        raw = pool.raw_connection(held)
        # Set before the waiter's own timer, for the same instant: it runs first.
        manual.spawn_after(5, pool.put, held)
        conn = pool.get(timeout=5)
        assert pool.raw_connection(conn) is raw
        pool.put(conn)
        assert_quiescent(pool, db, manual)
        return manual.monotonic(), pool.stats().timeouts

    assert on_manual_clock(manual, pool_cls, db, body, max_size=1) == (5.0, 0)


def test_waiter_interrupted_at_the_instant_of_hand_off_passes_it_on(manual, pool_cls, db):
    def body(pool):
        held = pool.get()
        raw = pool.raw_connection(held)
        manual.spawn_after(5, pool.put, held)  # lands just before the interruption runs
        with pytest.raises(Interrupted):
            with manual.timeout(5, Interrupted()):
                pool.get(timeout=10)
        assert pool.free() == 1
        conn = pool.get(timeout=0)
        assert pool.raw_connection(conn) is raw
        pool.put(conn)
        assert_quiescent(pool, db, manual)
        return manual.monotonic(), db.connects

    assert on_manual_clock(manual, pool_cls, db, body, max_size=1) == (5.0, 1)


def test_failing_rollback_on_return_gives_the_waiter_a_new_connection(make_pool, db, hub, caplog):
    pool = make_pool(max_size=1)
    conn = pool.get()
    conn.cursor().execute("UPDATE t SET x = 1")  # opens a transaction: return rolls back
    waiter = Spawned(hub, pool.get, 30)
    wait_until(hub, lambda: pool.waiting() == 1)
    db.fail_rollback = True
    with caplog.at_level(logging.WARNING, logger="greenpool"):
        pool.put(conn)
    fresh = waiter.wait(60)
    assert pool.raw_connection(fresh).id == 2 and db.connections[0].closed == 1
    assert "cleanup of connection #1 failed" in caplog.text
    db.fail_rollback = False
    pool.put(fresh)
    assert pool.stats().lost == 1
    assert_quiescent(pool, db, hub)


def test_failing_close_still_frees_the_slot(make_pool, db, hub):
    pool = make_pool(max_size=1)
    conn = pool.get()
    pool.raw_connection(conn).disconnect()
    db.fail_close = True
    pool.put(conn)  # closed because broken; close() raises; the slot is freed anyway
    db.fail_close = False
    with pool.item(timeout=30) as again:
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
    conns = [pool.get(timeout=30) for _ in range(2)]
    assert sorted(pool.raw_connection(c).id for c in conns) == [3, 4]
    assert seen == []  # the closed flag is read locally; new connections are not checked
    for conn in conns:
        pool.put(conn)
    assert set(ids) == {1, 2} and all(c.closed == 1 for c in db.connections[:2])
    assert pool.stats().lost == 2
    assert_quiescent(pool, db, hub)


def sockets_for(monkeypatch, pool, filenos):
    """Give the fake connections sockets: the pool's driver profile reports
    ``filenos[connection id]`` as each connection's descriptor."""
    monkeypatch.setattr(pool.driver, "fileno", lambda conn: filenos.get(conn.id))


@pytest.fixture
def socket_pairs():
    """``pairs(n)``: n (client, server) socket pairs, all closed after the test."""
    made = []

    def pairs(n):
        new = [socket.socketpair() for _ in range(n)]
        made.extend(new)
        return new

    yield pairs
    for client, server in made:
        client.close()
        server.close()


def test_readable_socket_means_hung_up_no_round_trip(make_pool, db, hub, monkeypatch,
                                                      socket_pairs):
    seen = []
    pool = make_pool(max_size=2, check=counting_check(seen), check_interval=0)
    checkout_all(pool, 2)
    (c1, s1), (c2, _) = socket_pairs(2)
    sockets_for(monkeypatch, pool, {1: c1.fileno(), 2: c2.fileno()})
    s1.sendall(b"E")  # e.g. PostgreSQL's FATAL message before it hangs up
    s1.close()
    a = pool.get(timeout=30)
    b = pool.get(timeout=30)
    got = sorted(pool.raw_connection(c).id for c in (a, b))
    # #1 discarded unchecked; #2 (socket quiet) checked with a round trip; #3 is new.
    assert got == [2, 3], got
    assert seen == [2]
    assert db.connections[0].closed == 1
    pool.put(a)
    pool.put(b)
    assert_quiescent(pool, db, hub)


def test_socket_test_is_skipped_for_a_connection_handed_straight_back(
    manual, pool_cls, db, monkeypatch, socket_pairs
):
    """Within SOCKET_TEST_AFTER of its return a connection is reused untested (it was
    not idle, and a busy pool would otherwise pay a system call per checkout); after
    that, a server's hang-up is seen without a round trip."""
    seen = []
    ((client, server),) = socket_pairs(1)

    def body(pool):
        sockets_for(monkeypatch, pool, {1: client.fileno()})
        with pool.item():
            pass
        server.close()  # the server hangs up as the connection comes back
        with pool.item(timeout=1) as conn:  # no time has passed: handed out as it is
            straight_back = conn.id
        manual.sleep(SOCKET_TEST_AFTER * 2)
        with pool.item(timeout=1) as conn:
            after_a_moment = conn.id
        return straight_back, after_a_moment, pool.stats().lost

    assert on_manual_clock(manual, pool_cls, db, body, max_size=1,
                           check=counting_check(seen)) == (1, 2, 1)
    assert seen == []  # check_interval (0.5 s) never ran out: no round trip


def test_closed_connection_is_replaced_at_checkout_once_check_interval_passed(
    manual, pool_cls, db
):
    seen = []

    def body(pool):
        checkout_all(pool, 2)
        db.connections[0].disconnect()
        db.connections[1].close()
        manual.sleep(0.06)
        conns = [pool.get(timeout=1) for _ in range(2)]
        ids = sorted(pool.raw_connection(c).id for c in conns)
        for conn in conns:
            pool.put(conn)
        assert_quiescent(pool, db, manual)
        return ids

    assert on_manual_clock(manual, pool_cls, db, body, max_size=2,
                           check=counting_check(seen), check_interval=0.05) == [3, 4]
    assert seen == []


def test_check_interval_skips_the_round_trip_for_recently_used(manual, pool_cls, db):
    seen = []

    def body(pool):
        with pool.item():
            pass  # brand new: never checked
        first = list(seen)
        for _ in range(5):
            manual.sleep(0.4)
            with pool.item():
                pass  # used within check_interval
        within = list(seen)
        manual.sleep(0.6)  # check_interval (0.5 s) passed
        with pool.item():
            pass
        after = list(seen)
        with pool.item():
            pass
        return first, within, after, list(seen)

    assert on_manual_clock(manual, pool_cls, db, body, max_size=1, check=counting_check(seen),
                           check_interval=0.5) == ([], [], [1], [1])


def test_check_interval_zero_checks_every_reuse(make_pool, db):
    seen = []
    pool = make_pool(max_size=1, check=counting_check(seen), check_interval=0)
    for _ in range(4):
        with pool.item(timeout=30):
            pass
    assert seen == [1, 1, 1]  # every reuse; a brand-new connection is not checked


def test_failed_check_closes_and_takes_another_at_once(manual, pool_cls, db, caplog):
    seen = []

    def body(pool):
        checkout_all(pool, 3)  # idle, most recent first: 3, 2, 1
        manual.sleep(1)
        with caplog.at_level(logging.WARNING, logger="greenpool"):
            with pool.item(timeout=1) as conn:
                got = conn.id
        assert_quiescent(pool, db, manual)
        return got, manual.monotonic(), [c.closed for c in db.connections]

    assert on_manual_clock(manual, pool_cls, db, body, max_size=3,
                           check=counting_check(seen, bad={2, 3}),
                           check_interval=0) == (1, 1.0, [0, 1, 1])
    assert seen == [3, 2, 1]
    assert "failed its health check" in caplog.text and SECRET not in caplog.text


def test_timeout_covers_the_whole_get_when_a_connection_fails_its_check(manual, pool_cls, db):
    seen = []
    bad = set()

    def take_the_freed_slot(pool):
        with pool.item(timeout=5):
            manual.sleep(1.0)

    def body(pool):
        held = pool.get()
        bad.add(pool.raw_connection(held).id)  # it fails its check at its next checkout
        caller = Spawned(manual, _timed_get, pool, manual, 0.5)
        manual.sleep(0)
        other = Spawned(manual, take_the_freed_slot, pool)
        manual.sleep(0.45)
        assert pool.waiting() == 2
        pool.put(held)  # to the caller: it fails its check; the new connection goes to other
        exc, elapsed = caller.wait()
        other.wait()
        return exc, elapsed

    exc, elapsed = on_manual_clock(manual, pool_cls, db, body, max_size=1,
                                   check=counting_check(seen, bad), check_interval=0)
    assert isinstance(exc, PoolTimeout) and seen == [1]
    # Counted from the call, not restarted after the failed check; and named so.
    assert elapsed == pytest.approx(0.5, abs=1e-9)
    assert "no connection within 0.5 s" in str(exc)


def test_all_idle_connections_bad_opens_a_new_one(make_pool, db, hub):
    seen = []
    pool = make_pool(max_size=2, check=counting_check(seen, bad={1, 2}), check_interval=0)
    checkout_all(pool, 2)
    with pool.item(timeout=30) as conn:
        assert conn.id == 3
    assert_quiescent(pool, db, hub)


def test_disconnect_makes_older_connections_suspect(make_pool, db):
    seen = []
    pool = make_pool(max_size=3, check=counting_check(seen), check_interval=60)
    checkout_all(pool, 3)
    with pytest.raises(db.OperationalError):
        with pool.item() as conn:
            victim = pool.raw_connection(conn)
            victim.disconnect()  # the server restarted ...
            conn.cursor().execute("SELECT 1")  # ... and the query fails
    assert victim.closed == 1
    # The others were used within check_interval, but before the disconnect: checked.
    conns = [pool.get(timeout=30) for _ in range(2)]
    assert sorted(seen) == sorted(pool.raw_connection(c).id for c in conns)
    assert len(seen) == 2
    for conn in conns:
        pool.put(conn)
    with pool.item():
        pass
    assert len(seen) == 2  # checked once; not suspect any more


def test_sql_and_ping_checks(pool_cls, db, hub):
    sql_pool = pool_cls(db, max_size=1, check="SELECT 1", check_interval=0, hub=hub)
    for _ in range(2):
        with sql_pool.item(timeout=30):
            pass
    assert db.connections[0].queries == ["SELECT 1"]
    sql_pool.close()
    ping_pool = pool_cls(db, max_size=1, check_interval=0, hub=hub)  # check="ping"
    for _ in range(2):
        with ping_pool.item(timeout=30):
            pass
    assert db.connections[1].queries == ["SELECT 1"]  # the generic driver pings with SQL
    ping_pool.close()


def test_check_callable_gets_the_raw_connection(make_pool, db):
    got = []
    pool = make_pool(max_size=1, check=got.append, check_interval=0)
    for _ in range(2):
        with pool.item(timeout=30):
            pass
    assert got == [db.connections[0]]


@pytest.mark.parametrize("off", ["off", None, False])
def test_check_off_does_no_round_trip(make_pool, db, off):
    pool = make_pool(max_size=1, check=off, check_interval=0)
    for _ in range(3):
        with pool.item(timeout=30):
            pass
    assert db.connections[0].queries == [] and db.pings == 0


class Deadline(Exception):
    """A caller's deadline raised by ``hub.timeout(s, Deadline())``: eventlet and gevent
    let the exception be any class, and ordinary ones are common."""


def test_caller_deadline_during_the_health_check_is_raised(manual, pool_cls, db):
    def slow_check(raw):
        manual.sleep(0.3)

    def body(pool):
        with pool.item():
            pass
        start = manual.monotonic()
        with pytest.raises(Deadline):
            with manual.timeout(0.05, Deadline()):
                pool.get(timeout=1)
        took = manual.monotonic() - start
        assert_quiescent(pool, db, manual)
        return took, pool.stats().lost

    took, lost = on_manual_clock(manual, pool_cls, db, body, max_size=1, check=slow_check,
                                 check_interval=0)
    assert took == pytest.approx(0.05, abs=1e-9)
    assert lost == 1  # the connection interrupted in its check is in an unknown state


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
            pool.raw_connection(conn).disconnect()
            conn.cursor().execute("SELECT 1")
    assert db.connections[0].closed == 1 and pool.current_size == 0
    with pool.item(timeout=30) as conn:
        assert conn.id == 2
    assert pool.stats().lost == 1
    assert_quiescent(pool, db, hub)


def test_ordinary_error_in_block_keeps_the_connection(make_pool, db):
    pool = make_pool(max_size=1)
    with pytest.raises(ValueError):
        with pool.item() as conn:
            conn.cursor().execute("UPDATE t SET x = 1")
            raise ValueError("application bug")
    assert db.rollbacks == 1 and db.connections[0].closed == 0
    with pool.item(timeout=30) as conn:
        assert conn.id == 1


def test_base_exception_in_block_closes_the_connection(make_pool, db, hub):
    pool = make_pool(max_size=1)
    with pytest.raises(Interrupted):
        with pool.item() as conn:
            conn.cursor().execute("SELECT 1")
            raise Interrupted()
    assert db.connections[0].closed == 1
    with pool.item(timeout=30) as conn:
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
    wait_until(hub, lambda: db.connections[0].closed == 1, timeout=30)
    with pool.item(timeout=30) as conn:
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
    assert started.wait(30)
    task.kill()
    assert isinstance(task.outcome(30), greenlet.GreenletExit)
    db.query_delay = 0
    wait_until(hub, lambda: db.connections[0].closed == 1, timeout=30)
    with pool.item(timeout=30) as conn:
        assert conn.id == 2
    assert_quiescent(pool, db, hub)


def test_put_of_a_closed_or_broken_connection_closes_it(make_pool, db, hub):
    pool = make_pool(max_size=1)
    conn = pool.get()
    pool.raw_connection(conn).disconnect()
    pool.put(conn)
    conn = pool.get(timeout=30)
    raw = pool.raw_connection(conn)
    assert raw.id == 2
    raw.close()
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


def test_outage_callers_wait_their_timeout_while_one_connect_at_a_time_retries(
    manual, pool_cls, db
):
    """Ten callers during an outage: connect attempts one at a time, spaced by the
    back-off (0.05, 0.1, 0.2, 0.2 s, each x0.8-1.2); every caller fails at its own
    timeout, naming the error.  When the database is back, the next callers are
    served at once."""
    db.outage = True
    record = Recorder(manual)

    def body(pool):
        callers = [Spawned(manual, _timed_get, pool, manual, 0.6) for _ in range(10)]
        results = [caller.wait() for caller in callers]
        attempts = db.connect_attempts
        manual.sleep(0.4)  # the last back-off delay has run out
        db.outage = False
        back_at = manual.monotonic()
        again = [Spawned(manual, _timed_get, pool, manual, 5) for _ in range(3)]
        served = [caller.wait() for caller in again]
        assert_quiescent(pool, db, manual)
        return results, attempts, served, back_at

    results, attempts, served, back_at = on_manual_clock(
        manual, pool_cls, db, body, max_size=10, reconnect_backoff=(0.05, 0.2), record=record,
    )
    failed = record.times("connect_failed")
    assert len(failed) == attempts
    # Up to MAX_CONNECTING (4) connects may be in flight when the first failure is
    # seen; from then on one at a time, each after a back-off delay (>= 0.04 s).
    burst = failed.count(failed[0])
    assert burst <= 4 and 2 <= attempts - burst <= 5, failed
    later = failed[burst - 1:]
    assert all(b - a >= 0.04 for a, b in zip(later, later[1:])), failed
    for exc, elapsed in results:
        assert isinstance(exc, PoolTimeout) and elapsed == 0.6, results
        assert isinstance(exc.__cause__, db.OperationalError)
        assert "fakedb: server unreachable" in str(exc) and SECRET not in str(exc)
    assert served == [(None, 0.0)] * 3  # no stale back-off: served the moment they ask
    assert set(record.times("connected")) == {back_at}


def test_caller_without_timeout_waits_for_the_next_trial(manual, pool_cls, db):
    db.outage = True

    def body(pool):
        manual.spawn_after(0.02, setattr, db, "outage", False)
        with pool.item() as conn:  # waits out the back-off, then is served
            return conn.id, manual.monotonic(), db.connect_attempts

    conn_id, served_at, attempts = on_manual_clock(manual, pool_cls, db, body, max_size=2,
                                                   reconnect_backoff=(0.05, 0.05))
    assert (conn_id, attempts) == (1, 2)
    assert 0.04 <= served_at <= 0.06


def test_connect_timeouts_count_as_failures_for_the_backoff(pool_cls, db):
    hub = connects_taking(pool_cls, db, 0.5)
    record = Recorder(hub)

    def body(pool):
        exc, elapsed = _timed_get(pool, hub, 1)
        hub.sleep(1)  # connects abandoned in OS threads arrive, and are closed
        assert_quiescent(pool, db, hub)
        return exc, elapsed, pool.stats()

    exc, elapsed, stats = on_manual_clock(hub, pool_cls, db, body, max_size=2,
                                          connect_timeout=0.02, reconnect_backoff=(0.2, 0.2),
                                          record=record)
    assert isinstance(exc, PoolTimeout) and elapsed == 1.0
    assert isinstance(exc.__cause__, ConnectTimeout)
    failed = record.times("connect_failed")
    # Each attempt gives up after 0.02 s and the next waits the back-off (0.2 s x0.8-1.2).
    assert 4 <= len(failed) <= 6, failed
    assert all(b - a >= 0.16 for a, b in zip(failed, failed[1:])), failed
    assert stats.connect_timeouts == stats.connect_failures == len(failed)


def test_burst_of_simultaneous_failures_is_one_backoff_step(pool_cls, db):
    """Connects in flight together when the database goes down fail together: one
    back-off step (0.05 s), not one per connect (0.05 x 2**3 = 0.4 s for four)."""
    hub = connects_taking(pool_cls, db, 0.02)
    db.outage = True
    record = Recorder(hub)

    def body(pool):
        callers = [Spawned(hub, _timed_get, pool, hub, 5) for _ in range(8)]
        hub.sleep(0.03)  # every connect in flight has failed; the database is back
        burst = db.connect_attempts
        db.outage = False
        results = [caller.wait() for caller in callers]
        return burst, results

    burst, results = on_manual_clock(hub, pool_cls, db, body, max_size=8,
                                     reconnect_backoff=(0.05, 2.0), record=record)
    assert burst >= 2 and all(exc is None for exc, _ in results), results
    first_success = min(record.times("connected"))
    # The burst failed at 0.02; one step is 0.04-0.06 s, then a 0.02 s connect.
    assert first_success <= 0.02 + 0.06 + 0.02, (first_success, record.times("connect_failed"))


# -- limits, leaks, close, drain ----------------------------------------------------------


def test_max_waiting_refuses_at_once(manual, pool_cls, db):
    def body(pool):
        held = pool.get()
        waiters = [Spawned(manual, pool.get, 5) for _ in range(2)]
        manual.sleep(0)
        assert pool.waiting() == 2
        with pytest.raises(TooManyWaiters, match="max_waiting=2"):
            pool.get(timeout=5)
        refused_at = manual.monotonic()
        pool.put(held)
        for task in waiters:
            pool.put(task.wait())
        assert_quiescent(pool, db, manual)
        return refused_at

    assert on_manual_clock(manual, pool_cls, db, body, max_size=1, max_waiting=2) == 0.0


def _take_a_connection_here(pool):
    return pool.get()


def _leak_records(caplog):
    return [
        r
        for r in caplog.records
        if r.name == "greenpool.connections" and "leak_timeout" in r.getMessage()
    ]


def test_leak_timeout_logs_once_with_the_stack(manual, pool_cls, db, caplog):
    def body(pool):
        with caplog.at_level(logging.WARNING, logger="greenpool.connections"):
            with pool.item():
                manual.sleep(4)  # returned in time: not reported
            conn = _take_a_connection_here(pool)  # at t=4
            manual.sleep(4.99)
            before = len(_leak_records(caplog))
            manual.sleep(0.02)  # leak_timeout (5 s) ran out at t=9
            reported = len(_leak_records(caplog))
            manual.sleep(60)
            still = len(_leak_records(caplog))  # once, however long it is held
            pool.put(conn)
            conn = _take_a_connection_here(pool)  # a new checkout is watched anew
            manual.sleep(5.01)
            again = len(_leak_records(caplog))
            pool.put(conn)
        return before, reported, still, again

    assert on_manual_clock(manual, pool_cls, db, body, max_size=2,
                           leak_timeout=5) == (0, 1, 1, 2)
    record = _leak_records(caplog)[0]
    message = record.getMessage()
    assert record.levelno == logging.WARNING
    assert "_take_a_connection_here" in message and "test_reliability.py" in message
    assert SECRET not in message


def test_no_leak_report_without_leak_timeout(manual, pool_cls, db, caplog):
    def body(pool):
        with caplog.at_level(logging.WARNING, logger="greenpool.connections"):
            conn = pool.get()
            manual.sleep(3600)
            pool.put(conn)

    on_manual_clock(manual, pool_cls, db, body, max_size=1)
    assert _leak_records(caplog) == []


def test_close_with_timeout_waits_for_checked_out_connections(manual, pool_cls, db):
    def body(pool):
        a, b = pool.get(), pool.get()
        manual.spawn_after(0.05, pool.put, a)
        manual.spawn_after(0.1, pool.put, b)
        pool.close(timeout=5)
        return manual.monotonic(), db.open_connections(), pool.current_size

    closed_at, still_open, size = on_manual_clock(manual, pool_cls, db, body, max_size=2)
    assert 0.1 <= closed_at <= 0.12 and still_open == [] and size == 0


def test_close_with_timeout_returns_once_everything_is_closed(manual, pool_cls, db):
    def body(pool):
        conn = pool.get()
        raw = pool.raw_connection(conn)
        real_close = raw.close

        def slow_close():
            manual.sleep(0.3)
            real_close()

        raw.close = slow_close
        manual.spawn_after(0.05, pool.put, conn)
        pool.close(timeout=5)
        return manual.monotonic() >= 0.35, raw.closed, pool.current_size

    assert on_manual_clock(manual, pool_cls, db, body, max_size=1) == (True, 1, 0)


def test_close_with_timeout_closes_what_is_still_out(manual, pool_cls, db, caplog):
    def body(pool):
        held, idle = pool.get(), pool.get()
        pool.put(idle)
        others = [pool.get(), pool.get()]
        waiter = Spawned(manual, pool.get, 5)
        manual.sleep(0)
        assert pool.waiting() == 1
        with caplog.at_level(logging.WARNING, logger="greenpool"):
            pool.close(timeout=0.1)
        closed_at = manual.monotonic()
        assert isinstance(waiter.outcome(), PoolClosed)
        assert db.open_connections() == []
        with pytest.raises(db.InterfaceError):
            held.cursor()  # closed under its user
        assert not held  # taken back from its user
        for conn in [held, *others]:
            pool.put(conn)  # silently accepted
        pool.put(held)  # and again: nothing happens
        with pytest.raises(PoolClosed):
            pool.get()
        return closed_at, pool.stats()

    closed_at, stats = on_manual_clock(manual, pool_cls, db, body, max_size=3)
    assert 0.1 <= closed_at <= 0.12
    assert "still checked out after close(timeout=0.1)" in caplog.text
    assert (stats.size, stats.in_use, stats.idle) == (0, 0, 0)
    assert stats.opened == stats.closed == 3


def test_drain_replaces_every_connection_without_failing_requests(make_pool, db, hub):
    pool = make_pool(max_size=4)
    db.query_delay = 0.002
    errors = []
    stop = hub.event()

    def worker():
        while not stop.is_set():
            try:
                with pool.item(timeout=30) as conn:
                    conn.cursor().execute("SELECT 1")
            except Exception as exc:  # collected for the assertion below
                errors.append(exc)
            hub.sleep(0.001)

    tasks = [Spawned(hub, worker) for _ in range(8)]
    wait_until(hub, lambda: db.connects == 4, timeout=30)
    old = [c for c in db.connections if c.closed == 0]
    pool.connect_kwargs["password"] = "rotated"
    pool.drain()
    wait_until(hub, lambda: all(c.closed == 1 for c in old), timeout=30)
    wait_until(hub, lambda: db.connects >= 8, timeout=30)
    stop.set()
    for task in tasks:
        task.wait(60)
    assert errors == []
    assert len(old) == 4
    new = [c for c in db.connections if c.closed == 0]
    assert new and all(c.kwargs["password"] == "rotated" for c in new)
    assert_quiescent(pool, db, hub)


def test_drain_closes_checked_out_connections_on_return(make_pool, db):
    pool = make_pool(max_size=2)
    out = pool.get()
    pool.put(pool.get(timeout=30))  # one idle too
    pool.drain()
    assert pool.current_size == 1 and db.closes == 1
    pool.put(out)
    assert db.closes == 2 and pool.current_size == 0
    with pool.item(timeout=30) as conn:
        assert conn.id == 3


def test_connect_in_flight_at_close_is_not_handed_out_and_is_closed(pool_cls, db):
    hub = connects_taking(pool_cls, db, 0.2)

    def body(pool):
        getter = Spawned(hub, pool.get, 5)
        hub.sleep(0.1)  # the pool is connecting for it
        pool.close()
        outcome = getter.outcome()
        hub.sleep(0.5)  # the connect lands at t=0.2
        return outcome, db.connects, len(db.open_connections()), pool.stats().size

    outcome, connects, still_open, size = on_manual_clock(hub, pool_cls, db, body, max_size=1)
    assert isinstance(outcome, PoolClosed)
    assert (connects, still_open, size) == (1, 0, 0)


def test_connect_in_flight_at_drain_is_not_handed_out(pool_cls, db):
    hub = connects_taking(pool_cls, db, 0.2)

    def body(pool):
        getter = Spawned(hub, pool.get, 5)
        hub.sleep(0.1)
        pool.connect_kwargs["password"] = "rotated"
        pool.drain()
        conn = getter.wait()
        password = pool.raw_connection(conn).kwargs["password"]
        pool.put(conn)
        return password, [c.kwargs["password"] for c in db.open_connections()]

    # The connection opened with the old password is never handed out: the caller's
    # checkout comes after the drain, so it gets a new connection.
    assert on_manual_clock(hub, pool_cls, db, body, max_size=1) == ("rotated", ["rotated"])
    assert db.connects == 2 and db.connections[0].closed == 1


# -- stats ------------------------------------------------------------------------------------


def test_stats_count_every_event(manual, db):
    """The counters live in the base class: one pool class is enough."""
    slow_once = []

    def hook():
        if slow_once:
            slow_once.pop()
            manual.sleep(1)

    db.connect_hook = hook

    def body(pool):
        a = pool.get()
        b = pool.get()
        with pytest.raises(PoolTimeout):
            pool.get(timeout=0.01)  # full: times out
        pool.put(a)
        pool.raw_connection(b).disconnect()
        pool.put(b)  # lost
        with pytest.raises(ForeignConnection):
            pool.put(db.connect())  # bad return (a raw connection, not a checkout)
        db.connections[-1].close()
        pool.clear()  # closes a
        db.connect_error = db.OperationalError("refused once")
        with pool.item(timeout=1):
            pass  # one failed connect, then served
        held = pool.get()
        slow_once.append(1)
        with pool.item(timeout=1):
            pass  # one connect timed out, then served
        pool.put(held)
        return pool.stats()

    s = on_manual_clock(manual, RawConnectionPool, db, body, max_size=2, max_age=60,
                        reconnect_backoff=(0.01, 0.01), connect_timeout=0.05)
    assert s.size == s.idle + s.in_use + s.creating <= s.max_size
    assert (s.size, s.idle, s.in_use, s.creating, s.waiting) == (2, 2, 0, 0, 0)
    assert (s.opened, s.closed, s.lost, s.expired) == (4, 2, 1, 0)
    assert (s.connect_failures, s.connect_timeouts) == (2, 1)
    assert (s.requests, s.waits, s.timeouts, s.bad_returns) == (6, 5, 1, 1)
    assert (s.created, s.create_failures) == (4, 2)
    assert s.usage_time > 0


def test_stats_wait_and_usage_time(manual, pool_cls, db):
    def body(pool):
        held = pool.get()
        manual.spawn_after(0.25, pool.put, held)
        with pool.item(timeout=5):
            manual.sleep(0.5)
        return pool.stats()

    stats = on_manual_clock(manual, pool_cls, db, body, max_size=1)
    assert stats.wait_time == 0.25  # the first get() waited no virtual time for its connect
    assert stats.usage_time == 0.75


def test_stats_invariant_under_load(make_pool, db, hub):
    pool = make_pool(max_size=3)
    db.query_delay = 0.001
    snapshots = []

    def worker():
        for _ in range(20):
            with pool.item(timeout=30) as conn:
                conn.cursor().execute("SELECT 1")
                snapshots.append(pool.stats())

    tasks = [Spawned(hub, worker) for _ in range(6)]
    for task in tasks:
        task.wait(60)
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
        with pool.item(timeout=30) as conn:
            text = repr(pool) + repr(conn) + str(pool.stats())
    _, kwargs = db.connect_calls[0]
    assert kwargs["connect_timeout"] == 9 and kwargs["password"] == SECRET
    assert SECRET not in text and SECRET not in caplog.text


@pytest.mark.parametrize(
    "module, seconds, expected",
    [
        ("psycopg2", 0.2, {"connect_timeout": 2}),
        ("psycopg2", 5, {"connect_timeout": 6}),
        ("pymysql", 0.2, {"connect_timeout": 1.2, "read_timeout": 1.2}),
        ("pymysql", None, {}),
    ],
)
def test_driver_connect_timeout_is_set_above_the_pools(hub, module, seconds, expected):
    """What reaches the driver's connect, for a module the pool profiles by its name."""
    db = make_fakedb(module)
    pool = RawConnectionPool(db, 1, connect_timeout=seconds, hub=hub, host="127.0.0.1")
    pool.close()
    _, kwargs = db.connect_calls[0]
    assert {k: v for k, v in kwargs.items() if k.endswith("_timeout")} == expected
    assert "connect_timeout" not in pool.connect_kwargs  # the pool's own arguments unchanged
    own = RawConnectionPool(
        db, 1, connect_timeout=seconds, hub=hub, connect_kwargs={"connect_timeout": 30}
    )
    own.close()
    _, kwargs = db.connect_calls[1]
    assert kwargs["connect_timeout"] == 30


def test_foreign_connection_changes_nothing(make_pool, db):
    pool = make_pool(max_size=2)
    mine = pool.get()
    before = pool.stats()
    for bad in (db.connect(), object(), "conn"):
        with pytest.raises(ForeignConnection):
            pool.put(bad)
    after = pool.stats()
    assert (after.size, after.idle, after.in_use) == (before.size, before.idle, before.in_use)
    assert after.bad_returns == before.bad_returns + 3
    assert mine
    pool.put(mine)


def test_another_pools_connection_is_closed_there(make_pool, db, caplog):
    pool = make_pool(max_size=2)
    other = make_pool(max_size=2)
    mine = pool.get()
    theirs = other.get()
    raw = other.raw_connection(theirs)
    before = pool.stats()
    with caplog.at_level(logging.WARNING, logger="greenpool"):
        pool.put(theirs)
    assert "checked out of" in caplog.text
    assert raw.closed == 1 and not theirs
    s = other.stats()
    assert (s.size, s.in_use, s.closed, s.lost) == (0, 0, 1, 1)
    after = pool.stats()
    assert (after.size, after.in_use, after.closed) == (before.size, before.in_use, 0)
    assert mine
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
