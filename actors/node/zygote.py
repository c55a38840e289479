"""The zygote: a pre-imported, thread-free process that forks actors on request.

Why: starting a cold interpreter and importing pyzmq, msgpack and the actors
takes hundreds of milliseconds; a fork of a process that has already imported
them takes a few. The supervisor cannot fork actors itself once it has a
ZeroMQ context (its I/O threads and their locks do not survive fork), so it
forks this zygote first, before creating any context, and asks it for actors.

Protocol over two pipes, each message a 4-byte big-endian length and a
msgpack map: supervisor -> zygote ``{"op": "spawn", "name": str}`` and
``{"op": "exit"}``; zygote -> supervisor ``{"op": "spawned", "name", "pid"}``,
``{"op": "spawn_failed", "name", "error"}`` and ``{"op": "exited", "pid",
"code", "signal"}``.

Death chain: the zygote and every actor set PR_SET_PDEATHSIG to SIGKILL, so
when the supervisor dies (even by kill -9) the kernel kills the zygote, and
that kills every actor: no orphan keeps answering pings for a dead node.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import gc
import os
import random
import select
import signal
import struct
import sys
from collections.abc import Callable
from typing import Any

import msgpack

from actors.node import libc
from actors.node.proctitle import set_title
from actors.node.wakeup import WakeupPipe

_PR_SET_PDEATHSIG = 1
_LEN = struct.Struct(">I")
MAX_FRAME = 1 << 20


# Found once, before any fork (see actors/node/libc.py). Not Linux: None, and the
# actors' ppid check still catches a dead parent.
_PRCTL = libc.function("prctl", [ctypes.c_int, *[ctypes.c_ulong] * 4])


def die_with_parent(parent_pid: int, sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send `sig` when our parent dies; exit now if it already has."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


def write_frame(fd: int, obj: Any) -> None:
    data = msgpack.packb(obj, use_bin_type=True)
    payload = _LEN.pack(len(data)) + data
    while payload:
        try:
            written = os.write(fd, payload)
        except InterruptedError:
            continue
        payload = payload[written:]


class FrameReader:
    """Reassembles length-prefixed frames from a non-blocking pipe."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""
        self.eof = False

    def read(self) -> list[dict[str, Any]]:
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        except InterruptedError:
            return []
        if not chunk:
            self.eof = True
            return []
        self.buf += chunk
        frames = []
        while len(self.buf) >= _LEN.size:
            (size,) = _LEN.unpack_from(self.buf)
            if size > MAX_FRAME:
                raise ValueError("zygote frame too large")
            if len(self.buf) < _LEN.size + size:
                break
            frames.append(msgpack.unpackb(self.buf[_LEN.size:_LEN.size + size], raw=False))
            self.buf = self.buf[_LEN.size + size:]
        return frames


class Zygote:
    """Handle held by the supervisor: spawn actors, learn of their exits."""

    def __init__(self, run_actor: Callable[[str, int], int]) -> None:
        cmd_r, cmd_w = os.pipe()
        evt_r, evt_w = os.pipe()
        parent = os.getpid()
        # Everything imported so far stays shared: see _spawn. Collect first: garbage
        # frozen with the rest would be freed by no one, and a first collection in each
        # actor would otherwise write to pages they all share (~0.7 MiB each).
        gc.collect()
        gc.freeze()
        pid = os.fork()
        if pid == 0:  # the zygote
            os.close(cmd_w)
            os.close(evt_r)
            code = 1
            try:
                die_with_parent(parent)
                code = _zygote_main(cmd_r, evt_w, run_actor)
            finally:
                os._exit(code)
        os.close(cmd_r)
        os.close(evt_w)
        os.set_blocking(evt_r, False)
        self.pid = pid
        self.cmd_fd = cmd_w
        self.events = FrameReader(evt_r)

    @property
    def event_fd(self) -> int:
        return self.events.fd

    def spawn(self, name: str) -> None:
        write_frame(self.cmd_fd, {"op": "spawn", "name": name})

    def close(self) -> None:
        with contextlib.suppress(OSError):
            write_frame(self.cmd_fd, {"op": "exit"})
        with contextlib.suppress(OSError):
            os.close(self.cmd_fd)
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(self.pid, 0)
        with contextlib.suppress(OSError):
            os.close(self.events.fd)


def _zygote_main(cmd_fd: int, evt_fd: int, run_actor: Callable[[str, int], int]) -> int:
    # Ctrl-C in a terminal signals the whole process group; the supervisor
    # decides the stop order, so the zygote and actors ignore SIGINT.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    set_title("zygote")
    wakeup = WakeupPipe(signals=True)  # SIGCHLD wakes the select below
    signal.signal(signal.SIGCHLD, lambda *_: None)
    os.set_blocking(cmd_fd, False)
    commands = FrameReader(cmd_fd)
    keep = {cmd_fd, evt_fd, *wakeup.fds()}
    while not commands.eof:
        with contextlib.suppress(InterruptedError):
            # No timeout: a command, the supervisor's exit (EOF) and SIGCHLD (through
            # the wakeup pipe) all wake this select; an idle zygote never runs.
            select.select([cmd_fd, wakeup.fd], [], [])
        wakeup.drain()
        _reap(evt_fd)
        for cmd in commands.read():
            if cmd.get("op") == "exit":
                return 0
            if cmd.get("op") == "spawn":
                _spawn(str(cmd["name"]), evt_fd, keep, run_actor)
    return 0


def _spawn(name: str, evt_fd: int, keep: set[int], run_actor: Callable[[str, int], int]) -> None:
    zygote_pid = os.getpid()
    # The actor's collector must never write to the headers of the objects it inherited
    # (every module, class and function of the node): each such write would copy a page
    # that the zygote and every other actor share. Frozen objects are never scanned.
    gc.freeze()
    try:
        pid = os.fork()
    except OSError as exc:
        write_frame(evt_fd, {"op": "spawn_failed", "name": name, "error": str(exc)})
        return
    if pid:
        write_frame(evt_fd, {"op": "spawned", "name": name, "pid": pid})
        return
    code = 70
    try:
        die_with_parent(zygote_pid)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in keep:
            with contextlib.suppress(OSError):
                os.close(fd)
        random.seed()  # forked children must not share the zygote's random stream
        code = run_actor(name, zygote_pid)
    except BaseException:  # the actor's own top level logs; this is the last resort
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _reap(evt_fd: int) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        except OSError as exc:
            if exc.errno == errno.EINTR:
                continue
            return
        if pid == 0:
            return
        code = os.waitstatus_to_exitcode(status)
        write_frame(evt_fd, {"op": "exited", "pid": pid,
                             "code": code if code >= 0 else None,
                             "signal": -code if code < 0 else None})
