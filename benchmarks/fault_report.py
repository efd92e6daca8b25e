"""Reliability figures of the connection pool under faults, per hub.

    .venv/bin/python benchmarks/fault_report.py [--hub threads|eventlet|gevent] [--seeds N]

Without ``--hub`` every hub is measured, each in its own (monkey patched)
process.  Three scenarios, the same code as the tests (tests/test_soak.py,
tests/test_faults_real.py):

* the seeded soak on the fake driver (10,000 checkouts per seed, 64 workers on
  8 connections, connect errors, slow connects, disconnects, deadlines, kills):
  leaked slots and double hand-outs;
* a private PostgreSQL restarted (fast, immediate) under 32 looping green
  threads (12 OS threads on the threads hub), requests with a 2 s timeout:
  requests that failed after the server was ready again, and the recovery time
  (server ready -> first success); with the tests' back-off (0.05, 0.5) and
  with the default (0.05, 2.0);
* waiter timeouts on a pool with nothing free (100 and 1,000 green waiters; 50
  and 200 OS threads): how late the PoolTimeout comes, p50/p99/max.

Takes about a minute for all hubs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import warnings

HUBS = ("threads", "eventlet", "gevent")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _patch(hub: str) -> None:
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    if hub == "eventlet":
        import eventlet

        eventlet.monkey_patch()
    elif hub == "gevent":
        from gevent import monkey

        monkey.patch_all()


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def soak_report(hub, seeds: int) -> None:
    from tests.test_soak import CHECKOUTS, WORKERS, run_soak

    leaked = doubles = unexpected = stray = 0
    elapsed = 0.0
    outcomes: dict = {}
    for seed in range(seeds):
        result = run_soak(hub, seed)
        leaked += result.leaked_slots + result.in_use_at_end
        doubles += len(result.double_handouts)
        unexpected += len(result.unexpected) + len(result.invariant_breaks)
        stray += result.stray_connections
        elapsed += result.elapsed
        for key, value in result.outcomes.items():
            outcomes[key] = outcomes.get(key, 0) + value
    print(
        f"soak: {seeds} seeds x {CHECKOUTS} checkouts, {WORKERS} workers on 8 connections, "
        f"{elapsed:.1f} s"
    )
    print(f"  leaked slots: {leaked}   double hand-outs: {doubles}   "
          f"stray connections: {stray}   unexpected errors: {unexpected}")
    print("  outcomes: " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))


def restart_report(hub) -> None:
    from tests.support.servers import PrivatePostgres
    from tests.test_faults_real import (
        CONNECT_TIMEOUT,
        RECONNECT_BACKOFF,
        REQUEST_TIMEOUT,
        Backend,
        restart_under_load,
    )

    ok, reason = PrivatePostgres.available()
    if not ok:
        print(f"PostgreSQL restart: skipped ({reason})")
        return
    workers = 32 if hub.green else 12
    scenarios = [
        ("fast", RECONNECT_BACKOFF, 1.0),
        ("immediate", RECONNECT_BACKOFF, 1.0),
        ("fast", (0.05, 2.0), 3.0),  # the default reconnect_backoff
    ]
    with PrivatePostgres() as server:
        backend = Backend("postgres", server, hub)
        for mode, backoff, after in scenarios:
            try:
                result = restart_under_load(hub, backend, mode, workers, after, backoff)
            except AssertionError as exc:
                print(f"PostgreSQL restart ({mode}): pool not settled afterwards: {exc}")
                continue
            failed = [r for r in result.requests if r[2] is not None]
            after = result.failures_after_ready()
            first_failure = min((r[0] for r in failed), default=result.ready_at)
            recovery = result.first_success_after_ready()
            print(
                f"PostgreSQL restart ({mode}, reconnect_backoff={backoff}), {workers} workers: "
                f"{len(result.requests)} requests, {len(failed)} failed during the outage, "
                f"{len(after)} failed after recovery"
            )
            print(
                f"  outage (first failure -> server ready): "
                f"{_ms(result.ready_at - first_failure)}   "
                f"recovery (server ready -> first success): "
                f"{'never' if recovery is None else _ms(recovery)}   "
                f"longest request: {_ms(result.longest())} "
                f"(bound {_ms(REQUEST_TIMEOUT + CONNECT_TIMEOUT)})"
            )


def overshoot_report(hub) -> None:
    from tests.test_faults_real import percentile, waiter_overshoot

    for waiters in (100, 1000) if hub.green else (50, 200):
        values = waiter_overshoot(hub, waiters)
        early = sum(1 for v in values if v < 0)
        print(
            f"waiter timeouts, {waiters} waiters: overshoot p50 {_ms(percentile(values, 0.5))}, "
            f"p99 {_ms(percentile(values, 0.99))}, max {_ms(max(values))}; early: {early}"
        )


def run_one(hub_name: str, seeds: int) -> None:
    _patch(hub_name)
    sys.path.insert(0, ROOT)
    import logging

    logging.disable(logging.WARNING)  # the faults are deliberate; keep the report readable

    import greenpool
    from greenpool.hubs import resolve_hub

    greenpool.set_default_hub(hub_name)
    hub = resolve_hub(hub_name)
    print(f"== hub {hub_name}")
    start = time.monotonic()
    soak_report(hub, seeds)
    restart_report(hub)
    overshoot_report(hub)
    print(f"({time.monotonic() - start:.1f} s)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hub", choices=HUBS, help="measure this hub only (default: all)")
    parser.add_argument("--seeds", type=int, default=5, help="soak seeds per hub (default 5)")
    args = parser.parse_args()
    if args.hub:
        run_one(args.hub, args.seeds)
        return 0
    status = 0
    for hub in HUBS:
        cmd = [sys.executable, os.path.abspath(__file__), "--hub", hub, "--seeds", str(args.seeds)]
        status |= subprocess.call(cmd, cwd=ROOT)
    return status


if __name__ == "__main__":
    sys.exit(main())
