"""ZeroMQ socket helpers: the only place that sets socket options.

Every socket gets LINGER 0 (a closing actor must never hang on unsent data),
bounded high-water marks, and MAXMSGSIZE (a peer sending more is
disconnected by libzmq before a byte reaches Python). Binding errors become
`BindError` naming the endpoint, so a port in use is one clear line.

A node's public TCP ports (gossip, sync) are `Listener`s: the supervisor binds
and listens before any actor exists and holds them for the node's life, and the
actor serving each binds its ZeroMQ socket onto the listening descriptor it
inherited (`ZMQ_USE_FD`, `bind_listening`). Messages go straight from the
peer's connection to the actor that handles them, and while that actor
restarts the port stays open: the kernel queues the peers' reconnections and
their sockets queue their messages, so a restart never looks like a dead node.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import zmq

from transport.validate import TCP_BIND_ENDPOINT

DEFAULT_HWM = 1000
DEFAULT_MAXMSGSIZE = 4 << 20
# Inside a node a restarted actor rebinds its ipc endpoint within ~15 ms; the
# default 100 ms reconnect interval would make every restart look 100 ms long.
LOCAL_RECONNECT_MS, LOCAL_RECONNECT_MAX_MS = 5, 200


class BindError(Exception):
    def __init__(self, endpoint: str, reason: str) -> None:
        self.endpoint = endpoint
        self.reason = reason
        super().__init__(f"cannot bind {endpoint}: {reason}")


def make_socket(ctx: zmq.Context, kind: int, *, hwm: int = DEFAULT_HWM,
                maxmsgsize: int = DEFAULT_MAXMSGSIZE, immediate: bool = False,
                local: bool = False) -> zmq.Socket:
    """`local`: the socket connects to another process of this node over ipc."""
    sock = ctx.socket(kind)
    if local:
        sock.setsockopt(zmq.RECONNECT_IVL, LOCAL_RECONNECT_MS)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, LOCAL_RECONNECT_MAX_MS)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, hwm)
    sock.setsockopt(zmq.RCVHWM, hwm)
    sock.setsockopt(zmq.MAXMSGSIZE, maxmsgsize)
    if immediate:
        # Queue only to completed connections: nothing piles up for an absent peer.
        sock.setsockopt(zmq.IMMEDIATE, 1)
    return sock


# libzmq's own listen backlog (ZMQ_BACKLOG's default).
LISTEN_BACKLOG = 100


@dataclass(frozen=True)
class Listener:
    """A TCP port bound and listening. `fd` is a bare descriptor, owned by no Python
    object that could close it under the libzmq of an actor bound onto it."""

    fd: int
    endpoint: str  # as resolved: tcp://IP:PORT

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def listen(endpoint: str) -> Listener:
    """Bind and listen on a tcp://HOST:PORT endpoint (HOST ``*``: every interface)."""
    match = TCP_BIND_ENDPOINT.match(endpoint)
    if match is None:
        raise BindError(endpoint, "not a tcp://HOST:PORT endpoint")
    host = match["host"].strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        # Bytes, not str: a str host is encoded with the "idna" codec, which imports
        # unicodedata into every actor's image for nothing (hosts here are ASCII).
        infos = socket.getaddrinfo(None if host == "*" else host.encode("ascii"),
                                   int(match["port"]), family, socket.SOCK_STREAM, 0,
                                   socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError):
        raise BindError(endpoint, "address not available on this host") from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as libzmq does
        sock.bind(infos[0][4])
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise BindError(endpoint, _bind_reason(exc.errno, exc.strerror or str(exc))) from None
    ip, port = sock.getsockname()[:2]
    return Listener(sock.detach(), f"tcp://[{ip}]:{port}" if family == socket.AF_INET6
                    else f"tcp://{ip}:{port}")


def bind_listening(sock: zmq.Socket, listener_fd: int, endpoint: str) -> str:
    """Bind `sock` onto an inherited listening descriptor rather than a new port."""
    sock.setsockopt(zmq.USE_FD, listener_fd)
    return bind(sock, endpoint)


def _bind_reason(code: int | None, fallback: str) -> str:
    return {errno.EADDRINUSE: "address already in use",
            errno.EADDRNOTAVAIL: "address not available on this host",
            errno.ENAMETOOLONG: "ipc path too long"}.get(code or 0, fallback)


def bind(sock: zmq.Socket, endpoint: str) -> str:
    """Bind and return the resolved endpoint (the real port for tcp://host:0)."""
    try:
        sock.bind(endpoint)
    except zmq.ZMQError as exc:
        raise BindError(endpoint, _bind_reason(exc.errno, exc.strerror or str(exc))) from None
    last = sock.getsockopt(zmq.LAST_ENDPOINT)
    return last.decode() if isinstance(last, bytes) else str(last)


@contextmanager
def private_umask() -> Iterator[None]:
    """Files created inside (ipc socket files) are readable by their owner only."""
    old = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(old)


def private_endpoint(namespace: str, name: str) -> str:
    """An ipc endpoint inside this user's 0700 run folder: unlike the abstract
    namespace (which any local process can reach), only this user may connect."""
    return f"ipc://{run_folder(namespace)}/{name.replace('/', '-')}"


def run_folder(namespace: str) -> str:
    return f"/tmp/lbc-{os.getuid()}/{namespace}"


def make_run_folder(namespace: str) -> str:
    """Create the run folder, owner-only at every level we make; returns its path."""
    base = f"/tmp/lbc-{os.getuid()}"
    os.makedirs(base, mode=0o700, exist_ok=True)
    if os.stat(base).st_uid != os.getuid() or os.stat(base).st_mode & 0o077:
        raise PermissionError(f"{base} must belong to this user with mode 0700")
    _sweep(base)
    folder = run_folder(namespace)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    return folder


def _sweep(base: str) -> None:
    """Remove run folders of processes that died without cleaning up (kill -9).
    A folder is named "<pid>-..." after the process that made it."""
    import shutil

    for name in os.listdir(base):
        pid = name.split("-", 1)[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)


def unix_socket_listening(path: str) -> bool:
    """True when a process accepts connections on this Unix socket file."""
    import socket

    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        return False
    finally:
        probe.close()
    return True


def close_monitored(sock: zmq.Socket, monitor: zmq.Socket, linger: int = 0) -> None:
    """Close `sock` and the PAIR reading its monitor events, in the only safe order.

    libzmq's I/O thread hands monitor events to the monitor with a *blocking*
    send. Close the reading PAIR first and the next event (a reconnect attempt,
    a disconnect) blocks that thread for good: every socket of the context
    stops moving data while the process looks idle (libzmq #3575). Stopping
    the monitor first ends the events; our event mask leaves out
    MONITOR_STOPPED, so stopping sends nothing that could block us here."""
    if not sock.closed:
        with contextlib.suppress(zmq.ZMQError):  # already stopped: nothing to end
            sock.disable_monitor()
    monitor.close(linger=0)
    sock.close(linger=linger)
