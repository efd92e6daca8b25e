"""examples/sharded_app.py, started as a server, answers real HTTP requests from the shard's
database.  The server runs on this process's hub when it is green, on gevent otherwise."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any, Iterator

from tests.support.tasks import Spawned
from tests.test_connector_real import PG_SHARD2, ensure_pg_database

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, "examples", "sharded_app.py")
START_TIMEOUT = 20.0


def load_example() -> Any:
    """The example as a module (importing it patches nothing and starts nothing)."""
    spec = importlib.util.spec_from_file_location("sharded_app", APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fetch(url: str) -> tuple[int, Any]:
    """(status, decoded JSON body) of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@contextlib.contextmanager
def running_app(hub_name: str, pg: str, mysql: str, log_path: str) -> Iterator[str]:
    """Start the example on a free loopback port; yield its URL; SIGTERM it afterwards."""
    port = free_port()
    command = [
        sys.executable, "-W", "ignore", APP, "--port", str(port),
        "--hub", hub_name, "--pg", pg, "--mysql", mysql,
    ]
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the app exited with {proc.returncode}:\n{_read(log_path)}")
            try:
                if fetch(f"{url}/health") == (200, {"ok": True}):
                    break
            except OSError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise AssertionError(f"the app did not start in time:\n{_read(log_path)}")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def test_requests_are_routed_to_their_shard(hub, postgres, mariadb, tmp_path):
    ensure_pg_database(postgres, PG_SHARD2)
    example = load_example()
    server_hub = hub.name if hub.green else "gevent"
    pg = f"{postgres['host']}:{postgres['port']}"
    mysql = f"{mariadb['host']}:{mariadb['port']}"
    log_path = str(tmp_path / "app.log")
    keys = ["0", "1", "2", "3", "4", "5", "acme", "globex", "initech"]
    with running_app(server_hub, pg, mysql, log_path) as url:
        # Concurrent requests, so the shards' pools are used side by side.
        tasks = [(key, Spawned(hub, fetch, f"{url}/shard/{key}/whoami")) for key in keys * 2]
        for key, task in tasks:
            status, body = task.wait(30)
            assert status == 200, body
            server, database = example.SHARDS[example.shard_for(key)]
            assert (body["server"], body["database"]) == (server, database), key
            assert body["pool"]["size"] <= 4
        # Connects still under way when the last response was sent count in a pool's
        # size until they settle (max_total makes room for each before it connects).
        for _ in range(100):
            status, stats = fetch(f"{url}/stats")
            assert status == 200
            if stats["postgresql"]["size"] <= 6:
                break
            hub.sleep(0.05)
        assert set(stats["postgresql"]["pools"]) == {f"{pg}/test", f"{pg}/{PG_SHARD2}"}
        assert set(stats["mariadb"]["pools"]) == {f"{mysql}/test"}
        assert stats["postgresql"]["checkouts"] == 0 and stats["postgresql"]["size"] <= 6
        assert fetch(f"{url}/nowhere")[0] == 404
    assert "stopped; pools closed" in _read(log_path)


def test_shard_for_is_stable():
    example = load_example()
    assert [example.shard_for(str(n)) for n in range(6)] == [0, 1, 2, 0, 1, 2]
    assert example.shard_for("acme") == example.shard_for("acme")
    assert {example.shard_for(f"tenant{n}") for n in range(30)} == {0, 1, 2}
