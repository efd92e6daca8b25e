"""Exceptions raised by greenpool.

Every pool error derives from :class:`PoolError`.  The errors that a caller
may want to treat as "try again later" (:class:`PoolTimeout`,
:class:`ConnectTimeout`, :class:`TooManyWaiters`, :class:`DatabaseUnavailable`)
are raised by ``get()``; messages name the pool but never carry credentials.
"""

from __future__ import annotations

__all__ = [
    "PoolError",
    "PoolClosed",
    "PoolTimeout",
    "ConnectTimeout",
    "TooManyWaiters",
    "DatabaseUnavailable",
    "ConnectionReturned",
    "ForeignConnection",
    "HubError",
]


class PoolError(Exception):
    """Base class of every error raised by greenpool itself."""


class HubError(PoolError, ValueError):
    """The hub asked for does not exist, is not installed, or cannot be detected."""


class PoolClosed(PoolError):
    """The pool was closed: no further checkouts are possible."""


class PoolTimeout(PoolError):
    """``get(timeout=...)`` found no item within its timeout."""


class ConnectTimeout(PoolTimeout):
    """Opening a new database connection took longer than ``connect_timeout``.

    It is a :class:`PoolTimeout` too, so code that catches checkout timeouts
    also catches this one.
    """


class TooManyWaiters(PoolError):
    """``get()`` was refused at once because ``max_waiting`` callers already wait."""


class DatabaseUnavailable(PoolError):
    """The database refused connections and the pool is backing off.

    The last connect error is chained as ``__cause__``.
    """


class ConnectionReturned(PoolError, AttributeError):
    """A checked-out connection was used after it went back to the pool.

    It is an :class:`AttributeError` as well, because code written for
    ``eventlet.db_pool`` expects one from a returned wrapper.
    """


class ForeignConnection(PoolError, ValueError):
    """``put()`` was given a connection this pool did not hand out, or one already returned."""
