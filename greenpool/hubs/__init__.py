"""Choosing the hub: explicit, process default, or detected from monkey patching.

``resolve_hub(None)`` returns the process default set by
:func:`set_default_hub` if any, otherwise the hub detected from monkey
patching: gevent if gevent has patched ``socket``, eventlet if eventlet has,
threads if neither.  eventlet and gevent are imported only when their hub is
asked for or they are already imported by the program.
"""

from __future__ import annotations

import importlib
import sys
from typing import Optional, Union

from ..errors import HubError
from .base import Event, Hub, Task, Waiter

__all__ = [
    "Hub", "Event", "Waiter", "Task", "resolve_hub", "set_default_hub", "detect_hub", "HUB_NAMES"
]

HUB_NAMES = ("eventlet", "gevent", "threads")

_MODULES = {
    "eventlet": ("greenpool.hubs.eventlet_hub", "EventletHub"),
    "gevent": ("greenpool.hubs.gevent_hub", "GeventHub"),
    "threads": ("greenpool.hubs.threads_hub", "ThreadsHub"),
}
_instances: dict[str, Hub] = {}
_default: Optional[Hub] = None

HubSpec = Union[str, Hub, None]


def _by_name(name: str) -> Hub:
    hub = _instances.get(name)
    if hub is not None:
        return hub
    if name not in _MODULES:
        raise HubError(
            f"hub={name!r} is not a known hub; choose one of {', '.join(HUB_NAMES)} "
            "or pass a greenpool.hubs.Hub instance"
        )
    module_name, class_name = _MODULES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise HubError(
            f"hub={name!r} needs the {name} package, which cannot be imported ({exc}); "
            f"install it (pip install 'greenpool[{name}]') or choose another hub"
        ) from exc
    hub = getattr(module, class_name)()
    _instances[name] = hub
    return hub


def _eventlet_patched() -> bool:
    if "eventlet" not in sys.modules:
        return False
    from eventlet import patcher

    return bool(patcher.is_monkey_patched("socket"))


def _gevent_patched() -> bool:
    if "gevent" not in sys.modules:
        return False
    from gevent import monkey

    return bool(monkey.is_module_patched("socket"))


def detect_hub() -> Hub:
    """The hub matching this process's monkey patching.

    Raises :class:`~greenpool.errors.HubError` when both eventlet and gevent
    have patched the process, since no choice is right then.
    """
    eventlet_patched = _eventlet_patched()
    gevent_patched = _gevent_patched()
    if eventlet_patched and gevent_patched:
        raise HubError(
            "both eventlet and gevent have monkey patched this process; cannot choose a hub: "
            "pass hub='eventlet' or hub='gevent' explicitly"
        )
    if gevent_patched:
        return _by_name("gevent")
    if eventlet_patched:
        return _by_name("eventlet")
    return _by_name("threads")


def resolve_hub(hub: HubSpec = None) -> Hub:
    """The hub for ``hub``: a name, a :class:`Hub` instance, or None for the default."""
    if hub is None:
        return _default if _default is not None else detect_hub()
    if isinstance(hub, Hub):
        return hub
    if isinstance(hub, str):
        return _by_name(hub)
    raise HubError(
        f"hub={hub!r} must be one of {', '.join(map(repr, HUB_NAMES))}, "
        "a greenpool.hubs.Hub instance, or None"
    )


def set_default_hub(hub: HubSpec) -> Optional[Hub]:
    """Set the hub used by pools created without ``hub=``; None restores detection.

    Returns the hub now in force (None when detection is restored).
    """
    global _default
    _default = None if hub is None else resolve_hub(hub)
    return _default
