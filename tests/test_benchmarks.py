"""The benchmarks still run: each script, shrunk to a fraction of a second per window.

These check that the scripts work and report what they promise (a target
line per query, every worker served); they assert no speed: speed is what
the full runs measure (see README, "Benchmarks").
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.timeout(600)


def run_script(name: str, *args: str, timeout: float = 240) -> str:
    out = subprocess.run(
        [sys.executable, "-W", "ignore", os.path.join("benchmarks", name), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


@pytest.mark.parametrize("server", ["postgres", "mariadb"])
def test_contended_benchmark_runs(request, hub, server):
    request.getfixturevalue(server)  # skips, or fails under GREENPOOL_REQUIRE_DB, if down
    # A window long enough for every worker to complete a query even while other
    # processes load the machine (at 0.05 s an OS thread was once left unscheduled
    # for a whole window): "nobody starved" is about the pool, not the scheduler.
    out = run_script(
        "contended.py", "--hub", hub.name, "--db", server,
        "--only", "greenpool Raw,FIFO", "--rounds", "2", "--pairs", "1",
        "--window", "0.3", "--warmup", "0.05", "--settle", "0.01",
        "--workers", "20", "--threads", "8",
    )
    targets = [line for line in out.splitlines() if line.startswith(f"  {hub.name:8s} {server}")]
    assert len(targets) == 2, out  # SELECT 1 and the sleeping query
    for line in targets:
        assert "starved=0: PASS 0" in line or "starved=0: (PASS) 0" in line, line
        assert "x FIFO reference" in line, line
    for label in ("ideal", "greenpool Raw", "minimal FIFO (reference)"):
        assert f"{hub.name:8s} {label}" in out, out


def test_checkout_benchmark_runs(hub):
    if hub.name != "threads":
        pytest.skip("one run is enough: checkout.py measures every hub in its own processes")
    out = run_script("checkout.py", "--rounds", "1")
    assert "greenpool Raw, hub=eventlet" in out, out
    assert "greenpool Raw, hub=gevent" in out, out
    assert "vs minimal FIFO pool (bare hand-off)" in out, out


def _paired():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "benchmarks_paired", os.path.join(ROOT, "benchmarks", "paired.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("ours, theirs, verdict", [
    ([0.99] * 5, [0.98] * 5, True),  # 5 of 5: p = 1/32
    ([0.98] * 5, [0.99] * 5, False),
    ([0.99, 0.99, 0.99, 0.99, 0.97], [0.98] * 5, None),  # 4 of 5: p = 6/32
    ([0.99] * 8 + [0.97], [0.98] * 9, True),  # 8 of 9: p = 10/512
    ([0.99] * 7 + [0.97] * 2, [0.98] * 9, None),  # 7 of 9: p = 46/512
    ([0.99, 0.98, None, 0.99, 0.99, 0.99, 0.99], [0.98, 0.98, 0.5, 0.98, 0.98, 0.98, 0.98],
     True),  # ties and missing rounds left out: 5 of 5
    ([], [], None),
])
def test_sign_test_over_rounds(ours, theirs, verdict):
    comparison = _paired().compare(ours, theirs)
    assert comparison.verdict is verdict, comparison
