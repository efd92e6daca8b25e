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

from . import _checks

__all__ = ["ConnectionOptions", "connection_options"]


@dataclass(frozen=True)
class ConnectionOptions:
    """The validated options of a connection pool (see BaseConnectionPool)."""

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
    """Check every option; the first bad one raises, naming itself."""
    return ConnectionOptions(
        max_idle=_checks.check_seconds("max_idle", max_idle),
        max_age=_checks.check_seconds("max_age", max_age),
        connect_timeout=_checks.check_seconds("connect_timeout", connect_timeout),
        cleanup=_checks.check_callable("cleanup", cleanup),
        timeout=_checks.check_seconds("timeout", timeout),
        check=check,
        check_interval=_checks.check_seconds("check_interval", check_interval, allow_none=False)
        or 0.0,
        leak_timeout=_checks.check_seconds("leak_timeout", leak_timeout),
        reconnect_backoff=_backoff(reconnect_backoff),
        configure=_checks.check_callable("configure", configure),
    )
