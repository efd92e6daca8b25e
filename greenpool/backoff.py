"""Reconnect back-off: while the database refuses connections, try once at a time.

After a failed connect the pool waits an exponentially growing delay (with
jitter) before the next attempt, and lets only one caller make it.  Other
callers that need a new connection wait for that trial, up to their own
deadline, and then fail with :class:`~greenpool.errors.DatabaseUnavailable`
(the last connect error chained) instead of each hammering the server.  The
first successful connect reopens the gate for everyone.
"""

from __future__ import annotations

import logging
import random
from typing import Any, Optional

from .errors import DatabaseUnavailable
from .hubs import Hub

__all__ = ["ConnectGate"]

log = logging.getLogger(__name__)


class ConnectGate:
    """Decides who may try to connect while the database is down.

    ``base`` is the first delay after a failure (seconds), doubled after each
    further failure up to ``cap``; each delay is scaled by a random factor in
    [0.8, 1.2].
    """

    def __init__(self, hub: Hub, label: str, base: float = 0.05, cap: float = 2.0) -> None:
        self._hub = hub
        self._label = label
        self.base = base
        self.cap = cap
        self._lock = hub.lock()
        self.failures = 0
        self.next_try = 0.0
        self.last_error: Optional[BaseException] = None
        self._trial = False
        self._event: Any = None
        # Bumped by every counted failure: connects that started before it and fail
        # afterwards belong to the same burst and do not lengthen the back-off again.
        self._epoch = 0

    @property
    def down(self) -> bool:
        """True while the last connect failed and none has succeeded since."""
        return self.failures > 0

    def enter(self, deadline: Optional[float]) -> int:
        """Wait until the caller may connect; raise DatabaseUnavailable at ``deadline``.

        Returns a ticket to hand to :meth:`failed`.
        """
        while True:
            with self._lock:
                if self.failures == 0:
                    return self._epoch
                now = self._hub.monotonic()
                if not self._trial and now >= self.next_try:
                    self._trial = True
                    return self._epoch
                if self._event is None:
                    self._event = self._hub.event()
                event = self._event
                wake_at = self.next_try if not self._trial else now + self.cap
            if deadline is not None and now >= deadline:
                raise DatabaseUnavailable(
                    f"{self._label}: the database is unreachable "
                    f"({self.failures} failed connects in a row); "
                    f"next attempt in {max(0.0, self.next_try - now):.2f} s"
                ) from self.last_error
            wait = wake_at - now if deadline is None else min(wake_at, deadline) - now
            event.wait(max(0.0, wait))

    def leave(self) -> None:
        """The caller gave up before connecting (interrupted): let another try."""
        with self._lock:
            self._trial = False
            event, self._event = self._event, None
        if event is not None:
            event.set()

    def succeeded(self) -> None:
        with self._lock:
            was_down = self.failures
            self.failures = 0
            self._trial = False
            self.last_error = None
            event, self._event = self._event, None
        if event is not None:
            event.set()
        if was_down:
            log.warning("%s: the database is reachable again after %d failed connects",
                        self._label, was_down)

    def failed(self, error: BaseException, ticket: Optional[int] = None) -> None:
        """A connect failed; ``ticket`` is what :meth:`enter` returned for it."""
        with self._lock:
            self.last_error = error
            if ticket is not None and ticket != self._epoch:
                return  # part of a burst already counted: same back-off step
            self._epoch += 1
            self.failures += 1
            failures = self.failures
            delay = min(self.cap, self.base * 2 ** min(failures - 1, 30))
            delay *= random.uniform(0.8, 1.2)
            self.next_try = self._hub.monotonic() + delay
            self._trial = False
            event, self._event = self._event, None
        if event is not None:
            event.set()
        if failures == 1:
            log.warning("%s: connect failed (%s); backing off, next attempt in %.2f s",
                        self._label, error, delay)
        else:
            log.debug("%s: connect failed %d times in a row; next attempt in %.2f s",
                      self._label, failures, delay)
