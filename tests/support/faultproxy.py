"""A TCP fault-injection proxy that runs in its own (never monkey patched) process.

Command line::

    python -m tests.support.faultproxy --target HOST:PORT [--listen-port 0]

prints ``LISTENING <port>`` once ready, then reads one command per line on
stdin and answers ``OK`` / ``OK <value>`` / ``ERR <message>`` on stdout:

``mode pass``
    forward bytes both ways (listening again if the mode was ``refuse``).
``mode blackhole``
    accept and read, but forward nothing in either direction; existing
    connections go silent too (bytes read meanwhile are discarded, and a
    connection accepted in this mode never gets an upstream connection).
``mode reset``
    RST every existing and every new connection (SO_LINGER 0, then close).
``mode refuse``
    close the listening socket so connects are refused; existing
    connections keep forwarding.
``mode delay MS``
    forward, adding MS milliseconds of latency to every chunk.
``drop``
    RST all current connections once; the mode is unchanged.
``count``
    ``OK <n>`` with the number of open client connections.
``quit``
    close everything and exit (also done when stdin reaches EOF).

:class:`FaultProxy` drives that process from a test, and
:func:`deaf_listener` gives a port that completes TCP handshakes but never
says a word.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import errno
import os
import select
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import Any, Iterator, Optional

__all__ = ["FaultProxy", "FaultProxyError", "deaf_listener", "main"]

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODES = ("pass", "blackhole", "reset", "refuse", "delay")
_CHUNK = 65536
_HIGH_WATER = 1 << 20  # stop reading a side while this much is queued for its peer


def _abort(sock: socket.socket) -> None:
    """Close SOCK with an RST instead of a FIN."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


# --------------------------------------------------------------------------
# The proxy process
# --------------------------------------------------------------------------


class _End:
    """One socket of a proxied connection plus the bytes waiting to be sent to it."""

    def __init__(self, sock: Optional[socket.socket]) -> None:
        self.sock = sock
        self.delayed: collections.deque[tuple[float, bytes]] = collections.deque()
        self.out = bytearray()
        self.eof = False  # the peer behind this socket sent FIN
        self.shut_wr = False  # we sent FIN to this socket
        self.events = 0

    def queued(self) -> int:
        return len(self.out) + sum(len(b) for _, b in self.delayed)


class _Conn:
    """A client connection and (unless black-holed at accept) its upstream connection."""

    def __init__(self, client: socket.socket, upstream: Optional[socket.socket]) -> None:
        self.client = _End(client)
        self.upstream = _End(upstream)
        self.connecting = upstream is not None

    def peer(self, end: _End) -> _End:
        return self.upstream if end is self.client else self.client


class _Proxy:
    """Single-threaded selector loop owning every socket of the proxy."""

    def __init__(self, target: tuple[str, int], listen_host: str, listen_port: int) -> None:
        self.target = target
        self.listen_host = listen_host
        self.port = listen_port
        self.mode = "pass"
        self.delay = 0.0
        self.sel = selectors.DefaultSelector()
        self.listener: Optional[socket.socket] = None
        self.conns: set[_Conn] = set()
        self.stdin_buf = b""
        self.running = True

    # -- control ---------------------------------------------------------------

    def listen(self) -> None:
        if self.listener is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.listen_host, self.port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self.listener = sock
        self.sel.register(sock, selectors.EVENT_READ, "listen")

    def unlisten(self) -> None:
        if self.listener is not None:
            self.sel.unregister(self.listener)
            self.listener.close()
            self.listener = None

    def command(self, line: str) -> str:
        words = line.split()
        if not words:
            return "ERR empty command"
        cmd, args = words[0].lower(), words[1:]
        try:
            if cmd == "mode" and args:
                return self.set_mode(args[0].lower(), args[1:])
            if cmd == "drop" and not args:
                self.abort_all()
                return "OK"
            if cmd == "count" and not args:
                return f"OK {len(self.conns)}"
            if cmd == "ping":
                return "OK"
            if cmd == "quit":
                self.running = False
                return "OK"
        except (OSError, ValueError) as exc:
            return f"ERR {type(exc).__name__}: {exc}"
        return f"ERR unknown command {line.strip()!r}"

    def set_mode(self, mode: str, args: list[str]) -> str:
        if mode not in MODES:
            return f"ERR unknown mode {mode!r}"
        if (mode == "delay") != bool(args) or len(args) > 1:
            return "ERR usage: mode pass|blackhole|reset|refuse|delay MS"
        delay = float(args[0]) / 1000.0 if args else 0.0
        if delay < 0:
            return "ERR delay must be >= 0"
        if mode == "refuse":
            self.unlisten()
        else:
            self.listen()
        self.mode, self.delay = mode, delay
        if mode == "reset":
            self.abort_all()
        elif mode == "blackhole":
            for conn in self.conns:
                for end in (conn.client, conn.upstream):
                    end.delayed.clear()
                    end.out.clear()
                self.update(conn)
        return "OK"

    # -- connections -----------------------------------------------------------

    def abort_all(self) -> None:
        for conn in list(self.conns):
            self.close_conn(conn, abort=True)

    def close_conn(self, conn: _Conn, abort: bool) -> None:
        self.conns.discard(conn)
        for end in (conn.client, conn.upstream):
            self.close_end(end, abort)

    def close_end(self, end: _End, abort: bool) -> None:
        sock = end.sock
        if sock is None:
            return
        if end.events:
            self.sel.unregister(sock)
            end.events = 0
        end.sock = None
        end.delayed.clear()
        end.out.clear()
        if abort:
            _abort(sock)
        else:
            sock.close()

    def accept(self) -> None:
        assert self.listener is not None
        while True:
            try:
                client, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if self.mode == "reset":
                _abort(client)
                continue
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream = None
            if self.mode != "blackhole":
                upstream = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                upstream.setblocking(False)
                upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                err = upstream.connect_ex(self.target)
                if err not in (0, errno.EINPROGRESS):
                    upstream.close()
                    _abort(client)
                    continue
            conn = _Conn(client, upstream)
            self.conns.add(conn)
            self.update(conn)

    def update(self, conn: _Conn) -> None:
        """(Re)register both sockets of CONN for the events they currently need."""
        for end in (conn.client, conn.upstream):
            if end.sock is None:
                continue
            peer = conn.peer(end)
            if end is conn.upstream and conn.connecting:
                want = selectors.EVENT_WRITE
            else:
                want = 0
                if not end.eof and peer.queued() < _HIGH_WATER:
                    want |= selectors.EVENT_READ
                if end.out:
                    want |= selectors.EVENT_WRITE
            if want == end.events:
                continue
            if end.events and want:
                self.sel.modify(end.sock, want, (conn, end))
            elif want:
                self.sel.register(end.sock, want, (conn, end))
            else:
                self.sel.unregister(end.sock)
            end.events = want

    def on_event(self, conn: _Conn, end: _End, mask: int) -> None:
        if conn not in self.conns or end.sock is None:
            return
        if end is conn.upstream and conn.connecting:
            err = end.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self.close_conn(conn, abort=True)
                return
            conn.connecting = False
        else:
            if mask & selectors.EVENT_READ and not self.read(conn, end):
                return
            if mask & selectors.EVENT_WRITE and end.sock is not None and not self.write(conn, end):
                return
        self.pump(conn)

    def read(self, conn: _Conn, end: _End) -> bool:
        """Read from END into its peer's queue; False if CONN was closed."""
        assert end.sock is not None
        try:
            data = end.sock.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            self.close_conn(conn, abort=True)
            return False
        peer = conn.peer(end)
        silent = self.mode == "blackhole" or peer.sock is None
        if not data:
            if silent:
                if end is conn.client:
                    self.close_conn(conn, abort=False)
                    return False
                self.close_end(end, abort=False)  # the server hung up; the client hears nothing
                return True
            end.eof = True
            return True
        if not silent:
            peer.delayed.append((time.monotonic() + self.delay, data))
        return True

    def write(self, conn: _Conn, end: _End) -> bool:
        """Send END's ready bytes; False if CONN was closed."""
        assert end.sock is not None
        try:
            sent = end.sock.send(end.out)
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            self.close_conn(conn, abort=True)
            return False
        del end.out[:sent]
        return True

    def pump(self, conn: _Conn) -> None:
        """Move due bytes to the send buffers, flush them, propagate FINs, re-register."""
        now = time.monotonic()
        for end in (conn.client, conn.upstream):
            if end.sock is None or (end is conn.upstream and conn.connecting):
                continue
            while end.delayed and end.delayed[0][0] <= now:
                end.out += end.delayed.popleft()[1]
            if end.out and not self.write(conn, end):
                return
            peer = conn.peer(end)
            if peer.eof and not end.shut_wr and not end.out and not end.delayed:
                end.shut_wr = True
                with contextlib.suppress(OSError):
                    end.sock.shutdown(socket.SHUT_WR)
        if conn.client.eof and conn.upstream.eof and conn.client.shut_wr and conn.upstream.shut_wr:
            self.close_conn(conn, abort=False)
            return
        if conn.client.sock is None:
            self.close_conn(conn, abort=False)
            return
        self.update(conn)

    def next_due(self) -> Optional[float]:
        due = [
            end.delayed[0][0]
            for conn in self.conns
            for end in (conn.client, conn.upstream)
            if end.delayed and end.sock is not None
        ]
        return min(due) if due else None

    # -- main loop -------------------------------------------------------------

    def on_stdin(self) -> None:
        try:
            data = os.read(0, 4096)
        except (BlockingIOError, InterruptedError):
            return
        if not data:
            self.running = False
            return
        self.stdin_buf += data
        while b"\n" in self.stdin_buf:
            raw, self.stdin_buf = self.stdin_buf.split(b"\n", 1)
            reply = self.command(raw.decode("utf-8", "replace"))
            print(reply, flush=True)  # noqa: T201 - the control protocol
            if not self.running:
                return

    def run(self) -> None:
        self.listen()
        self.sel.register(0, selectors.EVENT_READ, "stdin")
        print(f"LISTENING {self.port}", flush=True)  # noqa: T201 - the control protocol
        while self.running:
            due = self.next_due()
            timeout = None if due is None else max(0.0, due - time.monotonic())
            for key, mask in self.sel.select(timeout):
                if key.data == "stdin":
                    self.on_stdin()
                elif key.data == "listen":
                    if self.listener is not None:
                        self.accept()
                else:
                    conn, end = key.data
                    self.on_event(conn, end, mask)
                if not self.running:
                    break
            if due is not None:
                for conn in list(self.conns):
                    if conn in self.conns:
                        self.pump(conn)
        self.abort_all()
        self.unlisten()


def _parse_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of the proxy process."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", required=True, type=_parse_hostport, help="HOST:PORT")
    parser.add_argument("--listen-host", default="127.0.0.1")
    parser.add_argument("--listen-port", type=int, default=0)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    _Proxy(args.target, args.listen_host, args.listen_port).run()
    return 0


# --------------------------------------------------------------------------
# The test-side client
# --------------------------------------------------------------------------


class FaultProxyError(RuntimeError):
    """The proxy process failed, refused a command or did not answer in time."""


class FaultProxy:
    """Launch and drive a fault proxy process in front of ``target_host:target_port``.

    Works from plain threads and from eventlet/gevent patched processes; every
    call gives up after ``timeout`` seconds instead of hanging the test.
    """

    host = "127.0.0.1"

    def __init__(
        self, target_host: str, target_port: int, listen_port: int = 0, timeout: float = 5.0
    ) -> None:
        self.target = (target_host, int(target_port))
        self.timeout = timeout
        self._listen_port = listen_port
        self._port: Optional[int] = None
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._buf = b""
        self.mode = "pass"

    @property
    def port(self) -> int:
        """The port clients should connect to."""
        if self._port is None:
            raise FaultProxyError("fault proxy not started")
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` clients should connect to."""
        return self.host, self.port

    def start(self) -> FaultProxy:
        """Start the proxy process and wait for its ``LISTENING`` line."""
        if self._proc is not None:
            return self
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.support.faultproxy",
                "--target",
                f"{self.target[0]}:{self.target[1]}",
                "--listen-port",
                str(self._listen_port),
            ],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        line = self._readline(time.monotonic() + max(self.timeout, 10.0))
        if not line.startswith("LISTENING "):
            self._kill()
            raise FaultProxyError(f"fault proxy did not start: {line!r}")
        self._port = int(line.split()[1])
        return self

    def set_mode(self, mode: str, arg: Any = None) -> None:
        """Switch to MODE (``pass``, ``blackhole``, ``reset``, ``refuse``, ``delay`` MS)."""
        self._command(f"mode {mode}" if arg is None else f"mode {mode} {arg}")
        self.mode = mode

    def drop(self) -> None:
        """Reset every current connection once, keeping the mode."""
        self._command("drop")

    def connection_count(self) -> int:
        """Number of client connections currently open through the proxy."""
        return int(self._command("count"))

    def wait_connection_count(self, n: int, timeout: Optional[float] = None) -> None:
        """Wait until exactly N client connections are open."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            count = self.connection_count()
            if count == n:
                return
            if time.monotonic() > deadline:
                raise FaultProxyError(f"expected {n} proxied connections, have {count}")
            time.sleep(0.02)

    def close(self) -> None:
        """Stop the proxy process (RSTs its connections)."""
        if self._proc is None:
            return
        try:
            if self._proc.poll() is None:
                self._command("quit")
                self._proc.wait(timeout=self.timeout)
        except (FaultProxyError, OSError, subprocess.TimeoutExpired):
            pass
        finally:
            self._kill()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<FaultProxy :{self._port} -> {self.target[0]}:{self.target[1]} {self.mode}>"

    # -- pipes -----------------------------------------------------------------

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(timeout=self.timeout)
        for pipe in (proc.stdin, proc.stdout):
            with contextlib.suppress(Exception):
                if pipe is not None:
                    pipe.close()

    def _command(self, line: str) -> str:
        """Send one command; return the text after ``OK``, raise on ``ERR`` or silence."""
        try:
            reply = self._exchange(line)
        except FaultProxyError:
            self._kill()  # a late answer would desynchronise the protocol
            raise
        if reply == "OK":
            return ""
        if reply.startswith("OK "):
            return reply[3:]
        raise FaultProxyError(f"fault proxy: {line!r} -> {reply!r}")

    def _exchange(self, line: str) -> str:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise FaultProxyError("fault proxy not started")
        if proc.poll() is not None:
            raise FaultProxyError(f"fault proxy exited with code {proc.returncode}")
        deadline = time.monotonic() + self.timeout
        data = (line + "\n").encode()
        fd = proc.stdin.fileno()
        while data:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FaultProxyError(f"timed out sending {line!r} to the fault proxy")
            _, writable, _ = select.select([], [fd], [], remaining)
            if not writable:
                continue
            try:
                data = data[os.write(fd, data) :]
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                raise FaultProxyError(f"fault proxy pipe broken: {exc}")
        return self._readline(deadline)

    def _readline(self, deadline: float) -> str:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        fd = proc.stdout.fileno()
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FaultProxyError(f"fault proxy did not answer within {self.timeout} s")
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                continue
            try:
                chunk = os.read(fd, 4096)
            except (BlockingIOError, InterruptedError):
                continue
            if not chunk:
                raise FaultProxyError(f"fault proxy exited (code {proc.poll()})")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line.decode("utf-8", "replace").strip()


@contextlib.contextmanager
def deaf_listener(backlog: int = 16) -> Iterator[tuple[str, int]]:
    """Yield ``(host, port)`` of a socket that listens but never accepts or answers.

    A client's TCP connect succeeds (the kernel completes the handshake), but
    the database handshake never receives a byte.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind(("127.0.0.1", 0))
        sock.listen(backlog)
        yield "127.0.0.1", sock.getsockname()[1]
    finally:
        sock.close()


if __name__ == "__main__":
    sys.exit(main())
