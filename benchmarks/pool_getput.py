"""Uncontended get()+put() of the generic Pool on each hub, against eventlet.pools.Pool.

    .venv/bin/python benchmarks/pool_getput.py [--rounds N]

The baseline, eventlet.pools.Pool, is measured in the same run; figures are
reported as ratios to it (> 1.0 means greenpool is faster), since absolute
timings on shared machines are noisy.  Each figure is the best of several
rounds.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

sys.path.insert(0, __file__.rsplit("/benchmarks/", 1)[0])

import eventlet.pools  # noqa: E402

import greenpool  # noqa: E402

OPS = 200_000


def best_ns_per_op(pool, rounds: int) -> float:
    get, put = pool.get, pool.put
    put(get())
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(OPS):
            put(get())
        best = min(best, time.perf_counter() - start)
    return best / OPS * 1e9


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    results = {}
    contenders = {
        "eventlet.pools.Pool (baseline)": lambda: eventlet.pools.Pool(max_size=4, create=object)
    }
    for hub in ("eventlet", "gevent", "threads"):
        contenders[f"greenpool.Pool hub={hub}"] = lambda hub=hub: greenpool.Pool(
            max_size=4, create=object, hub=hub
        )
    # Interleave the contenders so that machine noise hits them alike.
    for _ in range(3):
        for label, make in contenders.items():
            ns = best_ns_per_op(make(), args.rounds)
            results[label] = min(results.get(label, ns), ns)
    baseline = results["eventlet.pools.Pool (baseline)"]
    print(f"uncontended get()+put(), best of {args.rounds * 3} rounds of {OPS} ops")
    for label, ns in results.items():
        print(f"  {label:34s} {ns:7.1f} ns/op   speed vs baseline x{baseline / ns:.2f}")


if __name__ == "__main__":
    main()
