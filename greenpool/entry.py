"""The pool's record of one connection: :class:`ConnectionEntry`, one per slot.

An entry lives as long as its connection; the user holds a short-lived
:class:`~greenpool.proxy.PooledConnectionWrapper` per checkout instead.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:  # pragma: no cover
    from .connections import BaseConnectionPool

__all__ = ["ConnectionEntry", "AGE_JITTER"]

#: Connection ages are shortened by up to this fraction, at random, so connections
#: opened together do not all expire together.
AGE_JITTER = 0.05

_NEG_INF = float("-inf")


class ConnectionEntry:
    """One pooled connection and its bookkeeping.

    ``vetted_until`` decides with one comparison whether the connection
    needs a closer look at checkout: the time it was last known good plus
    the pool's quiet interval, capped by its age limit; set to minus
    infinity (:meth:`revet`) when a disconnect, a drain or a close makes it
    suspect.
    """

    __slots__ = (
        "pool", "conn", "delegate", "serial", "created_at", "expires_at", "last_used",
        "vetted_until", "fd", "watch", "taken_at", "taken_stack", "in_use", "lent", "token",
        "generation", "revoked", "leak_reported",
    )

    def __init__(
        self,
        pool: BaseConnectionPool,
        conn: Any,
        delegate: Any,
        serial: int,
        now: float,
        max_age: Optional[float],
    ) -> None:
        self.pool = pool
        self.conn = conn
        self.delegate = delegate
        self.serial = serial
        self.created_at = now
        if max_age is None:
            self.expires_at = float("inf")
        else:
            self.expires_at = now + max_age * (1.0 - AGE_JITTER * random.random())
        self.last_used = now
        self.vetted_until = now
        self.fd: Optional[int] = None
        self.watch: Any = None  # see health.socket_watch
        self.taken_at = now
        self.taken_stack = ""
        self.in_use = False
        self.lent = False  # until its first checkout: its connect was its test
        self.token: Any = None  # the pool limiter's item taken for this checkout
        self.generation = 0
        self.revoked = False  # closed by close(timeout) while checked out
        self.leak_reported = False

    def touch(self, now: float, quiet: float) -> None:
        """Known good at ``now``: no closer look for ``quiet`` seconds or until it expires."""
        self.last_used = now
        until = now + quiet
        self.vetted_until = until if until < self.expires_at else self.expires_at

    def revet(self) -> None:
        """Look closer at the next checkout, whatever the time."""
        self.vetted_until = _NEG_INF

    def __repr__(self) -> str:
        return f"<connection #{self.serial}>"
