"""The single-task waiter of the hub contract (``hub.waiter()``), on every hub.

The pool parks each queued ``get()`` on one; these are the properties it
relies on: a value handed over with ``set()``, timed waits, no resumption of
a task that stopped waiting, wake-ups in the order they were set, and (green
hubs) timers and I/O served between batches of wake-ups, with a direct
hand-off to a woken waiter only where the hub's turns wake few.
"""

from __future__ import annotations

import socket

import pytest

from tests.support.tasks import Spawned, wait_until


def test_set_before_wait_returns_at_once_with_the_value(hub):
    waiter = hub.waiter()
    waiter.value = "item"
    waiter.set()
    start = hub.monotonic()
    assert waiter.wait(5) is True and waiter.is_set()
    assert waiter.value == "item"
    assert hub.monotonic() - start < 0.5


def test_wait_times_out_then_sees_a_later_set(hub):
    waiter = hub.waiter()
    start = hub.monotonic()
    assert waiter.wait(0.02) is False
    assert hub.monotonic() - start >= 0.019

    def hand_over():
        waiter.value = 42
        waiter.set()

    hub.spawn_after(0.01, hand_over)
    assert waiter.wait(5) is True and waiter.value == 42


def test_set_from_another_task_wakes_the_waiter(hub):
    waiter = hub.waiter()
    task = Spawned(hub, lambda: (waiter.wait(5), waiter.value))
    hub.sleep(0.02)
    waiter.value = "handed over"
    waiter.set()
    assert task.wait() == (True, "handed over")


def test_a_late_set_does_not_resume_a_task_that_stopped_waiting(green_hub):
    hub = green_hub
    waiter = hub.waiter()
    slept = []

    def impatient():
        assert waiter.wait(0.01) is False
        start = hub.monotonic()
        hub.sleep(0.1)  # a set() of the old waiter must not cut this short
        slept.append(hub.monotonic() - start)

    task = Spawned(hub, impatient)
    hub.sleep(0.03)
    waiter.set()
    task.wait()
    assert slept[0] >= 0.095, slept


def test_waiters_wake_in_the_order_they_were_set(hub):
    woken = []
    waiters = [hub.waiter() for _ in range(20)]
    tasks = [
        Spawned(hub, lambda i=i: (waiters[i].wait(5), woken.append(i)))
        for i in range(20)
    ]
    hub.sleep(0.05)  # all parked
    order = list(range(0, 20, 2)) + list(range(1, 20, 2))
    for i in order:
        waiters[i].set()
    for task in tasks:
        task.wait()
    if hub.green:  # OS threads are woken in order too, but run in the OS's order
        assert woken == order


def test_a_chain_of_hand_offs_does_not_keep_the_hub_from_timers(green_hub):
    """Two tasks waking each other without any I/O still let a timer fire meanwhile:
    woken waiters are resumed in batches, with a turn of the hub between them, and a
    direct hand-off from a parking task to a woken one happens at most once a turn."""
    hub = green_hub
    rounds = 3000
    count = [0]
    current = {"a": hub.waiter(), "b": hub.waiter()}

    def player(me, other):
        for _ in range(rounds):
            waiter = current[me]
            if not waiter.wait(5):
                raise AssertionError("lost a wake-up")
            current[me] = hub.waiter()
            count[0] += 1
            current[other].set()

    seen_at = []

    def timer():
        hub.sleep(0.002)
        seen_at.append(count[0])

    sleeper = Spawned(hub, timer)
    a = Spawned(hub, player, "a", "b")
    b = Spawned(hub, player, "b", "a")
    hub.sleep(0)
    current["a"].set()
    a.wait()
    b.wait()
    sleeper.wait()
    assert seen_at and seen_at[0] < 2 * rounds, seen_at


def _hand_off_order(hub, load: float) -> list[str]:
    """Task a wakes waiting task b, then parks: is b resumed before the hub's next
    turn (a direct hand-off) or after it?  ``load`` is the hub's recent wake-ups per
    turn, set before a wakes b."""
    order: list[str] = []
    wa, wb = hub.waiter(), hub.waiter()
    loop = wa._current_hub()

    def b():
        wb.wait(5)
        order.append("b")

    def a():
        loop._greenpool_resumer.load = load
        wa._call_soon(loop)(lambda: order.append("hub turn"))
        wb.set()
        wa.wait(5)
        order.append("a")

    tb = Spawned(hub, b)
    wait_until(hub, lambda: wb._task is not None)
    ta = Spawned(hub, a)
    wait_until(hub, lambda: len(order) == 2)
    wa.set()
    ta.wait()
    tb.wait()
    return order


def test_a_parking_task_hands_off_to_a_woken_waiter_when_turns_wake_few(green_hub):
    """When the hub's turns wake about one waiter each, a task about to park switches
    straight to the oldest woken waiter: it runs before the hub's next turn."""
    assert _hand_off_order(green_hub, load=1.0) == ["b", "hub turn", "a"]


def test_woken_waiters_stay_batched_when_turns_wake_several(green_hub):
    from greenpool.hubs.green import BATCHING_LOAD

    assert _hand_off_order(green_hub, load=BATCHING_LOAD) == ["hub turn", "b", "a"]


def test_turns_that_wake_several_waiters_raise_the_load_and_single_ones_lower_it(green_hub):
    from greenpool.hubs.green import BATCHING_LOAD

    hub = green_hub
    loop = hub.waiter()._current_hub()

    def wake_together(count: int) -> None:
        waiters = [hub.waiter() for _ in range(count)]
        tasks = [Spawned(hub, w.wait, 5) for w in waiters]
        wait_until(hub, lambda: all(w._task is not None for w in waiters))
        for w in waiters:
            w.set()
        for task in tasks:
            assert task.wait() is True

    wake_together(1)
    loop._greenpool_resumer.load = 1.0
    wake_together(8)
    assert loop._greenpool_resumer.load >= BATCHING_LOAD
    for _ in range(10):
        wake_together(1)
    assert loop._greenpool_resumer.load < BATCHING_LOAD


@pytest.mark.parametrize("direction", ["read", "write"])
def test_wait_for_a_socket(hub, direction):
    left, right = socket.socketpair()
    try:
        if direction == "write":
            hub.wait_writable(left.fileno())  # an empty buffer: writable at once
            return
        task = Spawned(hub, hub.wait_readable, left.fileno())
        hub.sleep(0.02)
        assert not task.done.is_set()
        right.send(b"x")
        task.wait()
    finally:
        left.close()
        right.close()


def test_waiter_used_by_the_pool_is_the_hub_one(hub):
    from greenpool import Pool

    pool = Pool(max_size=1, create=object, hub=hub)
    held = pool.get()
    task = Spawned(hub, pool.get, 5)
    wait_until(hub, lambda: pool.waiting() == 1)
    assert type(pool._waiters[0]) is type(hub.waiter())
    pool.put(held)
    assert task.wait() is held


def test_a_task_with_a_switch_out_hook_parks_through_the_hubs_own_switch(green_hub):
    """Plain tasks park by switching straight to the hub's greenlet; a task whose type
    defines ``switch_out`` (eventlet's and gevent's hook, run as a task leaves) still
    parks through the hub's ``switch()``, which runs the hook."""
    import greenlet

    hub = green_hub
    waiter = hub.waiter()
    loop = waiter._current_hub()
    loop_greenlet = getattr(loop, "greenlet", loop)  # eventlet's hub owns one; gevent's is one
    switched_out = []
    results = []

    class Hooked(greenlet.greenlet):
        def switch_out(self) -> None:
            switched_out.append(True)

    def run() -> None:
        results.append((waiter.wait(5), waiter.value))

    hooked = Hooked(run, parent=loop_greenlet)
    waiter._call_soon(loop)(hooked.switch)  # started by the hub, as its tasks are
    wait_until(hub, lambda: switched_out)
    waiter.value = "handed over"
    waiter.set()
    wait_until(hub, lambda: results)
    assert results == [(True, "handed over")] and hooked.dead
    assert len(switched_out) == 1


def test_a_plain_task_parks_without_the_hubs_switch(green_hub, monkeypatch):
    import greenlet

    hub = green_hub
    waiter = hub.waiter()
    loop = waiter._current_hub()
    original = type(loop).switch
    switched_by = []

    def recording_switch(self):
        switched_by.append(greenlet.getcurrent())
        return original(self)

    try:
        monkeypatch.setattr(type(loop), "switch", recording_switch)
    except TypeError:  # gevent's compiled hub: its switch() cannot be replaced
        pytest.skip("the hub's switch() cannot be instrumented here")
    waiting = []

    def wait():
        waiting.append(greenlet.getcurrent())
        return waiter.wait(5), waiter.value

    task = Spawned(hub, wait)
    wait_until(hub, lambda: waiting)
    hub.sleep(0.01)
    waiter.value = 7
    waiter.set()
    assert task.wait() == (True, 7)
    assert waiting[0] not in switched_by
