"""eventlet's own pool tests pass against greenpool standing in for eventlet's pools.

eventlet 0.41.3's ``tests/pools_test.py`` and ``tests/db_pool_test.py`` are
taken from its sdist, fetched with pip at test time (once per machine, cached
under the system temp directory; nothing of eventlet's is kept in this
repository), and run by ``tests/support/eventlet_suite_runner.py`` in a
process of their own, with ``eventlet.pools`` and ``eventlet.db_pool``
replaced by greenpool.  pools_test must pass in full, db_pool_test (against the
shared PostgreSQL and MariaDB) in at least 80 of its 85 tests.

The suites drive eventlet's hub, so they run once, from the eventlet hub's
test process.  Each suite runs while its fixture is set up: the runner puts a
deadline on every test of the suite and the whole run is bounded, so the
in-process per-test deadline of conftest.py does not apply to it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings
from dataclasses import dataclass
from typing import Any, NoReturn

import psycopg2
import pymysql
import pytest

import greenpool
from tests.conftest import HUB_NAME, MYSQL_HOST, MYSQL_PORT, PG_HOST, PG_PORT, REQUIRE_DB

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "tests", "support", "eventlet_suite_runner.py")

EVENTLET_VERSION = "0.41.3"
CACHE = os.path.join(tempfile.gettempdir(), f"greenpool-eventlet-{EVENTLET_VERSION}")
#: What the two suites need from the sdist: the modules and what they import of the
#: ``tests`` package (``tests.mock``), and the conftest.py eventlet's own runs load.
SUITE_FILES = (
    "tests/__init__.py",
    "tests/conftest.py",
    "tests/mock.py",
    "tests/pools_test.py",
    "tests/db_pool_test.py",
)
PIP_LIMIT = 300  # seconds for pip to fetch the sdist
#: Seconds each test of a suite may run (eventlet's own tests allow 2).
TEST_DEADLINE = 10
#: Seconds a whole suite may run; a suite killed at it still reports its tests so far.
SUITE_LIMIT = 300

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        HUB_NAME != "eventlet",
        reason="eventlet's suites drive eventlet's hub: they run once, in the eventlet hub's run",
    ),
]


@dataclass(frozen=True)
class Suite:
    module: str
    total: int
    must_pass: int
    servers: tuple[str, ...] = ()


SUITES = [
    Suite("pools_test", total=13, must_pass=13),
    Suite("db_pool_test", total=85, must_pass=80, servers=("postgres", "mariadb")),
]


def _unavailable(message: str) -> NoReturn:
    if REQUIRE_DB:
        pytest.fail(f"{message} (GREENPOOL_REQUIRE_DB=1)", pytrace=False)
    pytest.skip(message)


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _download_sdist(directory: str) -> str:
    """The sdist's path, fetched with pip into ``directory`` unless already there."""
    archive = os.path.join(directory, f"eventlet-{EVENTLET_VERSION}.tar.gz")
    if os.path.exists(archive):
        return archive
    os.makedirs(directory, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
        "--disable-pip-version-check", "--retries", "2", "--timeout", "30",
        f"eventlet=={EVENTLET_VERSION}", "-d", directory,
    ]
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=PIP_LIMIT)
    except subprocess.TimeoutExpired:
        _unavailable(f"pip could not download eventlet {EVENTLET_VERSION} in {PIP_LIMIT} s")
    if out.returncode != 0 or not os.path.exists(archive):
        _unavailable(
            f"pip could not download the eventlet {EVENTLET_VERSION} sdist "
            f"(exit {out.returncode}):\n{_tail(out.stdout + out.stderr, 10)}"
        )
    return archive


@pytest.fixture(scope="module")
def eventlet_tests() -> str:
    """A directory holding eventlet's ``tests`` package (only SUITE_FILES) and a
    pytest.ini of its own, made once per machine."""
    root = os.path.join(CACHE, "src")
    if all(os.path.exists(os.path.join(root, name)) for name in SUITE_FILES):
        return root
    archive = _download_sdist(os.path.join(CACHE, "download"))
    staging = tempfile.mkdtemp(prefix="src-", dir=CACHE)
    with tarfile.open(archive) as tar:
        for name in SUITE_FILES:
            source = tar.extractfile(f"eventlet-{EVENTLET_VERSION}/{name}")
            assert source is not None, f"{name} is not a file in {archive}"
            target = os.path.join(staging, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as f:
                f.write(source.read())
    with open(os.path.join(staging, "pytest.ini"), "w") as f:
        f.write("[pytest]\n")
    try:
        os.rename(staging, root)
    except OSError:  # another run extracted it meanwhile
        shutil.rmtree(staging)
    return root


def database_auth() -> dict[str, dict[str, Any]]:
    """``EVENTLET_DB_TEST_AUTH`` for the shared servers: connect keywords per driver,
    without a database (the suite creates and names its own)."""
    return {
        "MySQLdb": {"host": MYSQL_HOST, "port": MYSQL_PORT, "user": "root", "passwd": ""},
        "psycopg2": {"host": PG_HOST, "port": PG_PORT, "user": "postgres"},
    }


def drop_suite_databases(pid: int) -> None:
    """Drop the database db_pool_test names after its process (``test<pid>``), which a
    failing test can leave behind on the shared servers."""
    name = f"test{pid}"
    auth = database_auth()
    try:
        conn = psycopg2.connect(**auth["psycopg2"], dbname="postgres", connect_timeout=5)
        try:
            conn.autocommit = True
            with conn.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            conn.close()
        mysql = dict(auth["MySQLdb"])
        mysql["password"] = mysql.pop("passwd")  # PyMySQL's name for it
        conn = pymysql.connect(**mysql, connect_timeout=5)
        try:
            with conn.cursor() as cursor:
                cursor.execute(f"DROP DATABASE IF EXISTS {name}")
        finally:
            conn.close()
    except Exception as exc:  # the suite's outcome matters more than its litter
        warnings.warn(f"could not drop database {name}: {exc!r}", stacklevel=1)


@dataclass
class SuiteRun:
    results: dict[str, dict[str, Any]]
    greenpool: str
    note: str  # why the run ended early, if it did

    def named(self, outcome: str) -> list[str]:
        return [name for name, result in self.results.items() if result["outcome"] == outcome]


def run_suite(tests_dir: str, module: str, report: str) -> SuiteRun:
    """Run one of eventlet's test modules against greenpool in a process of its own."""
    env = dict(os.environ, EVENTLET_DB_TEST_AUTH=json.dumps(database_auth()))
    command = [sys.executable, RUNNER, tests_dir, module, report, str(TEST_DEADLINE)]
    note = ""
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as proc:
        try:
            output, _ = proc.communicate(timeout=SUITE_LIMIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
            note = f"the suite was killed after {SUITE_LIMIT} s"
    if module == "db_pool_test":
        drop_suite_databases(proc.pid)
    if not os.path.exists(report):
        pytest.fail(
            f"{module} reported nothing (exit {proc.returncode}); its output:\n"
            f"{_tail(output, 40)}",
            pytrace=False,
        )
    with open(report) as f:
        data = json.load(f)
    return SuiteRun(data["results"], data["greenpool"], note)


def _essence(error: str) -> list[str]:
    """What a pytest failure report says went wrong: per phase that failed, the
    test's statement, the error lines and the place that raised."""
    sections = re.split(r"^(?=\(in \w+\) )", error, flags=re.MULTILINE)
    picked = []
    for section in filter(None, sections):
        lines = section.splitlines()
        phase = re.match(r"\(in \w+\)", lines[0])
        statements = [line[1:].strip() for line in lines if line.startswith(">")]
        errors = [line[1:].strip() for line in lines if line.startswith("E ")]
        places = [line.strip() for line in lines if re.match(r"^\S+\.py:\d+: \w", line)]
        if phase:
            picked.append(phase.group())
        picked += statements[:1] + errors[:8] + [f"at {place}" for place in places[-1:]]
        if not (statements or errors):
            picked += lines[-8:]
    return picked


def describe(run: SuiteRun, names: list[str]) -> str:
    """The tests ``names`` with their errors, tests that failed alike listed together."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for name in names:
        result = run.results[name]
        key = (result["outcome"].upper(), *_essence(result["error"]))
        groups.setdefault(key, []).append(name)
    blocks = []
    for (outcome, *essence), members in groups.items():
        heading = "".join(f"\n  {outcome} {name}" for name in members)
        blocks.append(heading + "".join(f"\n      {line}" for line in essence))
    return "".join(blocks)


@pytest.fixture(params=SUITES, ids=[suite.module for suite in SUITES])
def suite(request: Any) -> Suite:
    """Each of eventlet's suites in turn."""
    return request.param


@pytest.fixture
def suite_run(request: Any, suite: Suite, eventlet_tests: str, tmp_path: Any) -> SuiteRun:
    """The suite, run against greenpool (skipped, or failed under
    GREENPOOL_REQUIRE_DB, when a server it needs is down)."""
    for server in suite.servers:
        request.getfixturevalue(server)
    return run_suite(eventlet_tests, suite.module, str(tmp_path / f"{suite.module}.json"))


@pytest.mark.timeout(PIP_LIMIT + SUITE_LIMIT + 60)
def test_eventlet_suite_passes_against_greenpool(suite: Suite, suite_run: SuiteRun) -> None:
    """The suite ran in full, against this greenpool, and passed at least ``must_pass``
    of its tests; every test that did not pass is named with its error."""
    run = suite_run
    assert run.greenpool == greenpool.__file__, (
        f"the suite imported greenpool from {run.greenpool}, this process from "
        f"{greenpool.__file__}"
    )
    passed, failed, skipped = run.named("passed"), run.named("failed"), run.named("skipped")
    summary = (
        f"{suite.module}: {len(passed)} of {suite.total} passed (at least {suite.must_pass} "
        f"must), {len(failed)} failed, {len(skipped)} skipped, {len(run.results)} ran"
        + (f"; {run.note}" if run.note else "")
    )
    if len(run.results) != suite.total or len(passed) < suite.must_pass:
        pytest.fail(summary + describe(run, failed + skipped), pytrace=False)
