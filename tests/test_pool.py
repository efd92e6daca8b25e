"""The generic Pool: eventlet.pools.Pool's API and the no-loss guarantees, on every hub."""

from __future__ import annotations

import itertools

import pytest

from greenpool import Pool, PoolTimeout, TokenPool, TooManyWaiters
from greenpool.pool import Token
from tests.support.tasks import Spawned, queue_two, wait_until


class Item:
    ids = itertools.count(1)

    def __init__(self):
        self.id = next(self.ids)

    def __repr__(self):
        return f"Item({self.id})"


class Killed(Exception):
    pass


def make(hub, **kw):
    kw.setdefault("create", Item)
    return Pool(hub=hub, **kw)


def test_eventlet_api_basics(hub):
    pool = make(hub, max_size=2)
    assert pool.current_size == 0 and pool.free() == 2 and pool.waiting() == 0
    a = pool.get()
    assert pool.current_size == 1 and pool.free() == 1
    with pool.item() as b:
        assert b is not a and pool.free() == 0
    assert list(pool.free_items) == [b]
    pool.put(a)
    assert pool.free() == 2 and pool.current_size == 2


def test_min_size_prefills(hub):
    pool = make(hub, min_size=3, max_size=5)
    assert pool.current_size == 3 and len(pool.free_items) == 3


def test_subclass_create_and_token_pool(hub):
    class Numbers(Pool):
        def create(self):
            return 7

    assert Numbers(hub=hub).get() == 7
    assert isinstance(TokenPool(hub=hub, max_size=1).get(), Token)
    with pytest.raises(NotImplementedError):
        Pool(hub=hub).get()


@pytest.mark.parametrize("stack, expected", [(False, "round-robin"), (True, "lifo")])
def test_order_as_stack(hub, stack, expected):
    pool = make(hub, max_size=3, order_as_stack=stack)
    items = [pool.get() for _ in range(3)]
    for item in items:
        pool.put(item)
    first = pool.get()
    assert first is (items[-1] if expected == "lifo" else items[0])


def test_waiters_served_first_come_first_served(hub):
    pool = make(hub, max_size=1)
    held = pool.get()
    order = []

    def waiter(n):
        item = pool.get(timeout=10)
        order.append(n)
        pool.put(item)

    tasks = []
    for n in range(5):
        tasks.append(Spawned(hub, waiter, n))
        wait_until(hub, lambda n=n: pool.waiting() == n + 1)
    pool.put(held)
    for task in tasks:
        task.wait()
    assert order == [0, 1, 2, 3, 4]
    assert pool.free() == 1 and pool.waiting() == 0


def test_returner_queues_behind_waiters(hub):
    """A caller that puts and gets again at once does not jump the queue."""
    pool = make(hub, max_size=1)
    held = pool.get()
    waiter = Spawned(hub, pool.get, 10)
    wait_until(hub, lambda: pool.waiting() == 1)
    pool.put(held)
    with pytest.raises(PoolTimeout):
        pool.get(timeout=0.01)
    assert waiter.wait() is held


def test_get_timeout_is_not_early_and_leaves_no_waiter(hub):
    pool = make(hub, max_size=1)
    pool.get()
    start = hub.monotonic()
    with pytest.raises(PoolTimeout, match="no item free within 0.05"):
        pool.get(timeout=0.05)
    assert hub.monotonic() - start >= 0.05
    assert pool.waiting() == 0 and pool.stats().timeouts == 1


def test_timed_out_waiter_never_swallows_an_item(hub):
    pool = make(hub, max_size=1)
    held = pool.get()
    quick = Spawned(hub, pool.get, 0.02)
    wait_until(hub, lambda: pool.waiting() == 1)
    patient = Spawned(hub, pool.get, 10)
    wait_until(hub, lambda: pool.waiting() == 2)
    assert isinstance(quick.outcome(), PoolTimeout)
    pool.put(held)
    assert patient.wait() is held


def test_waiter_interrupted_after_handoff_passes_item_on(hub):
    """The item reaches a waiter, which dies before taking it: the next waiter gets it."""

    class Interrupted(Pool):
        doomed = None

        def _wait_for_event(self, event, timeout):
            super()._wait_for_event(event, timeout)
            if hub.current_task() is self.doomed:
                raise Killed("interrupted right after the hand-off")

    pool = Interrupted(hub=hub, max_size=1, create=Item)
    held = pool.get()
    doomed = Spawned(hub, lambda: (setattr(pool, "doomed", hub.current_task()), pool.get())[1])
    wait_until(hub, lambda: pool.waiting() == 1)
    next_in_line = Spawned(hub, pool.get, 10)
    wait_until(hub, lambda: pool.waiting() == 2)
    pool.put(held)
    assert isinstance(doomed.outcome(), Killed)
    assert next_in_line.wait() is held
    assert pool.current_size == 1 and pool.waiting() == 0


@pytest.mark.parametrize("how", ["kill", "timeout"])
def test_waiter_killed_around_handoff_loses_nothing(green_hub, how):
    pool = make(green_hub, max_size=1)
    held = pool.get()
    doomed, next_in_line = queue_two(
        green_hub, pool, 1, (10, Killed()) if how == "timeout" else None)
    pool.put(held)
    doomed.kill()  # eventlet kills at once; gevent may let the hand-off finish first
    doomed.outcome()
    if doomed.value is held:  # it was served before the kill landed: it owns the item
        assert isinstance(next_in_line.outcome(), PoolTimeout)
    else:
        assert next_in_line.wait() is held
    assert pool.current_size == 1 and pool.waiting() == 0


@pytest.mark.parametrize("how", ["pool-timeout", "hub-timeout", "kill"])
def test_a_caller_parked_by_a_direct_hand_off_and_interrupted_loses_nothing(
        green_hub, monkeypatch, how):
    """The caller that returns an item and queues again switches straight to the
    waiter it woke (see greenpool.hubs.green); interrupted while parked that way, it
    leaves the queue and the pool stays whole."""
    from greenpool.hubs.green import Resumer

    hub = green_hub
    handed_off = []
    original = Resumer.hand_off

    def recording_hand_off(self):
        handed_off.append(True)
        return original(self)

    monkeypatch.setattr(Resumer, "hand_off", recording_hand_off)
    pool = make(hub, max_size=1)
    held = pool.get()
    release = hub.event()

    def waiter():
        item = pool.get(5)
        release.wait(5)
        pool.put(item)
        return item

    served = Spawned(hub, waiter)
    wait_until(hub, lambda: pool.waiting() == 1)

    def returner():
        hub.waiter()._current_hub()._greenpool_resumer.load = 1.0  # turns wake few
        pool.put(held)
        if how == "pool-timeout":
            return pool.get(0.05)
        if how == "hub-timeout":
            with hub.timeout(0.05, Killed()):
                return pool.get()
        return pool.get(5)

    returning = Spawned(hub, returner)
    wait_until(hub, lambda: handed_off and pool.waiting() == 1)
    if how == "kill":
        returning.kill()
    error = returning.outcome()
    assert isinstance(error, {"pool-timeout": PoolTimeout, "hub-timeout": Killed,
                              "kill": BaseException}[how]), error
    assert pool.waiting() == 0
    release.set()
    assert served.wait() is held
    assert pool.current_size == 1 and list(pool.free_items) == [held]
    assert pool.get(0.1) is held


def test_failing_create_passes_the_right_to_create_on(hub):
    gate = hub.event()
    calls = []

    def create():
        calls.append(1)
        if len(calls) == 1:
            gate.wait(10)
            raise RuntimeError("connect refused")
        return Item()

    pool = Pool(hub=hub, max_size=1, create=create)
    first = Spawned(hub, pool.get)
    wait_until(hub, lambda: pool.stats().creating == 1)
    second = Spawned(hub, pool.get, 10)
    wait_until(hub, lambda: pool.waiting() == 1)
    gate.set()
    assert isinstance(first.outcome(), RuntimeError)
    assert isinstance(second.wait(), Item)
    assert pool.current_size == 1 and pool.stats().create_failures == 1


@pytest.mark.parametrize("how", ["timeout", "kill"])
def test_create_interrupted_frees_its_slot(green_hub, how):
    gate = green_hub.event()

    def slow_create():
        gate.wait()
        return Item()

    pool = Pool(hub=green_hub, max_size=1, create=slow_create)

    def get_with_deadline():
        with green_hub.timeout(0.02, Killed()):
            return pool.get()

    task = Spawned(green_hub, get_with_deadline if how == "timeout" else pool.get)
    wait_until(green_hub, lambda: pool.stats().creating == 1)
    if how == "kill":
        task.kill()
    task.outcome()
    assert pool.current_size == 0 and pool.stats().creating == 0
    gate.set()
    assert isinstance(pool.get(timeout=1), Item)


def test_resize_up_wakes_waiters_at_once(hub):
    pool = make(hub, max_size=1)
    pool.get()
    waiters = [Spawned(hub, pool.get, 10) for _ in range(2)]
    wait_until(hub, lambda: pool.waiting() == 2)
    pool.resize(3)
    for task in waiters:
        assert isinstance(task.wait(), Item)
    assert pool.current_size == 3


def test_resize_down_retires_surplus(hub):
    retired = []

    class Counting(Pool):
        def _retire(self, item):
            retired.append(item)

    pool = Counting(hub=hub, max_size=4, create=Item)
    items = [pool.get() for _ in range(4)]
    pool.put(items[0])
    pool.put(items[1])
    pool.resize(1)
    assert pool.current_size == 2 and len(retired) == 2
    pool.put(items[2])
    assert pool.current_size == 1 and retired[-1] is items[2]
    pool.put(items[3])
    assert pool.current_size == 1 and list(pool.free_items) == [items[3]]


def test_max_waiting(hub):
    pool = make(hub, max_size=1, max_waiting=1)
    pool.get()
    waiter = Spawned(hub, pool.get, 0.5)
    wait_until(hub, lambda: pool.waiting() == 1)
    with pytest.raises(TooManyWaiters, match="max_waiting=1"):
        pool.get()
    waiter.outcome()


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"max_size": -1}, ValueError, "max_size must be >= 0, got -1"),
        ({"min_size": "2"}, TypeError, "min_size must be an integer, got '2'"),
        ({"max_size": 2.5}, TypeError, "max_size must be an integer"),
        ({"max_size": True}, TypeError, "max_size must be an integer"),
        ({"min_size": 5, "max_size": 2}, ValueError, r"min_size \(5\) must not exceed"),
        ({"create": 42}, TypeError, "create must be callable, got 42"),
        ({"order_as_stack": "yes"}, TypeError, "order_as_stack must be a bool"),
        ({"max_waiting": -3}, ValueError, "max_waiting must be >= 0"),
        ({"name": 3}, TypeError, "name must be a string"),
    ],
)
def test_bad_arguments_name_the_argument(hub, kwargs, error, text):
    with pytest.raises(error, match=text):
        Pool(hub=hub, **kwargs)


def test_bad_timeout_and_resize(hub):
    pool = make(hub, max_size=1)
    pool.get()
    with pytest.raises(ValueError, match="timeout must be >= 0"):
        pool.get(timeout=-1)
    assert pool.waiting() == 0
    with pytest.raises(ValueError, match="new_size must be >= 0"):
        pool.resize(-2)


def test_put_accepts_anything_like_eventlet(hub):
    pool = make(hub, max_size=1)
    pool.put("stranger")
    assert pool.get() == "stranger"


def test_stats_and_repr(hub):
    pool = make(hub, max_size=4, name="orders")
    a = pool.get()
    pool.put(pool.get())
    s = pool.stats()
    assert (s.size, s.idle, s.in_use, s.creating, s.waiting) == (2, 1, 1, 0, 0)
    assert s.requests == 2 and s.created == 2
    assert repr(pool) == f"<Pool 'orders' 1 in use, 1 idle, 0 waiting, max 4, hub {hub.name}>"
    pool.put(a)
