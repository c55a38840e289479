"""SWIM probing for `actors.membership.core.swim`: pings, indirect probes, relays, nacks.

Theory of operation (SWIM §4, Lifeguard §3, memberlist `state.go` `probeNode`):

* One probe at a time. Every probe interval (stretched by the local health
  multiplier, `actors.membership.core.awareness`) one member, taken round-robin from a
  list reshuffled after each pass (SWIM §4.3), gets a "ping" with a fresh
  sequence number. A member that joins is inserted at a random point of the
  current pass, so it is probed soon.
* No "ping-ack" within `probe_timeout_s`: "ping-req" through `indirect_checks`
  alive members. No ack by the end of the interval: the probe failed, and
  `step` returns a suspicion of the target, which the owner applies as news
  (this module never changes a member's status itself).
* Relays. A member asked by "ping-req" pings the target under a sequence
  number of its own and relays the ack under the requester's, or answers
  "ping-nack" when none came within its own probe timeout (Lifeguard), so
  the requester can tell "target down" from "my own messages are lost".
* Local health (Lifeguard): an ack lowers the awareness score; a failed
  probe raises it by the number of relays that sent no nack (by 1 when no
  relay was asked): a missing nack blames our own health, not the target.
* Acks and nacks carrying an unknown or finished sequence number are late;
  they are dropped and counted. Probes and relays draw sequence numbers from
  one counter, so an ack always names exactly one of them.

Pure like the rest of the core: time arrives as `now`, randomness from the
owner's `random.Random`. The prober shares its owner's member table,
awareness and counters, and builds payloads with the owner's `extra`
(reply address, incarnation, piggybacked news).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from actors.membership.core.awareness import Awareness
from actors.membership.core.members import (
    ALIVE,
    LIVE,
    SUSPECT,
    Entry,
    MemberTable,
    News,
    endpoint_or_none,
    reply_address,
    str_or_none,
    u63_or_none,
)
from actors.membership.core.timing import MembershipTiming
from transport.protocol import (
    GossipMessage,
    make_message,
    ping_ack_message,
    ping_message,
    ping_req_message,
)


@dataclass(frozen=True)
class Outbound:
    """A message to send to `address` ("tcp://host:port")."""

    address: str
    message: GossipMessage


class CountFn(Protocol):
    """Adds `by` to the owner's counter `name`."""

    def __call__(self, name: str, by: int = 1) -> None: ...


class ExtraFn(Protocol):
    """The owner's common payload for a message to `to` (news only if `gossip`)."""

    def __call__(self, to: str | None, gossip: bool = True) -> dict[str, Any]: ...


@dataclass
class _Probe:
    target: str
    address: str
    seq: int
    ack_at: float  # direct ack deadline: ping-req after it
    end_at: float  # end of the (scaled) interval: suspect after it
    asked: bool = False  # ping-reqs sent
    indirect: int = 0  # ping-reqs sent = nacks expected
    nacks: int = 0


@dataclass
class _Relay:
    """A ping we send on behalf of a ping-req's requester."""

    requester: str
    address: str
    seq: int  # the requester's sequence number, echoed in our ack or nack
    nack_at: float


class Prober:
    """The probe and relay state of one node; see the module docstring."""

    def __init__(self, table: MemberTable, timing: MembershipTiming, rng: random.Random,
                 awareness: Awareness, count: CountFn, extra: ExtraFn, now: float) -> None:
        self._table, self._t, self._rng = table, timing, rng
        self._awareness, self._count, self._extra = awareness, count, extra
        self._seq = 0
        self._probe: _Probe | None = None
        self._order: list[str] = []  # this pass's probe order (node ids)
        self._order_idx = 0
        self._next_probe_at = now + rng.uniform(0, timing.probe_interval_s)
        self._relays: dict[int, _Relay] = {}  # by our own sequence number

    @property
    def _me_id(self) -> str:
        return self._table.me.node.node_id

    def next_deadline(self, probing: bool) -> float | None:
        """The earliest relay nack and, if `probing`, the probe's next step."""
        times = [r.nack_at for r in self._relays.values()]
        if probing:
            probe = self._probe
            if probe is None:
                times.append(self._next_probe_at)
            else:
                times.append(probe.end_at if probe.asked else probe.ack_at)
        return min(times, default=None)

    def stop(self) -> None:
        """Abandon the running probe (the node is leaving); relays still answer."""
        self._probe = None

    def add_member(self, node_id: str) -> None:
        """A member joined: probe it within this pass."""
        # memberlist inserts new members at a random point so they are probed soon.
        self._order.insert(self._rng.randint(self._order_idx, len(self._order)), node_id)

    # --- inbound ---------------------------------------------------------

    def on_ping(self, msg: GossipMessage, pl: Mapping[str, Any]) -> list[Outbound]:
        address, seq = reply_address(pl), u63_or_none(pl.get("seq"))
        if address is None or seq is None:
            return self._reject("bad_ping")
        extra = self._extra(msg.sender)
        return [Outbound(address, ping_ack_message(self._me_id, msg.sender, seq,
                                                   payload_extra=extra))]

    def on_ack(self, seq: int | None) -> list[Outbound]:
        probe = self._probe
        if probe is not None and seq is not None and seq == probe.seq:
            self._count("acks")
            self._awareness.apply_delta(-1)
            self._probe = None
            return []
        relay = None if seq is None else self._relays.pop(seq, None)
        if relay is None:
            self._count("late_acks")
            return []
        self._count("relayed_acks")
        ack = ping_ack_message(self._me_id, relay.requester, relay.seq,
                               payload_extra=self._extra(relay.requester))
        return [Outbound(relay.address, ack)]

    def on_nack(self, seq: int | None) -> None:
        probe = self._probe
        if probe is not None and seq is not None and seq == probe.seq:
            probe.nacks += 1
            self._count("nacks_received")
        else:
            self._count("late_nacks")

    def on_ping_req(self, msg: GossipMessage, pl: Mapping[str, Any], now: float) -> list[Outbound]:
        requester_address = reply_address(pl)
        target_id, seq = str_or_none(pl.get("node")), u63_or_none(pl.get("seq"))
        if requester_address is None or target_id is None or seq is None:
            return self._reject("bad_ping_req")
        self._count("ping_reqs_received")
        if target_id == self._me_id:  # odd but harmless: answer for ourselves
            return [Outbound(requester_address, ping_ack_message(
                self._me_id, msg.sender, seq, payload_extra=self._extra(msg.sender)))]
        entry = self._table.get(target_id)
        target_address = (entry.node.address if entry is not None
                          else endpoint_or_none(pl.get("taddr")))
        local_seq = self._next_seq()
        self._relays[local_seq] = _Relay(msg.sender, requester_address, seq,
                                         now + self._t.probe_timeout_s)
        if target_address is None:
            self._relays[local_seq].nack_at = now  # nobody to ping: nack at the next tick
            return []
        ping = ping_message(self._me_id, target_id, local_seq,
                            payload_extra=self._extra(target_id))
        return [Outbound(target_address, ping)]

    # --- ticking -----------------------------------------------------------

    def expire_relays(self, now: float) -> list[Outbound]:
        """Nack every relay whose target did not ack in time."""
        out: list[Outbound] = []
        for seq, relay in list(self._relays.items()):
            if relay.nack_at <= now:
                del self._relays[seq]
                self._count("nacks_sent")
                payload = {"seq": relay.seq, **self._extra(None, gossip=False)}
                nack = make_message("ping-nack", self._me_id, relay.requester, payload=payload)
                out.append(Outbound(relay.address, nack))
        return out

    def step(self, now: float) -> tuple[list[Outbound], News | None]:
        """Advance the running probe: ping-reqs past the ack deadline; past the interval's
        end the probe failed, and the suspicion it raises (or None) comes back to apply."""
        out: list[Outbound] = []
        probe = self._probe
        if probe is not None and not probe.asked and now >= probe.ack_at:
            out += self._ask_indirect(probe)
        if probe is not None and now >= probe.end_at:
            return out, self._failed(probe)
        return out, None

    def start_due(self, now: float) -> list[Outbound]:
        """Ping the next member if no probe runs and the next one is due."""
        if self._probe is not None or now < self._next_probe_at:
            return []
        interval = self._awareness.scale(self._t.probe_interval_s)
        self._next_probe_at = now + interval
        target = self._next_target()
        if target is None:
            return []
        tid = target.node.node_id
        seq = self._next_seq()
        self._probe = _Probe(tid, target.node.address, seq, now + self._t.probe_timeout_s,
                             now + interval)
        self._count("probes")
        ping = ping_message(self._me_id, tid, seq, payload_extra=self._extra(tid))
        return [Outbound(target.node.address, ping)]

    def _next_target(self) -> Entry | None:
        """Round-robin over a list reshuffled at the end of each round (SWIM §4.3)."""
        for _ in range(2):
            while self._order_idx < len(self._order):
                entry = self._table.get(self._order[self._order_idx])
                self._order_idx += 1
                if entry is not None and entry is not self._table.me and entry.status in LIVE:
                    return entry
            self._order = self._table.other_ids()
            self._rng.shuffle(self._order)
            self._order_idx = 0
        return None

    def _ask_indirect(self, probe: _Probe) -> list[Outbound]:
        probe.asked = True
        target = probe.target
        peers = self._table.sample(
            self._rng, self._t.indirect_checks,
            lambda e: e.status == ALIVE and e.node.node_id != target)
        probe.indirect = len(peers)
        self._count("ping_reqs_sent", len(peers))
        out = []
        for peer in peers:
            pid = peer.node.node_id
            extra = {**self._extra(pid), "taddr": probe.address}
            req = ping_req_message(self._me_id, pid, probe.target, probe.seq,
                                   payload_extra=extra)
            out.append(Outbound(peer.node.address, req))
        return out

    def _failed(self, probe: _Probe) -> News | None:
        """End a failed probe; the suspicion of its target, if it is still live."""
        self._probe = None
        self._count("probe_failures")
        # Lifeguard: a missing nack from a relay blames our own health.
        missing = max(0, probe.indirect - probe.nacks) if probe.indirect else 1
        self._awareness.apply_delta(missing)
        entry = self._table.get(probe.target)
        if entry is None or entry.status not in LIVE:
            return None
        return News(SUSPECT, probe.target, entry.incarnation, accuser=self._me_id)

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _reject(self, reason: str) -> list[Outbound]:
        self._count("rejected." + reason)
        return []
