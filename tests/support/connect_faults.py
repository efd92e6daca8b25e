"""Seeded connect faults for the fake driver: random failures and slow connects.

``ConnectFaults`` is installed as a :class:`~tests.support.fakedb.FakeDB`'s
``connect_hook``; the fake calls it on every connect attempt, after its own
``connect_delay`` and before it makes the connection.  The hook sleeps for the
attempt's delay and then, for a failed attempt, raises the driver's
``OperationalError`` (so no connection is made).

The delay sleeps cooperatively when the connect runs on the hub's own OS thread
(a green connect: a pool's ``connect_timeout`` or a hub ``Timeout`` can
interrupt it) and blocks the OS thread when it runs in another one (a
``TpooledConnectionPool`` connect, or the threads hub's helper thread: the
connection then arrives after its attempt was given up, and the pool must close
it).  fakedb's own ``connect_delay`` offers one mode for every attempt, which is
why this helper exists.

The first attempts can be scripted (``script``); later ones are random:
``fail_rate`` of them fail, ``slow_rate`` take ``slow`` seconds (a range), the
rest ``fast`` seconds.  ``quiet()`` turns every fault off.
"""

from __future__ import annotations

import random
import sys
import time
from collections import deque
from typing import Any, Callable, Iterable, Optional

from tests.support.fakedb import FakeDB, original_sleep

__all__ = ["ConnectFaults", "INJECTED_ERROR", "unpatched_get_ident"]

#: The text of every connect failure this helper injects.
INJECTED_ERROR = "fakedb: connection refused (injected connect fault)"


def unpatched_get_ident() -> Callable[[], int]:
    """The OS thread id function, even under eventlet or gevent monkey patching
    (patched, it names the green thread instead)."""
    if "eventlet" in sys.modules:
        from eventlet import patcher

        if patcher.is_monkey_patched("thread"):
            return patcher.original("_thread").get_ident  # type: ignore[no-any-return]
    if "gevent" in sys.modules:
        from gevent import monkey

        return monkey.get_original("_thread", "get_ident")  # type: ignore[no-any-return]
    import _thread

    return _thread.get_ident


def _unpatched_lock() -> Any:
    if "eventlet" in sys.modules:
        from eventlet import patcher

        if patcher.is_monkey_patched("thread"):
            return patcher.original("_thread").allocate_lock()
    if "gevent" in sys.modules:
        from gevent import monkey

        return monkey.get_original("_thread", "allocate_lock")()
    import _thread

    return _thread.allocate_lock()


class ConnectFaults:
    """A ``connect_hook`` for ``db``: scripted, then seeded random, delays and failures.

    ``script`` is an iterable of ``(delay, fail)`` pairs for the first attempts.
    Counters: ``attempts``, ``failures`` (injected), ``slow`` (attempts whose
    delay exceeded ``slow_threshold``), ``max_delay``, ``in_flight`` (attempts
    still in their delay; an interrupted green sleep ends one too).
    """

    def __init__(
        self,
        db: FakeDB,
        seed: Any = 0,
        fail_rate: float = 0.0,
        slow_rate: float = 0.0,
        slow: tuple[float, float] = (0.0, 0.0),
        fast: tuple[float, float] = (0.0, 0.0),
        script: Iterable[tuple[float, bool]] = (),
        slow_threshold: Optional[float] = None,
    ) -> None:
        self.db = db
        self.rng = random.Random(seed)
        self.fail_rate = fail_rate
        self.slow_rate = slow_rate
        self.slow_range = slow
        self.fast_range = fast
        self.script: deque[tuple[float, bool]] = deque(script)
        self.slow_threshold = slow_threshold
        self.attempts = 0
        self.failures = 0
        self.slow = 0
        self.max_delay = 0.0
        #: Attempts inside the hook (sleeping) right now.
        self.in_flight = 0
        self._lock = _unpatched_lock()
        self._get_ident = unpatched_get_ident()
        self._hub_thread = self._get_ident()
        self._block = original_sleep()

    def install(self) -> ConnectFaults:
        """Become ``db.connect_hook``; returns self."""
        self.db.connect_hook = self
        return self

    def quiet(self) -> None:
        """From now on every attempt is immediate and succeeds."""
        with self._lock:
            self.script.clear()
            self.fail_rate = self.slow_rate = 0.0
            self.fast_range = (0.0, 0.0)

    def _plan(self) -> tuple[float, bool]:
        with self._lock:
            self.attempts += 1
            self.in_flight += 1
            if self.script:
                delay, fail = self.script.popleft()
            else:
                rng = self.rng
                fail = rng.random() < self.fail_rate
                span = self.slow_range if rng.random() < self.slow_rate else self.fast_range
                delay = rng.uniform(*span)
            if fail:
                self.failures += 1
            if self.slow_threshold is not None and delay > self.slow_threshold:
                self.slow += 1
            self.max_delay = max(self.max_delay, delay)
        return delay, fail

    def sleep(self, seconds: float) -> None:
        """Sleep cooperatively on the hub's OS thread, blocking on any other."""
        if seconds <= 0:
            return
        if self._get_ident() == self._hub_thread:
            time.sleep(seconds)  # looked up now: green once monkey patched
        else:
            self._block(seconds)

    def __call__(self) -> None:
        delay, fail = self._plan()
        try:
            self.sleep(delay)
        finally:
            with self._lock:
                self.in_flight -= 1
        if fail:
            raise self.db.OperationalError(INJECTED_ERROR)
