#!/usr/bin/env python3
"""The whole test suite, from a fresh clone with nothing but Python installed.

    python3 tests/run.py [--hub HUB ...] [--no-lint] [-- PYTEST ARGS]

Creates ``.venv`` (once, and again when setup.cfg changes), installs
greenpool with its ``test`` extra, runs ruff and mypy, then pytest once per
hub (threads, eventlet, gevent), each in its own process because monkey
patching is process-wide.  Exits non-zero if anything failed or if a hub ran
no test at all.  ``GREENPOOL_REQUIRE_DB=1`` turns "database unreachable"
skips into failures.
"""

import argparse
import hashlib
import os
import re
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".venv")
PYTHON = os.path.join(VENV, "bin", "python")
STAMP = os.path.join(VENV, ".greenpool-installed")
HUBS = ("threads", "eventlet", "gevent")
HUB_RUN_LIMIT = 600  # seconds: a hung hub run is killed, not waited on for ever


def _requirements_hash() -> str:
    digest = hashlib.sha256()
    for name in ("setup.cfg", "pyproject.toml"):
        with open(os.path.join(ROOT, name), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


def ensure_venv() -> None:
    if not os.path.exists(PYTHON):
        print("== creating .venv", flush=True)
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    wanted = _requirements_hash()
    if os.path.exists(STAMP) and open(STAMP).read() == wanted:
        return
    print("== installing greenpool[test] into .venv", flush=True)
    pip = [PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(pip + ["-e", f"{ROOT}[test]"], check=True, cwd=ROOT)
    with open(STAMP, "w") as f:
        f.write(wanted)


def lint() -> bool:
    ok = True
    for title, cmd in (
        ("ruff", [PYTHON, "-m", "ruff", "check", "greenpool", "tests", "examples", "benchmarks"]),
        ("mypy", [PYTHON, "-m", "mypy", "greenpool"]),
    ):
        print(f"== {title}", flush=True)
        ok = subprocess.run(cmd, cwd=ROOT).returncode == 0 and ok
    return ok


SUMMARY = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)")
# pytest's closing line, with or without its "=" frame (-q drops it).
FINAL_LINE = re.compile(r"\d+ (passed|failed|skipped|errors?|deselected|xfailed)\b.* in [\d.]+s")


def run_hub(hub: str, pytest_args: list) -> dict:
    print(f"== pytest, hub {hub}", flush=True)
    cmd = [PYTHON, os.path.join("tests", "hub_pytest.py"), hub, *pytest_args]
    counts = {"passed": 0, "failed": 0, "skipped": 0, "error": 0, "rc": 0}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + HUB_RUN_LIMIT
    last = ""
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        if FINAL_LINE.search(line):
            last = line
        if time.monotonic() > deadline:
            proc.kill()
            print(f"!! hub {hub}: killed after {HUB_RUN_LIMIT} s", flush=True)
            counts["error"] += 1
            break
    counts["rc"] = proc.wait()
    for number, word in SUMMARY.findall(last):
        key = "error" if word.startswith("error") else word
        if key in counts:
            counts[key] += int(number)
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hub", action="append", choices=HUBS, help="run only these hubs")
    parser.add_argument("--no-lint", action="store_true", help="skip ruff and mypy")
    parser.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = parser.parse_args()
    os.chdir(ROOT)
    ensure_venv()
    ok = True
    if not args.no_lint:
        ok = lint()
    totals = {"passed": 0, "failed": 0, "skipped": 0, "error": 0}
    for hub in args.hub or HUBS:
        counts = run_hub(hub, args.pytest_args)
        for key in totals:
            totals[key] += counts[key]
        if counts["rc"] != 0:
            print(f"!! hub {hub}: pytest exited {counts['rc']}", flush=True)
            ok = False
        if counts["passed"] == 0:
            print(f"!! hub {hub}: no test passed", flush=True)
            ok = False
    print(f"lint: {'ok' if args.no_lint or ok else 'see above'}")
    print(
        f"total: {totals['passed']} passed, {totals['failed'] + totals['error']} failed, "
        f"{totals['skipped']} skipped"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
