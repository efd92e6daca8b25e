"""Run one of eventlet's own test modules with greenpool standing in for eventlet's pools.

    python tests/support/eventlet_suite_runner.py SDIST_ROOT MODULE REPORT [TIMEOUT [ARG ...]]

``SDIST_ROOT`` holds the ``tests`` package taken from eventlet's sdist,
``MODULE`` is a module of it (``pools_test``, ``db_pool_test``), ``REPORT`` a
JSON file, rewritten after every test: the greenpool package used, and for
every test so far its outcome (passed, failed, skipped) and, unless it passed,
the error text.
Further arguments (ARG) go to pytest (``-k test_put_none`` runs one test).

Before the suite is imported, ``eventlet.pools`` and ``eventlet.db_pool`` are
greenpool (in ``sys.modules`` and as attributes of the eventlet package),
greenpool's default hub is eventlet's and PyMySQL stands in for MySQLdb.
Nothing is monkey patched and psycopg2 gets no wait callback, as in
eventlet's own test runs.  The database servers come from
``EVENTLET_DB_TEST_AUTH``, set by the caller.

Every test runs under a green deadline of ``TIMEOUT`` seconds (default 30),
and pytest-timeout's signal at twice that catches a test blocked outside the
hub, so a hang fails its test and the run goes on.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from typing import Any

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
os.environ["EVENTLET_TESTS"] = "1"  # what eventlet's tests/conftest.py sets

import eventlet  # noqa: E402
import pymysql  # noqa: E402
import pytest  # noqa: E402

import greenpool  # noqa: E402


class SuitePlugin:
    """Records the outcome and error text of every test in ``report``; puts a green
    deadline of ``timeout`` seconds on each test."""

    def __init__(self, report: str, timeout: float) -> None:
        self.report = report
        self.timeout = timeout
        self.results: dict[str, dict[str, Any]] = {}

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            self.results[report.nodeid or "<collection>"] = {
                "outcome": "failed",
                "error": f"collection failed:\n{report.longreprtext}",
            }

    def pytest_runtest_logreport(self, report: Any) -> None:
        result = self.results.setdefault(report.nodeid, {"outcome": None, "error": ""})
        if report.failed:
            text = report.longreprtext
            if report.when != "call":
                text = f"(in {report.when}) {text}"
            result["outcome"] = "failed"
            result["error"] = f"{result['error']}\n{text}".strip()
        elif report.skipped and result["outcome"] != "failed":
            result["outcome"] = "skipped"
            result["error"] = report.longreprtext
        elif report.when == "call" and result["outcome"] is None:
            result["outcome"] = "passed"
        if report.when == "teardown":
            self.write()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: Any) -> Any:
        message = f"test still running after {self.timeout:g} s (green deadline)"
        with eventlet.Timeout(self.timeout, TimeoutError(message)):
            return (yield)

    def pytest_sessionfinish(self) -> None:
        self.write()

    def write(self) -> None:
        partial = f"{self.report}.partial"
        with open(partial, "w") as f:
            json.dump({"greenpool": greenpool.__file__, "results": self.results}, f, indent=1)
        os.replace(partial, self.report)


def install_shims() -> None:
    """greenpool in place of eventlet.pools and eventlet.db_pool; PyMySQL as MySQLdb."""
    sys.modules["eventlet.pools"] = sys.modules["eventlet.db_pool"] = greenpool  # type: ignore[assignment]
    eventlet.pools = eventlet.db_pool = greenpool  # type: ignore[attr-defined]
    greenpool.set_default_hub("eventlet")
    pymysql.install_as_MySQLdb()


def main(argv: list[str]) -> int:
    if len(argv) < 3:
        sys.stderr.write(__doc__.split("\n\n")[1] + "\n")
        return 2
    sdist_root, module, report = os.path.abspath(argv[0]), argv[1], os.path.abspath(argv[2])
    timeout = float(argv[3]) if len(argv) > 3 else 30.0
    # eventlet's ``tests`` package first; this script's directory shadows nothing.
    sys.path[:] = [sdist_root] + [p for p in sys.path[1:] if os.path.abspath(p) != sdist_root]
    os.chdir(sdist_root)
    install_shims()
    plugin = SuitePlugin(report, timeout)
    code = pytest.main(
        [
            os.path.join("tests", f"{module}.py"),
            "-c", os.path.join(sdist_root, "pytest.ini"),
            "--rootdir", sdist_root,
            "-p", "no:cacheprovider",
            f"--timeout={2 * timeout:g}",
            "--timeout-method=signal",
            "-q",
            "-rfE",
            *argv[4:],
        ],
        plugins=[plugin],
    )
    return int(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
