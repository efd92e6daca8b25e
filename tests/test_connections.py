"""RawConnectionPool and TpooledConnectionPool on the fake driver: the pool's contract.

Every case runs for both pool classes.  Cases that need a real hub (OS
threads, green kills, garbage collection on the hub in use) run on the hub of
the test process; cases about time (``max_idle``, ``max_age``, timeouts,
waits) run on :class:`~tests.support.manual_hub.ManualClockHub`, whose virtual
clock makes them exact and free of real sleeps.  The pools are observed only
through their public API: ``stats()``, ``raw_connection()``, observers
(:class:`~tests.support.pool_events.Recorder`) and the fake driver's counters.
"""

from __future__ import annotations

import gc
import logging
import time
import weakref

import pytest

import greenpool
from greenpool import (
    ConnectionReturned,
    ConnectTimeout,
    ForeignConnection,
    PoolClosed,
    PoolTimeout,
    TpooledConnectionPool,
)
from greenpool.upkeep import ORPHAN_POLL
from tests.conftest import SECRET
from tests.support.manual_hub import ManualClockHub
from tests.support.pool_events import Recorder, connects_taking, run_on_manual_clock
from tests.support.tasks import Spawned, queue_two, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def manual() -> ManualClockHub:
    """A fresh manual-clock hub, for the cases about time."""
    return ManualClockHub()


def on_manual_clock(manual, pool_cls, db, body, **options):
    """``body(pool)`` on a pool of ``pool_cls`` on the manual clock (see run_on_manual_clock)."""
    options.setdefault("host", "db1")
    options.setdefault("password", SECRET)
    return run_on_manual_clock(manual, pool_cls, db, body, **options)


# -- construction -------------------------------------------------------------------------


def test_eventlet_constructor_and_connect_arguments(make_pool, db):
    pool = make_pool(1, 3, 10, 30, 5, greenpool.cleanup_rollback, "positional", user="bob")
    assert db.connects == 1 and pool.current_size == 1
    args, kwargs = db.connect_calls[0]
    assert args == ("positional",)
    assert kwargs == {"user": "bob", "password": SECRET, "host": "db1"}


def test_connect_callable_instead_of_module(pool_cls, db, hub):
    pool = pool_cls(lambda: db.connect(dsn="x"), hub=hub)
    with pool.item() as conn:
        assert conn.kwargs == {"dsn": "x"}
    pool.close()


# -- the wrapper a caller holds -------------------------------------------------------------


def test_wrapper_delegates_every_attribute(make_pool, db):
    pool = make_pool()
    conn = pool.get()
    assert pool.raw_connection(conn) is db.connections[0]
    assert conn.server_version == 150000
    conn.autocommit = True
    assert db.connections[0].autocommit is True and conn.autocommit is True
    cur = conn.cursor()
    cur.execute("SELECT 42")
    assert cur.fetchall() == [(42,)]
    assert [row for row in _execute(conn, "SELECT 7")] == [(7,)]
    conn.ping()
    assert db.pings == 1
    pool.put(conn)


def _execute(conn, sql):
    cur = conn.cursor()
    cur.execute(sql)
    return cur


def test_with_connection_behaves_like_the_driver(make_pool, db):
    pool = make_pool()
    conn = pool.get()
    with conn as inner:
        assert inner is conn
        conn.cursor().execute("UPDATE t SET x = 1")
    assert db.commits == 1 and conn  # the fake's __exit__ commits and does not close
    with pytest.raises(ZeroDivisionError):
        with conn:
            conn.cursor().execute("UPDATE t SET x = 2")
            raise ZeroDivisionError
    assert db.rollbacks == 1
    conn.close()


def test_returned_wrapper_is_false_and_any_call_on_it_raises(make_pool, db):
    """eventlet's behaviour: attributes of a returned wrapper still read, but calling
    one raises ConnectionReturned (an AttributeError); setting one raises at once."""
    pool = make_pool()
    conn = pool.get()
    conn.close()
    assert not conn
    with pytest.raises(ConnectionReturned, match="returned to its pool"):
        conn.cursor()
    autocommit = conn.autocommit  # reads, as a callable that refuses
    assert not autocommit
    with pytest.raises(ConnectionReturned):
        autocommit()
    with pytest.raises(ConnectionReturned):
        conn.commit()
    with pytest.raises(ConnectionReturned):
        conn.autocommit = True
    with pytest.raises(ConnectionReturned):
        with conn:
            pass
    assert issubclass(ConnectionReturned, AttributeError)
    assert db.connections[0].autocommit is False  # nothing reached the connection
    conn.close()  # a second close is a no-op, like DB-API close on a closed cursor
    with pytest.raises(ForeignConnection):
        pool.raw_connection(conn)


def test_every_checkout_gets_a_new_wrapper(make_pool, db):
    pool = make_pool(max_size=1)
    first = pool.get()
    pool.put(first)
    second = pool.get()  # the same connection, in a new wrapper
    assert second is not first and second and not first
    assert pool.raw_connection(second) is db.connections[0]
    with pytest.raises(ConnectionReturned):
        first.cursor()
    pool.put(first)  # returned already: nothing happens, as for close() twice
    assert second and pool.stats().in_use == 1
    pool.put(second)
    third = pool.get()
    assert third is not first and third is not second and third and not first
    pool.put(third)
    assert db.connects == 1


def _contend(pool, hub, workers, rounds, hold=None):
    """``workers`` tasks each check out ``rounds`` times, keeping their last wrapper
    in a variable while they wait for the next.  Fails if a connection is handed to
    two callers at once, or a wrapper that a caller returned and still holds comes
    back to life."""
    in_use: set[int] = set()  # fake connection ids
    returned_and_held: set[int] = set()  # ids of wrappers returned, still referenced

    def worker():
        conn = None
        for _ in range(rounds):
            previous = conn
            conn = pool.get(timeout=30)
            assert conn and conn is not hold and id(conn) not in returned_and_held
            assert previous is None or not previous
            if previous is not None:
                returned_and_held.discard(id(previous))
            del previous
            assert conn.id not in in_use
            in_use.add(conn.id)
            hub.sleep(0)
            in_use.discard(conn.id)
            pool.put(conn)
            returned_and_held.add(id(conn))
        returned_and_held.discard(id(conn))

    tasks = [Spawned(hub, worker) for _ in range(workers)]
    for task in tasks:
        task.wait(60)


def test_callers_keeping_their_last_wrapper_never_share_a_connection(make_pool, hub):
    pool = make_pool(max_size=2)
    _contend(pool, hub, workers=10, rounds=30)
    s = pool.stats()
    # At most max_size opened: the second connect is skipped when a returned
    # connection has served every waiter before it starts.
    assert (s.in_use, s.waiting) == (0, 0) and 1 <= s.opened <= 2


def test_a_wrapper_held_for_good_stays_returned_under_contention(make_pool, hub):
    pool = make_pool(max_size=2)
    old = pool.get()
    pool.put(old)
    _contend(pool, hub, workers=8, rounds=40, hold=old)
    assert not old
    with pytest.raises(ConnectionReturned):
        old.cursor()


def test_the_pool_keeps_no_returned_wrapper(make_pool):
    """A wrapper is the handle of one checkout: once returned and dropped by its
    caller it is gone (the pool keeps none for reuse)."""
    pool = make_pool(max_size=1)
    conn = pool.get()
    ref = weakref.ref(conn)
    pool.put(conn)
    del conn
    gc.collect()
    assert ref() is None
    new = pool.get(timeout=10)
    assert new and pool.stats().orphans == 0
    pool.put(new)


# -- return -------------------------------------------------------------------------------


def test_put_of_a_returned_foreign_or_unknown_connection(make_pool, db, caplog):
    """A wrapper returned already is left alone (close() twice is fine); one of
    another pool is closed there, freeing its slot (nothing of it reaches this
    pool); anything that is not a pool's wrapper raises ForeignConnection."""
    pool = make_pool()
    other = make_pool()
    conn = pool.get()
    pool.put(conn)
    before = pool.stats()
    pool.put(conn)
    conn.close()
    foreign = other.get()
    with caplog.at_level(logging.WARNING, logger="greenpool"):
        pool.put(foreign)
    assert "checked out of" in caplog.text
    assert not foreign
    theirs = other.stats()
    assert (theirs.size, theirs.in_use, theirs.closed) == (0, 0, 1)
    with pytest.raises(ForeignConnection):
        pool.put(db.connect())
    with pytest.raises(ForeignConnection):
        pool.raw_connection(foreign)
    after = pool.stats()
    assert (after.size, after.idle, after.in_use, after.opened, after.closed) == (
        before.size, before.idle, before.in_use, before.opened, before.closed)
    assert after.bad_returns == 1


def test_rollback_on_return_only_when_a_transaction_is_open(make_pool, db):
    pool = make_pool()
    with pool.item() as conn:
        conn.cursor().execute("SELECT 1")  # the fake opens a transaction on any statement
    assert db.rollbacks == 1
    with pool.item() as conn:
        conn.autocommit = True
        conn.cursor().execute("SELECT 1")
    assert db.rollbacks == 1  # nothing open: no round trip


def test_custom_and_disabled_cleanup(make_pool, db):
    seen = []
    pool = make_pool(cleanup=lambda raw: seen.append(raw))
    conn = pool.get()
    raw = db.connections[0]
    pool.put(conn)
    assert seen == [raw]
    pool.put(pool.get(), cleanup=None)
    assert seen == [raw] and db.rollbacks == 0


def test_failing_cleanup_closes_connection_and_frees_slot(make_pool, db, caplog):
    pool = make_pool(max_size=1)
    conn = pool.get()
    conn.cursor().execute("UPDATE t SET x = 1")
    db.fail_rollback = True
    with caplog.at_level(logging.WARNING, logger="greenpool"):
        pool.put(conn)
    assert "cleanup of connection #1 failed" in caplog.text
    assert pool.current_size == 0 and db.closes == 1 and pool.stats().lost == 1
    db.fail_rollback = False
    with pool.item(timeout=10) as again:
        assert again.id == 2


def test_put_none_frees_a_slot(make_pool):
    pool = make_pool(max_size=1)
    pool.get()
    pool.put(None)
    assert pool.free() == 1
    assert pool.get(timeout=10)


# -- idle and age limits (manual clock) --------------------------------------------------


def test_idle_connections_close_after_exactly_max_idle(manual, pool_cls, db):
    record = Recorder(manual)

    def body(pool):
        conns = [pool.get() for _ in range(3)]
        for conn in conns:
            pool.put(conn)  # idle from t=0
        manual.sleep(9.99)
        before = pool.stats().size
        manual.sleep(0.02)
        return before, pool.stats().size, pool.stats().expired, db.closes

    assert on_manual_clock(manual, pool_cls, db, body, max_size=3, max_idle=10,
                           record=record) == (3, 0, 3, 3)
    assert record.closed_at("expired") == [10.0] * 3


def test_a_connection_returned_late_idles_out_max_idle_after_its_return(manual, pool_cls, db):
    """A connection still out when it could first have idled out is closed max_idle
    after it comes back, not sooner and not later."""
    record = Recorder(manual)

    def body(pool):
        conn = pool.get()
        manual.sleep(15)  # out past t=10, when it could first have idled out
        pool.put(conn)
        manual.sleep(20)
        return pool.stats().size

    assert on_manual_clock(manual, pool_cls, db, body, max_size=2, max_idle=10,
                           max_age=None, record=record) == 0
    assert record.closed_at("expired") == [25.0]


def test_idle_expiry_keeps_min_size_connections(manual, pool_cls, db):
    record = Recorder(manual)

    def body(pool):
        conns = [pool.get() for _ in range(3)]
        for conn in conns:
            pool.put(conn)
        manual.sleep(100)
        size = pool.stats().size
        with pool.item():
            pass
        return size, db.connects, db.closes

    assert on_manual_clock(manual, pool_cls, db, body, min_size=1, max_size=3, max_idle=10,
                           max_age=None, record=record) == (1, 3, 2)
    assert record.closed_at("expired") == [10.0, 10.0]


def wakeups_during(hub, seconds):
    """Sleep ``seconds`` of virtual time; how many timers the pool set meanwhile."""
    wakeups = []
    spawn_after = hub.spawn_after

    def counting_spawn_after(delay, fn, *args):
        wakeups.append(delay)
        return spawn_after(delay, fn, *args)

    hub.spawn_after = counting_spawn_after
    try:
        hub.sleep(seconds)
    finally:
        hub.spawn_after = spawn_after
    return len(wakeups)


def test_a_pool_at_min_size_does_not_wake_while_nothing_can_expire(manual, pool_cls, db):
    """Once only min_size connections are left and they have no age limit, nothing can
    expire: the pool needs no wake-up (it must not sweep every few milliseconds)."""
    def body(pool):
        conns = [pool.get() for _ in range(2)]
        for conn in conns:
            pool.put(conn)
        manual.sleep(20)  # the surplus connection idled out at t=10
        assert pool.stats().size == 1
        return wakeups_during(manual, 100), pool.stats().size

    woken, size = on_manual_clock(manual, pool_cls, db, body, min_size=1, max_size=2,
                                  max_idle=10, max_age=None)
    assert size == 1
    assert woken <= 2, f"the pool woke {woken} times in 100 idle seconds"


def test_a_connection_held_past_max_age_does_not_keep_the_pool_awake(manual, pool_cls, db):
    """A connection out past its max_age is closed when it comes back; until then
    there is nothing to sweep."""
    def body(pool):
        conn = pool.get()
        manual.sleep(20)  # past max_age
        woken = wakeups_during(manual, 100)
        pool.put(conn)
        return woken, pool.stats().size, pool.stats().expired

    woken, size, expired = on_manual_clock(manual, pool_cls, db, body, max_size=1,
                                           max_idle=None, max_age=10)
    assert (size, expired) == (0, 1)
    assert woken <= 2, f"the pool woke {woken} times in 100 seconds"


def test_max_age_closes_on_return_and_never_hands_out_expired(manual, pool_cls, db):
    record = Recorder(manual)

    def body(pool):
        conn = pool.get()
        manual.sleep(10)  # past max_age (10 s, less up to 5 % jitter) while checked out
        pool.put(conn)  # too old: closed instead of pooled
        closed_on_return = (db.closes, pool.stats().size)
        with pool.item() as conn:
            second = conn.id
        manual.sleep(10)  # and past max_age while idle
        with pool.item() as conn:
            third = conn.id
        return closed_on_return, second, third

    assert on_manual_clock(manual, pool_cls, db, body, max_size=1, max_age=10,
                           max_idle=None, record=record) == ((1, 0), 2, 3)
    first_age, second_age = record.closed_at("expired")
    assert first_age == 10.0 and 19.5 <= second_age <= 20.0  # the jitter shortens ages


def test_min_size_opened_at_start_and_topped_up_after_expiry(manual, pool_cls, db):
    record = Recorder(manual)

    def body(pool):
        started = db.connects, pool.stats().size
        manual.sleep(10)  # both reached max_age (9.5-10 s with jitter) and were replaced
        return started, db.connects, db.closes, pool.stats().size, len(db.open_connections())

    assert on_manual_clock(manual, pool_cls, db, body, min_size=2, max_size=4, max_age=10,
                           max_idle=None, record=record) == ((2, 2), 4, 2, 2, 2)
    expired = record.closed_at("expired")
    assert len(expired) == 2 and all(9.5 <= at <= 10.0 for at in expired)
    assert record.times("connected") == expired  # each replaced at once


def test_max_idle_zero_closes_every_connection_on_return(make_pool, db):
    pool = make_pool(max_size=2, max_idle=0)
    for _ in range(3):
        with pool.item(timeout=5) as conn:
            conn.cursor().execute("SELECT 1")
    assert db.connects == 3 and db.closes == 3 and pool.current_size == 0


def test_max_age_zero_is_a_concurrency_limiter(make_pool, db):
    pool = make_pool(max_size=1, max_age=0)
    for _ in range(3):
        with pool.item(timeout=5):
            pass
    assert db.connects == 3 and db.closes == 3


# -- connecting ---------------------------------------------------------------------------


def test_failed_prefill_closes_what_it_opened(pool_cls, db, hub):
    db.connect_hook = lambda: (
        None if db.connect_attempts < 2 else (_ for _ in ()).throw(db.OperationalError("down"))
    )
    with pytest.raises(db.OperationalError):
        pool_cls(db, min_size=2, hub=hub)
    assert db.connects == 1 and db.open_connections() == []


def test_slow_connects_fail_no_caller_before_its_timeout(pool_cls, db):
    """Connects slower than connect_timeout: the caller waits its whole timeout, then
    gets a PoolTimeout that names the connect timeout and chains it."""
    hub = connects_taking(pool_cls, db, 1.0)
    record = Recorder(hub)

    def body(pool):
        with pytest.raises(PoolTimeout) as info:
            pool.get(timeout=2)
        failed_at = hub.monotonic()
        hub.sleep(2)  # connects abandoned in OS threads arrive, and are closed
        return info.value, failed_at, pool.stats()

    error, failed_at, stats = on_manual_clock(
        hub, pool_cls, db, body, connect_timeout=0.25, reconnect_backoff=(0.5, 0.5),
        record=record,
    )
    assert failed_at == 2.0
    assert not isinstance(error, ConnectTimeout)
    assert isinstance(error.__cause__, ConnectTimeout)
    assert "ConnectTimeout" in str(error) and "connect_timeout=0.25" in str(error)
    assert SECRET not in str(error)
    attempts = len(record.errors())
    assert 2 <= attempts <= 4 and all(isinstance(e, ConnectTimeout) for e in record.errors())
    assert (stats.connect_timeouts, stats.connect_failures) == (attempts, attempts)
    assert (stats.size, stats.timeouts, stats.opened) == (0, 1, 0)
    assert db.connects == db.closes and db.open_connections() == []
    assert record.times("timed_out") == [2.0]


def test_tpooled_connect_timeout_closes_the_late_connection(hub, db):
    """In real OS threads: the connects that time out arrive later and are closed."""
    db.connect_delay = 0.2
    db.connect_delay_mode = "block"
    pool = TpooledConnectionPool(db, connect_timeout=0.05, hub=hub)
    try:
        with pytest.raises(PoolTimeout) as info:
            pool.get(timeout=0.3)
        assert isinstance(info.value.__cause__, ConnectTimeout)
        # An attempt may still be in flight: it gives up at connect_timeout too.
        wait_until(hub, lambda: pool.stats().size == 0, timeout=30)
        wait_until(hub, lambda: db.connects >= 1 and db.connects == db.closes, timeout=30)
        assert db.open_connections() == []
    finally:
        pool.close()


def test_tpooled_blocking_calls_do_not_block_the_hub(green_hub, db):
    db.connect_delay = 0.2
    db.connect_delay_mode = "block"
    ticks = []
    during_connect = []
    pool = TpooledConnectionPool(
        db, hub=green_hub, configure=lambda raw: during_connect.append(len(ticks))
    )

    def ticker():
        for _ in range(10):
            green_hub.sleep(0.01)
            ticks.append(1)

    task = Spawned(green_hub, ticker)
    with pool.item(timeout=30):
        pass
    task.wait(30)
    assert during_connect[0] >= 1, "the hub stood still while a connect blocked its thread"
    assert db.connects == 1
    pool.close()


# -- close and clear ----------------------------------------------------------------------


def test_close_wakes_waiters_and_closes_returned_connections(make_pool, db, hub):
    pool = make_pool(max_size=1)
    conn = pool.get()
    waiter = Spawned(hub, pool.get)
    wait_until(hub, lambda: pool.waiting() == 1)
    pool.close()
    assert isinstance(waiter.outcome(), PoolClosed)
    with pytest.raises(PoolClosed):
        pool.get()
    pool.put(conn)
    assert db.open_connections() == [] and pool.current_size == 0
    assert "closed" in repr(pool)


def test_clear_closes_idle_only(make_pool, db):
    pool = make_pool(max_size=3)
    a, b = pool.get(), pool.get()
    pool.put(a)
    pool.clear()
    assert db.closes == 1 and pool.current_size == 1
    pool.put(b)
    assert pool.current_size == 1


# -- checkouts dropped without being returned ---------------------------------------------


def _leak(pool):
    pool.get()  # dropped on the floor


def test_garbage_collected_wrapper_frees_its_slot(make_pool, db, caplog):
    """The next get() reclaims the slot: the connection (in an unknown state) is
    closed, and the warning says how to learn where it was taken."""
    pool = make_pool(max_size=1)
    with caplog.at_level(logging.WARNING, logger="greenpool"):
        _leak(pool)
        gc.collect()
        with pool.item(timeout=10) as conn:
            assert conn.id == 2
    assert "garbage collected without being returned" in caplog.text
    assert "pass leak_timeout= to log where it was taken" in caplog.text
    assert db.connections[0].closed == 1
    s = pool.stats()
    assert (s.orphans, s.lost, s.size) == (1, 1, 1)


def test_garbage_collected_wrapper_is_traced_to_its_taker_with_leak_timeout(make_pool, caplog):
    pool = make_pool(max_size=1, leak_timeout=60)
    with caplog.at_level(logging.WARNING, logger="greenpool"):
        _leak(pool)
        gc.collect()
        with pool.item(timeout=10) as conn:
            assert conn.id == 2
    assert "garbage collected without being returned" in caplog.text
    assert "test_connections.py" in caplog.text and " in _leak" in caplog.text
    assert pool.stats().orphans == 1


def test_orphan_reclaimed_by_next_get_while_idle_connections_wait(make_pool, db):
    """An idle connection is there to be taken, and the next get() still reclaims
    the orphan first."""
    pool = make_pool(max_size=2)
    kept = pool.get()
    _leak(pool)  # connection 2
    pool.put(kept)
    gc.collect()
    conn = pool.get()
    assert conn.id == 1
    assert pool.stats().orphans == 1 and db.connections[1].closed == 1
    pool.put(conn)
    again = pool.get()
    assert again.id == 1 and pool.stats().opened == 2
    pool.put(again)


def test_a_waiter_is_served_by_reclaiming_a_garbage_collected_checkout(manual, pool_cls, db):
    """Nobody calls get() again: the pool's maintenance finds the orphan while the
    caller waits."""
    def body(pool):
        holder = {"conn": pool.get()}
        waiter = Spawned(manual, pool.get, 30)
        manual.sleep(0)
        assert pool.waiting() == 1
        del holder["conn"]
        gc.collect()
        got = waiter.wait()
        served_at, conn_id = manual.monotonic(), got.id
        pool.put(got)
        return conn_id, served_at, pool.stats().orphans

    conn_id, served_at, orphans = on_manual_clock(manual, pool_cls, db, body, max_size=1)
    assert (conn_id, orphans) == (2, 1)
    assert served_at <= ORPHAN_POLL


# -- waiting for a connection -------------------------------------------------------------


def test_pool_level_checkout_timeout(manual, pool_cls, db):
    def body(pool):
        held = pool.get()
        with pytest.raises(PoolTimeout, match="no connection within 0.5 s"):
            pool.get()
        timed_out_at = manual.monotonic()
        pool.put(held)
        return timed_out_at

    assert on_manual_clock(manual, pool_cls, db, body, max_size=1, timeout=0.5) == 0.5


def test_a_waiter_is_served_the_moment_a_connection_comes_back(manual, pool_cls, db):
    record = Recorder(manual)

    def body(pool):
        held = pool.get()
        manual.spawn_after(2, pool.put, held)
        with pool.item(timeout=5):
            served_at = manual.monotonic()
        s = pool.stats()
        return served_at, s.waits, s.wait_time, s.opened

    # Two waits: the first get() on an empty pool waits too, for the pool's connect.
    assert on_manual_clock(manual, pool_cls, db, body, max_size=1,
                           record=record) == (2.0, 2, 2.0, 1)
    assert [event.args[0] for event in record.named("checked_out")] == [0.0, 2.0]


def test_a_checkout_timeout_never_runs_out_early_after_busy_work(make_pool, hub):
    """CPU work that never yields (rendering a page, say) leaves a green hub's notion
    of the time behind; the caller's timeout still counts from its call."""
    pool = make_pool(max_size=1)
    held = pool.get()
    hub.sleep(0.01)
    busy_until = time.perf_counter() + 0.05
    while time.perf_counter() < busy_until:
        pass
    start = time.monotonic()
    with pytest.raises(PoolTimeout):
        pool.get(timeout=0.1)
    elapsed = time.monotonic() - start
    pool.put(held)
    assert elapsed >= 0.1, f"timed out {(0.1 - elapsed) * 1000:.1f} ms early"


def test_full_pool_checkout_every_way_out_of_the_wait(make_pool, db, hub):
    # A full pool queues callers at once: served in order, timed out, refused beyond
    # max_waiting, killed, and every way out leaves the pool whole.
    pool = make_pool(max_size=1, max_waiting=3)
    held = pool.get()
    with pytest.raises(PoolTimeout):
        pool.get(timeout=0.01)
    first = Spawned(hub, pool.get)
    wait_until(hub, lambda: pool.waiting() == 1)
    second = Spawned(hub, pool.get, 30)
    third = Spawned(hub, pool.get)
    wait_until(hub, lambda: pool.waiting() == 3)
    with pytest.raises(greenpool.TooManyWaiters, match="max_waiting=3"):
        pool.get()
    if hub.green:
        third.kill()
        assert third.done.wait(30)
        wait_until(hub, lambda: pool.waiting() == 2)
    pool.put(held)
    got = first.wait(30)
    assert got and pool.waiting() == (1 if hub.green else 2)
    pool.put(got)
    got = second.wait(30)
    assert got and pool.waiting() == (0 if hub.green else 1)
    pool.put(got)
    if not hub.green:
        pool.put(third.wait(30))
    s = pool.stats()
    assert (s.size, s.idle, s.in_use, s.waiting, s.opened) == (1, 1, 0, 0, 1)
    assert s.timeouts == 1 and s.wait_time > 0  # the waits that were served


class _Expired(Exception):
    pass


@pytest.mark.parametrize("how", ["hub-timeout", "kill-after-handoff"])
def test_full_pool_waiter_interrupted_loses_no_connection(pool_cls, db, green_hub, how):
    # A hub Timeout in the wait, or a kill landing after the connection was handed
    # over but before the waiter ran: the connection goes to the next in line.
    pool = pool_cls(db, max_size=1, hub=green_hub)
    held = pool.get()
    doomed, next_in_line = queue_two(
        green_hub, pool, 30, (0.02, _Expired()) if how == "hub-timeout" else None)
    if how == "hub-timeout":
        assert isinstance(doomed.outcome(30), _Expired)
        pool.put(held)
    else:
        pool.put(held)  # handed to the doomed waiter, which has not run yet
        doomed.kill()
        doomed.outcome(30)
    if doomed.value is not None:  # served before the kill landed (gevent may): it owns it
        pool.put(doomed.value)
    pool.put(next_in_line.wait(30))
    s = pool.stats()
    assert (s.size, s.idle, s.in_use, s.waiting) == (1, 1, 0, 0)
    assert db.connects == 1 and db.open_connections() == [db.connections[0]]
    pool.close()


# -- options and reporting ----------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"max_idle": -1}, ValueError, "max_idle must be >= 0 seconds, got -1"),
        ({"max_age": "old"}, TypeError, "max_age must be a number of seconds, got a str"),
        ({"connect_timeout": -0.5}, ValueError, "connect_timeout must be >= 0"),
        ({"timeout": float("nan")}, ValueError, "timeout must be >= 0"),
        ({"cleanup": 3}, TypeError, "cleanup must be callable, got 3"),
        ({"max_size": -1}, ValueError, "max_size must be >= 0, got -1"),
        ({"min_size": 3, "max_size": 2}, ValueError, "min_size"),
    ],
)
def test_bad_options_name_the_option(pool_cls, db, hub, kwargs, error, text):
    with pytest.raises(error, match=text):
        pool_cls(db, hub=hub, password=SECRET, **kwargs)


def test_bad_module(pool_cls, hub):
    with pytest.raises(TypeError, match="db_module must be a DB-API module"):
        pool_cls(42, hub=hub)


def test_credentials_never_in_repr_logs_or_errors(make_pool, db, caplog):
    with caplog.at_level(logging.DEBUG, logger="greenpool"):
        pool = make_pool(name="orders", port=5433, dbname="shop", user="bob")
        conn = pool.get()
        text = repr(pool) + repr(conn) + str(pool.stats())
        pool.put(conn)
        db.connect_error = db.OperationalError(f"refused for {db.__name__}")
        db.connect_error_sticky = True
        pool.clear()
        with pytest.raises(PoolTimeout) as info:
            pool.get(timeout=0.2)
    assert "refused for fakedb" in str(info.value)  # the connect error is named ...
    assert SECRET not in str(info.value)  # ... and the password is not
    assert "db1:5433/shop" in repr(pool)
    assert SECRET not in text and SECRET not in caplog.text
    assert "'orders'" in repr(pool) and "hub" in repr(pool)


def test_stats_are_consistent(make_pool, db, hub):
    pool = make_pool(max_size=4)
    held = [pool.get() for _ in range(3)]
    pool.put(held.pop())
    s = pool.stats()
    assert s.size == s.idle + s.in_use + s.creating <= s.max_size
    assert (s.in_use, s.idle, s.opened) == (2, 1, 3)
    for conn in held:
        pool.put(conn)


def test_many_green_threads_share_few_connections(make_pool, db, hub):
    db.query_delay = 0.001
    pool = make_pool(max_size=4)
    holders = {}
    errors = []

    def worker(n):
        for _ in range(5):
            with pool.item(timeout=30) as conn:
                key = id(pool.raw_connection(conn))
                if key in holders:
                    errors.append(f"{n} and {holders[key]} share a connection")
                holders[key] = n
                conn.cursor().execute("SELECT 1")
                del holders[key]

    tasks = [Spawned(hub, worker, n) for n in range(40)]
    for task in tasks:
        task.wait(60)
    assert errors == []
    assert db.connects <= 4 and pool.free() == 4
    assert len(db.open_connections()) == pool.current_size


def test_resize_down_while_checked_out_retires_surplus_on_return(make_pool, db):
    pool = make_pool(max_size=3)
    conns = [pool.get() for _ in range(3)]
    pool.resize(1)
    for conn in conns:
        pool.put(conn)
    assert pool.current_size == 1 and db.closes == 2
    for _ in range(3):  # back to size: returns keep their connection again
        pool.put(pool.get())
    assert pool.current_size == 1 and db.closes == 2


def test_resize_down_closes_surplus(make_pool, db):
    pool = make_pool(max_size=3)
    conns = [pool.get() for _ in range(3)]
    for conn in conns:
        pool.put(conn)
    pool.resize(1)
    assert pool.current_size == 1 and db.closes == 2
