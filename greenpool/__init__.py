"""greenpool: a DB-API 2 connection pool for eventlet, gevent and plain threads."""

from .errors import (
    ConnectionReturned,
    ConnectTimeout,
    DatabaseUnavailable,
    ForeignConnection,
    HubError,
    PoolClosed,
    PoolError,
    PoolTimeout,
    TooManyWaiters,
)
from .hubs import Hub, detect_hub, resolve_hub, set_default_hub
from .pool import Pool, PoolStats, Token, TokenPool

__version__ = "0.1.0"

__all__ = [
    "ConnectionReturned",
    "ConnectTimeout",
    "DatabaseUnavailable",
    "ForeignConnection",
    "Hub",
    "HubError",
    "Pool",
    "PoolClosed",
    "PoolError",
    "PoolStats",
    "PoolTimeout",
    "Token",
    "TokenPool",
    "TooManyWaiters",
    "detect_hub",
    "resolve_hub",
    "set_default_hub",
]
