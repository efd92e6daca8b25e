"""The single-task waiter of the hub contract (``hub.waiter()``), on every hub.

The pool parks each queued ``get()`` on one; these are the properties it
relies on: a value handed over with ``set()``, which never switches; timed
waits; no resumption of a task that stopped waiting (timed out, killed);
wake-ups in the order they were set; and, on the green hubs, woken waiters
resumed in batches at the hub's next turn (one "call soon" for all those
woken before it, in order), with timers and I/O served between batches.

Everything is observed through the hub contract (``waiter()``, ``spawn()``,
``sleep()``, ``timeout()``, ``event()``) and the pool's public API.  Time is
only ever bounded from below here: a loaded machine makes waits longer, never
shorter.
"""

from __future__ import annotations

import socket

import pytest

from greenpool import Pool
from tests.support.tasks import Spawned, wait_until


@pytest.fixture
def green_loop(hub):
    """The hub, for tests of how a green hub schedules its tasks (skipped on threads,
    which the OS schedules)."""
    if not hub.green:
        pytest.skip("about green scheduling: OS threads are scheduled by the OS")
    return hub


def let_others_park(hub):
    """Give the tasks just spawned the chance to start waiting.  On a green hub one
    turn does it (they run until they park); OS threads get a moment, and the tests
    below hold whether or not they used it."""
    hub.sleep(0 if hub.green else 0.01)


def test_set_before_wait_returns_at_once_with_the_value(hub):
    waiter = hub.waiter()
    waiter.value = "item"
    waiter.set()
    ran = []
    hub.spawn(ran.append, "another task")
    assert waiter.wait() is True and waiter.is_set()  # no timeout: it cannot block
    assert waiter.value == "item"
    if hub.green:
        assert ran == []  # nor did it switch
    wait_until(hub, lambda: ran)


def test_wait_times_out_then_sees_a_later_set(hub):
    waiter = hub.waiter()
    start = hub.monotonic()
    assert waiter.wait(0.02) is False and not waiter.is_set()
    assert hub.monotonic() - start >= 0.015  # never early (the clock's resolution aside)

    def hand_over():
        waiter.value = 42
        waiter.set()

    hub.spawn_after(0.01, hand_over)
    assert waiter.wait(60) is True and waiter.value == 42


def test_set_from_another_task_wakes_the_waiter(hub):
    waiter = hub.waiter()
    task = Spawned(hub, lambda: (waiter.wait(60), waiter.value))
    let_others_park(hub)
    waiter.value = "handed over"
    waiter.set()
    assert task.wait() == (True, "handed over")


def test_set_never_switches(green_loop):
    hub = green_loop
    waiter = hub.waiter()
    log = []
    task = Spawned(hub, lambda: (waiter.wait(60), log.append("woken")))
    let_others_park(hub)
    waiter.set()
    log.append("set returned")
    task.wait()
    assert log == ["set returned", "woken"]


def test_a_late_set_does_not_resume_a_task_that_timed_out(green_hub):
    hub = green_hub
    waiter = hub.waiter()
    gave_up = hub.event()
    slept = []

    def impatient():
        assert waiter.wait(0.01) is False
        gave_up.set()
        start = hub.monotonic()
        hub.sleep(0.1)  # a set() of the old waiter must not cut this short
        slept.append(hub.monotonic() - start)

    task = Spawned(hub, impatient)
    assert gave_up.wait(60)
    waiter.set()  # while the task sleeps
    task.wait()
    assert slept[0] >= 0.09, slept


@pytest.mark.parametrize("how", ["hub-timeout", "kill"])
def test_a_late_set_does_not_resume_an_interrupted_task(green_hub, how):
    """A task interrupted while it waits (the hub's Timeout, kill()) has left the
    waiter: a set() afterwards neither resumes it nor disturbs the hub."""
    hub = green_hub
    waiter = hub.waiter()
    interrupted = hub.event()
    slept = []

    def waiting():
        try:
            if how == "kill":
                waiter.wait()
            else:
                with hub.timeout(0.01, None):
                    waiter.wait()
        except BaseException:
            interrupted.set()
            if how == "kill":
                raise
        start = hub.monotonic()
        hub.sleep(0.1)  # a set() of the old waiter must not cut this short
        slept.append(hub.monotonic() - start)

    task = Spawned(hub, waiting)
    let_others_park(hub)
    if how == "kill":
        task.kill()
    assert interrupted.wait(60)
    waiter.set()
    error = task.outcome()
    if how == "kill":
        assert isinstance(error, hub.killed) and slept == []
    else:
        assert error is None and slept[0] >= 0.09, slept
    hub.sleep(0.01)  # the hub runs on


def test_waiters_wake_in_the_order_they_were_set(hub):
    woken = []
    parked = []
    waiters = [hub.waiter() for _ in range(20)]

    def waiting(i):
        parked.append(i)
        waiters[i].wait(60)
        woken.append(i)

    tasks = [Spawned(hub, waiting, i) for i in range(20)]
    wait_until(hub, lambda: len(parked) == 20)  # green: each parked as it appended
    let_others_park(hub)
    order = list(range(0, 20, 2)) + list(range(1, 20, 2))
    for i in order:
        waiters[i].set()
    for task in tasks:
        task.wait()
    if hub.green:  # OS threads are woken in order too, but run in the OS's order
        assert woken == order


def test_woken_waiters_resume_together_at_the_hubs_next_turn(green_loop):
    """Waiters woken before the hub's next turn are resumed in one batch, in the order
    they were set: after what was scheduled before the first of them, and before what
    was scheduled between them."""
    hub = green_loop
    order = []
    first, second = hub.waiter(), hub.waiter()

    def waiting(waiter, name):
        waiter.wait(60)
        order.append(name)

    tasks = [Spawned(hub, waiting, first, "first"), Spawned(hub, waiting, second, "second")]
    let_others_park(hub)
    hub.spawn(order.append, "scheduled before")
    first.set()
    hub.spawn(order.append, "scheduled between")
    second.set()
    for task in tasks:
        task.wait()
    wait_until(hub, lambda: len(order) == 4)
    assert order == ["scheduled before", "first", "second", "scheduled between"]


def test_a_chain_of_wake_ups_does_not_keep_the_hub_from_its_timers(green_loop):
    """Two tasks waking each other, with no I/O, still let a timer fire meanwhile: a
    batch of woken waiters is resumed at one turn of the hub, and those woken during
    it wait for the next, with timers served in between."""
    hub = green_loop
    most = 100_000  # rounds each; far more than the timer needs however slow the machine
    count = [0]
    current = {"a": hub.waiter(), "b": hub.waiter()}
    fired_at = []

    def player(me, other):
        for _ in range(most):
            if not current[me].wait(60):
                raise AssertionError("lost a wake-up")
            current[me] = hub.waiter()
            count[0] += 1
            current[other].set()
            if fired_at:
                return

    def timer():
        hub.sleep(0.002)
        fired_at.append(count[0])

    sleeper = Spawned(hub, timer)
    a = Spawned(hub, player, "a", "b")
    b = Spawned(hub, player, "b", "a")
    let_others_park(hub)
    current["a"].set()
    a.wait()
    current["a"].set()  # release whichever player still waits for its turn
    current["b"].set()
    b.wait()
    sleeper.wait()
    assert fired_at and fired_at[0] < 2 * most, fired_at


def test_a_waiting_task_parks_through_the_hubs_own_switch(green_loop):
    """eventlet's and gevent's hubs run a task's ``switch_out`` hook when it leaves
    through the hub's ``switch()``; a waiting task parks that way, so the hook runs
    once per wait."""
    import greenlet

    hub = green_loop
    if hub.name == "eventlet":
        from eventlet.hubs import get_hub

        loop = get_hub()
        loop_greenlet, call_soon = loop.greenlet, lambda fn: loop.schedule_call_global(0, fn)
    else:
        import gevent

        loop = gevent.get_hub()
        loop_greenlet, call_soon = loop, loop.loop.run_callback
    waiter = hub.waiter()
    switched_out = []
    results = []

    class Hooked(greenlet.greenlet):
        def switch_out(self) -> None:
            switched_out.append(True)

    def run() -> None:
        results.append((waiter.wait(60), waiter.value))

    hooked = Hooked(run, parent=loop_greenlet)
    call_soon(hooked.switch)  # started by the hub, as its tasks are
    wait_until(hub, lambda: switched_out)
    waiter.value = "handed over"
    waiter.set()
    wait_until(hub, lambda: results)
    assert results == [(True, "handed over")] and hooked.dead
    assert len(switched_out) == 1


@pytest.mark.parametrize("direction", ["read", "write"])
def test_wait_for_a_socket(hub, direction):
    left, right = socket.socketpair()
    try:
        if direction == "write":
            hub.wait_writable(left.fileno())  # an empty buffer: writable at once
            return
        task = Spawned(hub, hub.wait_readable, left.fileno())
        hub.sleep(0.02)
        assert not task.done.is_set()  # nothing to read yet
        right.send(b"x")
        task.wait()
    finally:
        left.close()
        right.close()


def test_the_pool_parks_each_queued_caller_on_one_of_the_hubs_waiters(hub):
    made = []

    class Recording(type(hub)):
        """The process's hub, recording the waiters it makes."""

        def waiter(self):
            waiter = type(hub).waiter()
            made.append(waiter)
            return waiter

    recording = Recording()
    pool = Pool(max_size=1, create=object, hub=recording)
    held = pool.get()
    assert made == []  # served at once: no waiter
    task = Spawned(hub, pool.get, 60)
    wait_until(hub, lambda: pool.waiting() == 1)
    assert len(made) == 1 and type(made[0]) is type(hub.waiter())
    pool.put(held)
    assert task.wait() is held
    assert made[0].is_set()
