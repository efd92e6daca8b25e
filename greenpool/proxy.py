"""The objects a user holds: connection wrappers and the OS-thread proxy.

* :class:`GenericConnectionWrapper` delegates every attribute of the real
  connection (reads, writes, methods), not a fixed method list.
* :class:`PooledConnectionWrapper` is the short-lived checkout handle:
  ``close()`` gives the connection back to its pool, ``bool(wrapper)`` is
  false once it is back, and any use after that raises
  :class:`~greenpool.errors.ConnectionReturned` (an ``AttributeError``).
* :class:`ThreadProxy` runs every method call of a connection, and of the
  cursors it returns, in an OS thread through the hub.
"""

from __future__ import annotations

import operator
import sys
import types
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Optional

from .errors import ConnectionReturned
from .hubs import Hub

if TYPE_CHECKING:  # pragma: no cover
    from .connections import BaseConnectionPool, _Entry

__all__ = ["GenericConnectionWrapper", "PooledConnectionWrapper", "ThreadProxy"]


class _Returned:
    """Stands in for the connection once a wrapper has been given back."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        raise ConnectionReturned(
            f"this connection was returned to its pool; cannot use .{name} any more"
        )

    def __repr__(self) -> str:
        return "<returned>"


_RETURNED = _Returned()


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


class Cell:
    """What a wrapper and its pool's entry share: ``entry`` while the connection
    is checked out, None once it is returned."""

    __slots__ = ("entry",)

    entry: Optional[_Entry]


def new_cell(entry: _Entry) -> Cell:
    """A cell holding ``entry`` (a wrapper's, while it is checked out)."""
    cell = Cell()
    cell.entry = entry
    return cell


def _forwarded(name: str) -> Any:
    """A connection attribute read on every query (``cursor``, ``commit``, ``rollback``).

    Gives what :meth:`PooledConnectionWrapper.__getattr__` would (the
    connection's own attribute, :class:`~greenpool.errors.ConnectionReturned`
    once returned) without first failing the ordinary lookup, which costs
    about three times as much: a property whose getter is compiled, whose
    AttributeError, once the entry is gone, hands over to ``__getattr__``.
    """
    return property(operator.attrgetter(f"_cell.entry.delegate.{name}"))


class PooledConnectionWrapper(GenericConnectionWrapper):
    """A connection checked out of a pool; ``close()`` puts it back.

    A wrapper dropped without being returned is noticed when it is garbage
    collected: its slot is freed (the connection closed, since its state is
    unknown) and a warning names where it was taken.  That happens in the
    pool's next operation, never inside the garbage collector.

    The wrapper's one slot is its *cell*, a :class:`Cell` holding the pool's
    entry while the connection is checked out and None once it is returned.
    A returned wrapper that nobody references any more is handed out again
    by the next checkout of the same connection (see :data:`SOLE_HOLDER_REFS`),
    or, if somebody still held it then, by a later checkout of any connection
    of the pool once they dropped it: making a wrapper, cutting it loose and
    collecting it cost a fifth of an uncontended checkout and return.  One
    that somebody still holds, even weakly, is never reused, so it stays
    returned for good.
    """

    __slots__ = ("_cell", "__weakref__")

    cursor = _forwarded("cursor")
    commit = _forwarded("commit")
    rollback = _forwarded("rollback")

    def __init__(self, entry: _Entry) -> None:
        # The entry knows its current wrapper's cell: that is how an orphan is recognised.
        cell = entry.cell = new_cell(entry)
        _set_cell(self, cell)

    @property
    def _entry(self) -> Optional[_Entry]:
        """The pool's entry while checked out, None once returned."""
        return self._cell.entry

    @property
    def _base(self) -> Any:
        entry = self._cell.entry
        return _RETURNED if entry is None else entry.delegate

    @property
    def _pool(self) -> Optional[BaseConnectionPool]:
        entry = self._cell.entry
        return None if entry is None else entry.pool

    def __getattr__(self, name: str) -> Any:
        entry = self._cell.entry
        if entry is None:
            return getattr(_RETURNED, name)
        return getattr(entry.delegate, name)

    def close(self) -> None:
        """Return the connection to its pool (a no-op if already returned)."""
        entry = self._cell.entry
        if entry is not None:
            entry.pool.put(self)

    def __bool__(self) -> bool:
        return self._cell.entry is not None

    def __del__(self) -> None:
        # Only a deque append here: no I/O, no locks, safe inside the garbage collector.
        cell = self._cell
        entry = cell.entry
        if entry is not None:
            pool = entry.pool
            pool._orphans.append((entry, cell))
            pool._green_open = False  # get() must look at the queue: see _collect_orphans

    def __repr__(self) -> str:
        entry = self._cell.entry
        if entry is None:
            return "<PooledConnectionWrapper returned>"
        return f"<PooledConnectionWrapper {entry.delegate!r} from {entry.pool!r}>"


# The slot's own setter: __setattr__ is delegated to the connection, and this is
# several times cheaper than object.__setattr__.
_set_cell = PooledConnectionWrapper._cell.__set__  # type: ignore[attr-defined]


# The pool makes a wrapper as _new_wrapper(PooledConnectionWrapper), then _set_cell():
# cheaper than calling the class, which runs __init__ as a separate Python call.
_new_wrapper = object.__new__


def detach(wrapper: PooledConnectionWrapper) -> None:
    """Cut a wrapper from its entry: from now on it is returned (false, unusable)."""
    wrapper._cell.entry = None


class _SpareHolder:
    __slots__ = ("spare",)

    def __init__(self) -> None:
        self.spare: Any = None


def _references_of_sole_holder() -> int:
    """What :data:`refcount` reads, at the checkout site, for a spare wrapper that
    only its entry holds: measured in the same code shape, so that the
    interpreter's own references (the local, the argument) count alike on every
    Python version."""
    holder = _SpareHolder()
    holder.spare = object()
    wrapper = holder.spare
    return refcount(wrapper)


def _references_of_unheld() -> int:
    """What :data:`refcount` reads for a wrapper just taken off a deque that was its
    only holder (measured in that code shape, as above)."""
    kept = deque([object()])
    wrapper = kept.popleft()
    return refcount(wrapper)


def _no_refcount(obj: Any) -> int:
    return -2


#: ``sys.getrefcount`` where the interpreter has it; elsewhere no wrapper is reused.
refcount: Callable[[Any], int] = getattr(sys, "getrefcount", _no_refcount)
#: The reading of :data:`refcount` for a spare wrapper that only its entry holds:
#: the checkout reuses the spare when ``refcount(spare)`` equals it and no weak
#: reference to it exists.
SOLE_HOLDER_REFS = _references_of_sole_holder() if refcount is not _no_refcount else -1
#: The reading of :data:`refcount` for a wrapper taken off the pool's deque of kept
#: wrappers that nobody else holds (see BaseConnectionPool.get()).
UNHELD_REFS = _references_of_unheld() if refcount is not _no_refcount else -1


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
