"""The connection pools' options, validated once, in one place.

:func:`connection_options` checks every option of
:class:`~greenpool.BaseConnectionPool` and returns a frozen
:class:`ConnectionOptions`; each bad value gets a ``TypeError`` or
``ValueError`` naming the parameter (never echoing a value that may hold a
credential, such as a DSN passed in the wrong slot).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Optional

from . import validation

__all__ = ["ConnectionOptions", "connection_options"]


@dataclass(frozen=True)
class ConnectionOptions:
    """The validated options of a connection pool (``pool.options``).

    The positional ones, as in ``eventlet.db_pool``:

    * ``max_idle`` (10 s): an idle connection is closed after this long; 0
      closes every connection when it is returned; None never.
    * ``max_age`` (30 s): a connection is closed once this old (minus up to
      5 % jitter), at its next return or while idle; 0 closes every
      connection on return; None never.
    * ``connect_timeout`` (5 s): the longest one connect attempt may take;
      None for ever.
    * ``cleanup`` (:func:`~greenpool.cleanup_rollback`): called with the raw
      connection on return; a connection whose cleanup raises is closed.

    The keyword-only ones:

    * ``hub``, ``name``, ``max_waiting``: as for :class:`~greenpool.Pool`.
    * ``order_as_stack`` (True): reuse the most recently returned connection
      first, so surplus connections go idle and expire.
    * ``connect_kwargs``: driver arguments whose names the pool itself uses
      (such as the driver's own ``connect_timeout``).
    * ``timeout`` (None): how long ``get()`` waits by default; None for ever.
    * ``configure`` (None): called with each new raw connection before its
      first use (session settings, type adapters).
    * ``check`` ("ping"): the health check at checkout: "ping" (the driver's
      cheap liveness test), "off"/None, SQL text, or a callable taking the raw
      connection.  A closed connection, or an idle one whose socket is
      readable (the server hung up), is caught first without a round trip;
      the round trip is skipped for a connection used within
      ``check_interval`` (0.5 s).  A connection that fails is closed and
      another one taken.
    * ``leak_timeout`` (None): a connection held longer is logged once, with
      the stack that took it (recorded only when this is set).
    * ``reconnect_backoff`` ((0.05, 2.0)): after a failed connect, the first
      and longest delay before the next attempt.
    * ``limiter`` (None): a :class:`~greenpool.Pool` (say a
      :class:`~greenpool.TokenPool`) shared by several connection pools to
      cap their checkouts together: each checkout takes one of its items
      first, in its queue, within the caller's timeout, and gives it back
      when the connection comes back, is discarded or is reclaimed.
    * ``before_connect`` (None): called with the pool before each connect
      attempt, in the growth task; an exception fails the attempt (which
      backs off as any failed connect).  With
      :meth:`~greenpool.BaseConnectionPool.close_idle`, it lets a
      pool make room under a limit shared with other pools.

    Infinity is accepted wherever None means "for ever".
    """

    max_idle: Optional[float]
    max_age: Optional[float]
    connect_timeout: Optional[float]
    cleanup: Optional[Callable[[Any], Any]]
    timeout: Optional[float]
    check: Any
    check_interval: float
    leak_timeout: Optional[float]
    reconnect_backoff: tuple[float, float]
    configure: Optional[Callable[[Any], Any]]


def _backoff(value: Any) -> tuple[float, float]:
    ok = (
        isinstance(value, tuple)
        and len(value) == 2
        and all(
            isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 < float(v) < math.inf
            for v in value
        )
        and value[0] <= value[1]
    )
    if not ok:
        raise ValueError(
            "reconnect_backoff must be (first delay, longest delay) in finite seconds, "
            f"0 < first <= longest, got {value!r}"
        )
    return float(value[0]), float(value[1])


def connection_options(
    *,
    max_size: Any,
    max_idle: Any,
    max_age: Any,
    connect_timeout: Any,
    cleanup: Any,
    timeout: Any,
    check: Any,
    check_interval: Any,
    leak_timeout: Any,
    reconnect_backoff: Any,
    configure: Any,
) -> ConnectionOptions:
    """Check every option; the first bad one raises, naming itself.

    ``max_size`` is checked here (a connection pool needs at least one
    connection) but kept by the pool itself.
    """
    if validation.check_int("max_size", max_size) < 1:
        raise ValueError(f"max_size must be >= 1 for a connection pool, got {max_size}")
    if connect_timeout == 0 and not isinstance(connect_timeout, bool):
        raise ValueError(
            "connect_timeout must be > 0 seconds, or None to wait for ever, got 0 "
            "(drivers read 0 as 'no timeout')"
        )
    return ConnectionOptions(
        max_idle=validation.check_seconds("max_idle", max_idle),
        max_age=validation.check_seconds("max_age", max_age),
        connect_timeout=validation.check_seconds("connect_timeout", connect_timeout),
        cleanup=validation.check_callable("cleanup", cleanup),
        timeout=validation.check_seconds("timeout", timeout),
        check=check,
        check_interval=validation.check_seconds("check_interval", check_interval, allow_none=False)
        or 0.0,
        leak_timeout=validation.check_seconds("leak_timeout", leak_timeout),
        reconnect_backoff=_backoff(reconnect_backoff),
        configure=validation.check_callable("configure", configure),
    )
