"""The demo runs and succeeds on every hub (each hub's process runs its own), on SQLite
and against the real PostgreSQL and MariaDB."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.timeout(300)


def run_demo(*args, python=sys.executable, script=None):
    command = [python, "-W", "ignore"]
    command += [script] if script else ["-m", "greenpool", "demo"]
    out = subprocess.run(
        command + list(args), cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "demo OK" in out.stdout
    return out.stdout


def test_demo_on_sqlite(hub):
    out = run_demo("--hub", hub.name, "--seconds", "1", "--workers", "60")
    assert f"hub {hub.name}" in out
    assert "0 starved" in out


@pytest.mark.parametrize("server", ["postgres", "mariadb"])
def test_demo_against_a_server(request, hub, server):
    kw = request.getfixturevalue(server)
    if server == "postgres":
        dsn = f"postgresql://{kw['user']}@{kw['host']}:{kw['port']}/{kw['dbname']}"
    else:
        dsn = f"mysql://{kw['user']}@{kw['host']}:{kw['port']}/{kw['database']}"
    out = run_demo("--hub", hub.name, "--seconds", "1", "--workers", "50", "--dsn", dsn)
    assert "0 starved" in out


def test_readme_demo_command(hub):
    if hub.name != "threads":
        pytest.skip("the README command is checked once, from the threads process")
    out = run_demo("--seconds", "1", python="python3",
                   script=os.path.join(ROOT, "examples", "demo.py"))
    assert "green threads on hub eventlet" in out
