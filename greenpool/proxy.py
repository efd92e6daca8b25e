"""The objects a user holds: connection wrappers and the OS-thread proxy.

* :class:`GenericConnectionWrapper` delegates every attribute of the real
  connection (reads, writes, methods), not a fixed method list.
* :class:`PooledConnectionWrapper` is the handle of one checkout, made
  fresh for each: ``close()`` gives the connection back to its pool,
  ``bool(wrapper)`` is false once it is back, and calling anything on it
  after that raises :class:`~greenpool.errors.ConnectionReturned` (an
  ``AttributeError``), as ``eventlet.db_pool``'s wrappers did.
* :class:`ThreadProxy` runs every method call of a connection, and of the
  cursors it returns, in an OS thread through the hub.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any, Callable, Optional

from .errors import ConnectionReturned
from .hubs import Hub

if TYPE_CHECKING:  # pragma: no cover
    from .connections import BaseConnectionPool
    from .entry import ConnectionEntry

__all__ = ["GenericConnectionWrapper", "PooledConnectionWrapper", "ThreadProxy"]


def _call_exit(wrapper: Any, base: Any, exc_type: Any, exc: Any, tb: Any) -> Any:
    # A pure-Python driver's __exit__ (PyMySQL's closes the connection) runs with the
    # wrapper as ``self``, so its "close" goes through the wrapper: a pooled connection
    # then returns to its pool instead of being closed under the pool's feet.  A C
    # driver's __exit__ gets its own object (in an OS thread behind a ThreadProxy).
    hub = None
    if isinstance(base, ThreadProxy):
        hub, base = base._hub, base._obj
    method = getattr(type(base), "__exit__", None)
    if isinstance(method, types.FunctionType):
        return method(wrapper, exc_type, exc, tb)
    if hub is not None:
        return hub.run_in_thread(base.__exit__, exc_type, exc, tb)
    return base.__exit__(exc_type, exc, tb)


class GenericConnectionWrapper:
    """Delegates every attribute to the wrapped connection ``_base``."""

    __slots__ = ("_base",)

    def __init__(self, baseconn: Any) -> None:
        object.__setattr__(self, "_base", baseconn)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._base, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._base, name)

    def __enter__(self) -> Any:
        base = self._base
        result = base.__enter__()
        return self if result is base else result

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        return _call_exit(self, self._base, exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} for {self._base!r}>"


class _ReturnedAttribute:
    """What any attribute of a returned wrapper reads as: calling it raises."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionReturned(
            f"this connection was returned to its pool; cannot call .{self._name}() any more"
        )

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return f"<.{self._name} of a returned connection>"


class PooledConnectionWrapper(GenericConnectionWrapper):
    """One checkout of a pooled connection; ``close()`` puts it back.

    While checked out, every attribute is the connection's own.  Once
    returned the wrapper is false, and any attribute reads as a callable
    that raises :class:`~greenpool.errors.ConnectionReturned` (an
    ``AttributeError``) when called; setting one raises at once.

    A wrapper dropped without being returned is noticed when it is garbage
    collected: the pool closes the connection (its state is unknown), frees
    the slot and logs a warning, in its next operation, never inside the
    garbage collector.
    """

    __slots__ = ("_entry", "__weakref__")

    def __init__(self, entry: ConnectionEntry) -> None:
        set_entry(self, entry)

    def _live(self) -> Any:
        """The connection (or its thread proxy) while checked out."""
        entry = self._entry
        if entry is None:
            raise ConnectionReturned("this connection was returned to its pool")
        return entry.delegate

    @property
    def _base(self) -> Any:
        """The connection the wrapper forwards to (eventlet's name); None once returned."""
        entry = self._entry
        return None if entry is None else entry.delegate

    @property
    def _pool(self) -> Optional[BaseConnectionPool]:
        entry = self._entry
        return None if entry is None else entry.pool

    # The calls made on every query, written out: cheaper than __getattr__'s fallback.
    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        return self._live().cursor(*args, **kwargs)

    def commit(self) -> Any:
        return self._live().commit()

    def rollback(self) -> Any:
        return self._live().rollback()

    def __getattr__(self, name: str) -> Any:
        entry = self._entry
        if entry is None:
            return _ReturnedAttribute(name)
        return getattr(entry.delegate, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._live(), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._live(), name)

    def __enter__(self) -> Any:
        base = self._live()
        result = base.__enter__()
        return self if result is base else result

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        return _call_exit(self, self._live(), exc_type, exc, tb)

    def close(self) -> None:
        """Return the connection to its pool (a no-op if already returned)."""
        entry = self._entry
        if entry is not None:
            entry.pool.put(self)

    def __bool__(self) -> bool:
        entry = self._entry
        return entry is not None and not entry.revoked

    def __del__(self) -> None:
        # Only a deque append (in orphaned()): no I/O, no locks, safe in the collector.
        # An entry is lent to one wrapper at a time, and taken from it when it is
        # returned: if this one still has it, it still holds the connection.
        entry = self._entry
        if entry is not None:
            entry.pool._orphaned(entry)

    def __repr__(self) -> str:
        entry = self._entry
        if entry is None:
            return "<PooledConnectionWrapper returned>"
        return f"<PooledConnectionWrapper {entry!r} from {entry.pool!r}>"


#: ``set_entry(wrapper, entry)``: the wrapper's own slot, written through its
#: descriptor since the wrapper's __setattr__ forwards to the connection.  The pool
#: sets it to None when the connection comes back: from then on the wrapper is
#: returned (false, unusable).
set_entry: Callable[[PooledConnectionWrapper, Any], None] = (
    PooledConnectionWrapper._entry.__set__  # type: ignore[attr-defined]
)


def _wants_proxy(value: Any) -> bool:
    """Cursors (and other driver objects with blocking methods) get proxied too."""
    if isinstance(value, (str, bytes, int, float, bool, tuple, list, dict, type(None))):
        return False
    return hasattr(value, "execute") or hasattr(value, "fetchone")


class _ThreadMethod:
    __slots__ = ("_method", "_hub")

    def __init__(self, method: Callable[..., Any], hub: Hub) -> None:
        self._method = method
        self._hub = hub

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        method = self._method
        if kwargs:
            result = self._hub.run_in_thread(lambda: method(*args, **kwargs))
        else:
            result = self._hub.run_in_thread(method, *args)
        return ThreadProxy(result, self._hub) if _wants_proxy(result) else result


class ThreadProxy:
    """Runs every method of ``obj`` in an OS thread; plain attributes are read directly.

    Objects returned that look like cursors are proxied as well, as is
    iteration, so ``for row in cursor`` fetches off the hub.
    """

    __slots__ = ("_obj", "_hub")

    def __init__(self, obj: Any, hub: Hub) -> None:
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_hub", hub)

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._obj, name)
        if callable(value) and not isinstance(value, type):
            return _ThreadMethod(value, self._hub)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        self._hub.run_in_thread(setattr, self._obj, name, value)

    def __iter__(self) -> ThreadProxy:
        return self

    def __next__(self) -> Any:
        obj = self._obj
        done = object()
        row = self._hub.run_in_thread(next, obj, done)
        if row is done:
            raise StopIteration
        return row

    def __enter__(self) -> Any:
        obj = self._obj
        result = self._hub.run_in_thread(obj.__enter__)
        return self if result is obj else result

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        return _call_exit(self, self, exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"<ThreadProxy {self._obj!r}>"
