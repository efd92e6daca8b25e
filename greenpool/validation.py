"""Argument validation shared by every layer: one clear error naming the parameter.

Public so that the connector and the compat layers validate as the core does.
A wrong value is described by its type, never echoed: it may be a DSN that
holds a password.  Infinity is accepted as seconds and means "for ever" (None).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Optional


def _kind(value: Any) -> str:
    """What a wrong value is, without echoing it: it may be a DSN holding a password."""
    if isinstance(value, (bool, numbers.Number)) or value is None:
        return repr(value)
    return f"a {type(value).__name__}"


def check_int(name: str, value: Any, minimum: int = 0) -> int:
    """``value`` as an int >= ``minimum``; TypeError/ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {_kind(value)}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(value)


def check_optional_int(name: str, value: Any, minimum: int = 0) -> Optional[int]:
    """Like :func:`check_int`, None allowed (meaning "no limit")."""
    return None if value is None else check_int(name, value, minimum)


def check_seconds(name: str, value: Any, allow_none: bool = True) -> Optional[float]:
    """``value`` as a float >= 0 (seconds); None allowed when ``allow_none``."""
    if value is None:
        if allow_none:
            return None
        raise TypeError(f"{name} must be a number of seconds, got None")
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of seconds, got {_kind(value)}")
    if value != value or value < 0:  # NaN or negative
        raise ValueError(f"{name} must be >= 0 seconds, got {value!r}")
    if value == math.inf:
        return None if allow_none else float(value)  # "for ever"
    return float(value)


def check_callable(name: str, value: Any, allow_none: bool = True) -> Any:
    """``value`` if callable (or None when allowed); TypeError naming ``name`` otherwise."""
    if value is None and allow_none:
        return None
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {_kind(value)}")
    return value
