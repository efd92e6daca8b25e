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
from tests.support.tasks import Spawned, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_clock_and_sleep(hub):
    start = hub.monotonic()
    hub.sleep(0.02)
    assert hub.monotonic() - start >= 0.019


def test_spawn_runs_concurrently(hub):
    seen = []
    tasks = [Spawned(hub, lambda i=i: (hub.sleep(0.01), seen.append(i))) for i in range(5)]
    for task in tasks:
        task.wait()
    assert sorted(seen) == list(range(5))


def test_spawn_after_and_cancel(hub):
    fired = []
    hub.spawn_after(0.01, fired.append, "a")
    cancelled = hub.spawn_after(0.05, fired.append, "b")
    cancelled.cancel()
    hub.sleep(0.1)
    assert fired == ["a"]


def test_event_wait_times_out_then_is_set(hub):
    event = hub.event()
    start = hub.monotonic()
    assert event.wait(0.02) is False
    assert hub.monotonic() - start >= 0.019
    hub.spawn_after(0.01, event.set)
    assert event.wait(5) is True
    assert event.is_set() and event.wait(0) is True


def test_timeout_interrupts_green_wait(green_hub):
    class Expired(Exception):
        pass

    start = green_hub.monotonic()
    with pytest.raises(Expired):
        with green_hub.timeout(0.02, Expired()):
            green_hub.event().wait()
    assert green_hub.monotonic() - start < 1


def test_timeout_cannot_interrupt_on_threads():
    hub = resolve_hub("threads")
    assert hub.can_interrupt is False
    with hub.timeout(0.001, RuntimeError("never")):
        time.sleep(0.01)


def test_run_in_thread_result_error_and_timeout(hub):
    assert hub.run_in_thread(lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(ZeroDivisionError):
        hub.run_in_thread(lambda: 1 / 0)
    with pytest.raises(TimeoutError):
        hub.run_in_thread(_blocking_sleep, 0.3, timeout=0.02)


def _blocking_sleep(seconds):
    # In an OS thread: the plain sleep of the real time module is what blocks.
    from greenpool.hubs.base import original_lock

    lock = original_lock()
    lock.acquire()
    lock.acquire(True, seconds)
    return seconds


def test_run_in_thread_does_not_block_other_tasks(green_hub):
    ticks = []
    ticker = Spawned(green_hub, lambda: [ticks.append(green_hub.sleep(0.005)) for _ in range(5)])
    green_hub.run_in_thread(_blocking_sleep, 0.1)
    ticker.wait()
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
