"""Private, throw-away PostgreSQL and MariaDB servers for fault tests.

Each server lives in its own temporary directory, listens on a loopback port
chosen once per instance, and may be stopped, killed and restarted freely
without touching the machine's shared database services.

Server processes are started in a new session (so a Ctrl-C delivered to the
test's process group does not take them down mid-test) and are shut down by
``close()``, by the context manager, or at the latest by an ``atexit`` hook.
Servers left behind by a test process that died hard (SIGKILL, ``os._exit``)
are swept away by the next process that starts a private server.

The module only uses ``subprocess``, ``socket``, ``select`` and ``time`` and
therefore also works inside a process patched by eventlet or gevent.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any, Callable, ClassVar, Optional, TypeVar

__all__ = ["PrivateMariaDB", "PrivatePostgres", "ServerError", "free_port"]

HOST = "127.0.0.1"
_STATE_FILE = "greenpool-server.json"
_LIVE: set[_PrivateServer] = set()
_SWEPT = False
_S = TypeVar("_S", bound="_PrivateServer")
_PG_TOOLS = ("initdb", "postgres", "pg_isready", "psql")


class ServerError(RuntimeError):
    """A private server failed to start, stop or answer."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is currently free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _port_accepts(port: int, timeout: float = 0.5) -> bool:
    """Return True if a TCP connect to ``HOST:port`` succeeds."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _proc_stat(pid: int) -> Optional[list[str]]:
    """Return the fields of /proc/PID/stat after the command name, or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(")") + 2 :].split()


def _pid_alive(pid: int) -> bool:
    """Return True if PID exists and is not a zombie."""
    fields = _proc_stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _proc_start_time(pid: int) -> Optional[str]:
    """Return the kernel start time of PID (guards against PID reuse)."""
    fields = _proc_stat(pid)
    return fields[19] if fields else None


def _children_of(pid: int) -> list[int]:
    """Return the PIDs whose parent is PID."""
    result = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _proc_stat(int(entry))
            if fields is not None and fields[1] == str(pid):
                result.append(int(entry))
    return result


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _tail(path: str, lines: int = 40) -> str:
    """Return the last LINES lines of a log file (or a note that it is missing)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError as exc:
        return f"<no log: {exc}>"


def _which(names: list[str], extra_dirs: tuple[str, ...] = ()) -> Optional[str]:
    """Return the first of NAMES found on PATH or in EXTRA_DIRS."""
    path = os.pathsep.join([os.environ.get("PATH", ""), *extra_dirs, "/usr/sbin", "/sbin"])
    for name in names:
        found = shutil.which(name, path=path)
        if found:
            return found
    return None


def _sweep_stale() -> None:
    """Kill servers and delete temp dirs left behind by dead test processes."""
    global _SWEPT
    if _SWEPT:
        return
    _SWEPT = True
    for state_path in glob.glob(os.path.join(tempfile.gettempdir(), "greenpool-*", _STATE_FILE)):
        try:
            with open(state_path, encoding="utf-8") as f:
                state = json.load(f)
            owner = int(state["owner_pid"])
            if _pid_alive(owner) and _proc_start_time(owner) == state.get("owner_start"):
                continue  # owner still running
            tmpdir = os.path.dirname(state_path)
            server = state.get("server_pid")
            if server and _proc_start_time(int(server)) == state.get("server_start"):
                victims = [int(server), *_children_of(int(server))]
                for pid in victims:
                    _signal(pid, signal.SIGKILL)
                deadline = time.monotonic() + 5
                while any(_pid_alive(p) for p in victims) and time.monotonic() < deadline:
                    time.sleep(0.05)
            shutil.rmtree(tmpdir, ignore_errors=True)
        except (OSError, ValueError, KeyError, TypeError):
            continue


@atexit.register
def _close_all() -> None:
    """Safety net: close every private server still open at interpreter exit."""
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.close()


class _PrivateServer:
    """Common machinery: temp dir, process lifecycle, readiness polling."""

    kind: ClassVar[str] = "server"
    host: str = HOST

    def __init__(self, port: Optional[int] = None) -> None:
        self.port: int = port if port is not None else free_port()
        self.tmpdir: Optional[str] = None
        self.last_ready_at: Optional[float] = None
        self.last_start_duration: Optional[float] = None
        self.last_stop_duration: Optional[float] = None
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._initialised = False
        self._closed = False

    # -- public API --------------------------------------------------------

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> Optional[int]:
        """PID of the main server process, if running."""
        return self._proc.pid if self.running and self._proc else None

    @property
    def log_path(self) -> str:
        """Path of the server log file."""
        if self.tmpdir is None:
            raise ServerError(f"{self.kind} has never been started")
        return os.path.join(self.tmpdir, "server.log")

    def start(self, timeout: float = 60) -> None:
        """Start the server (initialising it on first use) and wait until it is ready."""
        if self._closed:
            raise ServerError(f"{self.kind} is closed")
        if self.running:
            return
        ok, reason = self.available()
        if not ok:
            raise ServerError(f"{self.kind} unavailable: {reason}")
        t0 = time.monotonic()
        deadline = t0 + timeout
        _sweep_stale()
        _LIVE.add(self)
        if self.tmpdir is None:
            self.tmpdir = self._make_tmpdir()
        first = not self._initialised
        if first:
            self._init_datadir(deadline)
            self._initialised = True
        self._launch()
        self._wait_ready(deadline)
        if first:
            self._bootstrap()
        self.last_ready_at = time.monotonic()
        self.last_start_duration = self.last_ready_at - t0

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        """Stop the server; MODE is ``fast``, ``immediate`` or ``kill``.

        Returns once the process is gone and the port refuses connections.
        """
        if mode not in ("fast", "immediate", "kill"):
            raise ValueError(f"unknown stop mode {mode!r}")
        proc = self._proc
        if proc is None:
            return
        t0 = time.monotonic()
        if proc.poll() is None:
            self._stop_process(proc, mode, t0 + timeout)
        self._wait_exit(proc, t0 + timeout)
        self._proc = None
        self._write_state()
        self._wait_port_closed(t0 + timeout)
        self.last_stop_duration = time.monotonic() - t0

    def restart(self, mode: str = "fast", timeout: float = 60) -> None:
        """Stop with MODE, then start again on the same port."""
        self.stop(mode, timeout=timeout)
        self.start(timeout=timeout)

    def close(self) -> None:
        """Stop the server if running (fast, escalating to kill) and delete its files."""
        if self._closed:
            return
        try:
            if self._proc is not None:
                try:
                    self.stop("fast", timeout=20)
                except Exception:
                    self.stop("kill", timeout=10)
        finally:
            self._closed = True
            _LIVE.discard(self)
            if self.tmpdir is not None:
                shutil.rmtree(self.tmpdir, ignore_errors=True)
                self.tmpdir = None

    def __enter__(self: _S) -> _S:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} {state} dir={self.tmpdir}>"

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Return ``(True, "")`` if this server can run here, else ``(False, reason)``."""
        raise NotImplementedError

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for the matching DB-API driver's ``connect()``."""
        raise NotImplementedError

    def terminate_all_connections(self) -> int:
        """Kill every client connection; return how many were killed."""
        raise NotImplementedError

    # -- hooks -----------------------------------------------------------------

    def _init_datadir(self, deadline: float) -> None:
        raise NotImplementedError

    def _server_argv(self) -> list[str]:
        raise NotImplementedError

    def _probe(self) -> Optional[str]:
        """Protocol-level readiness check: None when ready, else the reason."""
        raise NotImplementedError

    def _bootstrap(self) -> None:
        """Create the test database etc. after the very first start."""

    def _stop_process(self, proc: subprocess.Popen[bytes], mode: str, deadline: float) -> None:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "LANG": "C",
            "LC_ALL": "C",
            "TZ": "UTC",
        }

    def _cmd_prefix(self) -> list[str]:
        return []

    # -- helpers -----------------------------------------------------------------

    def _make_tmpdir(self) -> str:
        return tempfile.mkdtemp(prefix=f"greenpool-{self.kind}-")

    def _run(self, argv: list[str], deadline: float, what: str, log: str) -> None:
        """Run a helper command to completion, logging its output to LOG."""
        with open(log, "ab") as out:
            try:
                rc = subprocess.call(
                    self._cmd_prefix() + argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self._env(),
                    cwd=self.tmpdir,
                    timeout=max(1.0, deadline - time.monotonic()),
                )
            except subprocess.TimeoutExpired:
                raise ServerError(f"{what} timed out; log {log}:\n{_tail(log)}")
        if rc != 0:
            raise ServerError(f"{what} failed with exit code {rc}; log {log}:\n{_tail(log)}")

    def _launch(self) -> None:
        with open(self.log_path, "ab") as log:
            log.write(f"\n---- greenpool: starting {self.kind} ----\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                self._cmd_prefix() + self._server_argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env(),
                cwd=self.tmpdir,
                start_new_session=True,
            )
        self._write_state()

    def _write_state(self) -> None:
        """Record owner and server PIDs so a later process can sweep leftovers."""
        if self.tmpdir is None:
            return
        server = self._proc.pid if self._proc is not None else None
        state = {
            "owner_pid": os.getpid(),
            "owner_start": _proc_start_time(os.getpid()),
            "server_pid": server,
            "server_start": _proc_start_time(server) if server else None,
        }
        with contextlib.suppress(OSError):
            with open(os.path.join(self.tmpdir, _STATE_FILE), "w", encoding="utf-8") as f:
                json.dump(state, f)

    def _fail_start(self, message: str) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(Exception):
                self._stop_process(proc, "kill", time.monotonic() + 10)
                self._wait_exit(proc, time.monotonic() + 10)
        self._proc = None
        raise ServerError(
            f"{self.kind} on port {self.port}: {message}\n"
            f"---- tail of {self.log_path} ----\n{_tail(self.log_path)}"
        )

    def _wait_ready(self, deadline: float) -> None:
        reason = "not started"
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = proc.returncode if proc is not None else None
                self._fail_start(f"server exited during start-up (exit code {code})")
            if _port_accepts(self.port):
                probe = self._probe()
                if probe is None:
                    return
                reason = probe
            else:
                reason = "port not accepting connections"
            if time.monotonic() > deadline:
                self._fail_start(f"not ready before timeout: {reason}")
            time.sleep(0.05)

    def _wait_exit(self, proc: subprocess.Popen[bytes], deadline: float) -> None:
        while proc.poll() is None:
            if time.monotonic() > deadline:
                _signal(proc.pid, signal.SIGKILL)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    raise ServerError(f"{self.kind} pid {proc.pid} does not exit")
                return
            time.sleep(0.02)

    def _wait_port_closed(self, deadline: float) -> None:
        _poll_while(
            lambda: _port_accepts(self.port, timeout=0.2),
            deadline,
            f"port {self.port} still accepts connections after stop",
        )


def _poll_while(condition: Callable[[], bool], deadline: float, failure: str) -> None:
    """Poll until ``condition()`` is false; ServerError(``failure``) past ``deadline``."""
    while condition():
        if time.monotonic() > deadline:
            raise ServerError(failure)
        time.sleep(0.02)


class PrivatePostgres(_PrivateServer):
    """A throw-away PostgreSQL cluster (user ``postgres``, database ``test``, trust auth)."""

    kind = "pg"
    user = "postgres"
    dbname = "test"

    @staticmethod
    def bindir() -> Optional[str]:
        """Directory holding ``initdb``/``postgres``, or None if not installed."""
        env = os.environ.get("GREENPOOL_PG_BINDIR")
        candidates = [env] if env else []
        found = shutil.which("initdb")
        if found:
            candidates.append(os.path.dirname(os.path.realpath(found)))

        def version(path: str) -> float:
            try:
                return float(path.split("/")[-2])
            except ValueError:
                return 0.0

        candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True)
        for cand in candidates:
            if all(os.access(os.path.join(cand, b), os.X_OK) for b in _PG_TOOLS):
                return cand
        return None

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Check for PostgreSQL binaries and (as root) the postgres OS user."""
        bindir = cls.bindir()
        if bindir is None:
            return False, f"PostgreSQL binaries not found (need {', '.join(_PG_TOOLS)})"
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                return False, "running as root but there is no 'postgres' OS user"
            if _which(["setpriv"]) is None:
                return False, "running as root but setpriv (util-linux) is missing"
        return True, ""

    def _tool(self, name: str) -> str:
        bindir = self.bindir()
        assert bindir is not None
        return os.path.join(bindir, name)

    def _cmd_prefix(self) -> list[str]:
        if os.geteuid() != 0:
            return []
        setpriv = _which(["setpriv"])
        assert setpriv is not None
        # setpriv execs the target, so the Popen pid is the postmaster itself.
        return [setpriv, "--reuid=postgres", "--regid=postgres", "--init-groups", "--"]

    def _make_tmpdir(self) -> str:
        base = tempfile.gettempdir()
        if os.geteuid() == 0 and not _world_traversable(base):
            base = "/tmp"
        path = tempfile.mkdtemp(prefix="greenpool-pg-", dir=base)
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)
        return path

    @property
    def datadir(self) -> str:
        """The cluster's data directory."""
        assert self.tmpdir is not None
        return os.path.join(self.tmpdir, "data")

    def _init_datadir(self, deadline: float) -> None:
        argv = [
            self._tool("initdb"),
            "-D",
            self.datadir,
            "-A",
            "trust",
            "-U",
            self.user,
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        ]
        self._run(argv, deadline, "initdb", os.path.join(self.tmpdir or "", "initdb.log"))

    def _server_argv(self) -> list[str]:
        assert self.tmpdir is not None
        settings = {
            "listen_addresses": HOST,
            "unix_socket_directories": self.tmpdir,
            "fsync": "off",  # commits still survive a killed server, just not an OS crash
            "full_page_writes": "off",
            "max_connections": "200",
            "shared_buffers": "32MB",
            "autovacuum": "off",
        }
        argv = [self._tool("postgres"), "-D", self.datadir, "-p", str(self.port), "-k", self.tmpdir]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    def _probe(self) -> Optional[str]:
        try:
            res = subprocess.run(
                [
                    self._tool("pg_isready"),
                    "-q",
                    "-h",
                    HOST,
                    "-p",
                    str(self.port),
                    "-U",
                    self.user,
                    "-d",
                    "postgres",
                    "-t",
                    "2",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=5,
            )
        except subprocess.TimeoutExpired:
            return "pg_isready timed out"
        return None if res.returncode == 0 else f"pg_isready exit code {res.returncode}"

    def psql(self, sql: str, dbname: str = "postgres", timeout: float = 15) -> str:
        """Run SQL through a fresh ``psql`` admin connection and return its output."""
        env = dict(self._env(), PGCONNECT_TIMEOUT="5")
        argv = [
            self._tool("psql"),
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            HOST,
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-d",
            dbname,
            "-c",
            sql,
        ]
        try:
            res = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, env=env, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise ServerError(f"psql timed out running {sql!r}")
        if res.returncode != 0:
            err = res.stderr.decode(errors="replace").strip()
            raise ServerError(f"psql failed ({res.returncode}) running {sql!r}: {err}")
        return res.stdout.decode(errors="replace").strip()

    def _bootstrap(self) -> None:
        self.psql(f"CREATE DATABASE {self.dbname}")

    def connect_kwargs(self) -> dict[str, Any]:
        """psycopg2 keyword arguments: host, port, user, dbname."""
        return {"host": self.host, "port": self.port, "user": self.user, "dbname": self.dbname}

    def dsn(self) -> str:
        """libpq connection string for this server."""
        return f"host={self.host} port={self.port} user={self.user} dbname={self.dbname}"

    def terminate_all_connections(self) -> int:
        """Terminate every client backend except the admin connection; return the count."""
        out = self.psql(
            "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
            " WHERE pid <> pg_backend_pid() AND backend_type = 'client backend'"
        )
        return int(out or 0)

    def _stop_process(self, proc: subprocess.Popen[bytes], mode: str, deadline: float) -> None:
        if mode == "fast":
            _signal(proc.pid, signal.SIGINT)  # what ``pg_ctl stop -m fast`` sends
        elif mode == "immediate":
            _signal(proc.pid, signal.SIGQUIT)  # what ``pg_ctl stop -m immediate`` sends
        else:
            # Freeze the postmaster so it cannot fork while we collect its children,
            # then SIGKILL it first (so it cannot start crash recovery) and them.
            _signal(proc.pid, signal.SIGSTOP)
            children = _children_of(proc.pid)
            _signal(proc.pid, signal.SIGKILL)
            for pid in children:
                _signal(pid, signal.SIGKILL)
            self._wait_exit(proc, deadline)
            _poll_while(
                lambda: any(_pid_alive(pid) for pid in children),
                deadline,
                f"postgres children {children} survive SIGKILL",
            )


class PrivateMariaDB(_PrivateServer):
    """A throw-away MariaDB server (user ``root`` with empty password, database ``test``)."""

    kind = "mariadb"
    user = "root"
    password = ""
    database = "test"

    @staticmethod
    def _binaries() -> tuple[Optional[str], Optional[str]]:
        server = _which(["mariadbd", "mysqld"], ("/usr/libexec",))
        install = _which(["mariadb-install-db", "mysql_install_db"])
        return server, install

    @classmethod
    def available(cls) -> tuple[bool, str]:
        """Check for mariadbd, mariadb-install-db and PyMySQL."""
        server, install = cls._binaries()
        if server is None:
            return False, "MariaDB server binary (mariadbd/mysqld) not found"
        if install is None:
            return False, "mariadb-install-db not found"
        try:
            import pymysql  # noqa: F401
        except ImportError:
            return False, "PyMySQL is not installed"
        return True, ""

    @property
    def datadir(self) -> str:
        """The server's data directory."""
        assert self.tmpdir is not None
        return os.path.join(self.tmpdir, "data")

    @property
    def socket_path(self) -> str:
        """The server's unix socket."""
        assert self.tmpdir is not None
        return os.path.join(self.tmpdir, "mysql.sock")

    def _common_opts(self) -> list[str]:
        opts = [
            "--innodb-buffer-pool-size=32M",
            "--innodb-log-file-size=16M",
            "--loose-innodb-temp-data-file-path=ibtmp1:4M:autoextend",
        ]
        if os.geteuid() == 0:
            opts.append("--user=root")
        return opts

    def _init_datadir(self, deadline: float) -> None:
        _, install = self._binaries()
        assert install is not None and self.tmpdir is not None
        argv = [
            install,
            "--no-defaults",
            f"--datadir={self.datadir}",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
            *self._common_opts(),
        ]
        self._run(argv, deadline, "mariadb-install-db", os.path.join(self.tmpdir, "install.log"))

    def _server_argv(self) -> list[str]:
        server, _ = self._binaries()
        assert server is not None and self.tmpdir is not None
        return [
            server,
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--port={self.port}",
            f"--bind-address={HOST}",
            f"--socket={self.socket_path}",
            f"--pid-file={os.path.join(self.tmpdir, 'mariadbd.pid')}",
            f"--log-error={self.log_path}",
            *self._common_opts(),
            "--skip-log-bin",
            "--skip-name-resolve",
            "--host-cache-size=0",  # never block 127.0.0.1 after aborted handshakes
            "--max-connect-errors=1000000",
            "--max-connections=300",
            "--innodb-flush-log-at-trx-commit=2",  # commits survive a killed server
            "--loose-innodb-doublewrite=0",
            "--loose-performance-schema=OFF",
            "--loose-feedback=OFF",
        ]

    def _pymysql_connect(self, **overrides: Any) -> Any:
        import pymysql

        kwargs: dict[str, Any] = dict(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            connect_timeout=5,
            read_timeout=15,
            write_timeout=15,
            autocommit=True,
        )
        kwargs.update(overrides)
        return pymysql.connect(**kwargs)

    def _probe(self) -> Optional[str]:
        import pymysql

        try:
            conn = self._pymysql_connect(connect_timeout=2, read_timeout=3)
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] == 1045 and not self._bootstrapped_tcp():
                return None  # server answers; root@127.0.0.1 is created in _bootstrap
            return f"connect failed: {exc}"
        except pymysql.MySQLError as exc:
            return f"connect failed: {exc}"
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
        except pymysql.MySQLError as exc:
            return f"SELECT 1 failed: {exc}"
        finally:
            with contextlib.suppress(Exception):
                conn.close()
        return None

    def _bootstrapped_tcp(self) -> bool:
        assert self.tmpdir is not None
        return os.path.exists(os.path.join(self.tmpdir, "bootstrapped"))

    def _bootstrap(self) -> None:
        """Ensure root can log in over TCP from 127.0.0.1 and create database ``test``."""
        conn = self._pymysql_connect(unix_socket=self.socket_path)
        try:
            with conn.cursor() as cur:
                cur.execute("CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''")
                cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
                cur.execute(f"CREATE DATABASE IF NOT EXISTS `{self.database}`")
        finally:
            conn.close()
        assert self.tmpdir is not None
        with open(os.path.join(self.tmpdir, "bootstrapped"), "w", encoding="ascii"):
            pass
        problem = self._probe()
        if problem is not None:
            raise ServerError(f"root cannot log in over TCP after bootstrap: {problem}")

    def connect_kwargs(self) -> dict[str, Any]:
        """PyMySQL keyword arguments: host, port, user, password, database."""
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "database": self.database,
        }

    def terminate_all_connections(self) -> int:
        """KILL every client connection except the admin one; return the count."""
        import pymysql

        conn = self._pymysql_connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT id FROM information_schema.processlist"
                    " WHERE id <> CONNECTION_ID() AND command NOT IN ('Daemon', 'Binlog Dump')"
                    " AND user NOT IN ('system user', 'event_scheduler')"
                )
                ids = [int(row[0]) for row in cur.fetchall()]
                for thread_id in ids:
                    with contextlib.suppress(pymysql.MySQLError):
                        cur.execute(f"KILL CONNECTION {thread_id}")
                # KILL is asynchronous: wait until the victims are really gone.
                deadline = time.monotonic() + 5
                while ids and time.monotonic() < deadline:
                    marks = ",".join(str(i) for i in ids)
                    cur.execute(
                        f"SELECT count(*) FROM information_schema.processlist WHERE id IN ({marks})"
                    )
                    row = cur.fetchone()
                    if not row or not row[0]:
                        break
                    time.sleep(0.02)
        finally:
            conn.close()
        return len(ids)

    def _stop_process(self, proc: subprocess.Popen[bytes], mode: str, deadline: float) -> None:
        # mariadbd shuts down gracefully on SIGTERM; immediate and kill both mean SIGKILL.
        _signal(proc.pid, signal.SIGTERM if mode == "fast" else signal.SIGKILL)


def _world_traversable(path: str) -> bool:
    """True if every directory on PATH is searchable by other users."""
    path = os.path.abspath(path)
    while True:
        try:
            if not os.stat(path).st_mode & 0o001:
                return False
        except OSError:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent
