"""The membership actor: the ZeroMQ shell around the SWIM + Lifeguard core.

Inbound gossip arrives from the supervisor's gossip proxy on a PULL socket
(the supervisor keeps the public port open while this actor restarts).
Outbound messaging is one-way: one DEALER per peer address with a small
send queue, sent without blocking, so a slow or absent peer never delays
the probes of others; replies are new messages to the sender's address.

Each DEALER has a socket monitor. A connection that drops and whose
reconnect is then *refused* (libzmq reports CLOSED after CONNECT_DELAYED,
with no CONNECTED between) means nothing listens on that node's gossip
port: its supervisor, which holds the port for its whole life, is gone.
That evidence goes to the core's crash fast path (`connection_refused`).
A paused or partitioned node never refuses, and an actor restart never
closes the port, so neither can trigger it.

The incarnation and the last known members are written to ``data_dir`` so
a restarted actor (or node) refutes old suspicion and can rejoin through
members it knew even when its seeds are down.
"""

from __future__ import annotations

import contextlib
import functools
import random
import time
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.utils.monitor

from actors.membership.core.swim import Membership, Outbound
from actors.membership.core.timing import timing_for
from actors.node.config import SYNC_META_KEY, advertised
from actors.node.gateway import INBOUND_HWM, INBOUND_MAXMSGSIZE
from actors.runtime import Actor, NodeEnv
from actors.storage.snapshot import SnapshotError, load_snapshot, save_snapshot
from transport.codec import encode
from transport.peering import PeerSecurity, read_inbox
from transport.protocol import NodeInfo, ProtocolError, map_to_node_info, node_info_to_map
from transport.rpc import Request, RpcError
from transport.sockets import bind, close_monitored, make_socket
from transport.views import member_row

PEER_HWM = 64
# Outbound connections kept; the least recently used goes first. Each costs three
# ZeroMQ sockets (DEALER, monitor pair), and a context holds MAX_SOCKETS.
MAX_PEERS = 256
# Bytes queued, in all, to peers whose connection is not (yet, or any longer) up.
# libzmq keeps such messages until the peer answers, and a whole member table is
# up to 1 MiB: replies to addresses nobody listens on (a forger's) would otherwise
# hold MAX_PEERS x PEER_HWM of them. A joiner's first table fits many times over.
UNCONNECTED_BUDGET = 16 << 20
SMALL_MESSAGE = 4 << 10  # probes and acks: never held back by the budget
# A peer with messages queued and no connection for this long is hung up, and its
# queue with it: an honest node answers a dial within milliseconds (a crashed one
# was already reported by its refusal), so this only frees what forgers pinned.
UNCONNECTED_GIVE_UP_S = 10.0
MAX_SOCKETS = 4096
REJOIN_KNOWN = 32  # remembered members contacted at start, besides the seeds
SAVE_EVERY_S = 5.0
SAVE_INCARNATION_S = 0.1
SAVED_MEMBERS = 4 * REJOIN_KNOWN  # enough to rejoin by; the table comes back by push-pull
# Reconnect quickly (a refusal is seen ~50 ms after a crash), back off for dead peers.
RECONNECT_IVL_MS, RECONNECT_IVL_MAX_MS = 50, 2000
_MONITOR_EVENTS = (zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED
                   | zmq.EVENT_CONNECT_DELAYED)


@dataclass
class Peer:
    address: str
    sock: zmq.Socket
    monitor: zmq.Socket
    connected: bool = False
    was_connected: bool = False
    dialing: bool = False
    unsent: int = 0  # bytes queued while not connected (counted in the shared budget)
    down_since: float = field(default_factory=time.monotonic)


class MembershipActor(Actor):
    serves = ("members", "metadata.")  # control ops routed here (actors.node.plan)
    def __init__(self, name: str, env: NodeEnv, ctx: zmq.Context) -> None:
        super().__init__(name, env, ctx)
        cfg = env.config
        self.cluster = cfg.node.cluster
        self.timing = timing_for(cfg.membership_profile, cfg.membership)
        self.address = advertised(cfg.network.gossip, cfg.network.advertise_host)
        self.state_path = cfg.node.data_dir / "membership.bin"
        self.peers: dict[str, Peer] = {}
        self.unsent = 0  # sum of Peer.unsent
        self.next_sweep = 0.0
        self.security = PeerSecurity(cfg)
        self.next_save = 0.0
        self.saved_at = float("-inf")
        self.dirty = True
        self.saved_incarnation = -1

    # -- lifecycle ---------------------------------------------------------------
    def setup(self, now: float) -> None:
        self.ctx.set(zmq.MAX_SOCKETS, MAX_SOCKETS)
        saved = self._load()
        incarnation = int(saved.get("incarnation", 0)) + 1  # outbid any old suspicion
        known: list[NodeInfo] = []
        for raw in saved.get("members", [])[:REJOIN_KNOWN]:
            with contextlib.suppress(ProtocolError):
                known.append(map_to_node_info(raw))
        me = NodeInfo(self.env.node_id, self.address, self._metadata(self.env.config.node.metadata))
        self.core = Membership(me, self.timing, random.Random(), now, incarnation=incarnation,
                               known=[k for k in known if k.node_id != me.node_id])
        self.inbox = make_socket(self.ctx, zmq.PULL, hwm=INBOUND_HWM,
                                 maxmsgsize=INBOUND_MAXMSGSIZE)
        bind(self.inbox, self.env.gossip_in)
        self.watch(self.inbox, self._on_inbox)
        seeds = [s for s in self.env.config.network.seeds if s != self.address]
        seeds += [k.address for k in known if k.address not in seeds and k.address != self.address]
        self._send(self.core.join(seeds, now))
        self._save(now)

    def shutdown(self, now: float) -> None:
        self._send(self.core.leave(now))
        self._flush_events()
        self._save(now)
        for peer in self.peers.values():
            close_monitored(peer.sock, peer.monitor, linger=500)  # the goodbye needs a moment

    # -- inbound -----------------------------------------------------------------
    def _on_inbox(self, now: float) -> None:
        for msg in read_inbox(self.inbox, self.cluster, self.security, self.counters):
            self._send(self.core.handle(msg, now))
        self._flush_events()

    def tick(self, now: float) -> None:
        self._send(self.core.tick(now))
        self._flush_events()
        if now >= self.next_sweep:
            self.next_sweep = now + 1.0
            self._sweep_unconnected(now)
        # A new incarnation goes to disk at once (a restart must not reuse it), but at
        # most every SAVE_INCARNATION_S: a flood of forged suspicions must not become
        # a flood of fsyncs.
        new_incarnation = self.core.incarnation() != self.saved_incarnation
        if (new_incarnation and now >= self.saved_at + SAVE_INCARNATION_S) or (
                self.dirty and now >= self.next_save):
            self._save(now)

    def next_deadline(self) -> float | None:
        core = self.core.next_deadline()
        if self.core.incarnation() == self.saved_incarnation:
            return core
        due = self.saved_at + SAVE_INCARNATION_S
        return due if core is None else min(core, due)

    # -- outbound ----------------------------------------------------------------
    def _send(self, outbound: list[Outbound]) -> None:
        for out in outbound:
            peer = self.peers.pop(out.address, None)
            if peer is not None:
                self.peers[out.address] = peer  # most recently used last (LRU eviction)
            else:
                peer = self._dial(out.address)
            if peer is None:
                self.counters["send_no_key"] += 1
                continue
            data = encode(out.message, self.cluster)
            if not peer.connected and len(data) > SMALL_MESSAGE and \
                    self.unsent + len(data) > UNCONNECTED_BUDGET:
                self.counters["send_unconnected_full"] += 1
                continue
            try:
                peer.sock.send(data, zmq.NOBLOCK)
            except zmq.Again:
                self.counters["send_queue_full"] += 1
                continue
            self.counters["sent"] += 1
            self.counters["bytes_sent"] += len(data)
            if not peer.connected:
                peer.unsent += len(data)
                self.unsent += len(data)

    def _dial(self, address: str) -> Peer | None:
        while len(self.peers) >= MAX_PEERS:  # bounded sockets, whatever peers claim
            self._hang_up(next(iter(self.peers)))
            self.counters["peers_evicted"] += 1
        try:
            sock = make_socket(self.ctx, zmq.DEALER, hwm=PEER_HWM)
        except zmq.ZMQError:  # out of sockets or descriptors: drop this message, live on
            self.counters["dial_failed"] += 1
            return None
        node_id = self._node_at(address) or self.env.config.network.seed_ids.get(address)
        if not self.security.prepare(sock, node_id):
            sock.close(linger=0)
            return None
        sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
        try:
            monitor = sock.get_monitor_socket(_MONITOR_EVENTS)  # before connect: see it all
        except zmq.ZMQError:
            sock.close(linger=0)
            self.counters["dial_failed"] += 1
            return None
        try:
            sock.connect(address)
        except zmq.ZMQError:  # the core only passes tcp endpoints; this is the last guard
            close_monitored(sock, monitor)
            self.counters["dial_refused_address"] += 1
            return None
        peer = Peer(address, sock, monitor)
        self.peers[address] = peer
        self.watch(monitor, functools.partial(self._on_monitor, peer))
        return peer

    def _on_monitor(self, peer: Peer, now: float) -> None:
        while peer.monitor.poll(0, zmq.POLLIN):
            try:
                event = zmq.utils.monitor.recv_monitor_message(peer.monitor)["event"]
            except (zmq.ZMQError, ValueError):
                return
            node_id = self._node_at(peer.address)
            if event == zmq.EVENT_CONNECT_DELAYED:
                peer.dialing = True
            elif event == zmq.EVENT_CONNECTED:
                peer.connected = peer.was_connected = True
                peer.dialing = False
                self._settle(peer)  # what waited for this connection is on its way
                if node_id:
                    self.core.connection_ok(node_id, now)
            elif event == zmq.EVENT_DISCONNECTED:
                peer.connected, peer.down_since = False, now
            elif event == zmq.EVENT_CLOSED and peer.dialing and peer.was_connected:
                peer.dialing = False
                self.counters["connections_refused"] += 1
                if node_id:
                    self._send(self.core.connection_refused(node_id, now))
        self._flush_events()

    def reload(self) -> None:
        """New keys: hang up on every peer, so each is dialled again with its current key
        (or not at all when revoked)."""
        self.security.reload()
        for address in list(self.peers):
            self._hang_up(address)

    def _sweep_unconnected(self, now: float) -> None:
        stale = [p.address for p in self.peers.values()
                 if p.unsent and not p.connected and now - p.down_since > UNCONNECTED_GIVE_UP_S]
        for address in stale:
            self._hang_up(address)
            self.counters["peers_unreachable_dropped"] += 1

    def _settle(self, peer: Peer) -> None:
        self.unsent -= peer.unsent
        peer.unsent = 0

    def _node_at(self, address: str) -> str | None:
        return self.core.node_at(address)

    def _hang_up(self, address: str) -> None:
        """Stop queueing for a member that is gone for good."""
        peer = self.peers.pop(address, None)
        if peer is not None:
            self._settle(peer)
            self.unwatch(peer.monitor)
            close_monitored(peer.sock, peer.monitor)

    # -- events ------------------------------------------------------------------
    def _flush_events(self) -> None:
        for event in self.core.drain_events():
            self.dirty = True
            self.publish(event.kind, event.node.node_id,
                         member_row(event.node, event.status, event.incarnation))
            if event.kind == "node.left":
                self._hang_up(event.node.address)
            level = "warning" if event.kind in ("node.suspect", "node.failed") else "info"
            self.log.bind(member=event.node.node_id, incarnation=event.incarnation).log(
                level.upper(), event.kind)

    def handle_request(self, req: Request, now: float) -> Any:
        match req.op:
            case "members":
                return [member_row(m.node, m.status, m.incarnation) for m in self.core.members()]
            case "leave":
                self._send(self.core.leave(now))
                self._flush_events()
                return {"left": True}
            case "metadata.set":
                metadata = req.args.get("metadata")
                if not isinstance(metadata, dict):
                    raise RpcError("bad_request", "metadata must be a map")
                try:
                    self._send(self.core.set_metadata(self._metadata(metadata), now))
                except ValueError as exc:
                    raise RpcError("bad_request", str(exc)) from None
                self._flush_events()
                return {"incarnation": self.core.incarnation()}
        raise RpcError("unknown_op", f"membership has no operation {req.op!r}")

    def _metadata(self, user: dict[str, Any] | Any) -> dict[str, Any]:
        net = self.env.config.network
        return {**dict(user), SYNC_META_KEY: advertised(net.sync, net.advertise_host)}

    def status(self) -> dict[str, Any]:
        counts: dict[str, int] = {}
        for m in self.core.members():
            counts[m.status] = counts.get(m.status, 0) + 1
        return {"incarnation": self.core.incarnation(), "members": counts,
                "core": dict(self.core.counters)}

    # -- persistence -------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        try:
            saved = load_snapshot(self.state_path)
        except SnapshotError as exc:
            self.log.bind(error=str(exc)).warning("membership state unreadable; starting fresh")
            return {}
        return saved if isinstance(saved, dict) else {}

    def _save(self, now: float) -> None:
        members = [node_info_to_map(m.node) for m in self.core.members()
                   if m.status in ("alive", "suspect") and m.node.node_id != self.env.node_id]
        save_snapshot(self.state_path, {"incarnation": self.core.incarnation(),
                                        "members": members[:SAVED_MEMBERS]})
        self.dirty = False
        self.saved_incarnation = self.core.incarnation()
        self.saved_at, self.next_save = now, now + SAVE_EVERY_S

