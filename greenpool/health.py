"""Health checks at checkout: a local test first, then a round trip if needed.

:func:`resolve_check` turns the pool's ``check=`` option into a callable:

* ``None``, ``False`` or ``"off"`` (or ``"none"``, in any case): no check;
* ``True`` or ``"ping"`` (the default, in any case): the driver's cheap liveness test
  (PyMySQL's ``ping()``, ``SELECT 1`` elsewhere);
* any other string: SQL to execute (and fetch);
* a callable: called with the raw connection; it raises if the connection is bad.

:func:`socket_hung_up` is the zero-round-trip test: an idle connection's
socket that is readable means the server closed it or sent an error (as
PostgreSQL does when a backend is terminated).  :func:`socket_watch` makes
the same test cheap enough for every checkout: a ``poll`` object registered
once per connection, asked with a zero timeout.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional

from .drivers import Driver

__all__ = ["resolve_check", "socket_hung_up", "socket_watch"]

Check = Callable[[Any], Any]


#: ``check=`` words, in any case, that turn the check off.
OFF_WORDS = frozenset({"off", "none", "no", "false"})


def resolve_check(check: Any, driver: Driver) -> Optional[Check]:
    """The callable for ``check=`` (see the module docstring).

    The words "ping" and "off" (or "none") are read in any case.  Any other
    string must be SQL: a single word that is not a statement is refused
    with a ValueError rather than run, and failed, at every checkout.
    """
    if check is None or check is False:
        return None
    if check is True:
        return driver.ping
    if isinstance(check, str):
        word = check.strip().lower()
        if word in OFF_WORDS:
            return None
        if word == "ping":
            return driver.ping
        if " " not in word and word not in ("select", "values", "show"):
            raise ValueError(
                "check must be 'ping', 'off', SQL text or a callable, got a single word "
                f"that is neither ({check.strip()[:20]!r})"
            )
        return _sql_check(check)
    if callable(check):
        return check
    raise TypeError(
        f"check must be 'ping', 'off', SQL text, a callable or None, got a {type(check).__name__}"
    )


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


_poll: Any = None
_poll_input = 0


def _find_original(name: str) -> Any:
    """``select.<name>`` as the standard library has it, never a green replacement."""
    if "eventlet" in sys.modules:
        from eventlet import patcher

        return getattr(patcher.original("select"), name, None)
    if "gevent" in sys.modules:
        from gevent import monkey

        return monkey.get_original("select", name)
    import select

    return getattr(select, name, None)


def socket_watch(fileno: Optional[int]) -> Any:
    """A ``select.poll`` object watching ``fileno`` for input, or None.

    ``watch.poll(0)`` is non-empty when the socket is readable (the server
    hung up or spoke unasked) or the descriptor was closed (``POLLNVAL``):
    one system call, no list building, never yields.  None when the
    descriptor is unknown or the platform has no ``poll``.
    """
    global _poll, _poll_input
    if fileno is None or fileno < 0:
        return None
    if _poll is None:
        _poll = _find_original("poll") or False
        _poll_input = (_find_original("POLLIN") or 1) | (_find_original("POLLPRI") or 2)
    if not _poll:
        return None
    watch = _poll()
    watch.register(fileno, _poll_input)
    return watch


def socket_hung_up(fileno: Optional[int]) -> bool:
    """True when an idle connection's socket is readable (closed or spoken to by the server).

    A one-off :func:`socket_watch`: it never yields and never waits, and
    works for descriptors of any number (``select()`` stops at 1024).  An
    unknown descriptor (None) is never reported as hung up; a closed one is.
    """
    watch = socket_watch(fileno)
    return watch is not None and bool(watch.poll(0))
