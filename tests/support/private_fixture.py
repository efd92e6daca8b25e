"""Starting a private server for a test module, or skipping (failing under
``GREENPOOL_REQUIRE_DB=1``) where it cannot run."""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator, Optional

import pytest

REQUIRE_DB = os.environ.get("GREENPOOL_REQUIRE_DB") == "1"


def private_server(
    cls: Any, driver: str, make: Optional[Callable[[], Any]] = None
) -> Iterator[Any]:
    """Yield a started server of ``cls`` (made by ``make``, default ``cls()``),
    closed afterwards; skip, or fail under GREENPOOL_REQUIRE_DB=1, when the
    server's binaries or the ``driver`` module are missing."""
    ok, reason = cls.available()
    if ok:
        try:
            __import__(driver)
        except ImportError as exc:
            ok, reason = False, f"{driver} not importable: {exc}"
    if not ok:
        message = f"private {cls.kind} server unavailable: {reason}"
        if REQUIRE_DB:
            pytest.fail(f"{message} (GREENPOOL_REQUIRE_DB=1)", pytrace=False)
        pytest.skip(message)
    server = (make or cls)()
    try:
        server.start()
        yield server
    finally:
        server.close()
