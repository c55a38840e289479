"""Hostile-frame fuzzer: garbage and lies at every socket of one running node.

    python bench/fuzz_node.py [--frames 100000] [--seed N] [--json FILE]
                              [--time-limit 120] [--rate 1500] [--workdir DIR]
                              [--skip PATTERN]... [--only PATTERN]...

Theory of operation
-------------------
A LocalCluster (3 nodes, profile "local", kv provider) starts in a temp
folder and converges; n0 is the target. Frames are drawn from a seeded
`random.Random` by *kind*; each kind aims at one endpoint of the target and
belongs to one family:

* garbage: bytes that are no valid message (random, truncated, oversized,
  wrong shape or envelope, too deep, multi-frame, non-ZMTP TCP, junk on the
  control socket and the events port);
* absurd: well-formed messages with values at the edges (incarnations and
  versions at the highest a node accepts, MAX_COUNTER = 2**53-1, and beyond
  it up to 2**63-1; reply addresses that are not endpoints; strangers);
* spoof: well-formed messages claiming a real member as sender or writer;
* flood: well-formed messages that make the node hold more (fake members,
  unique reply addresses, thousands of states, subscriptions).

Frames are paced (`--rate`): the run measures robustness, not how much raw
volume a node absorbs (docs/SECURITY.md). Checks, during and after: no actor
exits on any node, no other node declares the target failed, the target's
PSS and open file descriptors grow by at most a bound, the target answers
`status`, its incarnation stays within what peers accept, and afterwards a
kv write on the target reaches every node and every node sees every other
alive. The table shows frames per endpoint and
kind, the drop and reject counters `status` reports, and the verdicts.
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import random
import socket
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import psutil
import zmq

from actors.testing.localcluster import LocalCluster, LocalNode
from transport.codec import DEFAULT_LIMITS, MAGIC, PROTOCOL_VERSION, encode, unpack_untrusted
from transport.peering import INBOUND_MAXMSGSIZE
from transport.protocol import MAX_U63, MESSAGE_TYPES, make_message, make_syncable_state
from transport.rpc import RpcError
from transport.sockets import DEFAULT_MAXMSGSIZE
from transport.validate import MAX_COUNTER

MAX = MAX_U63
BAD_ADDRESSES = ("garbage", "tcp://", "tcp://*:1", "udp://127.0.0.1:1", "ws://x:1",
                 "tcp://a b:1", "inproc://lbc-fuzz", "ipc:///nonexistent/lbc-fuzz")
ODD_INTS = (-1, -(2**63), MAX, 2**63, 2**64 - 1, 0)
FAMILIES = ("garbage", "absurd", "spoof", "flood")
_HOLE = b"@HOLE"  # a placeholder value whose packed form is replaced by raw bytes


@dataclass(frozen=True)
class Target:
    """What the forge knows of the node under attack and of its real peers."""

    cluster: str
    node_id: str
    gossip: str
    sync: str
    events: str
    control: str
    members: tuple[tuple[str, str], ...] = ()  # (node id, gossip address) of real peers


def _raw(obj: object) -> bytes:
    return bytes(msgpack.packb(obj, use_bin_type=True))


def _spliced(obj: object, raw: bytes) -> bytes:
    """Pack `obj`, then put `raw` (hand-made msgpack) where `_HOLE` was."""
    return _raw(obj).replace(_raw(_HOLE), raw, 1)


class Forge:
    """One method per kind, each returning the frames of one hostile message."""

    def __init__(self, target: Target, rng: random.Random) -> None:
        self.t, self.rng = target, rng
        self.block = rng.randbytes(DEFAULT_LIMITS.max_message_bytes + 70_000)
        self.serial = 0

    # -- building blocks -----------------------------------------------------------
    def count(self) -> int:
        """A fresh number: ids, keys and addresses that no earlier frame used."""
        self.serial += 1
        return self.serial

    def next_id(self, prefix: str) -> str:
        return f"{prefix}-{self.count()}"

    def junk(self, depth: int = 0) -> Any:
        r = self.rng.random()
        if depth > 3 or r < 0.5:
            return self.rng.choice([None, True, self.rng.choice(ODD_INTS), 1.5e308,
                                    float("nan"), "", "x" * self.rng.randint(1, 300),
                                    self.rng.randbytes(self.rng.randint(0, 40))])
        if r < 0.75:
            return [self.junk(depth + 1) for _ in range(self.rng.randint(0, 5))]
        return {self.rng.choice(["from", "to", "pl", "st", "dg", "ae", "k", "x"]):
                self.junk(depth + 1) for _ in range(self.rng.randint(0, 5))}

    def envelope(self, msg_type: str, body: dict[str, Any]) -> bytes:
        return _raw([MAGIC, PROTOCOL_VERSION, self.t.cluster, MESSAGE_TYPES.index(msg_type), body])

    def valid(self, msg_type: str, sender: str, to: str | None = None, **kw: Any) -> bytes:
        return encode(make_message(msg_type, sender, to, **kw), self.t.cluster)

    def member(self) -> tuple[str, str]:
        if self.t.members:
            return self.rng.choice(self.t.members)
        return self.next_id("ghost"), "tcp://127.0.0.1:9"

    def realistic(self) -> bytes:
        pl = {"seq": self.rng.randint(1, 1000), "addr": "tcp://127.0.0.1:9", "inc": 1}
        return self.valid("ping", self.next_id("x"), self.t.node_id, payload=pl)

    # -- garbage (both gossip and sync) ----------------------------------------------
    def g_random(self) -> list[bytes]:
        return [self.rng.randbytes(self.rng.choice([0, 1, 5, 64, 2048]))]

    def g_truncated(self) -> list[bytes]:
        data = self.realistic()
        return [data[: self.rng.randrange(len(data))]]

    def g_trailing(self) -> list[bytes]:
        return [self.realistic() + self.rng.randbytes(self.rng.randint(1, 16))]

    def g_oversized(self) -> list[bytes]:  # just past the limit: libzmq cuts the connection
        size = INBOUND_MAXMSGSIZE + self.rng.randint(1, 65536)
        return [self.block[:size]]

    def g_over_maxmsgsize(self) -> list[bytes]:  # far past it, as a flood would send
        return [bytes(DEFAULT_MAXMSGSIZE + 1)]

    def g_wrong_shape(self) -> list[bytes]:
        return [_raw(self.junk())]

    def g_bad_envelope(self) -> list[bytes]:
        env: list[Any] = [MAGIC, PROTOCOL_VERSION, self.t.cluster, 0, {"from": "x"}]
        slot = self.rng.randrange(5)
        env[slot] = self.rng.choice([b"LBX", "LBC", 2, -1, "other-cluster", 99, [], None,
                                     self.junk()])
        if self.rng.random() < 0.2:
            env = env[: self.rng.randrange(5)] or [*env, 1]
        return [_raw(env)]

    def g_bad_fields(self) -> list[bytes]:
        body = {k: self.junk() for k in self.rng.sample(["from", "to", "st", "dg", "pl"], 3)}
        return [self.envelope(self.rng.choice(MESSAGE_TYPES), body)]

    def g_deep(self) -> list[bytes]:
        depth = self.rng.choice([33, 41, 600, 5000, 100_000])
        nested = b"\x91" * depth + b"\xc0"
        if self.rng.random() < 0.3:
            return [nested]
        body = {"from": "x", "pl": {"seq": 1, "d": _HOLE}}
        return [_spliced([MAGIC, PROTOCOL_VERSION, self.t.cluster, 0, body], nested)]

    def g_multipart(self) -> list[bytes]:
        count = self.rng.randint(1, 6)
        frames = [self.rng.randbytes(self.rng.randint(0, 32)) for _ in range(count)]
        return [*frames, self.realistic() if self.rng.random() < 0.5 else b""]

    # -- gossip: well-formed but absurd, spoofed or inflating ---------------------------
    def m_stranger(self) -> list[bytes]:
        sid, addr = self.next_id("stranger"), f"tcp://127.0.0.1:{self.rng.choice([9, 13, 17])}"
        pl = {"seq": self.rng.randint(0, MAX), "addr": addr, "inc": self.rng.randint(0, MAX)}
        kind = self.rng.choice(["ping", "join", "alive"])
        if kind == "join":
            return [self.valid("join", sid, payload={"node": {"id": sid, "addr": addr}, **pl})]
        if kind == "alive":
            return [self.valid("alive", sid, payload={**pl, "node": sid, "incarnation": 1})]
        return [self.valid("ping", sid, self.t.node_id, payload=pl)]

    def m_bad_address(self) -> list[bytes]:
        sid, bad = self.next_id("stranger"), self.rng.choice(BAD_ADDRESSES)
        match self.rng.randrange(3):
            case 0:
                return [self.valid("ping", sid, payload={"seq": 1, "addr": bad})]
            case 1:
                return [self.valid("join", sid, payload={"node": {"id": sid, "addr": bad}})]
        pl = {"seq": 7, "node": self.next_id("ghost"), "addr": bad, "taddr": bad}
        return [self.valid("ping-req", sid, payload=pl)]

    def m_absurd_values(self) -> list[bytes]:
        sid = self.next_id("odd")
        choices: list[dict[str, Any]] = [
            {"seq": self.rng.choice(ODD_INTS), "addr": "tcp://127.0.0.1:9"},
            {"seq": 1, "addr": "tcp://127.0.0.1:9", "gossip": [self.junk() for _ in range(20)]},
            {"seq": 1, "gossip": [{"k": "alive", "n": "x", "i": 1, "a": "y"}] * 513},
            {"seq": 1, "addr": "x" * 257, "inc": 2**64 - 1},
            {"seq": 1, "meta": {"deep": self.junk()}, "members": self.junk()},
        ]
        pl = self.rng.choice(choices)
        return [self.envelope(self.rng.choice(["ping", "members", "ping-req", "ping-ack"]),
                              {"from": sid, "pl": pl})]

    def m_self_inc_huge(self) -> list[bytes]:  # a jump peers still accept
        return self._about_target(self.rng.randint(2**32, MAX_COUNTER - 2))

    def m_self_inc_edge(self) -> list[bytes]:  # the refutation lands past MAX_COUNTER
        return self._about_target(self.rng.choice([MAX_COUNTER - 1, MAX_COUNTER]))

    def m_self_inc_max(self) -> list[bytes]:
        return self._about_target(self.rng.choice([MAX - 1, MAX]))

    def _about_target(self, inc: int) -> list[bytes]:
        sid, addr = self.member()
        kind = self.rng.choice(["suspect", "dead"])
        if self.rng.random() < 0.5:
            item = {"k": kind, "n": self.t.node_id, "i": inc, "f": sid}
            return [self.valid("ping", sid, payload={"seq": 1, "addr": addr, "gossip": [item]})]
        pl = {"node": self.t.node_id, "incarnation": inc, "addr": addr}
        return [self.valid(kind, sid, payload=pl)]

    def m_member_inc_max(self) -> list[bytes]:
        return self._member_alive(MAX)

    def m_member_inc_edge(self) -> list[bytes]:
        return self._member_alive(MAX_COUNTER)

    def _member_alive(self, inc: int) -> list[bytes]:
        sid, addr = self.member()
        pl = {"node": sid, "incarnation": inc, "addr": addr}
        return [self.valid("alive", sid, payload=pl)]

    def m_spoof(self) -> list[bytes]:
        sid, _ = self.member()
        other, _ = self.member()
        inc = self.rng.randint(0, 4)
        match self.rng.randrange(4):
            case 0:
                kind = self.rng.choice(["suspect", "dead"])
                return [self.valid(kind, sid, payload={"node": other, "incarnation": inc})]
            case 1:
                return [self.valid("leave", sid, payload={"inc": inc})]
            case 2:
                pl = {"node": sid, "incarnation": inc + 1, "addr": "tcp://127.0.0.1:9"}
                return [self.valid("alive", sid, payload=pl)]
        return self._about_target(inc)

    def m_address_spray(self) -> list[bytes]:
        n = self.count()
        addr = f"tcp://127.{(n >> 16) % 256}.{(n >> 8) % 256}.{n % 256 or 1}:9"
        return [self.valid("ping", self.next_id("spray"), payload={"seq": 1, "addr": addr})]

    def m_fake_members(self) -> list[bytes]:
        rows = []
        for _ in range(self.rng.randint(20, 200)):
            n = self.count()
            rows.append({"id": f"fake-{n}", "addr": f"tcp://127.9.{(n >> 8) % 256}.{n % 256}:9",
                         "inc": 1, "st": "alive"})
        return [self.valid("members", self.next_id("odd"), payload={"members": rows})]

    # -- sync -------------------------------------------------------------------------
    def state(self, state_type: str, key: str, version: int, src: str, value: Any = "v") -> Any:
        return make_syncable_state(state_type, key, value, version, src)

    def s_bad_fields(self) -> list[bytes]:
        bad = self.rng.choice([
            ("summary", {"ae": "syn", "count": -1, "hash": 2**64 - 1, "horizon": self.junk()}),
            ("summary", {"ae": "buckets", "b": [[300, 1]] * self.rng.randint(1, 300)}),
            ("summary", {"ae": self.junk()}),
            ("pull", {"ae": "digest", "buckets": [999], "after": self.junk(), "last": 3}),
            ("pull", {"ae": "digest", "buckets": [1], "last": True, "srcs": ["a"], "src": [5]}),
            ("push", {"ae": "fast", "hops": 10**6, "seen": ["x"] * 65}),
            ("push", {"ae": "delta", "forget": [[1, 2, 3], self.junk()]}),
        ])
        return [self.valid(bad[0], self.next_id("odd"), payload=bad[1])]

    def s_wrong_target(self) -> list[bytes]:
        return [self.valid("summary", self.next_id("odd"), "not-me",
                           payload={"ae": "syn", "count": 0, "hash": 0})]

    def s_horizon_max(self) -> list[bytes]:
        pl = {"ae": "syn", "count": 1, "hash": 1, "horizon": {"kv": MAX}}
        return [self.valid("summary", self.member()[0], payload=pl)]

    def s_version_max(self) -> list[bytes]:
        return self._kv_push("fuzz.max", MAX)

    def s_version_edge(self) -> list[bytes]:  # accepted; the next write is past MAX_COUNTER
        return self._kv_push("fuzz.edge", MAX_COUNTER)

    def _kv_push(self, prefix: str, version: int) -> list[bytes]:
        st = self.state("kv", f"{prefix}.{self.rng.randrange(4)}", version, self.next_id("odd"))
        return [self.valid("push", st.source_node, states=[st], payload={"ae": "delta"})]

    def s_forget_max(self) -> list[bytes]:
        key = f"fuzz.forget.{self.rng.randrange(4)}"
        st = self.state("fuzz.t", key, MAX, "odd")
        pl = {"ae": "delta", "forget": [["fuzz.t", key, MAX]]}
        return [self.valid("push", "odd", states=[st], payload=pl)]

    def s_version_huge(self) -> list[bytes]:  # a jump every store still accepts
        return self._kv_push("fuzz.huge", self.rng.randint(2**40, MAX_COUNTER - 2**20))

    def s_spoof(self) -> list[bytes]:
        sid, _ = self.member()
        if self.rng.random() < 0.3:  # a tiny seed pull: the target sends its store to sid
            return [self.valid("pull", sid, digest={})]
        value = None if self.rng.random() < 0.3 else "spoofed"
        st = self.state("kv", f"fuzz.spoof.{self.rng.randrange(16)}",
                        self.rng.randint(1, 50), sid, value)
        return [self.valid("push", sid, states=[st], payload={"ae": "fast", "hops": 64})]

    def s_state_spray(self) -> list[bytes]:
        src = self.next_id("odd")
        states = [self.state("fuzz.junk", self.next_id("k"), 1, src, "j" * 16)
                  for _ in range(self.rng.randint(100, 400))]
        return [self.valid("push", src, states=states, payload={"ae": "delta"})]

    def s_many_states(self) -> list[bytes]:
        n = self.rng.choice([DEFAULT_LIMITS.max_states, DEFAULT_LIMITS.max_states + 1])
        base = {"t": "fuzz.many", "v": 1, "ver": 1, "src": "odd"}
        states = [{**base, "k": f"m{i}"} for i in range(n)]
        return [self.envelope("push", {"from": "odd", "st": states, "pl": {"ae": "delta"}})]

    # -- control, events and raw TCP --------------------------------------------------
    def c_garbage(self) -> list[bytes]:
        return [self.rng.randbytes(self.rng.randint(0, 64)) for _ in range(self.rng.randint(1, 4))]

    def c_shapes(self) -> list[bytes]:
        body = self.rng.choice([self.junk(), {"id": self.junk(), "op": self.junk()},
                                {"id": 1, "op": "status", "args": self.junk()},
                                {"id": True, "op": "ping"}, {"id": 2**64 - 1, "op": 7}])
        return [_raw(body)]

    def c_unknown_op(self) -> list[bytes]:
        op = self.rng.choice(["fuzz." + self.next_id("op"), "provider.", "provider.kv",
                              "kv.", "provider.fuzz.get", "kv.get", "state", "members",
                              "metadata.set", "provider.kv.fuzz"])
        args = self.rng.choice([{}, {"key": self.junk()}, {"type": self.junk()},
                                {"metadata": self.rng.choice([1, "x", [1], None])}])
        return [_raw({"id": self.rng.randint(0, 2**32), "op": op, "args": args})]

    def e_subscriptions(self) -> list[bytes]:
        topic = self.rng.randbytes(self.rng.randint(0, 64))
        return [self.rng.choice([b"\x01", b"\x00", b"\x07", b""]) + topic]

    def r_bytes(self) -> list[bytes]:
        return [self.rng.randbytes(self.rng.choice([1, 10, 64, 4096, 65536]))]

    def r_zmtp_junk(self) -> list[bytes]:
        greeting = b"\xff" + bytes(8) + b"\x7f" + bytes([3, self.rng.randint(0, 9)])
        return [greeting + self.rng.randbytes(20) + bytes(32) + self.rng.randbytes(200)]


@dataclass(frozen=True)
class Kind:
    name: str  # endpoint.kind, e.g. "gossip.bad_address"
    endpoint: str  # gossip | sync | control | events | *.raw | *.idle
    family: str
    weight: float  # relative frequency
    make: Callable[[Forge], list[bytes]]


# Relative weights: cheap garbage is common; costly or cluster-polluting kinds are rare, so
# that at the default rate a healthy node could keep up with all of them.
_GENERIC = (("random", Forge.g_random, 6), ("truncated", Forge.g_truncated, 5),
            ("trailing", Forge.g_trailing, 2), ("oversized", Forge.g_oversized, 0.03),
            ("over_maxmsgsize", Forge.g_over_maxmsgsize, 0.003),
            ("wrong_shape", Forge.g_wrong_shape, 5), ("bad_envelope", Forge.g_bad_envelope, 5),
            ("bad_fields", Forge.g_bad_fields, 5), ("deep", Forge.g_deep, 1),
            ("multipart", Forge.g_multipart, 2))
_SPECIFIC = (
    ("gossip.stranger", "absurd", 3, Forge.m_stranger),
    ("gossip.bad_address", "absurd", 1, Forge.m_bad_address),
    ("gossip.absurd_values", "absurd", 4, Forge.m_absurd_values),
    ("gossip.self_inc_huge", "absurd", 0.2, Forge.m_self_inc_huge),
    ("gossip.self_inc_max", "absurd", 0.2, Forge.m_self_inc_max),
    ("gossip.self_inc_edge", "absurd", 0.05, Forge.m_self_inc_edge),
    ("gossip.member_inc_max", "absurd", 0.05, Forge.m_member_inc_max),
    ("gossip.member_inc_edge", "absurd", 0.05, Forge.m_member_inc_edge),
    ("gossip.spoof", "spoof", 1, Forge.m_spoof),
    ("gossip.address_spray", "flood", 0.5, Forge.m_address_spray),
    ("gossip.fake_members", "flood", 0.03, Forge.m_fake_members),
    ("sync.ae_bad_fields", "absurd", 4, Forge.s_bad_fields),
    ("sync.wrong_target", "absurd", 1, Forge.s_wrong_target),
    ("sync.horizon_max", "absurd", 0.1, Forge.s_horizon_max),
    ("sync.version_max", "absurd", 0.1, Forge.s_version_max),
    ("sync.version_edge", "absurd", 0.05, Forge.s_version_edge),
    ("sync.forget_max", "absurd", 0.1, Forge.s_forget_max),
    ("sync.version_huge", "absurd", 0.2, Forge.s_version_huge),
    ("sync.spoof", "spoof", 1, Forge.s_spoof),
    ("sync.state_spray", "flood", 0.1, Forge.s_state_spray),
    ("sync.many_states", "flood", 0.005, Forge.s_many_states),
    ("control.garbage", "garbage", 3, Forge.c_garbage),
    ("control.shapes", "garbage", 3, Forge.c_shapes),
    ("control.unknown_op", "garbage", 2, Forge.c_unknown_op),
    ("events.subscriptions", "flood", 1, Forge.e_subscriptions),
)


def _kinds() -> list[Kind]:
    out = [Kind(f"{endpoint}.{name}", endpoint, "garbage", weight, make)
           for endpoint in ("gossip", "sync") for name, make, weight in _GENERIC]
    out += [Kind(name, name.split(".")[0], family, weight, make)
            for name, family, weight, make in _SPECIFIC]
    for port in ("gossip", "sync", "events", "control"):
        out += [Kind(f"{port}.raw_bytes", f"{port}.raw", "garbage", 0.4, Forge.r_bytes),
                Kind(f"{port}.zmtp_junk", f"{port}.raw", "garbage", 0.2, Forge.r_zmtp_junk)]
        if port != "control":  # held open, never spoken on: the node must not wait for them
            out.append(Kind(f"{port}.idle_conn", f"{port}.idle", "garbage", 0.05, Forge.r_bytes))
    return out


KINDS: tuple[Kind, ...] = tuple(_kinds())


def select_kinds(families: tuple[str, ...] = FAMILIES, skip: tuple[str, ...] = (),
                 only: tuple[str, ...] = ("*",)) -> list[Kind]:
    """The kinds of `families` matching an `only` pattern and no `skip` pattern (fnmatch)."""
    def matches(kind: Kind, patterns: tuple[str, ...]) -> bool:
        return any(fnmatch.fnmatch(kind.name, p) for p in patterns)

    return [k for k in KINDS if k.family in families and matches(k, only)
            and not matches(k, skip)]


# -- sending ----------------------------------------------------------------------------
def _host_port(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint[len("tcp://"):].rpartition(":")
    return host, int(port)


class Shooter:
    """Sockets aimed at the target; `send(endpoint, frames)` delivers one message."""

    def __init__(self, ctx: zmq.Context, target: Target, idle_max: int = 64) -> None:
        self.ctx, self.t = ctx, target
        self.zsocks: dict[str, zmq.Socket] = {}
        self.idle: deque[socket.socket] = deque()
        self.idle_max = idle_max
        self.errors: Counter[str] = Counter()

    def _zsock(self, endpoint: str) -> zmq.Socket:
        sock = self.zsocks.get(endpoint)
        if sock is None:
            sock = self.ctx.socket(zmq.XSUB if endpoint == "events" else zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 1000)
            sock.setsockopt(zmq.SNDTIMEO, 2000)  # the node must keep reading
            sock.connect(getattr(self.t, endpoint))
            self.zsocks[endpoint] = sock
        return sock

    def send(self, endpoint: str, frames: list[bytes]) -> None:
        port, _, how = endpoint.partition(".")
        try:
            if how == "raw":
                self._raw(port, frames[0])
            elif how == "idle":
                self._idle(port)
            elif sum(len(f) for f in frames) > (DEFAULT_MAXMSGSIZE if port == "control"
                                                else INBOUND_MAXMSGSIZE):
                self._throwaway(port, frames)  # libzmq drops the connection that carried it
            else:
                self._zsock(port).send_multipart(frames)
                if port == "control":
                    self._drain(self.zsocks[port])
        except zmq.Again:
            self.errors[f"{port}: send timed out"] += 1
        except OSError as exc:  # a raw connection reset by a node that hung up: expected
            self.errors[f"{endpoint}: {type(exc).__name__}"] += 1

    def _connect_raw(self, port: str) -> socket.socket:
        address = getattr(self.t, port)
        if address.startswith("ipc://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(2.0)
            sock.connect(address[len("ipc://"):])
            return sock
        return socket.create_connection(_host_port(address), timeout=2.0)

    def _raw(self, port: str, data: bytes) -> None:
        with self._connect_raw(port) as sock:
            sock.sendall(data)

    def _idle(self, port: str) -> None:
        self.idle.append(self._connect_raw(port))
        while len(self.idle) > self.idle_max:
            self.idle.popleft().close()

    def _throwaway(self, port: str, frames: list[bytes]) -> None:
        sock = self.ctx.socket(zmq.DEALER)
        sock.connect(getattr(self.t, port))
        sock.send_multipart(frames)
        sock.close(linger=2000)

    @staticmethod
    def _drain(sock: zmq.Socket) -> None:
        while sock.poll(0, zmq.POLLIN):
            sock.recv_multipart()

    def close(self) -> None:
        for sock in self.zsocks.values():
            sock.close(linger=2000)  # connections are made in the background: flush first
        self.zsocks.clear()
        while self.idle:
            self.idle.popleft().close()


# -- watching ---------------------------------------------------------------------------
def tree_usage(pid: int) -> tuple[int, int]:
    """(PSS bytes, open fds) summed over a process and all its descendants."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    pss = fds = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            pss += getattr(proc.memory_full_info(), "pss", 0)
            fds += proc.num_fds()
    return pss, fds


class Watch:
    """Cluster events from every node, and the target's memory and descriptors."""

    def __init__(self, ctx: zmq.Context, nodes: list[LocalNode], target: LocalNode) -> None:
        self.sub = ctx.socket(zmq.SUB)
        self.sub.setsockopt(zmq.LINGER, 0)
        for prefix in (b"node.", b"actor."):
            self.sub.setsockopt(zmq.SUBSCRIBE, prefix)
        for node in nodes:
            self.sub.connect(node.events)
        self.target = target
        self.events: list[dict[str, Any]] = []
        self.counts = CounterLog()
        self.counts.record(_request(target, "status"), baseline=True)
        self.pss_base, self.fds_base = tree_usage(self.pid())
        self.pss_max, self.fds_max = self.pss_base, self.fds_base

    def pid(self) -> int:
        return self.target.proc.pid if self.target.proc is not None else -1

    def pump(self) -> None:
        while self.sub.poll(0, zmq.POLLIN):
            with contextlib.suppress(Exception):
                self.events.append(unpack_untrusted(self.sub.recv_multipart()[-1]))

    def sample(self) -> None:
        pss, fds = tree_usage(self.pid())
        self.pss_max, self.fds_max = max(self.pss_max, pss), max(self.fds_max, fds)

    def tick(self) -> None:
        """Events, memory, and the counters of every actor process (before it may die)."""
        self.pump()
        self.sample()
        if self.target_running():
            self.counts.record(_request(self.target, "status", timeout_s=1.0))

    def target_running(self) -> bool:
        return self.target.proc is not None and self.target.proc.poll() is None

    def close(self) -> None:
        self.sub.close(linger=0)


# -- the run ----------------------------------------------------------------------------
@dataclass
class Bounds:
    time_limit_s: float = 120.0
    rate: float = 1500.0  # frames per second
    max_pss_growth_mib: float = 128.0
    max_fd_growth: int = 1100  # MAX_PEERS (256) peer sockets, 3-4 descriptors each
    settle_s: float = 90.0  # for the node to drain, then for the cluster to re-converge


@dataclass
class FuzzReport:
    seed: int
    target: str
    frames: int = 0
    elapsed_s: float = 0.0
    sent: dict[str, int] = field(default_factory=dict)  # kind name -> frames
    endpoints: dict[str, str] = field(default_factory=dict)  # kind name -> endpoint
    families: dict[str, str] = field(default_factory=dict)  # kind name -> family
    send_errors: dict[str, int] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)  # "actor counter" -> increase
    restarts: dict[str, int | None] = field(default_factory=dict)  # node -> restarts
    exits: list[str] = field(default_factory=list)  # actor.exited on any node
    target_failed_by: list[str] = field(default_factory=list)
    target_suspected_by: list[str] = field(default_factory=list)
    fooled: dict[str, int] = field(default_factory=dict)  # node.* events the target published
    pss_base: int = 0
    pss_max: int = 0
    pss_end: int = 0
    fds_base: int = 0
    fds_max: int = 0
    before: dict[str, Any] = field(default_factory=dict)  # incarnation, members, keys
    after: dict[str, Any] = field(default_factory=dict)
    converged: bool = False
    convergence: str = ""
    failures: list[str] = field(default_factory=list)


INTERESTING = ("dropped.", "rejected.", "news_", "control_malformed", "bus_malformed",
               "rpc_malformed", "send_queue_full", "bus_dropped", "relayed_unowned",
               "refutations", "send_unknown_peer", "stranger_push_pulls", "in_sync",
               "states_rejected", "dial_refused_address", "peers_evicted")


def row_counters(row: dict[str, Any]) -> dict[str, int]:
    """The drop-like counters of one actor's status row, its core's prefixed "core "."""
    out: dict[str, int] = {}
    core = (row.get("status") or {}).get("core") or {}
    for source, prefix in ((row.get("counters") or {}, ""), (core, "core ")):
        for name, value in source.items():
            if isinstance(value, int) and name.startswith(INTERESTING):
                out[prefix + name] = value
    return out


class CounterLog:
    """The latest counters of every actor process seen: a restart starts from zero, so
    increases are summed per (actor, pid) and nothing counted before a crash is lost.

    The supervisor keeps a dead actor's last counters until its successor's first
    heartbeat, first with no pid, then under the new pid: such rows are not a new
    process's counts and are skipped, or a crash loop would count them again and again."""

    def __init__(self) -> None:
        self.base: dict[tuple[str, int], dict[str, int]] = {}
        self.last: dict[tuple[str, int], dict[str, int]] = {}
        self.latest: dict[str, dict[str, int]] = {}  # actor -> its last counters recorded

    def record(self, status: dict[str, Any] | None, baseline: bool = False) -> None:
        for row in (status or {}).get("actors", []):
            if not row.get("pid"):
                continue
            name = str(row.get("name"))
            key, counts = (name, int(row["pid"])), row_counters(row)
            if key not in self.last and counts and counts == self.latest.get(name):
                continue
            self.last[key] = self.latest[name] = counts
            if baseline:
                self.base[key] = counts

    def increase(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (actor, pid), counts in self.last.items():
            base = self.base.get((actor, pid), {})
            for name, value in counts.items():
                out[f"{actor} {name}"] += value - base.get(name, 0)
        return {k: v for k, v in sorted(out.items()) if v}

    def drops(self) -> int:
        return sum(v for k, v in self.increase().items() if "dropped." in k or "malformed" in k)


def _request(node: LocalNode, op: str, args: dict[str, Any] | None = None,
             timeout_s: float = 5.0) -> Any:
    try:
        return node.request(op, args, timeout_s=timeout_s)
    except (RpcError, zmq.ZMQError):
        return None


def _facts(node: LocalNode) -> dict[str, Any]:
    """The target's incarnation, member counts by status and replicated keys."""
    status = _request(node, "status") or {}
    rows = {r["name"]: r.get("status") or {} for r in status.get("actors", [])}
    return {"incarnation": rows.get("membership", {}).get("incarnation"),
            "members": rows.get("membership", {}).get("members"),
            "keys": rows.get("anti_entropy", {}).get("keys")}


def all_alive(nodes: list[LocalNode]) -> bool:
    """Every node sees every node alive."""
    return not not_alive(nodes)


def not_alive(nodes: list[LocalNode]) -> str:
    """What keeps every node from seeing every node alive ("" when nothing does)."""
    ids = {n.name for n in nodes}
    for node in nodes:
        started = time.monotonic()
        try:
            rows = node.request("members", timeout_s=5.0)
        except (RpcError, zmq.ZMQError) as exc:
            return (f"{node.name} did not answer `members`: {exc} "
                    f"after {time.monotonic() - started:.1f} s")
        status = {r["node_id"]: r.get("status") for r in rows}
        missing = {i: status.get(i) for i in sorted(ids) if status.get(i) != "alive"}
        if missing:
            return f"{node.name} sees {missing}"
    return ""


def wait_for(predicate: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


def target_of(nodes: list[LocalNode], target: LocalNode) -> Target:
    rows = _request(target, "members") or []
    members = tuple((r["node_id"], r["address"]) for r in rows if r["node_id"] != target.name)
    cluster = (_request(target, "status") or {}).get("cluster", "local")
    return Target(cluster, target.name, target.gossip, target.sync, target.events,
                  target.control, members)


def _shoot(shooter: Shooter, forge: Forge, kinds: list[Kind], frames: int, bounds: Bounds,
           watch: Watch, report: FuzzReport) -> None:
    cum: list[float] = []
    for k in kinds:
        cum.append((cum[-1] if cum else 0.0) + k.weight)
    sent: Counter[str] = Counter()
    start = next_check = time.monotonic()
    for i in range(frames):
        now = time.monotonic()
        if now - start >= bounds.time_limit_s:
            break
        if now >= next_check:
            next_check = now + 1.0
            watch.tick()
            if not watch.target_running():
                report.failures.append("the target node stopped during the run")
                break
        kind = forge.rng.choices(kinds, cum_weights=cum)[0]
        shooter.send(kind.endpoint, kind.make(forge))
        sent[kind.name] += 1
        ahead = start + (i + 1) / bounds.rate - time.monotonic()
        if ahead > 0.002:
            time.sleep(ahead)
    report.elapsed_s = round(time.monotonic() - start, 2)
    report.frames = sum(sent.values())
    report.sent = dict(sent)


def _settle(watch: Watch, timeout_s: float) -> None:
    """Until the target's drop counters stop moving: its queues are drained (real
    gossip goes on, so byte counts never stop; only hostile frames are dropped)."""
    last: int | None = None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and watch.target_running():
        watch.tick()
        total = watch.counts.drops()
        if total == last:
            return
        last = total
        time.sleep(1.5)  # counters arrive with the half-second heartbeats


def converges(nodes: list[LocalNode], target: LocalNode, key: str,
              timeout_s: float) -> tuple[bool, str]:
    """A kv write on `target` reaches every node, and every node sees every other alive."""
    if target.proc is None or target.proc.poll() is not None:
        return False, "the target is not running"
    try:
        written = target.request("kv.set", {"key": key, "value": "ok"})
    except (RpcError, zmq.ZMQError) as exc:
        return False, f"kv set on the target failed: {exc}"
    version = written.get("version")

    seen: dict[str, Any] = {}

    def everywhere() -> bool:
        for n in nodes:
            seen[n.name] = (_request(n, "kv.get", {"key": key}, 2.0) or {}).get("version")
        return all(v == version for v in seen.values())

    if not wait_for(everywhere, timeout_s):
        return False, f"kv write (version {version}) did not reach every node: {seen}"
    last = [""]

    def alive() -> bool:
        last[0] = not_alive(nodes)
        return not last[0]

    if not wait_for(alive, timeout_s):
        return False, f"some node does not see every other alive: {last[0]}"
    return True, f"kv write version {version} reached every node; all members alive"


def _judge(report: FuzzReport, watch: Watch, nodes: list[LocalNode], bounds: Bounds) -> None:
    watch.pump()
    real = {n.name for n in nodes}
    for e in watch.events:
        data, source, about = e.get("data") or {}, e.get("source"), e.get("node_id")
        if e.get("type") == "actor.exited":
            report.exits.append(f"{source}/{data.get('actor')} code={data.get('exit_code')} "
                                f"signal={data.get('signal')}")
        elif about == report.target and source != report.target:
            if e.get("type") == "node.failed":
                report.target_failed_by.append(str(source))
            elif e.get("type") == "node.suspect":
                report.target_suspected_by.append(str(source))
        elif source == report.target and str(e.get("type")).startswith("node."):
            key = f"{e.get('type')} {about if about in real else 'stranger'}"
            report.fooled[key] = report.fooled.get(key, 0) + 1
    for node in nodes:
        status = _request(node, "status")
        report.restarts[node.name] = (None if status is None else
                                      sum(a.get("restarts", 0) for a in status["actors"]))
    report.pss_base, report.pss_max = watch.pss_base, watch.pss_max
    report.pss_end = tree_usage(watch.pid())[0]  # after the settle: what the node keeps
    report.fds_base, report.fds_max = watch.fds_base, watch.fds_max
    f = report.failures
    if report.exits or any(r for r in report.restarts.values()):
        f.append(f"actors exited: {report.exits[:5]} restarts {report.restarts}")
    if None in report.restarts.values():
        f.append("a node does not answer status")
    if report.target_failed_by:
        f.append(f"the target was declared failed by {sorted(set(report.target_failed_by))}")
    growth = (report.pss_max - report.pss_base) / 2**20
    if growth > bounds.max_pss_growth_mib:
        f.append(f"PSS grew by {growth:.1f} MiB (limit {bounds.max_pss_growth_mib:g})")
    if report.fds_max - report.fds_base > bounds.max_fd_growth:
        f.append(f"open fds grew by {report.fds_max - report.fds_base} "
                 f"(limit {bounds.max_fd_growth})")
    inc = report.after.get("incarnation")
    if isinstance(inc, int) and inc > MAX_COUNTER:  # peers refuse its alive news from now on
        f.append(f"the target's incarnation {inc} is past what peers accept ({MAX_COUNTER})")
    if not report.converged:
        f.append(f"no convergence after the run: {report.convergence}")


def fuzz(nodes: list[LocalNode], frames: int, seed: int, kinds: list[Kind],
         bounds: Bounds | None = None, target_index: int = 0) -> FuzzReport:
    """Throw `frames` hostile frames of `kinds` at `nodes[target_index]`; judge the cluster."""
    bounds = bounds or Bounds()
    target = nodes[target_index]
    report = FuzzReport(seed, target.name)
    report.endpoints = {k.name: k.endpoint for k in kinds}
    report.families = {k.name: k.family for k in kinds}
    ctx = zmq.Context()
    time.sleep(1.0)  # status carries the actors' last heartbeats (every 0.5 s)
    report.before = _facts(target)
    watch = Watch(ctx, nodes, target)
    shooter = Shooter(ctx, target_of(nodes, target))
    try:
        time.sleep(0.3)  # let the event subscriptions reach the publishers
        forge = Forge(shooter.t, random.Random(seed))
        _shoot(shooter, forge, kinds, frames, bounds, watch, report)
        shooter.close()
        report.send_errors = dict(shooter.errors)
        _settle(watch, bounds.settle_s)
        report.counters = watch.counts.increase()
        report.after = _facts(target)
        report.converged, report.convergence = converges(nodes, target, f"fuzz.check.{seed}",
                                                         bounds.settle_s)
        watch.sample()
        _judge(report, watch, nodes, bounds)
    finally:
        shooter.close()
        watch.close()
        ctx.destroy(linger=0)
    return report


# -- output -----------------------------------------------------------------------------
def format_table(r: FuzzReport) -> str:
    rate = r.frames / r.elapsed_s if r.elapsed_s else 0.0
    lines = [f"lbcluster fuzz: seed {r.seed}, target {r.target}, {r.frames} frames in "
             f"{r.elapsed_s:.1f} s ({rate:.0f}/s)", "",
             f"{'ENDPOINT':<12} {'KIND':<26} {'FAMILY':<8} {'FRAMES':>7}"]
    for name, count in sorted(r.sent.items(), key=lambda kv: (r.endpoints[kv[0]], kv[0])):
        lines.append(f"{r.endpoints[name]:<12} {name.split('.', 1)[1]:<26} "
                     f"{r.families[name]:<8} {count:>7}")
    lines += [f"{'total':<48} {r.frames:>7}", "",
              f"{'ACTOR':<16} {'DROPPED / REJECTED (increase)':<44} {'COUNT':>8}"]
    for key, value in r.counters.items():
        actor, _, name = key.partition(" ")
        lines.append(f"{actor:<16} {name:<44} {value:>8}")
    errors = ", ".join(f"{k} x{v}" for k, v in sorted(r.send_errors.items())) or "none"
    mib = 2**20
    lines += ["", f"send errors (fuzzer side): {errors}",
              f"PSS of the target: {r.pss_base / mib:.1f} MiB -> max {r.pss_max / mib:.1f} MiB, "
              f"{r.pss_end / mib:.1f} MiB at the end; "
              f"open fds {r.fds_base} -> max {r.fds_max}",
              f"target before: {r.before}", f"target after:  {r.after}",
              f"restarts: {r.restarts}; actor exits: {r.exits or 'none'}",
              f"target suspected by {sorted(set(r.target_suspected_by)) or 'nobody'}, "
              f"failed by {sorted(set(r.target_failed_by)) or 'nobody'}",
              f"target's view changed by spoofs: {r.fooled or 'no'}",
              f"convergence: {r.convergence}", ""]
    lines += [f"FAIL  {f}" for f in r.failures] or ["PASS  every check"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=None, help="random if omitted (printed)")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds of sending")
    parser.add_argument("--rate", type=float, default=1500.0, help="frames per second")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--skip", action="append", default=[],
                        help="kinds to leave out, fnmatch patterns like 'sync.*_max'")
    parser.add_argument("--only", action="append", default=[],
                        help="send only these kinds (fnmatch patterns); repeatable")
    parser.add_argument("--max-pss-growth-mib", type=float, default=128.0)
    # Membership keeps up to 256 peer sockets (MAX_PEERS), about 3-4 descriptors each.
    parser.add_argument("--max-fd-growth", type=int, default=1100)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the nodes' configs, data and logs here (default: a temp dir)")
    parser.add_argument("--max-members", type=int, default=None,
                        help="[membership] max_members of every node (default: the node's)")
    parser.add_argument("--max-keys", type=int, default=None,
                        help="[anti_entropy] max_keys of every node (default: the node's)")
    args = parser.parse_args(argv)
    # What a forger can make a node keep is bounded by these caps, and so is its memory:
    # an operator sizes them to the cluster (docs/SECURITY.md section 7).
    caps: dict[str, dict[str, Any]] = {}
    if args.max_members is not None:
        caps["membership"] = {"max_members": args.max_members}
    if args.max_keys is not None:
        caps["anti_entropy"] = {"max_keys": args.max_keys}
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    kinds = select_kinds(tuple(args.families.split(",")), tuple(args.skip),
                         tuple(args.only) or ("*",))
    if not kinds:
        parser.error("no kind left to send")
    bounds = Bounds(args.time_limit, args.rate, args.max_pss_growth_mib, args.max_fd_growth)
    print(f"--- seed {seed}: starting {args.nodes} nodes", flush=True)
    with contextlib.ExitStack() as stack:
        root = args.workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(
            prefix="lbc-fuzz-")))
        cluster = stack.enter_context(LocalCluster(root, args.nodes, extra=caps))
        if not wait_for(lambda: all_alive(cluster.nodes), 30.0):
            print("the cluster did not converge before the run", file=sys.stderr)
            return 2
        print(f"--- converged; sending {args.frames} frames to n0", flush=True)
        report = fuzz(cluster.nodes, args.frames, seed, kinds, bounds)
    print(format_table(report))
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(report), indent=1, sort_keys=True))
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
