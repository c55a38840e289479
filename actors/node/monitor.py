"""The monitoring endpoint (`[local] http`): GET /metrics and GET /health.

A small HTTP/1.0-style server on its own threads, so a scrape never delays
the supervisor's loop. It is built to survive slow or hostile clients:

* at most `MAX_CLIENTS` connections are served at once; one more is answered
  503 and closed at once, so a flood costs a few threads, never more;
* a request must arrive whole (request line and headers, at most
  `MAX_REQUEST_BYTES`) within `REQUEST_TIMEOUT_S` in total, so a client that
  trickles bytes cannot hold a thread; the answer must be taken within the
  same time per send;
* only GET (and HEAD) of /metrics and /health; anything else is 404 or 405,
  and every connection is closed after one answer.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

MAX_CLIENTS = 4
MAX_REQUEST_BYTES = 8192
REQUEST_TIMEOUT_S = 5.0
JSON = "application/json"

Health = Callable[[], tuple[bool, dict[str, Any]]]


class MonitorServer:
    """Bind at construction (an OSError there is the caller's config error), serve
    from `start` until `close`."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry,
                 health: Health) -> None:
        self.registry, self.health = registry, health
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, port))
            self.sock.listen(16)
        except OSError:
            self.sock.close()
            raise
        self.address = self.sock.getsockname()[:2]
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        self.closed = False
        self.counters = {"http_requests": 0, "http_refused_busy": 0, "http_bad_requests": 0}

    def start(self) -> None:
        threading.Thread(target=self._accept_loop, name="monitor-http", daemon=True).start()

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()

    def _accept_loop(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                if self.closed:
                    return
                time.sleep(0.05)  # e.g. EMFILE: do not spin
                continue
            if not self.slots.acquire(blocking=False):
                self.counters["http_refused_busy"] += 1
                self._refuse(conn)
                continue
            threading.Thread(target=self._serve, args=(conn,), name="monitor-client",
                             daemon=True).start()

    def _refuse(self, conn: socket.socket) -> None:
        conn.setblocking(False)  # the accept thread never waits on a client
        with contextlib.suppress(OSError):
            conn.send(_response(503, "text/plain", b"busy\n", head=False))
        conn.close()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn:
                request = _read_request(conn, time.monotonic() + REQUEST_TIMEOUT_S)
                if request is None:
                    self.counters["http_bad_requests"] += 1
                    conn.sendall(_response(400, "text/plain", b"bad request\n", head=False))
                    return
                self.counters["http_requests"] += 1
                conn.sendall(self._answer(*request))
        except OSError:  # timeouts and resets: the client's loss, not ours
            pass
        finally:
            self.slots.release()

    def _answer(self, method: str, path: str) -> bytes:
        head = method == "HEAD"
        if method not in ("GET", "HEAD"):
            return _response(405, "text/plain", b"only GET\n", head)
        match path.partition("?")[0]:
            case "/metrics":
                return _response(200, CONTENT_TYPE_LATEST, generate_latest(self.registry), head)
            case "/health":
                ok, body = self.health()
                return _response(200 if ok else 503, JSON,
                                 json.dumps(body, sort_keys=True).encode() + b"\n", head)
        return _response(404, "text/plain", b"not found: try /metrics or /health\n", head)


def _read_request(conn: socket.socket, deadline: float) -> tuple[str, str] | None:
    """(method, path) once the headers are in, or None for a bad or oversized request;
    raises TimeoutError (an OSError) when the deadline passes first."""
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("request too slow")
        conn.settimeout(remaining)
        chunk = conn.recv(MAX_REQUEST_BYTES + 1 - len(data))
        if not chunk:
            return None
        data += chunk
        if len(data) > MAX_REQUEST_BYTES:
            return None
    conn.settimeout(REQUEST_TIMEOUT_S)
    parts = data.split(b"\n", 1)[0].decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/") or not parts[1].startswith("/"):
        return None
    return parts[0], parts[1]


def _response(code: int, content_type: str, body: bytes, head: bool) -> bytes:
    reasons = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
               503: "Service Unavailable"}
    header = (f"HTTP/1.1 {code} {reasons[code]}\r\nContent-Type: {content_type}\r\n"
              f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
    return header.encode("latin-1") + (b"" if head else body)
