"""The benchmarks still run: each script, shrunk to a few hundredths of a second.

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
    out = run_script(
        "contended.py", "--hub", hub.name, "--db", server,
        "--only", "greenpool Raw,FIFO", "--rounds", "2", "--pairs", "1",
        "--window", "0.05", "--warmup", "0.01", "--settle", "0.01",
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
