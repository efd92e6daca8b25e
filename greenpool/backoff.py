"""Reconnect back-off: how long the pool's growth waits after failed connects.

After a failed connect the next attempt waits an exponentially growing
delay (with jitter), and while the database keeps failing only one attempt
is in flight at a time.  The first successful connect resets it.  Callers
never see the back-off: they wait in the queue until a connection comes
back, a connect succeeds, or their own timeout runs out.
"""

from __future__ import annotations

import logging
import random
from typing import Optional

from .hubs.base import original_lock

__all__ = ["Backoff"]

log = logging.getLogger(__name__)


class Backoff:
    """The connect failures in a row and when the next attempt may start.

    ``first`` is the delay after one failure (seconds), doubled after each
    further failure up to ``longest``; each delay is scaled by a random
    factor in [0.8, 1.2].  Safe to call from several OS threads at once.
    """

    def __init__(self, label: str, first: float = 0.05, longest: float = 2.0) -> None:
        self._label = label
        self._lock = original_lock()
        self.first = first
        self.longest = longest
        #: Connect failures since the last success.
        self.failures = 0
        #: Back-off steps since the last success: attempts that were in flight
        #: together and failed together count as one step.
        self.steps = 0
        #: Monotonic time before which no new attempt starts.
        self.next_try = 0.0
        #: The last connect error, until a connect succeeds.
        self.last_error: Optional[BaseException] = None

    @property
    def failing(self) -> bool:
        """True while the last connect failed and none has succeeded since."""
        return self.failures > 0

    def failed(self, error: BaseException, now: float, step: int) -> None:
        """Count a failed connect at ``now``; ``step`` is :attr:`steps` as it was
        when the attempt started (an attempt that started before the last step
        was taken adds no step of its own)."""
        with self._lock:
            self.failures += 1
            failures = self.failures
            self.last_error = error
            if step != self.steps:
                return  # failed with others in flight together: their step holds
            self.steps += 1
            delay = min(self.longest, self.first * 2 ** min(self.steps - 1, 30))
            delay *= random.uniform(0.8, 1.2)
            self.next_try = now + delay
        if failures == 1:
            log.warning("%s: connect failed (%s); retrying in %.2f s",
                        self._label, one_line(error), delay)
        else:
            log.debug("%s: %d connects failed in a row; retrying in %.2f s",
                      self._label, failures, delay)

    def succeeded(self) -> None:
        """A connect succeeded: back to no delay."""
        with self._lock:
            failures, self.failures = self.failures, 0
            self.steps = 0
            self.next_try = 0.0
            self.last_error = None
        if failures:
            log.warning("%s: the database is reachable again after %d failed connects",
                        self._label, failures)


def one_line(error: BaseException) -> str:
    """An error's text on one line (drivers such as psycopg2 write several)."""
    return " ".join(str(error).split()) or type(error).__name__
