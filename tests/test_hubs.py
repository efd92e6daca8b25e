"""The hub contract, one body run on every hub, and hub selection."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import greenpool
from greenpool.errors import HubError
from greenpool.hubs import resolve_hub, set_default_hub
from greenpool.hubs.base import ThreadCallTimeout, original_lock
from tests.support.tasks import Spawned, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_clock_and_sleep(hub):
    start = hub.monotonic()
    hub.sleep(0.02)
    assert hub.monotonic() - start >= 0.015  # never early (the clock's resolution aside)


def test_spawn_runs_concurrently(hub):
    seen = []
    tasks = [Spawned(hub, lambda i=i: (hub.sleep(0.01), seen.append(i))) for i in range(5)]
    for task in tasks:
        task.wait()
    assert sorted(seen) == list(range(5))


def test_spawn_after_and_cancel(hub):
    fired = []
    start = hub.monotonic()
    hub.spawn_after(0.05, fired.append, "a")
    cancelled = hub.spawn_after(0.02, fired.append, "b")
    cancelled.cancel()
    wait_until(hub, lambda: fired)
    assert hub.monotonic() - start >= 0.04  # not early
    hub.sleep(0.05)  # well past the cancelled one's time
    assert fired == ["a"]


def test_event_wait_times_out_then_is_set(hub):
    event = hub.event()
    start = hub.monotonic()
    assert event.wait(0.02) is False
    assert hub.monotonic() - start >= 0.015
    hub.spawn_after(0.01, event.set)
    assert event.wait(60) is True
    assert event.is_set() and event.wait(0) is True


def test_timeout_interrupts_green_wait(green_hub):
    class Expired(Exception):
        pass

    start = green_hub.monotonic()
    with pytest.raises(Expired):
        with green_hub.timeout(0.02, Expired()):
            green_hub.event().wait()  # never set: only the timeout ends it
    assert green_hub.monotonic() - start >= 0.015


def test_timeout_without_an_exception_raises_the_hubs_own(green_hub):
    with pytest.raises(green_hub.Timeout):
        with green_hub.timeout(0.01, None):
            green_hub.event().wait()
    assert not issubclass(green_hub.Timeout, Exception)  # a BaseException, as documented


def test_kill_interrupts_a_waiting_task(green_hub):
    task = Spawned(green_hub, green_hub.event().wait)
    green_hub.sleep(0)
    task.kill()
    assert isinstance(task.outcome(), green_hub.killed)


def test_timeout_cannot_interrupt_on_threads():
    hub = resolve_hub("threads")
    assert hub.can_interrupt is False
    with hub.timeout(0.001, RuntimeError("never")):
        time.sleep(0.01)


def closed_gate():
    """A real OS lock, held: a thread that acquires it blocks until it is released."""
    gate = original_lock()
    gate.acquire()
    return gate


def test_run_in_thread_result_error_and_timeout(hub):
    assert hub.run_in_thread(lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(ZeroDivisionError):
        hub.run_in_thread(lambda: 1 / 0)
    gate = closed_gate()
    try:
        # Its own class, so that a TimeoutError raised by the function is not taken for it.
        with pytest.raises(ThreadCallTimeout, match="within 0.02 s"):
            hub.run_in_thread(gate.acquire, timeout=0.02)  # blocked until released
    finally:
        gate.release()  # the thread runs on, and ends
    assert issubclass(ThreadCallTimeout, TimeoutError)


def test_run_in_thread_does_not_block_other_tasks(green_hub):
    """The call blocks its OS thread until another green task has run five times: it
    returns only if the hub kept running that task meanwhile."""
    gate = closed_gate()
    ticks = []

    def ticker():
        for _ in range(5):
            green_hub.sleep(0.001)
            ticks.append(1)
        gate.release()

    task = Spawned(green_hub, ticker)
    assert green_hub.run_in_thread(gate.acquire, True, 60) is True
    task.wait()
    assert len(ticks) == 5


def test_current_task_distinct_per_task(hub):
    mine = hub.current_task()
    other = Spawned(hub, hub.current_task).wait()
    assert other is not mine


def test_lock_is_a_context_manager(hub):
    lock = hub.lock()
    with lock:
        pass
    assert lock.acquire(False)
    lock.release()


def test_explicit_hub_by_name_and_object(hub):
    assert resolve_hub(hub.name) is hub
    assert resolve_hub(hub) is hub
    assert greenpool.Pool(hub=hub.name).hub is hub


def test_unknown_hub_names_the_options():
    with pytest.raises(HubError, match="asyncio.*eventlet, gevent, threads"):
        resolve_hub("asyncio")
    with pytest.raises(HubError, match="hub=42"):
        resolve_hub(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        greenpool.Pool(hub="nope")


def test_default_hub_can_be_set_and_restored(hub):
    try:
        assert set_default_hub("threads").name == "threads"
        assert greenpool.Pool().hub.name == "threads"
        assert set_default_hub(None) is None
        assert greenpool.Pool().hub.name == greenpool.detect_hub().name
    finally:
        set_default_hub(hub)


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "patch, expected",
    [
        ("", "threads"),
        ("import eventlet; eventlet.monkey_patch()", "eventlet"),
        ("from gevent import monkey; monkey.patch_all()", "gevent"),
    ],
)
def test_detection_from_monkey_patching(patch, expected):
    out = _python(f"{patch}\nimport greenpool; print(greenpool.detect_hub().name)")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == expected


def test_detection_refuses_two_patchers():
    out = _python(
        "from gevent import monkey; monkey.patch_all()\n"
        "import eventlet; eventlet.monkey_patch()\n"
        "import greenpool\n"
        "try:\n    greenpool.detect_hub()\nexcept greenpool.HubError as e:\n    print(e)\n"
    )
    assert "both eventlet and gevent" in out.stdout, out.stderr


def test_import_greenpool_imports_no_green_library():
    out = _python(
        "import sys, greenpool, greenpool.pool\n"
        "print(sorted(m for m in ('eventlet', 'gevent') if m in sys.modules))"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_wait_until_helper(hub):
    flag = []
    hub.spawn_after(0.01, flag.append, 1)
    wait_until(hub, lambda: flag)
