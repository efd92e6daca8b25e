"""greenpool: a DB-API 2 connection pool for eventlet, gevent and plain threads."""

from .connections import (
    BaseConnectionPool,
    ConnectionPool,
    ConnectionPoolStats,
    RawConnectionPool,
    TpooledConnectionPool,
    cleanup_rollback,
)
from .connector import ConnectorStats, DatabaseConnector, PoolKey, UnknownHost
from .drivers import make_psycopg2_green
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
from .proxy import GenericConnectionWrapper, PooledConnectionWrapper

__version__ = "0.1.0"

__all__ = [
    "BaseConnectionPool",
    "ConnectorStats",
    "DatabaseConnector",
    "PoolKey",
    "UnknownHost",
    "ConnectionPool",
    "ConnectionPoolStats",
    "GenericConnectionWrapper",
    "PooledConnectionWrapper",
    "RawConnectionPool",
    "TpooledConnectionPool",
    "cleanup_rollback",
    "make_psycopg2_green",
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
