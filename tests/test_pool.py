"""The generic Pool: eventlet.pools.Pool's API and its contract, on every hub.

The contract (see greenpool/pool.py):

* a ``get()`` that finds nothing idle and a free slot creates the item in the
  caller, as ``eventlet.pools`` does; ``min_size`` items are made at once;
* callers that find nothing wait in line and are served first come, first
  served; a ``get(timeout)`` raises ``PoolTimeout`` when its timeout runs out;
* a failed ``create()`` frees its slot and passes the right to create to the
  next waiter: nobody hangs;
* no item and no slot is lost to a caller interrupted while it waits or
  creates (pool timeout, the hub's ``Timeout``, an exception, ``kill()``):
  what it was handed goes to the next waiter, or back to the idle list.

Behaviour is checked through the public API only: ``get``/``put``/``item``,
``free()``, ``waiting()``, ``resize()``, ``stats()``, ``current_size`` and
``free_items``.  Tests run on the process's hub (threads, eventlet or gevent)
and, where they wait or interrupt, on ManualClockHub too, whose virtual clock
makes timings exact and lets a hand-off and an interruption land in the same
instant, whatever the machine's load.
"""

from __future__ import annotations

import itertools

import pytest

from greenpool import Pool, PoolTimeout, TokenPool, TooManyWaiters
from greenpool.pool import Token
from tests.support.manual_hub import ManualClockHub
from tests.support.tasks import Spawned, queue_two, run_on, wait_until


class Item:
    ids = itertools.count(1)

    def __init__(self):
        self.id = next(self.ids)

    def __repr__(self):
        return f"Item({self.id})"


class Killed(Exception):
    """An ordinary exception raised into a waiting caller by a hub timeout."""


class ConnectRefused(Exception):
    pass


def make(hub, **kw):
    kw.setdefault("create", Item)
    return Pool(hub=hub, **kw)


def sizes(pool):
    """``(size, idle, in_use, creating, waiting)`` from one stats() snapshot."""
    s = pool.stats()
    return s.size, s.idle, s.in_use, s.creating, s.waiting


@pytest.fixture
def manual() -> ManualClockHub:
    return ManualClockHub()


@pytest.fixture(params=["process-hub", "manual-clock"])
def any_hub(request, hub):
    """The process's hub, then ManualClockHub."""
    return hub if request.param == "process-hub" else ManualClockHub()


@pytest.fixture(params=["process-hub", "manual-clock"])
def green(request, hub):
    """A hub whose timeout and kill interrupt a waiting task: the process's hub when
    green (skipped on threads), then ManualClockHub."""
    if request.param == "manual-clock":
        return ManualClockHub()
    if not hub.green:
        pytest.skip("needs a green hub (kill / Timeout cannot interrupt an OS thread)")
    return hub


def expire(hub, seconds, how):
    """A hub timeout of ``seconds`` raising the hub's own Timeout ("hub-timeout") or
    an ordinary exception, Killed ("exception")."""
    return hub.timeout(seconds, Killed() if how == "exception" else None)


# -- eventlet.pools API ----------------------------------------------------------------


def test_get_put_item_free_and_current_size_as_in_eventlet(hub):
    pool = make(hub, max_size=2)
    assert pool.current_size == 0 and pool.free() == 2 and pool.waiting() == 0
    a = pool.get()
    assert pool.current_size == 1 and pool.free() == 1
    with pool.item() as b:
        assert b is not a and pool.free() == 0
    assert list(pool.free_items) == [b]
    pool.put(a)
    assert pool.free() == 2 and pool.current_size == 2


def test_min_size_items_are_made_at_once(hub):
    pool = make(hub, min_size=3, max_size=5)
    assert pool.current_size == 3 and len(pool.free_items) == 3
    assert pool.stats().created == 3


def test_create_by_subclass_or_callable_and_the_token_pool(hub):
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


def test_put_accepts_anything_like_eventlet(hub):
    pool = make(hub, max_size=1)
    pool.put("stranger")
    assert pool.get() == "stranger"


def test_stats_and_repr(hub):
    pool = make(hub, max_size=4, name="orders")
    a = pool.get()
    pool.put(pool.get())
    assert sizes(pool) == (2, 1, 1, 0, 0)
    s = pool.stats()
    assert s.requests == 2 and s.created == 2 and s.waits == 0
    assert repr(pool) == f"<Pool 'orders' 1 in use, 1 idle, 0 waiting, max 4, hub {hub.name}>"
    pool.put(a)


# -- creating ------------------------------------------------------------------------


def test_a_get_with_a_free_slot_creates_the_item_in_the_caller(hub):
    seen = []

    def create():
        seen.append((hub.current_task(), sizes(pool)))
        return Item()

    pool = Pool(hub=hub, max_size=1, create=create)
    item = pool.get()
    # Made by the caller itself, in a slot reserved for it (counted as creating).
    assert seen == [(hub.current_task(), (1, 0, 0, 1, 0))]
    assert sizes(pool) == (1, 0, 1, 0, 0)
    pool.put(item)


def test_a_failed_create_raises_in_the_caller_and_frees_its_slot(hub):
    failures = [ConnectRefused("refused")]

    def create():
        if failures:
            raise failures.pop()
        return Item()

    pool = Pool(hub=hub, max_size=1, create=create)
    with pytest.raises(ConnectRefused):
        pool.get()
    assert sizes(pool) == (0, 0, 0, 0, 0) and pool.free() == 1
    assert pool.stats().create_failures == 1
    assert isinstance(pool.get(), Item)


def test_a_failed_create_passes_the_right_to_create_to_the_next_waiter(any_hub):
    hub = any_hub
    calls = []

    def main():
        gate = hub.event()

        def create():
            calls.append(hub.current_task())
            if len(calls) == 1:
                gate.wait()
                raise ConnectRefused("refused")
            return Item()

        pool = Pool(hub=hub, max_size=1, create=create)
        first = Spawned(hub, pool.get)
        wait_until(hub, lambda: pool.stats().creating == 1)
        second = Spawned(hub, lambda: (hub.current_task(), pool.get()))
        wait_until(hub, lambda: pool.waiting() == 1)
        gate.set()
        assert isinstance(first.outcome(), ConnectRefused)
        task, item = second.wait()
        assert isinstance(item, Item) and calls[1] is task  # the waiter made it
        assert sizes(pool) == (1, 0, 1, 0, 0) and pool.stats().create_failures == 1

    run_on(hub, main)


@pytest.mark.parametrize("how", ["hub-timeout", "exception", "kill"])
def test_a_create_interrupted_frees_its_slot(green, how):
    hub = green

    def main():
        gate = hub.event()

        def slow_create():
            gate.wait()
            return Item()

        pool = Pool(hub=hub, max_size=1, create=slow_create)

        def get():
            if how == "kill":
                return pool.get()
            with expire(hub, 0.02, how):
                return pool.get()

        task = Spawned(hub, get)
        wait_until(hub, lambda: pool.stats().requests == 1)  # creating, or done already
        if how == "kill":
            task.kill()
        error = task.outcome()
        expected = {"hub-timeout": hub.Timeout, "exception": Killed, "kill": hub.killed}[how]
        assert isinstance(error, expected), error
        assert sizes(pool) == (0, 0, 0, 0, 0)
        gate.set()
        assert isinstance(pool.get(timeout=1), Item)

    run_on(hub, main)


# -- waiting ---------------------------------------------------------------------------


def test_waiters_are_served_first_come_first_served(any_hub):
    hub = any_hub

    def main():
        pool = make(hub, max_size=1)
        held = pool.get()
        order = []

        def waiter(n):
            item = pool.get(timeout=60)
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

    run_on(hub, main)


def test_a_caller_that_returns_and_gets_again_queues_behind_the_waiters(any_hub):
    hub = any_hub

    def main():
        pool = make(hub, max_size=1)
        held = pool.get()
        waiter = Spawned(hub, pool.get, 60)
        wait_until(hub, lambda: pool.waiting() == 1)
        pool.put(held)  # handed to the waiter, out of the caller's reach
        with pytest.raises(PoolTimeout):
            pool.get(timeout=0.01)
        assert waiter.wait() is held

    run_on(hub, main)


def test_a_put_that_serves_a_waiter_returns_once_the_waiter_has_the_item(green):
    """On a green hub put() yields once after a hand-off, as eventlet.pools' does: the
    waiter has taken the item (or passed it on) when put() returns."""
    hub = green

    def main():
        pool = make(hub, max_size=1)
        held = pool.get()
        waiter = Spawned(hub, pool.get, 60)
        wait_until(hub, lambda: pool.waiting() == 1)
        pool.put(held)
        assert waiter.done.is_set() and waiter.value is held

    run_on(hub, main)


def test_get_times_out_after_exactly_its_timeout_and_leaves_no_waiter(manual):
    hub = manual

    def main():
        pool = make(hub, max_size=1)
        pool.get()
        with pytest.raises(PoolTimeout, match=r"no item free within 0\.05 s"):
            pool.get(timeout=0.05)
        return hub.monotonic(), pool.waiting(), pool.stats().timeouts, pool.stats().waits

    assert hub.run(main) == (0.05, 0, 1, 1)


def test_a_timed_out_waiter_never_swallows_an_item(any_hub):
    hub = any_hub

    def main():
        pool = make(hub, max_size=1)
        held = pool.get()
        quick = Spawned(hub, pool.get, 0.02)
        wait_until(hub, lambda: pool.stats().waits == 1)
        patient = Spawned(hub, pool.get, 60)
        wait_until(hub, lambda: pool.stats().waits == 2)  # (quick may have left already)
        assert isinstance(quick.outcome(), PoolTimeout)
        pool.put(held)
        assert patient.wait() is held

    run_on(hub, main)


def test_an_item_that_reaches_a_waiter_as_its_timeout_runs_out_is_kept(manual):
    """The item and the timeout arrive in the same instant, the item first: the caller
    is served (it was still in line when the item was handed over)."""
    hub = manual

    def main():
        pool = make(hub, max_size=1)
        held = pool.get()
        hub.spawn_after(1, pool.put, held)  # set before the caller's timer: runs first
        got = pool.get(timeout=1)
        return got is held, hub.monotonic(), pool.stats().timeouts, sizes(pool)

    assert hub.run(main) == (True, 1.0, 0, (1, 0, 1, 0, 0))


def test_an_item_that_comes_back_just_after_a_waiter_timed_out_goes_idle(manual):
    """The same instant, the timeout first: the caller raises PoolTimeout and the item
    is filed idle; never both, never neither."""
    hub = manual

    def main():
        pool = make(hub, max_size=1)
        held = pool.get()

        def give_back():
            hub.sleep(1)  # its timer is set after the caller's
            pool.put(held)

        hub.spawn(give_back)
        with pytest.raises(PoolTimeout):
            pool.get(timeout=1)
        timed_out_at = hub.monotonic()
        hub.sleep(0)
        return timed_out_at, list(pool.free_items) == [held], sizes(pool)

    assert hub.run(main) == (1.0, True, (1, 1, 0, 0, 0))


def test_max_waiting_refuses_callers_beyond_it_at_once(any_hub):
    hub = any_hub

    def main():
        pool = make(hub, max_size=1, max_waiting=1)
        held = pool.get()
        waiter = Spawned(hub, pool.get, 60)
        wait_until(hub, lambda: pool.waiting() == 1)
        with pytest.raises(TooManyWaiters, match="max_waiting=1"):
            pool.get()
        assert pool.waiting() == 1
        pool.put(held)
        assert waiter.wait() is held

    run_on(hub, main)


def test_resize_up_serves_waiters_at_once(any_hub):
    hub = any_hub

    def main():
        pool = make(hub, max_size=1)
        pool.get()
        waiters = [Spawned(hub, pool.get, 60) for _ in range(2)]
        wait_until(hub, lambda: pool.waiting() == 2)
        pool.resize(3)
        for task in waiters:
            assert isinstance(task.wait(), Item)
        assert pool.current_size == 3 and pool.waiting() == 0

    run_on(hub, main)


def test_resize_down_retires_surplus_idle_items_now_and_busy_ones_as_they_return(hub):
    pool = make(hub, max_size=4)
    items = [pool.get() for _ in range(4)]
    pool.put(items[0])
    pool.put(items[1])
    pool.resize(1)
    assert sizes(pool) == (2, 0, 2, 0, 0)  # both idle items retired
    pool.put(items[2])
    assert sizes(pool) == (1, 0, 1, 0, 0)  # retired as it came back
    pool.put(items[3])
    assert sizes(pool) == (1, 1, 0, 0, 0) and list(pool.free_items) == [items[3]]
    assert pool.max_size == 1 and pool.free() == 1


# -- interruptions: nothing lost ---------------------------------------------------------


@pytest.mark.parametrize("how", ["pool-timeout", "hub-timeout", "exception", "kill"])
def test_a_waiter_interrupted_in_line_leaves_the_line_and_the_pool_whole(green, how):
    hub = green

    def main():
        pool = make(hub, max_size=1)
        held = pool.get()

        def waiter():
            if how == "pool-timeout":
                return pool.get(0.05)
            if how == "kill":
                return pool.get()
            with expire(hub, 0.05, how):
                return pool.get()

        task = Spawned(hub, waiter)
        wait_until(hub, lambda: pool.stats().waits == 1)  # in line, or left already
        if how == "kill":
            task.kill()
        error = task.outcome()
        expected = {"pool-timeout": PoolTimeout, "hub-timeout": hub.Timeout,
                    "exception": Killed, "kill": hub.killed}[how]
        assert isinstance(error, expected), error
        assert pool.waiting() == 0
        pool.put(held)
        assert list(pool.free_items) == [held] and sizes(pool) == (1, 1, 0, 0, 0)
        assert pool.get(0) is held

    run_on(hub, main)


@pytest.mark.parametrize("how", ["hub-timeout", "exception", "kill"])
def test_a_waiter_interrupted_after_the_hand_off_passes_the_item_on(manual, how):
    """put() hands the item to the first waiter while an interruption of that waiter
    is pending (it lands when the waiter next runs): the item goes to the next
    waiter, and put() returns once it has."""
    hub = manual
    doomed: list[Spawned] = []
    seen: list[int] = []

    def main():
        pool = make(hub, max_size=1)
        held = pool.get()

        def hand_over():
            if how == "kill":
                doomed[0].kill()  # pending: the waiter has not run since
            seen.append(pool.waiting())  # both still in line, the doomed one first
            pool.put(held)
            seen.append(pool.waiting())

        # Its timer is set before the waiter's hub timeout: both fire at t=1, in order,
        # so the interruption is pending when the hand-off comes.
        hub.spawn_after(1, hand_over)

        def first_in_line():
            if how == "kill":
                return pool.get()
            with expire(hub, 1, how):
                return pool.get()

        doomed.append(Spawned(hub, first_in_line))
        next_in_line = Spawned(hub, pool.get, 60)
        hub.sleep(0)  # both queue, in that order, at t=0
        assert pool.waiting() == 2
        error = doomed[0].outcome()
        expected = {"hub-timeout": hub.Timeout, "exception": Killed, "kill": hub.killed}[how]
        assert isinstance(error, expected), error
        assert next_in_line.wait() is held
        return hub.monotonic(), seen, sizes(pool)

    assert hub.run(main) == (1.0, [2, 0], (1, 0, 1, 0, 0))


def test_a_waiter_interrupted_after_being_granted_the_right_to_create_passes_it_on(manual):
    """A create() fails while two wait; the first waiter is granted the right to
    create and interrupted in the same instant: the right goes to the next waiter."""
    hub = manual
    calls = []
    seen = []

    def create():
        calls.append(hub.current_task())
        if len(calls) == 1:
            hub.sleep(1)
            raise ConnectRefused("refused")
        return Item()

    def main():
        pool = Pool(hub=hub, max_size=1, create=create)

        def creator():
            try:
                return pool.get()
            finally:
                seen.append(sizes(pool))  # the right to create was just passed on

        def second_in_line():
            with hub.timeout(1, Killed()):  # set after the create's sleep: fires second
                return pool.get()

        first = Spawned(hub, creator)  # its create fails at t=1
        second = Spawned(hub, second_in_line)
        third = Spawned(hub, lambda: (hub.current_task(), pool.get(60)))
        hub.sleep(0)  # all three started, in that order, at t=0
        assert sizes(pool) == (1, 0, 0, 1, 2)
        assert isinstance(first.outcome(), ConnectRefused)
        assert isinstance(second.outcome(), Killed)
        task, item = third.wait()
        assert isinstance(item, Item) and calls == [calls[0], task]
        return hub.monotonic(), seen, sizes(pool), pool.stats().create_failures

    # When the create failed, the slot was reserved for the second caller, out of line.
    assert hub.run(main) == (1.0, [(1, 0, 0, 1, 1)], (1, 0, 1, 0, 0), 1)


@pytest.mark.parametrize("inside", ["plain get", "get inside a hub timeout"])
def test_a_waiter_killed_just_after_the_hand_off_loses_nothing(green_hub, inside):
    """On eventlet and gevent themselves: the kill may land before or after the
    waiter takes the item; either way the item has exactly one holder."""
    pool = make(green_hub, max_size=1)
    held = pool.get()
    doomed, next_in_line = queue_two(
        green_hub, pool, 60, (60, Killed()) if inside != "plain get" else None)
    pool.put(held)  # to the first in line
    doomed.kill()  # eventlet kills at once; gevent may let the hand-off finish first
    doomed.outcome()
    if doomed.value is held:  # it was served before the kill landed: it owns the item
        assert pool.waiting() == 1
        pool.put(held)
    assert next_in_line.wait() is held
    assert pool.current_size == 1 and pool.waiting() == 0


# -- arguments ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, text",
    [
        ({"max_size": -1}, ValueError, "max_size must be >= 0, got -1"),
        # A wrong value is described, never echoed: it may be a DSN holding a password.
        ({"min_size": "2"}, TypeError, "min_size must be an integer, got a str"),
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
