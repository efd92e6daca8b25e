"""ManualClockHub (tests/support/manual_hub.py): the hub contract on a virtual clock,
and pool timing tested through the public API without a single real sleep.

These tests use only greenlet, so they pass unchanged in the threads, eventlet
and gevent test processes; every time they assert is exact.
"""

from __future__ import annotations

import time
import weakref
from typing import Any

import greenlet
import pytest

import greenpool
from greenpool.hubs import Hub, resolve_hub
from greenpool.hubs.base import ThreadCallTimeout
from tests.support.fakedb import make_fakedb
from tests.support.manual_hub import Deadlock, ManualClockHub

pytestmark = pytest.mark.timeout(10)


@pytest.fixture
def hub() -> ManualClockHub:
    """A fresh manual-clock hub (shadows conftest's process hub for this module)."""
    return ManualClockHub()


class Boom(Exception):
    pass


# -- the clock, run() and scheduling order ----------------------------------------------


def test_is_a_green_hub_accepted_by_resolve_hub(hub):
    assert isinstance(hub, Hub) and resolve_hub(hub) is hub
    assert hub.green and not hub.preemptive and hub.can_interrupt
    assert hub.killed == (greenlet.GreenletExit,)
    assert isinstance(hub.waiter, type)  # called directly: hub.waiter()
    assert issubclass(hub.Timeout, BaseException) and not issubclass(hub.Timeout, Exception)
    assert ManualClockHub(start=100.0).monotonic() == 100.0


def test_sleep_jumps_the_clock_exactly_and_takes_no_real_time(hub):
    def main():
        hub.sleep(3600)
        hub.advance(0.25)
        return hub.monotonic()

    started = time.perf_counter()
    assert hub.run(main) == 3600.25
    assert time.perf_counter() - started < 1.0


def test_run_returns_the_value_or_raises_the_exception_of_main(hub):
    assert hub.run(lambda a, b: a + b, 2, 3) == 5

    def fails():
        hub.sleep(1)
        raise Boom("from main")

    with pytest.raises(Boom, match="from main"):
        hub.run(fails)
    assert hub.monotonic() == 1


def test_blocking_outside_run_or_running_twice_is_an_error(hub):
    with pytest.raises(RuntimeError, match="run()"):
        hub.sleep(1)
    with pytest.raises(RuntimeError, match="run()"):
        hub.event().wait(1)
    with pytest.raises(RuntimeError, match="already running"):
        hub.run(hub.run, lambda: None)


def test_spawn_never_switches_and_tasks_run_in_fifo_order(hub):
    log: list[Any] = []

    def main():
        for name in "abc":
            hub.spawn(log.append, name)
        log.append("main")  # spawn() did not switch
        hub.sleep(0)  # everything ready before this sleep(0) runs first
        log.append("main again")

    hub.run(main)
    assert log == ["main", "a", "b", "c", "main again"]


def test_sleepers_wake_by_deadline_then_in_the_order_they_slept(hub):
    woken: list[Any] = []

    def sleeper(name, seconds):
        hub.sleep(seconds)
        woken.append((name, hub.monotonic()))

    def main():
        for name, seconds in [("c", 3), ("a1", 1), ("b", 2), ("a2", 1), ("zero", 0)]:
            hub.spawn(sleeper, name, seconds)
        hub.sleep(10)

    hub.run(main)
    assert woken == [("zero", 0), ("a1", 1), ("a2", 1), ("b", 2), ("c", 3)]


def test_time_never_moves_while_a_task_can_run(hub):
    seen: list[Any] = []

    def busy():
        for _ in range(1000):
            seen.append(hub.monotonic())
            hub.sleep(0)  # yields, but stays runnable

    def main():
        hub.spawn(busy)
        hub.sleep(1)  # due at t=1, yet it waits for the busy task to finish
        return hub.monotonic(), len(seen)

    assert hub.run(main) == (1.0, 1000)
    assert set(seen) == {0.0}


def test_tasks_left_blocked_carry_on_at_the_next_run(hub):
    log: list[Any] = []

    def later():
        hub.sleep(5)
        log.append(hub.monotonic())

    hub.spawn(later)  # allowed outside run(): it starts with the next run
    hub.run(hub.sleep, 1)
    assert log == [] and hub.monotonic() == 1
    hub.run(hub.sleep, 10)
    assert log == [5.0] and hub.monotonic() == 11


def test_a_crashing_task_is_recorded_not_raised(hub, caplog):
    def crash():
        raise Boom("in a task")

    def main():
        hub.spawn(crash)
        hub.sleep(1)
        return "main survived"

    assert hub.run(main) == "main survived"
    assert [type(exc) for exc in hub.failures] == [Boom]
    assert "in a task" in caplog.text  # logged with its traceback


def test_current_task_is_one_key_per_task_and_weakly_referenced(hub):
    seen: list[Any] = []

    def record():
        seen.append(hub.current_task())

    def main():
        record()
        hub.spawn(record)
        hub.sleep(0)
        record()

    hub.run(main)
    assert seen[0] is seen[2] and seen[0] is not seen[1]
    assert len({*seen}) == 2 and weakref.ref(seen[1])() is seen[1]


# -- deadlock detection -------------------------------------------------------------------


def test_main_waiting_for_nothing_raises_deadlock_instead_of_hanging(hub):
    cleaned = []

    def main():
        try:
            hub.event().wait()
        finally:
            cleaned.append(hub.monotonic())

    with pytest.raises(Deadlock, match="deadlock at virtual time 0.0"):
        hub.run(main)
    assert cleaned == [0.0]  # raised into main, so its cleanup ran


def test_deadlock_is_found_after_the_last_timer_when_other_tasks_are_stuck_too(hub):
    def stuck(event):
        event.wait()

    def main():
        first, second = hub.event(), hub.event()
        hub.spawn(stuck, first)
        hub.spawn_after(7, stuck, second)
        second.wait()

    with pytest.raises(Deadlock, match="7.0"):
        hub.run(main)


def test_cancelled_and_disarmed_timers_never_move_the_clock(hub):
    def main():
        hub.spawn_after(50, hub.sleep, 0).cancel()
        done = hub.event()
        hub.spawn_after(1, done.set)
        assert done.wait(100)  # woken at t=1: its t=100 timeout is disarmed
        with hub.timeout(200, Boom()):
            hub.sleep(2)  # the t=201 deadline is disarmed at the end of the block
        hub.event().wait()  # nothing is left that could wake it

    with pytest.raises(Deadlock, match="virtual time 3.0"):
        hub.run(main)


def test_a_pending_timer_is_not_a_deadlock(hub):
    def main():
        event = hub.event()
        hub.spawn_after(30, event.set)
        return event.wait(), hub.monotonic()

    assert hub.run(main) == (True, 30.0)


# -- spawn_after and Task.cancel ---------------------------------------------------------


def test_spawn_after_runs_by_due_time_then_in_the_order_set(hub):
    ran: list[Any] = []

    def record(name):
        ran.append((name, hub.monotonic()))

    def main():
        hub.spawn_after(2, record, "two")
        hub.spawn_after(1, record, "one-a")
        hub.spawn_after(1, record, "one-b")
        hub.spawn_after(0, record, "zero")
        hub.spawn(record, "now")
        hub.sleep(5)

    hub.run(main)
    assert ran == [("now", 0), ("zero", 0), ("one-a", 1), ("one-b", 1), ("two", 2)]


def test_cancel_before_start_means_never_and_does_not_move_the_clock(hub):
    ran: list[Any] = []

    def main():
        hub.spawn_after(50, ran.append, "late").cancel()
        hub.spawn(ran.append, "soon").cancel()
        hub.spawn_after(1, ran.append, "kept")
        hub.sleep(0.5)
        return hub.monotonic()

    assert hub.run(main) == 0.5
    assert hub.run(hub.sleep, 100) is None
    assert ran == ["kept"]


def test_cancel_after_its_timer_fired_but_before_it_ran(hub):
    ran: list[Any] = []
    handle: list[Any] = []

    def main():
        # The helper sets its timer after main's sleep(1): both fire at t=1, main's first.
        hub.spawn(lambda: handle.append(hub.spawn_after(1, ran.append, "late")))
        hub.sleep(1)
        handle[0].cancel()  # due and ready, but not run yet
        hub.sleep(10)

    hub.run(main)
    assert ran == [] and hub.monotonic() == 11


def test_cancel_of_a_started_task_raises_greenlet_exit_at_its_turn(hub):
    log: list[Any] = []

    def victim():
        try:
            log.append("started")
            hub.sleep(100)
            log.append("slept through")
        except greenlet.GreenletExit:
            log.append(("killed at", hub.monotonic()))
            raise

    def main():
        task = hub.spawn_after(1, victim)
        hub.sleep(2)
        task.cancel()
        log.append("cancel returned")  # cancel() does not switch
        hub.sleep(0)
        task.cancel()  # finished: nothing happens
        hub.sleep(200)

    hub.run(main)
    assert log == ["started", "cancel returned", ("killed at", 2.0)]
    assert hub.failures == []  # GreenletExit is the normal end of a killed task


def test_kill_wins_over_a_wake_up_not_yet_delivered(hub):
    log: list[Any] = []

    def victim(event):
        try:
            event.wait()
            log.append("woken")
        except greenlet.GreenletExit:
            log.append("killed")

    def main():
        event = hub.event()
        task = hub.spawn(victim, event)
        hub.sleep(0)
        event.set()  # the victim is ready now, but has not run
        task.cancel()
        hub.sleep(0)

    hub.run(main)
    assert log == ["killed"]


def test_a_task_cancelling_itself_ends_at_once(hub):
    log: list[Any] = []
    handle: list[Any] = []

    def suicidal():
        log.append("before")
        handle[0].cancel()
        log.append("after")

    def main():
        handle.append(hub.spawn(suicidal))
        hub.sleep(1)

    hub.run(main)
    assert log == ["before"] and hub.failures == []


# -- the waiter ---------------------------------------------------------------------------


def test_waiter_set_before_wait_returns_at_once_with_the_value(hub):
    log: list[Any] = []

    def main():
        waiter = hub.waiter()
        waiter.value = "item"
        waiter.set()
        hub.spawn(log.append, "other task")
        assert waiter.wait(5) is True and waiter.is_set()
        log.append(("main", waiter.value, hub.monotonic()))  # no switch happened

    hub.run(main)
    assert log == [("main", "item", 0.0)]


def test_waiter_times_out_after_exactly_its_timeout(hub):
    def main():
        waiter = hub.waiter()
        return waiter.wait(2.5), waiter.is_set(), hub.monotonic()

    assert hub.run(main) == (False, False, 2.5)


def test_waiter_set_never_switches_and_hands_over_the_value(hub):
    log: list[Any] = []

    def waiting(waiter):
        log.append(("woken", waiter.wait(), waiter.value, hub.monotonic()))

    def main():
        waiter = hub.waiter()
        hub.spawn(waiting, waiter)
        hub.sleep(3)
        waiter.value = 42
        waiter.set()
        waiter.set()  # a second set() changes nothing
        log.append("set returned")
        hub.sleep(0)

    hub.run(main)
    assert log == ["set returned", ("woken", True, 42, 3.0)]


def test_a_late_set_does_not_resume_a_task_that_timed_out(hub):
    log: list[Any] = []

    def impatient(waiter):
        log.append(("gave up", waiter.wait(1), hub.monotonic()))
        hub.sleep(10)  # a set() of the old waiter must not cut this short
        log.append(("slept until", hub.monotonic()))

    def main():
        waiter = hub.waiter()
        hub.spawn(impatient, waiter)
        hub.sleep(2)
        waiter.set()
        hub.sleep(20)

    hub.run(main)
    assert log == [("gave up", False, 1.0), ("slept until", 11.0)]


def test_a_late_set_does_not_resume_a_killed_task(hub):
    log: list[Any] = []

    def waiting(waiter):
        try:
            waiter.wait()
        finally:
            log.append(("left", hub.monotonic()))

    def main():
        waiter = hub.waiter()
        task = hub.spawn(waiting, waiter)
        hub.sleep(1)
        task.cancel()
        hub.sleep(1)
        waiter.set()
        hub.sleep(1)

    hub.run(main)
    assert log == [("left", 1.0)] and hub.failures == []


def test_a_task_woken_twice_before_it_runs_is_resumed_once(hub):
    def main():
        event = hub.event()
        hub.spawn_after(2, event.set)  # runs at t=2 after this wait's timeout has fired
        woken = event.wait(2)  # timed out, but set before it ran: reports the flag
        hub.sleep(5)  # a second, stale resumption would cut this short
        return woken, hub.monotonic()

    assert hub.run(main) == (True, 7.0)


def test_a_waiter_is_for_one_task_only(hub):
    def main():
        waiter = hub.waiter()
        hub.spawn(waiter.wait)
        hub.sleep(0)
        with pytest.raises(RuntimeError, match="one task"):
            waiter.wait(1)
        waiter.set()

    hub.run(main)


# -- the event ------------------------------------------------------------------------------


def test_event_wakes_every_waiter_in_the_order_they_waited(hub):
    woken: list[Any] = []

    def waiting(name, event, timeout):
        woken.append((name, event.wait(timeout), hub.monotonic()))

    def main():
        event = hub.event()
        hub.spawn(waiting, "short", event, 1)
        for name in "abc":
            hub.spawn(waiting, name, event, None)
        hub.sleep(4)
        event.set()
        hub.sleep(0)
        woken.append(("after", event.wait(0), event.is_set()))

    hub.run(main)
    assert woken == [
        ("short", False, 1.0), ("a", True, 4.0), ("b", True, 4.0), ("c", True, 4.0),
        ("after", True, True),
    ]


# -- timeout() --------------------------------------------------------------------------------


def test_timeout_raises_its_exception_after_exactly_its_seconds(hub):
    expired = Boom("too slow")

    def main():
        with pytest.raises(Boom) as caught:
            with hub.timeout(4, expired):
                hub.sleep(100)
        return caught.value, hub.monotonic()

    assert hub.run(main) == (expired, 4.0)


def test_timeout_is_disarmed_when_the_block_ends_first(hub):
    def main():
        with hub.timeout(4, Boom()):
            hub.sleep(3)
        hub.sleep(10)  # past the old deadline: nothing is raised
        with hub.timeout(None, Boom()):  # None: no deadline
            hub.sleep(1000)
        return hub.monotonic()

    assert hub.run(main) == 1013


def test_timeout_default_exception_is_the_hubs_timeout_and_nested_ones_fire_in_turn(hub):
    def main():
        with pytest.raises(hub.Timeout):
            with hub.timeout(5):
                with pytest.raises(Boom):
                    with hub.timeout(2, Boom()):
                        hub.sleep(10)
                assert hub.monotonic() == 2
                hub.sleep(10)
        return hub.monotonic()

    assert hub.run(main) == 5


def test_timeout_interrupts_a_waiter_which_a_later_set_then_leaves_alone(hub):
    log: list[Any] = []

    def main():
        waiter = hub.waiter()
        hub.spawn_after(3, waiter.set)
        try:
            with hub.timeout(1, Boom()):
                waiter.wait()
        except Boom:
            log.append(("interrupted", hub.monotonic()))
        hub.sleep(5)
        log.append(("slept until", hub.monotonic()))

    hub.run(main)
    assert log == [("interrupted", 1.0), ("slept until", 6.0)]


# -- run_in_thread, lock, I/O -----------------------------------------------------------------


def test_run_in_thread_calls_in_place_by_default(hub):
    def main():
        return hub.run_in_thread(lambda x: (x, hub.monotonic()), "result")

    assert hub.run(main) == ("result", 0.0)


def test_run_in_thread_takes_its_virtual_duration_and_raises_what_fn_raises(hub):
    hub.thread_call_seconds = 3

    def fails():
        raise Boom("in the thread")

    def main():
        done = hub.run_in_thread(hub.monotonic, timeout=3)  # called at the end of the call
        with pytest.raises(Boom):
            hub.run_in_thread(fails)
        return done, hub.monotonic()

    assert hub.run(main) == (3.0, 6.0)


def test_run_in_thread_timeout_gives_up_but_the_call_still_happens_later(hub):
    hub.thread_call_seconds = 5
    finished: list[Any] = []

    def main():
        with pytest.raises(ThreadCallTimeout, match="within 2 s"):
            hub.run_in_thread(lambda: finished.append(hub.monotonic()), timeout=2)
        assert hub.monotonic() == 2 and finished == []
        hub.sleep(10)

    hub.run(main)
    assert finished == [5.0]  # the "thread" ran on; its result was dropped


def test_lock_is_free_and_loud_if_held_across_a_switch(hub):
    def main():
        lock = hub.lock()
        with lock:
            assert lock.acquire(False) is False
        hub.spawn(lock.acquire)  # a task that takes it and ends holding it
        hub.sleep(0)
        with pytest.raises(RuntimeError, match="holds it across a switch"):
            lock.acquire()
        lock.release()
        with lock:
            pass

    hub.run(main)


def test_waiting_for_a_file_descriptor_is_not_supported(hub):
    with pytest.raises(NotImplementedError, match="no I/O"):
        hub.wait_readable(0)
    with pytest.raises(NotImplementedError, match="no I/O"):
        hub.wait_writable(0)


# -- a real pool on the manual clock: exact timings, no sleeping -----------------------------


def test_pool_get_times_out_after_exactly_its_timeout(hub):
    def main():
        pool = greenpool.Pool(max_size=1, create=object, hub=hub)
        pool.get()
        with pytest.raises(greenpool.PoolTimeout):
            pool.get(timeout=5)
        return hub.monotonic(), pool.stats().timeouts, pool.waiting()

    started = time.perf_counter()
    assert hub.run(main) == (5.0, 1, 0)
    assert time.perf_counter() - started < 1.0


def test_pool_waiter_is_served_when_the_item_comes_back_at_t2(hub):
    def main():
        pool = greenpool.Pool(max_size=1, create=object, hub=hub)
        item = pool.get()

        def give_back():
            hub.sleep(2)
            pool.put(item)

        hub.spawn(give_back)
        got = pool.get(timeout=5)
        return got is item, hub.monotonic(), pool.stats().waits

    assert hub.run(main) == (True, 2.0, 1)


def test_connection_pool_closes_an_idle_connection_after_exactly_max_idle(hub):
    db = make_fakedb()

    def idle_and_open(pool):
        return pool.stats().idle, len(db.open_connections()), db.closes

    def main():
        pool = greenpool.RawConnectionPool(db, max_idle=10, max_age=1000, hub=hub, host="db1")
        try:
            conn = pool.get()
            conn.cursor().execute("SELECT 1")
            conn.close()  # back to the pool, idle from t=0
            ten = hub.event()
            hub.spawn_after(10, ten.set)
            hub.sleep(9.999)
            before = idle_and_open(pool)
            ten.wait()
            for _ in range(5):  # let whatever the pool runs at t=10 finish (time stands still)
                hub.sleep(0)
            return before, idle_and_open(pool), pool.stats().expired, hub.monotonic()
        finally:
            pool.close()

    assert hub.run(main) == ((1, 1, 0), (0, 0, 1), 1, 10.0)
    assert db.connects == 1 and hub.failures == []
