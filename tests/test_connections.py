"""RawConnectionPool and TpooledConnectionPool on the fake driver, on every hub."""

from __future__ import annotations

import gc
import logging
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
from tests.conftest import SECRET
from tests.support.tasks import Spawned, queue_two, wait_until


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


def test_wrapper_delegates_every_attribute(make_pool, db):
    pool = make_pool()
    conn = pool.get()
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


def test_returned_wrapper_is_false_and_unusable(make_pool):
    pool = make_pool()
    conn = pool.get()
    conn.close()
    assert not conn
    with pytest.raises(ConnectionReturned, match="returned to its pool"):
        conn.cursor()
    with pytest.raises(AttributeError):
        conn.autocommit  # noqa: B018
    conn.close()  # a second close is a no-op, like DB-API close on a closed cursor


def _spare_id(pool):
    """id() of the returned wrapper kept by the pool's only connection (the entry holds
    it, so the id cannot be recycled while the test looks)."""
    (entry,) = pool._entries
    assert entry.spare is not None
    return id(entry.spare)


def test_a_wrapper_nobody_holds_is_handed_out_again(make_pool):
    pool = make_pool(max_size=1)
    pool.put(pool.get())
    spare = _spare_id(pool)
    conn = pool.get()
    assert id(conn) == spare and conn and conn.cursor()
    conn.close()


def test_a_wrapper_still_held_stays_returned_for_good(make_pool):
    pool = make_pool(max_size=1)
    old = pool.get()
    pool.put(old)
    new = pool.get()  # the same connection, while the caller still holds ``old``
    assert new is not old and new and not old
    with pytest.raises(ConnectionReturned):
        old.cursor()
    with pytest.raises(ForeignConnection):
        pool.put(old)
    assert new  # the failed put changed nothing
    pool.put(new)
    for _ in range(3):  # ``old`` stays in the deque of kept wrappers, never handed out
        new = pool.get()
        assert new is not old and new and not old
        pool.put(new)
    with pytest.raises(ConnectionReturned):
        old.cursor()


def test_a_loop_keeping_its_last_connection_alternates_two_wrappers(make_pool, monkeypatch):
    """``conn = pool.get()`` at the top of a loop holds the last wrapper while get()
    runs: the one before it is handed out instead, not a new one each time."""
    made = []
    make_wrapper = greenpool.connections._new_wrapper
    monkeypatch.setattr(greenpool.connections, "_new_wrapper",
                        lambda cls: made.append(cls) or make_wrapper(cls))
    pool = make_pool(max_size=1)
    conn = None
    for _ in range(6):
        previous = conn
        conn = pool.get()
        assert conn and conn.cursor() and conn is not previous
        assert previous is None or not previous
        pool.put(conn)
        del previous
    assert not conn and len(made) == 2


def _contend(pool, hub, workers, rounds, hold=None):
    """``workers`` tasks each check out ``rounds`` times, keeping their last connection
    in a variable while they wait for the next.  Fails if a connection is handed to
    two callers at once, or a wrapper that a caller returned and still holds is
    handed out again."""
    in_use: set[int] = set()  # fake connection ids
    returned_and_held: set[int] = set()  # ids of wrappers returned, still referenced

    def worker():
        conn = None
        for _ in range(rounds):
            previous = conn
            conn = pool.get(timeout=10)
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
        task.wait()


def test_callers_waiting_with_their_last_connection_reuse_wrappers(make_pool, hub, monkeypatch):
    """Under contention every waiting caller still holds the wrapper it returned, so
    its entry's spares are held too: those go to the pool's deque of kept wrappers
    and come back out once their holders dropped them."""
    made = []
    make_wrapper = greenpool.connections._new_wrapper
    monkeypatch.setattr(greenpool.connections, "_new_wrapper",
                        lambda cls: made.append(cls) or make_wrapper(cls))
    pool = make_pool(max_size=2)
    _contend(pool, hub, workers=10, rounds=30)
    if hub.green:  # 300 checkouts; OS threads take turns in the OS's order
        assert len(made) <= 2 * 10, len(made)
    assert len(pool._kept_wrappers) <= pool.max_size + 10


def test_a_wrapper_held_for_good_stays_returned_under_contention(make_pool, hub):
    pool = make_pool(max_size=2)
    old = pool.get()
    pool.put(old)
    _contend(pool, hub, workers=8, rounds=40, hold=old)  # ``old`` passes through the deque
    assert not old
    with pytest.raises(ConnectionReturned):
        old.cursor()
    assert len(pool._kept_wrappers) <= pool.max_size + 8


def test_a_kept_wrapper_dropped_while_checked_out_frees_its_slot(make_pool, db, hub):
    pool = make_pool(max_size=1)
    first = pool.get()
    pool.put(first)
    second = pool.get()  # ``first`` is still held: a new wrapper
    pool.put(second)
    first_id = id(first)
    del first  # now only the pool keeps it, among its kept wrappers

    def leak():
        conn = pool.get()  # ``second`` is still held: ``first`` comes out of the deque
        assert id(conn) == first_id and conn.id == 1

    leak()
    gc.collect()
    with pool.item(timeout=2) as conn:
        assert conn.id == 2
    assert db.connections[0].closed and pool.stats().orphans == 1
    assert not second


def test_a_weakly_referenced_wrapper_is_never_reused(make_pool):
    pool = make_pool(max_size=1)
    conn = pool.get()
    ref = weakref.ref(conn)
    pool.put(conn)
    del conn
    new = pool.get()
    assert ref() is not new and ref() is not None and not ref()
    with pytest.raises(ConnectionReturned):
        ref().cursor()
    pool.put(new)


def test_a_reused_wrapper_dropped_while_checked_out_frees_its_slot(make_pool, db, hub):
    pool = make_pool(max_size=1)
    pool.put(pool.get())
    spare = _spare_id(pool)

    def leak():
        conn = pool.get()
        assert id(conn) == spare  # the reused wrapper, dropped on the floor

    leak()
    gc.collect()
    with pool.item(timeout=2) as conn:
        assert conn.id == 2
    assert db.connections[0].closed and pool.stats().orphans == 1


def test_put_twice_or_foreign_raises_and_changes_nothing(make_pool, db):
    pool = make_pool()
    other = make_pool()
    conn = pool.get()
    pool.put(conn)
    before = pool.stats()
    with pytest.raises(ForeignConnection):
        pool.put(conn)
    foreign = other.get()
    with pytest.raises(ForeignConnection):
        pool.put(foreign)
    with pytest.raises(ForeignConnection):
        pool.put(db.connect())
    after = pool.stats()
    assert (after.size, after.idle, after.in_use) == (before.size, before.idle, before.in_use)
    assert after.bad_returns == 3
    assert foreign  # still checked out of its own pool
    other.put(foreign)


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
    with pool.item() as again:
        assert again.id == 2


def test_put_none_frees_a_slot(make_pool):
    pool = make_pool(max_size=1)
    pool.get()
    pool.put(None)
    assert pool.free() == 1
    assert pool.get(timeout=0.5)


def test_max_idle_sweeper_closes_idle_connections(make_pool, db, hub):
    pool = make_pool(max_size=3, max_idle=0.05)
    conns = [pool.get() for _ in range(3)]
    for conn in conns:
        pool.put(conn)
    assert pool.current_size == 3
    wait_until(hub, lambda: pool.current_size == 0 and db.closes == 3, timeout=3)
    assert pool.stats().expired == 3


def test_sweep_is_due_no_later_than_any_return_could_need(make_pool, db, hub):
    """put() never schedules: while a connection is out, the sweep is due no later than
    max_idle from the last sweep, so one returned later expires on time."""
    pool = make_pool(max_size=2, max_idle=0.3, max_age=None)
    conn = pool.get()
    opened = hub.monotonic()
    assert pool._sweeper.next_run <= opened + 0.3
    hub.sleep(0.15)
    pool.put(conn)
    returned = hub.monotonic()
    assert pool._sweeper.next_run <= returned + 0.3
    wait_until(hub, lambda: pool.current_size == 0, timeout=3)
    closed = hub.monotonic()
    assert returned + 0.3 <= closed + 0.02 and closed < returned + 1.0
    assert pool.stats().expired == 1 and pool._sweeper.next_run == float("inf")


def test_idle_expiry_returns_once_the_pool_grows_past_min_size(make_pool, db, hub):
    pool = make_pool(min_size=1, max_size=2, max_idle=0.1, max_age=None)
    assert pool._sweeper.next_run == float("inf")  # min_size connections never idle out
    a = pool.get()
    b = pool.get()  # opens a second connection: idle expiry is possible again
    pool.put(a)
    pool.put(b)
    wait_until(hub, lambda: pool.current_size == 1, timeout=3)
    assert pool.stats().expired == 1


def test_max_age_closes_on_return_and_never_hands_out_expired(make_pool, db, hub):
    pool = make_pool(max_size=1, max_age=0.05, max_idle=None)
    conn = pool.get()
    hub.sleep(0.06)
    pool.put(conn)  # too old: closed instead of pooled
    assert db.closes == 1 and pool.current_size == 0
    with pool.item() as conn:
        first = conn.id
    hub.sleep(0.06)
    with pool.item() as conn:
        assert conn.id != first


def test_max_idle_zero_closes_every_connection_on_return(make_pool, db):
    pool = make_pool(max_size=2, max_idle=0)
    for _ in range(3):
        with pool.item() as conn:
            conn.cursor().execute("SELECT 1")
    assert db.connects == 3 and db.closes == 3 and pool.current_size == 0


def test_max_age_zero_is_a_concurrency_limiter(make_pool, db):
    pool = make_pool(max_size=1, max_age=0)
    for _ in range(3):
        with pool.item():
            pass
    assert db.connects == 3 and db.closes == 3


def test_min_size_opened_at_start_and_topped_up_after_expiry(make_pool, db, hub):
    pool = make_pool(min_size=2, max_size=4, max_age=0.05)
    assert db.connects == 2 and pool.current_size == 2
    wait_until(hub, lambda: db.closes >= 2 and db.connects >= 4, timeout=3)
    wait_until(hub, lambda: len(db.open_connections()) == 2 == pool.current_size, timeout=3)


def test_min_size_connections_are_exempt_from_max_idle(make_pool, db, hub):
    pool = make_pool(min_size=1, max_size=3, max_idle=0.05)
    conns = [pool.get() for _ in range(3)]
    for conn in conns:
        pool.put(conn)
    wait_until(hub, lambda: pool.current_size == 1 and db.closes == 2, timeout=3)
    hub.sleep(0.15)
    assert pool.current_size == 1 and db.connects == 3  # kept, not closed and reopened
    with pool.item():
        pass
    assert db.connects == 3


def test_failed_prefill_closes_what_it_opened(pool_cls, db, hub):
    db.connect_hook = lambda: (
        None if db.connect_attempts < 2 else (_ for _ in ()).throw(db.OperationalError("down"))
    )
    with pytest.raises(db.OperationalError):
        pool_cls(db, min_size=2, hub=hub)
    assert db.connects == 1 and db.open_connections() == []


def test_connect_timeout_green_connect(make_pool, db, hub):
    db.connect_delay = 1.0
    pool = make_pool(connect_timeout=0.05)
    start = hub.monotonic()
    with pytest.raises(ConnectTimeout, match="connect_timeout=0.05") as info:
        pool.get()
    elapsed = hub.monotonic() - start
    assert 0.05 <= elapsed < 0.5
    assert SECRET not in str(info.value)
    assert isinstance(info.value, PoolTimeout)
    assert pool.current_size == 0 and pool.stats().connect_timeouts == 1


def test_tpooled_connect_timeout_closes_the_late_connection(hub, db):
    db.connect_delay = 0.2
    db.connect_delay_mode = "block"
    pool = TpooledConnectionPool(db, connect_timeout=0.05, hub=hub)
    with pytest.raises(ConnectTimeout):
        pool.get()
    assert pool.current_size == 0
    wait_until(hub, lambda: db.connects == 1 and db.closes == 1, timeout=3)
    assert db.open_connections() == []
    pool.close()


def test_tpooled_blocking_calls_do_not_block_the_hub(green_hub, db):
    db.connect_delay = 0.2
    db.connect_delay_mode = "block"
    pool = TpooledConnectionPool(db, hub=green_hub)
    ticks = []

    def ticker():
        for _ in range(10):
            green_hub.sleep(0.01)
            ticks.append(1)

    task = Spawned(green_hub, ticker)
    with pool.item():
        pass
    task.wait()
    assert len(ticks) == 10
    assert db.connects == 1
    pool.close()


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


def test_garbage_collected_wrapper_frees_its_slot(make_pool, db, hub, caplog):
    """The slot comes back at once; the warning names where the connection was taken
    from the second orphan on (the first switches that recording on)."""
    pool = make_pool(max_size=1)

    def leak():
        pool.get()  # dropped on the floor

    with caplog.at_level(logging.WARNING, logger="greenpool"):
        leak()
        gc.collect()
        with pool.item(timeout=2) as conn:
            assert conn.id == 2
    assert "garbage collected without being returned" in caplog.text
    assert "an unknown place" in caplog.text
    assert db.connections[0].closed and pool.stats().orphans == 1
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="greenpool"):
        leak()
        gc.collect()
        with pool.item(timeout=2) as conn:
            assert conn.id == 3
    assert "test_connections.py" in caplog.text and " in leak" in caplog.text
    assert pool.stats().orphans == 2


def test_orphan_reclaimed_by_next_get_while_idle_connections_wait(make_pool, db, hub):
    """A queued orphan turns get()'s short path off until the next get() reclaims it,
    even though an idle connection was there to be taken without a look."""
    pool = make_pool(max_size=2)
    kept = pool.get()

    def leak():
        pool.get()  # connection 2, dropped on the floor

    leak()
    pool.put(kept)
    gc.collect()
    conn = pool.get()
    assert conn.id == 1
    assert pool.stats().orphans == 1 and db.connections[1].closed
    assert pool._green_open is hub.green  # the short path is back on green hubs
    pool.put(conn)
    again = pool.get()
    assert again.id == 1 and pool.stats().opened == 2
    pool.put(again)


def test_waiter_reclaims_garbage_collected_connection(make_pool, db, hub):
    pool = make_pool(max_size=1)
    holder = {"conn": pool.get()}
    waiter = Spawned(hub, pool.get, 5)
    wait_until(hub, lambda: pool.waiting() == 1)
    del holder["conn"]
    gc.collect()
    got = waiter.wait()
    assert got.id == 2
    pool.put(got)


def test_pool_level_checkout_timeout(make_pool):
    pool = make_pool(max_size=1, timeout=0.02)
    held = pool.get()
    with pytest.raises(PoolTimeout):
        pool.get()
    pool.put(held)


def test_full_pool_checkout_every_way_out_of_the_wait(make_pool, db, hub):
    # A full pool queues callers at once (on green hubs without Pool.get()'s tests):
    # served in order, timed out, refused beyond max_waiting, killed, and every way
    # out leaves the pool whole.
    pool = make_pool(max_size=1, max_waiting=3)
    held = pool.get()
    with pytest.raises(PoolTimeout):
        pool.get(timeout=0.01)
    first = Spawned(hub, pool.get)
    wait_until(hub, lambda: pool.waiting() == 1)
    second = Spawned(hub, pool.get, 5)
    third = Spawned(hub, pool.get)
    wait_until(hub, lambda: pool.waiting() == 3)
    with pytest.raises(greenpool.TooManyWaiters, match="max_waiting=3"):
        pool.get()
    if hub.green:
        third.kill()
        assert third.done.wait(5)
        wait_until(hub, lambda: pool.waiting() == 2)
    pool.put(held)
    got = first.wait()
    assert got and pool.waiting() == (1 if hub.green else 2)
    pool.put(got)
    got = second.wait()
    assert got and pool.waiting() == (0 if hub.green else 1)
    pool.put(got)
    if not hub.green:
        pool.put(third.wait())
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
        green_hub, pool, 5, (0.02, _Expired()) if how == "hub-timeout" else None)
    if how == "hub-timeout":
        assert isinstance(doomed.outcome(), _Expired)
        pool.put(held)
    else:
        pool.put(held)  # handed to the doomed waiter, which has not run yet
        doomed.kill()
        doomed.outcome()
    if doomed.value is not None:  # served before the kill landed (gevent may): it owns it
        pool.put(doomed.value)
    pool.put(next_in_line.wait())
    s = pool.stats()
    assert (s.size, s.idle, s.in_use, s.waiting) == (1, 1, 0, 0)
    assert db.connects == 1 and db.open_connections() == [db.connections[0]]
    pool.close()


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"max_idle": -1}, ValueError, "max_idle must be >= 0 seconds, got -1"),
        ({"max_age": "old"}, TypeError, "max_age must be a number of seconds, got 'old'"),
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
        db.connect_error = db.OperationalError("refused")
        pool.clear()
        with pytest.raises(db.OperationalError):
            pool.get()
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
            with pool.item(timeout=10) as conn:
                key = id(conn._entry)
                if key in holders:
                    errors.append(f"{n} and {holders[key]} share a connection")
                holders[key] = n
                conn.cursor().execute("SELECT 1")
                del holders[key]

    tasks = [Spawned(hub, worker, n) for n in range(40)]
    for task in tasks:
        task.wait(30)
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
    assert pool._plain_return  # the short return path is back, on every hub


def test_resize_down_closes_surplus(make_pool, db):
    pool = make_pool(max_size=3)
    conns = [pool.get() for _ in range(3)]
    for conn in conns:
        pool.put(conn)
    pool.resize(1)
    assert pool.current_size == 1 and db.closes == 2
