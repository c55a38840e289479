"""The membership actor: the ZeroMQ shell around the SWIM + Lifeguard core.

Inbound gossip arrives from the supervisor's gossip proxy on a PULL socket
(the supervisor keeps the public port open while this actor restarts).
Outbound messaging is one-way, through the shared `PeerPool`: one DEALER
per peer address with a small send queue, sent without blocking, so a slow
or absent peer never delays the probes of others; replies are new messages
to the sender's address.

The pool monitors each DEALER. A connection that drops and whose reconnect
is then *refused* means nothing listens on that node's gossip port: its
supervisor, which holds the port for its whole life, is gone. That
evidence goes to the core's crash fast path (`connection_refused`). A
paused or partitioned node never refuses, and an actor restart never
closes the port, so neither can trigger it.

The incarnation and the last known members are written to ``data_dir`` so
a restarted actor (or node) refutes old suspicion and can rejoin through
members it knew even when its seeds are down.
"""

from __future__ import annotations

import contextlib
import random
from typing import Any

import zmq

from actors.membership.core.swim import Membership, Outbound
from actors.node.config import SYNC_META_KEY, advertised
from actors.runtime import Actor, NodeEnv
from actors.storage.snapshot import SnapshotError, load_snapshot, save_snapshot
from transport.codec import encode
from transport.peering import PeerSecurity, read_inbox
from transport.peerpool import PeerPool
from transport.protocol import (
    LIVE,
    MemberStatus,
    NodeInfo,
    ProtocolError,
    map_to_node_info,
    node_info_to_map,
)
from transport.rpc import Request, RpcError
from transport.views import member_row

PEER_HWM = 64
REJOIN_KNOWN = 32  # remembered members contacted at start, besides the seeds
SAVE_EVERY_S = 5.0
SAVE_INCARNATION_S = 0.1
SAVED_MEMBERS = 4 * REJOIN_KNOWN  # enough to rejoin by; the table comes back by push-pull
# A join no seed answered is warned about after join_retry_max_ms (the retries have
# reached their ceiling), then again after twice as long each time, up to this gap.
JOIN_WARN_MAX_GAP_S = 600.0


class MembershipActor(Actor):
    serves = ("members", "metadata.")  # control ops routed here (actors.node.plan)
    def __init__(self, name: str, env: NodeEnv, ctx: zmq.Context) -> None:
        super().__init__(name, env, ctx)
        cfg = env.config
        self.cluster = cfg.node.cluster
        self.timing = cfg.membership
        self.address = advertised(cfg.network.gossip, cfg.network.advertise_host)
        self.state_path = cfg.node.data_dir / "membership.bin"
        self.next_sweep = 0.0
        self.security = PeerSecurity(cfg)
        self.pool = PeerPool(self, self.security, self.counters, hwm=PEER_HWM,
                             on_connected=self._on_connected, on_refused=self._on_refused)
        self.next_save = 0.0
        self.saved_at = float("-inf")
        self.dirty = True
        self.saved_incarnation = -1
        self.seeds: list[str] = []
        self.join_started = 0.0
        self.join_warn_at: float | None = None  # None: not waiting on a join
        self.join_warn_gap_s = self.timing.join_retry_max_s
        self.join_warnings = 0

    # -- lifecycle ---------------------------------------------------------------
    def setup(self, now: float) -> None:
        saved = self._load()
        incarnation = int(saved.get("incarnation", 0)) + 1  # outbid any old suspicion
        known: list[NodeInfo] = []
        for raw in saved.get("members", [])[:REJOIN_KNOWN]:
            with contextlib.suppress(ProtocolError):
                known.append(map_to_node_info(raw))
        me = NodeInfo(self.env.node_id, self.address, self._metadata(self.env.config.node.metadata))
        self.core = Membership(me, self.timing, random.Random(), now, incarnation=incarnation,
                               known=[k for k in known if k.node_id != me.node_id])
        self.inbox = self.security.open_inbox(self.ctx, self.env.gossip_fd,
                                              self.env.config.network.gossip, self.counters)
        if self.security.zap is not None:
            self.watch(self.security.zap.sock, self.security.zap.handle)
        self.watch(self.inbox, self._on_inbox)
        seeds = [s for s in self.env.config.network.seeds if s != self.address]
        seeds += [k.address for k in known if k.address not in seeds and k.address != self.address]
        self._send(self.core.join(seeds, now))
        self.seeds = seeds
        if seeds:
            self.join_started = now
            self.join_warn_at = now + self.join_warn_gap_s
        self._save(now)

    def shutdown(self, now: float) -> None:
        self._send(self.core.leave(now))
        self._flush_events()
        self._save(now)
        self.pool.close(linger=500)  # the goodbye needs a moment

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
            self.pool.sweep(now)
        if self.join_warn_at is not None and (now >= self.join_warn_at or (
                self.join_warnings and self.core.counters.get("join_replies", 0))):
            self._check_join(now)  # due, or the join we warned about was just answered
        # A new incarnation goes to disk at once (a restart must not reuse it), but at
        # most every SAVE_INCARNATION_S: a flood of forged suspicions must not become
        # a flood of fsyncs.
        new_incarnation = self.core.incarnation() != self.saved_incarnation
        if (new_incarnation and now >= self.saved_at + SAVE_INCARNATION_S) or (
                self.dirty and now >= self.next_save):
            self._save(now)

    def next_deadline(self) -> float | None:
        due = [self.core.next_deadline(), self.join_warn_at]
        if self.core.incarnation() != self.saved_incarnation:
            due.append(self.saved_at + SAVE_INCARNATION_S)
        return min((d for d in due if d is not None), default=None)

    def _check_join(self, now: float) -> None:
        """Warn, with backoff, while no seed has answered the join and no member is known."""
        log = self.log.bind(seeds=self.seeds, waited_s=round(now - self.join_started, 1))
        if self.core.counters.get("join_replies", 0) or any(
                m.status == MemberStatus.ALIVE and m.node.node_id != self.env.node_id
                for m in self.core.members()):
            self.join_warn_at = None
            if self.join_warnings:
                log.info("joined the cluster")
            return
        self.join_warnings += 1
        self.join_warn_gap_s = min(self.join_warn_gap_s * 2, JOIN_WARN_MAX_GAP_S)
        self.join_warn_at = now + self.join_warn_gap_s
        log.bind(next_warning_s=self.join_warn_gap_s).warning(
            "no seed answered the join; still retrying")

    # -- outbound ----------------------------------------------------------------
    def _send(self, outbound: list[Outbound]) -> None:
        seed_ids = self.env.config.network.seed_ids
        for out in outbound:
            node_id = self.core.node_at(out.address) or seed_ids.get(out.address)
            self.pool.send(out.address, encode(out.message, self.cluster), node_id)

    def _on_connected(self, address: str, now: float) -> None:
        node_id = self.core.node_at(address)
        if node_id:
            self.core.connection_ok(node_id, now)
            self._flush_events()

    def _on_refused(self, address: str, now: float) -> None:
        """Nothing listens at a member's gossip port any more: its node is gone."""
        node_id = self.core.node_at(address)
        if node_id:
            self._send(self.core.connection_refused(node_id, now))
        self._flush_events()

    def reload(self) -> None:
        """New keys: hang up on every peer, so each is dialled again with its current key
        (or not at all when revoked)."""
        self.security.reload()
        self.pool.hang_up_all()

    # -- events ------------------------------------------------------------------
    def _flush_events(self) -> None:
        for event in self.core.drain_events():
            self.dirty = True
            self.publish(event.kind, event.node.node_id,
                         member_row(event.node, event.status, event.incarnation))
            if event.kind == "node.left":
                self.pool.hang_up(event.node.address)  # stop queueing for it
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
                   if m.status in LIVE and m.node.node_id != self.env.node_id]
        save_snapshot(self.state_path, {"incarnation": self.core.incarnation(),
                                        "members": members[:SAVED_MEMBERS]})
        self.dirty = False
        self.saved_incarnation = self.core.incarnation()
        self.saved_at, self.next_save = now, now + SAVE_EVERY_S

