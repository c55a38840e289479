"""A minimal HAProxy Runtime API client: one command line per connection.

HAProxy's stats socket, outside interactive mode, reads one line, runs its
``;``-separated commands, writes their output and closes the connection:
so an exchange is connect, send the line, read to EOF. Every step shares
one deadline, so an exchange never takes longer than `timeout_s`; it is
blocking code, meant to run off the actor's loop (`actors.haproxy.actor`
runs it in a worker thread).
"""

from __future__ import annotations

import socket
import time

from actors.haproxy.core.names import RuntimeAddress

MAX_REPLY = 16 * 1024 * 1024  # a `show servers state` of ~100,000 servers


class RuntimeApiError(Exception):
    """The exchange failed; `reason` is a slug: connect, timeout, io, too_large."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason, self.detail = reason, detail
        super().__init__(f"{reason}: {detail}")


def exchange(address: RuntimeAddress, line: str, timeout_s: float) -> str:
    """Send one command line, return everything HAProxy wrote back.

    Raises:
        RuntimeApiError: and nothing else, whatever happens on the socket.
    """
    deadline = time.monotonic() + timeout_s
    try:
        sock = _connect(address, timeout_s)
    except TimeoutError as exc:
        raise RuntimeApiError("timeout", f"connect: {exc}") from None
    except OSError as exc:
        raise RuntimeApiError("connect", f"{type(exc).__name__}: {exc}") from None
    try:
        _settimeout(sock, deadline)
        sock.sendall(line.encode() + b"\n")
        chunks: list[bytes] = []
        size = 0
        while True:
            _settimeout(sock, deadline)
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks).decode("utf-8", errors="replace")
            size += len(chunk)
            if size > MAX_REPLY:
                raise RuntimeApiError("too_large", f"reply over {MAX_REPLY} bytes")
            chunks.append(chunk)
    except TimeoutError:
        raise RuntimeApiError("timeout", f"no complete reply within {timeout_s:g} s") from None
    except OSError as exc:
        raise RuntimeApiError("io", f"{type(exc).__name__}: {exc}") from None
    finally:
        sock.close()


def _connect(address: RuntimeAddress, timeout_s: float) -> socket.socket:
    if address.path is not None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout_s)
            sock.connect(address.path)
        except BaseException:
            sock.close()
            raise
        return sock
    return socket.create_connection((address.host or "", address.port), timeout=timeout_s)


def _settimeout(sock: socket.socket, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    sock.settimeout(left)
