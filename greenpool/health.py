"""Health checks at checkout: a local test first, then a round trip if needed.

:func:`resolve_check` turns the pool's ``check=`` option into a callable:

* ``None``, ``False`` or ``"off"``: no check;
* ``True`` or ``"ping"`` (the default): the driver's cheap liveness test
  (PyMySQL's ``ping()``, ``SELECT 1`` elsewhere);
* any other string: SQL to execute (and fetch);
* a callable: called with the raw connection; it raises if the connection is bad.

:func:`socket_hung_up` is the zero-round-trip test: an idle connection's
socket that is readable means the server closed it or sent an error (as
PostgreSQL does when a backend is terminated).
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional

from .drivers import Driver

__all__ = ["resolve_check", "socket_hung_up"]

Check = Callable[[Any], Any]


def resolve_check(check: Any, driver: Driver) -> Optional[Check]:
    """The callable for ``check=`` (see the module docstring); TypeError for anything else."""
    if check is None or check is False or check == "off":
        return None
    if check is True or check == "ping":
        return driver.ping
    if isinstance(check, str):
        if not check.strip():
            raise ValueError("check must be 'ping', 'off', SQL text or a callable, got ''")
        return _sql_check(check)
    if callable(check):
        return check
    raise TypeError(f"check must be 'ping', 'off', SQL text, a callable or None, got {check!r}")


def _sql_check(sql: str) -> Check:
    def run_sql(conn: Any) -> None:
        cursor = conn.cursor()
        try:
            cursor.execute(sql)
            if cursor.description is not None:
                cursor.fetchall()
        finally:
            cursor.close()

    return run_sql


_select: Any = None


def _original_select() -> Any:
    global _select
    if _select is None:
        _select = _find_original_select()
    return _select


def _find_original_select() -> Any:
    if "eventlet" in sys.modules:
        from eventlet import patcher

        return patcher.original("select").select
    if "gevent" in sys.modules:
        from gevent import monkey

        return monkey.get_original("select", "select")
    import select

    return select.select


def socket_hung_up(fileno: Optional[int]) -> bool:
    """True when an idle connection's socket is readable (closed or spoken to by the server).

    Uses the unpatched ``select`` with a zero timeout: it never yields and
    never waits.  An unknown descriptor (None) is never reported as hung up.
    """
    if fileno is None or fileno < 0:
        return False
    try:
        readable, _, _ = _original_select()([fileno], [], [], 0)
    except (OSError, ValueError):
        return True  # the descriptor is gone
    return bool(readable)
