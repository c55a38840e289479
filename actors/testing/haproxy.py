"""Real HAProxy processes and counting HTTP backends on 127.0.0.1, for tests and benchmarks.

`HAProxyProcess` writes a one-backend config with an admin stats socket,
runs ``haproxy -db`` in its own session and reads its state through the same
Runtime API client the bridge uses. `CountingBackend` is an HTTP server on a
fixed port that counts the requests per path, so a test can tell
lbcluster's checks from HAProxy's own, and can stop and start it again.
"""

from __future__ import annotations

import contextlib
import http.server
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from actors.haproxy.core.names import RuntimeAddress
from actors.haproxy.core.servers_state import parse_servers_state_untrusted
from actors.haproxy.runtime_api import RuntimeApiError, exchange
from actors.testing.localcluster import kill_session

BACKEND = "be_app"
LBC_PATH = "/lbc"  # lbcluster's health checks ask this path
HAPROXY_PATH = "/hap"  # HAProxy's own checks ask this one


def haproxy_binary() -> str | None:
    return shutil.which("haproxy")


class _Server(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], owner: CountingBackend) -> None:
        self.owner = owner
        super().__init__(address, _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        assert isinstance(self.server, _Server)
        self.server.owner.count(self.path)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


class CountingBackend:
    """An HTTP server on one 127.0.0.1 port that counts requests per path."""

    def __init__(self) -> None:
        self.port = 0
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def count(self, path: str) -> None:
        with self._lock:
            self.hits[path] += 1

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.hits)

    def start(self) -> CountingBackend:
        self._server = _Server(("127.0.0.1", self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
        self._server = self._thread = None


def haproxy_config(socket_path: Path, servers: Mapping[str, int],
                   check_inter_ms: int | None = None, fast_inter_ms: int | None = None,
                   fall: int = 2, rise: int = 2) -> str:
    """One backend `be_app` with a server per name; HAProxy checks it only if
    `check_inter_ms` is given (GET /hap every that many ms; `fastinter` while a
    server's state is changing, as the health provider's `fast_interval_ms`)."""
    lines = ["global", f"    stats socket {socket_path} level admin", "",
             "defaults", "    mode http", "    timeout connect 1s", "    timeout client 5s",
             "    timeout server 5s", "", f"backend {BACKEND}"]
    check = ""
    if check_inter_ms is not None:
        lines.append(f"    option httpchk GET {HAPROXY_PATH}")
        fast = f" fastinter {fast_inter_ms}" if fast_inter_ms else ""
        check = f" check inter {check_inter_ms}{fast} fall {fall} rise {rise}"
    lines += [f"    server {name} 127.0.0.1:{port}{check}" for name, port in servers.items()]
    return "\n".join(lines) + "\n"


class HAProxyProcess:
    """`haproxy -W -db` (master-worker, foreground) on a generated config; always
    stop() it (it is its own session: the master and its workers go together)."""

    def __init__(self, folder: Path, servers: Mapping[str, int],
                 check_inter_ms: int | None = None, fast_inter_ms: int | None = None,
                 fall: int = 2, rise: int = 2) -> None:
        self.folder = folder
        self.socket_path = folder / "admin.sock"
        self.config_path = folder / "haproxy.cfg"
        self.text = haproxy_config(self.socket_path, servers, check_inter_ms, fast_inter_ms,
                                   fall, rise)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def runtime_api(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self, timeout_s: float = 10.0) -> HAProxyProcess:
        binary = haproxy_binary()
        if binary is None:
            raise RuntimeError("haproxy is not installed")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.text, encoding="utf-8")
        with open(self.folder / "haproxy.log", "ab") as log:
            self.proc = subprocess.Popen([binary, "-W", "-db", "-f", str(self.config_path)],
                                         stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited with {self.proc.returncode}")
            with contextlib.suppress(RuntimeApiError):
                self.command("show info")
                return self
            time.sleep(0.02)
        raise TimeoutError(f"haproxy not answering on {self.socket_path}")

    def stop(self) -> None:
        if self.proc is not None:
            kill_session(self.proc)
        self.proc = None

    def restart(self) -> None:
        """A new process from the same config file: every server starts as configured."""
        self.stop()
        self.start()

    def reload(self, timeout_s: float = 10.0) -> None:
        """SIGUSR2 to the master: a new worker from the config file replaces the old one."""
        assert self.proc is not None, "not started"
        before = self.worker_pid()
        self.proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(RuntimeApiError):
                if self.worker_pid() not in (before, None):
                    return
            time.sleep(0.02)
        raise TimeoutError("no new haproxy worker after the reload")

    def worker_pid(self) -> int | None:
        """The Pid `show info` reports: the worker serving the stats socket."""
        for line in self.command("show info").splitlines():
            key, _, value = line.partition(":")
            if key == "Pid" and value.strip().isdigit():
                return int(value)
        return None

    def command(self, line: str) -> str:
        return exchange(RuntimeAddress(path=str(self.socket_path)), line, 2.0)

    def admin_states(self) -> dict[str, str]:
        """server name -> ready / drain / maint, as the Runtime API last forced it."""
        states = parse_servers_state_untrusted(self.command("show servers state"))
        return {ref.server: state.value for ref, state in states.items()
                if ref.backend == BACKEND}

    def stat_status(self) -> dict[str, str]:
        """server name -> the `status` column of `show stat` (UP, DOWN, MAINT, DRAIN, ...)."""
        lines = self.command("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        at_px, at_sv, at_st = (header.index(k) for k in ("pxname", "svname", "status"))
        out = {}
        for line in lines[1:]:
            fields = line.split(",")
            if len(fields) > at_st and fields[at_px] == BACKEND and fields[at_sv] not in (
                    "BACKEND", "FRONTEND"):
                out[fields[at_sv]] = fields[at_st]
        return out
