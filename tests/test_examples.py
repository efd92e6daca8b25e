"""The README's demo runs and succeeds, on every hub (each hub's process runs its own)."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo(hub):
    demo = os.path.join(ROOT, "examples", "demo.py")
    out = subprocess.run(
        [sys.executable, "-W", "ignore", demo, "--hub", hub.name],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "demo OK" in out.stdout
    assert "160 rows" in out.stdout
