"""Start real nodes on 127.0.0.1: used by `lbcluster demo`, the tests and the benchmarks.

Each node is a supervisor process in its own session (process group), so
stopping it stops every process it started, whatever state it is in; the
ports are free ones picked by the kernel; configs and data live in a folder
the caller owns.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from transport.rpc import RpcError, call
from transport.sockets import unix_socket_listening


def free_ports(count: int) -> list[int]:
    """Ports the kernel says are free now (held open together so they differ)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def toml_document(tables: Mapping[str, Mapping[str, Any]],
                  providers: list[Mapping[str, Any]]) -> str:
    lines = []
    for name, table in tables.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
        lines.append("")
    for provider in providers:
        lines.append("[[providers]]")
        lines += [f"{k} = {toml_value(v)}" for k, v in provider.items()]
        lines.append("")
    return "\n".join(lines)


def kill_session(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group of a child started with start_new_session, and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)


@dataclass
class LocalNode:
    name: str
    folder: Path
    gossip: str
    sync: str
    events: str
    seeds: list[str]
    profile: str = "local"
    providers: list[Mapping[str, Any]] = field(default_factory=lambda: [{"type": "kv"}])
    extra: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Runs the node under another command, e.g. ["ip", "netns", "exec", "hostA"].
    wrapper: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def config_path(self) -> Path:
        return self.folder / "node.toml"

    @property
    def control(self) -> str:
        return f"ipc://{self.folder / 'control.sock'}"

    @property
    def log_path(self) -> Path:
        return self.folder / "node.log"

    def write_config(self) -> Path:
        tables: dict[str, dict[str, Any]] = {
            "node": {"id": self.name, "cluster": "local", "data_dir": str(self.folder / "data")},
            "network": {"gossip": self.gossip, "sync": self.sync, "seeds": self.seeds},
            "local": {"events": self.events, "control": self.control},
            "membership": {"profile": self.profile},
        }
        for section, values in self.extra.items():
            tables.setdefault(section, {}).update(values)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(toml_document(tables, self.providers), encoding="utf-8")
        return self.config_path

    def start(self) -> None:
        self.write_config()
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it from here
        try:
            self.proc = subprocess.Popen(
                [*self.wrapper, sys.executable, "-m", "supervisor", "-c", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
                env={**os.environ, "LBCLUSTER_PARENT_PID": str(os.getpid())})
        finally:
            log.close()

    def request(self, op: str, args: dict[str, Any] | None = None,
                timeout_s: float = 5.0) -> Any:
        ctx = zmq.Context()
        try:
            return call(ctx, self.control, op, args, timeout_s)
        finally:
            ctx.destroy(linger=0)

    def wait_ready(self, timeout_s: float = 20.0, actors: bool = True) -> None:
        """Until the control socket answers and (optionally) every actor is ready."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"node {self.name} exited with {self.proc.returncode}: "
                                   f"{self.log_tail()}")
            if unix_socket_listening(self.control[len("ipc://"):]):
                with contextlib.suppress(RpcError):
                    snap = self.request("snapshot", timeout_s=1.0)
                    if not actors or all(a["ready"] for a in snap["actors"]):
                        return
            time.sleep(0.05)
        raise TimeoutError(f"node {self.name} not ready after {timeout_s} s: {self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def kill_group(self) -> None:
        """SIGKILL the node's whole process group: supervisor, zygote, actors."""
        if self.proc is not None:
            kill_session(self.proc)

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """Graceful stop (SIGTERM); the whole group is killed if it overstays."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout_s)
        code = self.proc.poll()
        self.kill_group()  # leftovers of a supervisor that died badly
        return code


class LocalCluster:
    """N nodes on loopback; a context manager that always cleans up."""

    def __init__(self, root: Path, count: int, profile: str = "local",
                 providers: list[Mapping[str, Any]] | None = None,
                 extra: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        ports = free_ports(3 * count)
        gossips = [f"tcp://127.0.0.1:{ports[3 * i]}" for i in range(count)]
        self.nodes = [
            LocalNode(
                name=f"n{i}", folder=root / f"n{i}", gossip=gossips[i],
                sync=f"tcp://127.0.0.1:{ports[3 * i + 1]}",
                events=f"tcp://127.0.0.1:{ports[3 * i + 2]}",
                seeds=[f"n{j}@{g}" for j, g in enumerate(gossips) if j != i],
                profile=profile,
                providers=list(providers) if providers is not None else [{"type": "kv"}],
                extra=extra or {},
            )
            for i in range(count)
        ]

    def secure(self, keys: Path, admitted: list[str] | None = None) -> LocalCluster:
        """Turn CURVE on: a key pair per node in `keys`, and for each node its own
        folder of admitted public keys (every node's, or only `admitted`)."""
        from transport.security import write_keypair

        for node in self.nodes:
            write_keypair(keys, node.name)
        for node in self.nodes:
            allowed = node.folder / "allowed"
            allowed.mkdir(parents=True, exist_ok=True)
            for name in admitted if admitted is not None else [n.name for n in self.nodes]:
                shutil.copy(keys / f"{name}.key", allowed / f"{name}.key")
            node.extra = {**node.extra, "security": {
                "curve_public_key_file": str(keys / f"{node.name}.key"),
                "curve_secret_key_file": str(keys / f"{node.name}.key_secret"),
                "allowed_keys_dir": str(allowed)}}
        return self

    def start(self, timeout_s: float = 30.0) -> LocalCluster:
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            node.wait_ready(timeout_s)
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.signal(signal.SIGTERM)
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> LocalCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()  # __exit__ does not run when __enter__ fails
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()
