"""greenpool demo on SQLite from the standard library: nothing to install.

    python3 examples/demo.py

Eight worker threads share a pool of three connections to one SQLite file.
The demo shows checkout and return, the rollback of work left uncommitted,
a checkout timeout, idle expiry by the sweeper, and the pool's stats.  With
eventlet or gevent installed, ``--hub eventlet`` or ``--hub gevent`` runs
the same demo on green threads (monkey patched first).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from a fresh clone, uninstalled


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hub", choices=("threads", "eventlet", "gevent"), default="threads")
    parser.add_argument("--workers", type=int, default=8)
    args = parser.parse_args()
    if args.hub == "eventlet":
        import eventlet

        eventlet.monkey_patch()
    elif args.hub == "gevent":
        from gevent import monkey

        monkey.patch_all()

    import sqlite3

    import greenpool
    from greenpool.hubs import resolve_hub

    logging.basicConfig(level=logging.INFO, format="  log %(name)s: %(message)s")
    hub = resolve_hub(args.hub)
    path = os.path.join(tempfile.mkdtemp(prefix="greenpool-demo-"), "demo.sqlite3")
    pool = greenpool.RawConnectionPool(
        sqlite3, 0, 3, 0.5, 30, 5, greenpool.cleanup_rollback, path,
        name="demo", hub=hub, check_same_thread=False, timeout=10,
    )
    print(f"pool: {pool!r}")

    with pool.item() as conn:
        conn.execute("CREATE TABLE visits (worker INTEGER, n INTEGER)")
        conn.commit()

    def worker(number: int) -> None:
        for n in range(20):
            with pool.item() as conn:
                conn.execute("INSERT INTO visits VALUES (?, ?)", (number, n))
                conn.commit()
            hub.sleep(0.001)

    done = []
    for number in range(args.workers):
        task_done = hub.event()
        done.append(task_done)
        hub.spawn(lambda number=number, ev=task_done: (worker(number), ev.set()))
    for task_done in done:
        task_done.wait(60)

    with pool.item() as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM visits").fetchone()
    print(f"{args.workers} workers x 20 inserts through 3 connections: {count} rows")

    conn = pool.get()
    conn.execute("INSERT INTO visits VALUES (-1, -1)")  # left uncommitted...
    conn.close()  # ...and rolled back on return
    with pool.item() as conn:
        (lost,) = conn.execute("SELECT COUNT(*) FROM visits WHERE worker = -1").fetchone()
    print(f"uncommitted row after return: {lost} (rolled back)")

    held = [pool.get() for _ in range(3)]
    try:
        pool.get(timeout=0.05)
    except greenpool.PoolTimeout as exc:
        print(f"pool exhausted: {exc}")
    for conn in held:
        pool.put(conn)

    print(f"before idle expiry: {pool!r}")
    hub.sleep(1.0)
    print(f"after max_idle=0.5 s: {pool!r}")
    stats = pool.stats()
    print(
        f"stats: {stats.requests} checkouts, {stats.opened} connections opened, "
        f"{stats.closed} closed, {stats.waits} waits, {stats.timeouts} timeout"
    )
    pool.close()
    ok = count == args.workers * 20 and lost == 0 and stats.timeouts == 1
    print("demo OK" if ok else "demo FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
