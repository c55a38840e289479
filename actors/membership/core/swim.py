"""SWIM + Lifeguard membership core: pure, driven by `handle`, `tick` and the clock you pass.

Theory of operation (SWIM §4-5, Lifeguard §3-4, memberlist `state.go`; the long
form is in docs/design-notes.md):

* Probing (`probe`, `awareness`): one member per probe interval, round-robin,
  gets a "ping", then "ping-req" through `indirect_checks` members; no ack by
  the end of the interval suspects it. A sick local node stretches the interval.
* News (`members`, `broadcast`): suspect/alive/dead/leave items piggyback on
  every message and on gossip rounds. A suspicion runs the Lifeguard timer
  (`suspicion`) and becomes dead unless the suspect refutes with a higher
  incarnation; suspects are told directly and reminded (`reminders`).
* Push-pull: a periodic "members" exchange with a random alive member, and
  every `gossip_to_dead_s` with a dead one, so a healed partition merges; a
  remote "dead" merges only as a suspicion.
* Crash fast path: `connection_refused(node_id)` backs a suspicion with
  `refused_timeout_s`; only a node whose whole process tree is gone refuses
  its gossip port, so a stopped or partitioned node never takes this path.

Invariants: the incarnation held for a member never goes down (news below it
is stale), and only the member itself takes a new one, to refute; dead and
left members are forgotten `reap_after_s` after the change.

Payload keys the shell may rely on: every message this core sends carries
"addr" (the sender's gossip address; replies go there) and "inc" (its
incarnation); "gossip" holds piggybacked news items. "members" messages
carry {"members": [...], "reply": bool, "join": bool}.

Errors: `handle` never raises on well-formed messages with odd content;
stale, contradictory or malformed fields are counted in `counters` under
"rejected.<reason>" or "news_<reason>".
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from actors.core.ratelimit import RateLimit
from actors.membership.core.awareness import Awareness
from actors.membership.core.broadcast import BroadcastQueue, packed_size, retransmit_limit
from actors.membership.core.members import (
    ALIVE,
    DEAD,
    LEFT,
    LIVE,
    SUSPECT,
    Applied,
    Entry,
    Member,
    MemberEvent,
    MemberTable,
    MemberView,
    News,
    map_to_member_news,
    map_to_news,
    member_to_map,
    message_news,
    news_to_map,
    reply_address,
    u63_or_none,
)
from actors.membership.core.probe import Outbound, Prober
from actors.membership.core.reminders import Reminders
from actors.membership.core.timing import (
    MAX_REMOTE_METADATA_BYTES,
    MembershipTiming,
    push_pull_scale,
)
from transport.protocol import (
    GossipMessage,
    NodeInfo,
    ProtocolError,
    alive_message,
    join_message,
    leave_message,
    map_to_node_info,
    validate_value,
)
from transport.validate import MAX_COUNTER, check_counter, check_endpoint, plausible_counter

__all__ = ["Member", "MemberEvent", "MemberView", "Membership", "Outbound"]

LEAVE_FANOUT = 32  # members told of a graceful leave directly; gossip does the rest
MAX_GOSSIP_ITEMS = 512  # bound on work per inbound message
MAX_JOIN_ATTEMPT = 30  # caps the backoff exponent
REMIND_GAP_INTERVALS = 2  # probe intervals between reminders to one suspect (see reminders)
# Whole-table answers (join replies, push-pull answers, greetings of strangers):
# per asker 4 at once then one per 2 s (an honest one asks once per push-pull
# interval or join backoff step); all askers together 100,000 rows at once then
# 50,000 rows a second, about a core's worth of encoding.
TABLES_PER_ASKER_S, TABLES_PER_ASKER_BURST = 0.5, 4.0
TABLE_ROWS_S, TABLE_ROWS_BURST = 50_000.0, 100_000.0


@dataclass
class _Join:
    addresses: tuple[str, ...]
    attempt: int
    retry_at: float


class Membership:
    """One node's membership view; see the module docstring."""

    def __init__(
        self,
        me: NodeInfo,
        timing: MembershipTiming,
        rng: random.Random,
        now: float,
        incarnation: int = 0,
        known: Iterable[NodeInfo] = (),
    ) -> None:
        """`known`: peers remembered from a previous run; `join` contacts them with the seeds.

        Raises:
            ValueError: `me.metadata` is not msgpack-native or exceeds `max_metadata_bytes`.
        """
        _checked_metadata(me.metadata, timing.max_metadata_bytes)
        self._t = timing
        self._rng = rng
        self._table = MemberTable(me, incarnation, now, timing)
        self._queue = BroadcastQueue()
        self._awareness = Awareness(timing.awareness_max)
        self.counters: dict[str, int] = {}
        self._known = tuple(k.address for k in known if k.node_id != me.node_id)
        # Draws its first probe time from `rng` here, before the push-pull stagger below.
        self._prober = Prober(self._table, timing, rng, self._awareness, self._count,
                              self._extra, now)
        self._gossip_at = now
        # memberlist staggers the first push-pull so nodes started together spread out.
        self._push_pull_at = now + rng.uniform(0, timing.push_pull_interval_s)
        self._to_dead_at = now + timing.gossip_to_dead_s
        self._reminders = Reminders(REMIND_GAP_INTERVALS * timing.probe_interval_s)
        self._remind_at = now
        self._join: _Join | None = None
        self._leaving = False
        # The highest incarnation believed (ours included): see plausible_counter.
        self._inc_high = incarnation
        self._tables = RateLimit(TABLES_PER_ASKER_S, TABLES_PER_ASKER_BURST,
                                 TABLE_ROWS_S, TABLE_ROWS_BURST)

    # --- queries ---------------------------------------------------------

    @property
    def me(self) -> NodeInfo:
        return self._table.me.node

    def incarnation(self) -> int:
        return self._table.me.incarnation

    def members(self) -> list[Member]:
        """Every known member, the local node included, sorted by node id."""
        return sorted((e.snapshot() for e in self._table.entries()), key=lambda m: m.node.node_id)

    def node_at(self, address: str) -> str | None:
        """The member (other than us) at `address`, or None; first claimant wins."""
        return self._table.node_at(address)

    def suspicion_deadline(self, node_id: str) -> float | None:
        """When the suspicion of `node_id` expires, or None if it is not suspect."""
        entry = self._table.get(node_id)
        return None if entry is None or entry.suspicion is None else entry.suspicion.deadline()

    def health_score(self) -> int:
        """Lifeguard local health score (0 = healthy)."""
        return self._awareness.score

    def drain_events(self) -> list[MemberEvent]:
        """Transitions since the last call, oldest first; each is reported once."""
        events, self._table.events = self._table.events, []
        return events

    def next_deadline(self) -> float | None:
        """The earliest time `tick` has work to do, or None."""
        times = [self._prober.next_deadline(probing=not self._leaving)]
        if not self._leaving:
            times += [self._table.next_expiry(), self._push_pull_at,
                      self._table.next_reap(self._t.reap_after_s)]
            if self._table.has_dead():
                times.append(self._to_dead_at)
            if self._table.has_suspects():
                times.append(self._remind_at)
            if self._join is not None:
                times.append(self._join.retry_at)
        if self._queue and len(self._table) > 1:
            times.append(self._gossip_at)
        return min((t for t in times if t is not None), default=None)

    # --- commands --------------------------------------------------------

    def join(self, seeds: Sequence[str], now: float) -> list[Outbound]:
        """Contact `seeds` (and remembered peers); retried by `tick` until a "members" reply."""
        own = self.me.address
        addresses = tuple(dict.fromkeys(a for a in (*seeds, *self._known) if a != own))
        if not addresses or self._leaving:
            self._join = None
            return []
        self._join = _Join(addresses, 0, now)
        return self._send_joins(now)

    def adopt(self, view: MemberView, now: float) -> None:
        """Start from a converged member table instead of joining one.

        For simulations and tests of large clusters, where thousands of cores
        would otherwise each join and learn every member one news item at a
        time. The core is as if it had joined long ago and every piece of news
        in `view` had spread: no events, nothing queued for gossip, and the
        next push-pull at a random point of the interval scaled for the new
        size (a core started with an empty table staggers its first one over
        the unscaled interval). `view` is shared, not copied (see `MemberView`).

        Raises:
            ValueError: the core already knows other members, is joining or has left.
        """
        if self._join is not None or self._leaving:
            raise ValueError("adopt is for a fresh core that neither joins nor has left")
        self._table.adopt(view)
        self._inc_high = max(self._inc_high, view.highest)
        interval = push_pull_scale(self._t.push_pull_interval_s, self._table.live_count())
        self._push_pull_at = now + self._rng.uniform(0, interval)

    def leave(self, now: float) -> list[Outbound]:
        """Leave gracefully: status left at the current incarnation, told to up to 32 members."""
        if self._leaving:
            return []
        self._leaving, self._join = True, None
        self._prober.stop()
        me = self._table.me
        self._table.mark_self_left(now)
        self._table.emit("node.left", me)
        self._queue.queue(me.node.node_id, news_to_map(News(LEFT, me.node.node_id, me.incarnation)))
        peers = self._table.others()
        peers = self._rng.sample(peers, min(LEAVE_FANOUT, len(peers)))
        return [Outbound(p.node.address, self._leave_msg(p.node.node_id)) for p in peers]

    def set_metadata(self, metadata: Mapping[str, Any], now: float) -> list[Outbound]:
        """Change this node's metadata; gossiped as alive at a bumped incarnation.

        Raises:
            ValueError: not msgpack-native, larger than `max_metadata_bytes`,
                or the node has left.
        """
        meta = _checked_metadata(metadata, self._t.max_metadata_bytes)
        if self._leaving:
            raise ValueError("the node has left the cluster")
        me = self._table.me
        if me.incarnation >= MAX_COUNTER:
            raise ValueError("the incarnation is exhausted (MAX_COUNTER); wipe data_dir to reset")
        me.node = NodeInfo(me.node.node_id, me.node.address, meta)
        me.incarnation += 1
        self._inc_high = max(self._inc_high, me.incarnation)
        self._table.emit("node.updated", me)
        self._queue_self_alive()
        return self._gossip_round()

    def connection_refused(self, node_id: str, now: float) -> list[Outbound]:
        """Crash evidence from the shell: see "Crash fast path" in the module docstring."""
        entry = self._table.get(node_id)
        if entry is None or entry is self._table.me or entry.status not in LIVE or self._leaving:
            self._count("refused_ignored")
            return []
        self._count("refused")
        news = News(SUSPECT, node_id, entry.incarnation, accuser=self.me.node_id, refused=True)
        return self._on_news(news, now, None)

    def connection_ok(self, node_id: str, now: float) -> None:
        """The shell reached `node_id` again: withdraw our own refusal evidence."""
        if self._table.withdraw_refusal(node_id, self.me.node_id):
            self._count("refused_withdrawn")

    # --- inbound ---------------------------------------------------------

    def handle(self, msg: GossipMessage, now: float) -> list[Outbound]:
        """Process one decoded inbound message; return the replies and gossip it causes."""
        pl: Mapping[str, Any] = msg.payload or {}
        reason = self._screen(msg, pl)
        if reason is not None:
            if reason == "from_left" and msg.msg_type == "ping":
                # A member we hold as left is probing us, so it did not leave (or a
                # forged "leave" fooled us): the ack tells it, and it refutes.
                out = self._prober.on_ping(msg, pl)
                return self._reject(reason) + out
            return self._reject(reason)
        out = self._absorb_gossip(msg, pl, now)
        match msg.msg_type:
            case "ping":
                out += self._prober.on_ping(msg, pl)
            case "ping-ack":
                out += self._prober.on_ack(u63_or_none(pl.get("seq")))
            case "ping-nack":
                self._prober.on_nack(u63_or_none(pl.get("seq")))
            case "ping-req":
                out += self._prober.on_ping_req(msg, pl, now)
            case "suspect" | "dead" | "alive" | "leave":
                out += self._on_news_message(msg, pl, now)
            case "join":
                out += self._on_join(msg, pl, now)
            case "members":
                out += self._on_members(msg, pl, now)
            case _:
                self._count("rejected.unexpected_type")
        if msg.msg_type in ("ping", "ping-req") and self._table.get(msg.sender) is None:
            out += self._greet_stranger(msg.sender, pl, now)
        return out

    def _greet_stranger(self, sender: str, pl: Mapping[str, Any], now: float
                        ) -> list[Outbound]:
        """A member we never heard of is probing us: the gossip about it missed us, so
        push-pull with it now rather than wait for the periodic exchange."""
        address = reply_address(pl)
        if address is None or self._leaving or not self._table_allowed(sender, now):
            return []
        self._count("stranger_push_pulls")
        return [Outbound(address, self._members_msg(sender, reply=True))]

    def _table_allowed(self, asker: str, now: float) -> bool:
        """Whether `asker` may have our whole table now (see TABLES_PER_ASKER_S)."""
        if self._tables.allow(asker, now, 1.0, float(len(self._table))):
            return True
        self._count("rejected.table_rate")
        return False

    def _screen(self, msg: GossipMessage, pl: Mapping[str, Any]) -> str | None:
        """Reason to drop `msg` unread, or None."""
        if msg.sender == self.me.node_id:
            return "from_self"
        if msg.target is not None and msg.target != self.me.node_id:
            return "wrong_target"  # e.g. a new node now answers on a dead node's address
        entry = self._table.get(msg.sender)
        if entry is not None and entry.status == LEFT and msg.msg_type not in ("join", "members"):
            inc = pl.get("inc")
            if not isinstance(inc, int) or inc <= entry.incarnation:
                return "from_left"
        return None

    def _absorb_gossip(
        self, msg: GossipMessage, pl: Mapping[str, Any], now: float
    ) -> list[Outbound]:
        items = pl.get("gossip")
        if items is None:
            return []
        if not isinstance(items, list) or len(items) > MAX_GOSSIP_ITEMS:
            return self._reject("bad_gossip")
        out: list[Outbound] = []
        for item in items:
            try:
                news = map_to_news(item)
            except ProtocolError:
                self._count("rejected.bad_gossip")
                continue
            out += self._on_news(news, now, reply_address(pl))
        return out

    def _on_news_message(
        self, msg: GossipMessage, pl: Mapping[str, Any], now: float
    ) -> list[Outbound]:
        """A standalone alive/suspect/dead/leave message: the same news as a gossip item."""
        try:
            news = message_news(msg, pl, self._table.get(msg.sender))
        except ProtocolError as err:
            return self._reject(err.reason)
        return self._on_news(news, now, reply_address(pl))

    def _on_join(self, msg: GossipMessage, pl: Mapping[str, Any], now: float) -> list[Outbound]:
        try:
            info = map_to_node_info(pl.get("node"))
            check_endpoint(info.address, "payload.node.addr")
            inc = check_counter(pl.get("inc", 0), "payload.inc")
        except ProtocolError as err:
            return self._reject(err.reason)
        if info.node_id != msg.sender:
            return self._reject("join_not_self")
        self._count("joins_received")
        out = self._on_news(News(ALIVE, info.node_id, inc, info=info), now, info.address)
        # Refused, the joiner is still known here and gossiped: members that probe it
        # answer its greeting with their tables, and it retries the seeds meanwhile.
        if self._table_allowed(info.node_id, now):
            out.append(Outbound(info.address,
                                self._members_msg(info.node_id, reply=False, join=True)))
        return out

    def _on_members(self, msg: GossipMessage, pl: Mapping[str, Any], now: float) -> list[Outbound]:
        entries = pl.get("members")
        if not isinstance(entries, list):
            return self._reject("bad_members")
        if self._join is not None:
            self._join = None
            self._count("join_replies")
        teller = reply_address(pl)
        out: list[Outbound] = []
        repeats = 0
        for item in entries:
            if self._repeats_held(item):
                repeats += 1
                continue
            try:
                news = map_to_member_news(item, msg.sender)
            except ProtocolError:
                self._count("rejected.bad_member")
                continue
            out += self._on_news(news, now, teller)
        if repeats:
            self._count("news_stale", repeats)
        if pl.get("reply") is True and teller is not None and \
                self._table_allowed(msg.sender, now):
            self._count("push_pulls_answered")
            out.append(Outbound(teller, self._members_msg(msg.sender, reply=False)))
        return out

    def _repeats_held(self, item: object) -> bool:
        """Whether a "members" row is an alive record we hold at the same or a newer
        incarnation, with the same address and metadata: stale news, decided here
        without parsing it (most rows of a push-pull are; parsing costs ~10x more).
        The row equals a record we checked when we learned it, so skipping its
        checks changes nothing; anything else takes the full path."""
        if type(item) is not dict:
            return False
        get = item.get
        node_id, inc = get("id"), get("inc")
        if type(node_id) is not str or type(inc) is not int or get("st") != ALIVE:
            return False
        held = self._table.get(node_id)
        if held is None or not 0 <= inc <= held.incarnation or held is self._table.me:
            return False
        info = held.node
        return get("addr") == info.address and get("meta", _NO_META) == info.metadata

    # --- news --------------------------------------------------------------

    def _on_news(self, news: News, now: float, teller: str | None) -> list[Outbound]:
        """Apply one piece of news; re-gossip it if it was fresh."""
        if not plausible_counter(news.incarnation, self._inc_high):
            return self._reject("implausible_counter")
        if news.node_id == self.me.node_id:
            return self._about_me(news, teller)
        held = self._table.get(news.node_id)
        # Sized only when new to us: most news repeats what we hold, on every push-pull.
        if news.info is not None and news.info.metadata and \
                (held is None or held.node != news.info) and \
                packed_size(news.info.metadata) > MAX_REMOTE_METADATA_BYTES:
            return self._reject("big_metadata")
        if news.kind == ALIVE and held is None and self._table.full():
            evicted = self._table.evict_longest_gone()
            if evicted is None:
                return self._reject("table_full")
            self._queue.discard(evicted)
            self._count("evicted")
        applied = self._table.apply(news, now)
        if not applied.accepted:
            self._count("news_" + applied.reason)
            return []
        self._inc_high = max(self._inc_high, news.incarnation)
        self._after_accept(news, applied)
        return self._gossip_round() if applied.urgent else []

    def _after_accept(self, news: News, applied: Applied) -> None:
        self._queue.queue(news.node_id, news_to_map(news))
        if applied.reason == "joined" and not self._leaving:
            entry = self._table.get(news.node_id)
            assert entry is not None  # just joined
            self._prober.add_member(entry.node.node_id)  # the table's id string, not a copy
        if news.refused and news.accuser != self.me.node_id:
            self._count("refused_confirmations")
        if applied.reason == "transition":
            kinds: dict[str, str] = {SUSPECT: "suspicions", DEAD: "deaths", LEFT: "leaves",
                                     ALIVE: "alive_updates"}
            self._count(kinds[news.kind])

    def _about_me(self, news: News, teller: str | None) -> list[Outbound]:
        me = self._table.me
        if self._leaving or news.incarnation < me.incarnation:
            return []  # old news, or we are going anyway
        if news.kind == ALIVE and news.incarnation == me.incarnation and news.info == me.node:
            return []  # our own alive coming back to us
        if news.incarnation >= MAX_COUNTER:
            self._count("refute_exhausted")  # only after ~2**24 forged messages
            return []
        me.incarnation = news.incarnation + 1  # past the accuser's (memberlist `refute`)
        self._inc_high = max(self._inc_high, me.incarnation)
        self._awareness.apply_delta(1)
        self._count("refutations")
        self._queue_self_alive()
        if teller is None:
            return []
        return [Outbound(teller, self._alive_msg(None))]

    def _queue_self_alive(self) -> None:
        me = self._table.me
        self._queue.queue(me.node.node_id, news_to_map(News(ALIVE, me.node.node_id,
                                                            me.incarnation, info=me.node)))

    # --- ticking -----------------------------------------------------------

    def tick(self, now: float) -> list[Outbound]:
        """Run everything due at `now`: timeouts, probes, push-pull, joins, reaping, gossip."""
        out = self._prober.expire_relays(now)
        if not self._leaving:
            out += self._expire_suspicions(now)
            out += self._run_probe(now)
            out += self._run_push_pull(now)
            out += self._run_gossip_to_dead(now)
            out += self._remind_suspect(now)
            if self._join is not None and now >= self._join.retry_at:
                self._join.attempt = min(self._join.attempt + 1, MAX_JOIN_ATTEMPT)
                out += self._send_joins(now)
            self._reap(now)
        if now >= self._gossip_at:
            self._gossip_at = now + self._t.gossip_interval_s
            out += self._gossip_round()
        return out

    def _expire_suspicions(self, now: float) -> list[Outbound]:
        out: list[Outbound] = []
        for entry in self._table.expired(now):
            suspicion = entry.suspicion
            assert suspicion is not None  # expired() only returns suspected entries
            self._count("suspicion_timeouts")
            if suspicion.confirmations < suspicion.k:
                self._count("degraded_timeouts")  # memberlist.degraded.timeout
            if suspicion.expired_by_refusal():
                self._count("refused_deaths")
            news = News(DEAD, entry.node.node_id, entry.incarnation, accuser=self.me.node_id)
            out += self._on_news(news, now, None)
        return out

    def _remind_suspect(self, now: float) -> list[Outbound]:
        """One suspect per probe interval hears that it is suspected (`reminders`)."""
        if now < self._remind_at or not self._table.has_suspects():
            return []
        self._remind_at = now + self._t.probe_interval_s
        entry = self._reminders.next(self._table, now)
        if entry is None:
            return []
        self._count("suspect_reminders")
        return [Outbound(entry.node.address, self._alive_msg(entry.node.node_id))]

    def _run_probe(self, now: float) -> list[Outbound]:
        out, suspicion = self._prober.step(now)
        if suspicion is not None:
            out += self._on_news(suspicion, now, None)
        return out + self._prober.start_due(now)

    def _run_push_pull(self, now: float) -> list[Outbound]:
        if now < self._push_pull_at:
            return []
        n = self._table.live_count()
        self._push_pull_at = now + push_pull_scale(self._t.push_pull_interval_s, n)
        return self._push_pull_with(self._table.sample(self._rng, 1, _is_alive), "push_pulls")

    def _run_gossip_to_dead(self, now: float) -> list[Outbound]:
        if now < self._to_dead_at:
            return []
        self._to_dead_at = now + self._t.gossip_to_dead_s
        peers = self._table.sample(self._rng, 1, _is_dead, gone=True)
        return self._push_pull_with(peers, "gossip_to_dead")

    def _push_pull_with(self, peers: list[Entry], counter: str) -> list[Outbound]:
        if not peers:
            return []
        peer = peers[0]
        self._count(counter)
        return [Outbound(peer.node.address, self._members_msg(peer.node.node_id, reply=True))]

    def _send_joins(self, now: float) -> list[Outbound]:
        join = self._join
        assert join is not None  # callers check
        backoff = min(self._t.join_retry_s * 2**join.attempt, self._t.join_retry_max_s)
        join.retry_at = now + backoff
        self._count("join_attempts")
        msg = join_message(self.me.node_id, self.me, payload_extra=self._extra(None, gossip=False))
        return [Outbound(address, msg) for address in join.addresses]

    def _reap(self, now: float) -> None:
        for node_id in self._table.reap(now, self._t.reap_after_s):
            self._queue.discard(node_id)
            self._count("reaped")

    def _gossip_round(self) -> list[Outbound]:
        """Send queued news to `gossip_nodes` random live members."""
        if not self._queue:
            return []
        # Skip members whose connection was refused: almost surely gone. If one is not,
        # the suspect item on our next probe of it still lets it refute.
        peers = self._table.sample(self._rng, self._t.gossip_nodes, _gossip_peer)
        out: list[Outbound] = []
        for peer in peers:
            if not self._queue:
                break
            pid = peer.node.node_id
            msg = self._leave_msg(pid) if self._leaving else self._alive_msg(pid)
            if msg.payload and "gossip" in msg.payload:
                out.append(Outbound(peer.node.address, msg))
        return out

    # --- message building --------------------------------------------------

    def _extra(self, to: str | None, gossip: bool = True) -> dict[str, Any]:
        """Common payload: reply address, incarnation, piggybacked news for `to`."""
        me = self._table.me
        extra: dict[str, Any] = {"addr": me.node.address, "inc": me.incarnation}
        if not gossip:
            return extra
        limit = retransmit_limit(self._t.retransmit_mult, self._table.live_count())
        items = list(self._queue.take(self._t.max_gossip_bytes, limit))
        told = self._table.get(to) if to is not None else None
        if told is not None and told.status in (SUSPECT, DEAD):
            # Tell a suspected member directly, so it can refute at once (buddy system).
            items.append(news_to_map(News(SUSPECT, to or "", told.incarnation,
                                          accuser=me.node.node_id)))
        elif told is not None and told.status == LEFT:
            items.append(news_to_map(News(LEFT, to or "", told.incarnation)))
        if items:
            extra["gossip"] = items
        return extra

    def _alive_msg(self, to: str | None) -> GossipMessage:
        extra = self._extra(to)
        if self.me.metadata:
            extra["meta"] = dict(self.me.metadata)
        return alive_message(self.me.node_id, self.incarnation(), target=to, payload_extra=extra)

    def _leave_msg(self, to: str | None) -> GossipMessage:
        return leave_message(self.me.node_id, payload_extra=self._extra(to))

    def _members_msg(self, to: str | None, reply: bool, join: bool = False) -> GossipMessage:
        payload = {**self._extra(None, gossip=False), "reply": reply, "join": join,
                   "members": [member_to_map(e) for e in self._table.entries()]}
        # Built from our own checked table: make_message's deep check of every row
        # would cost more than the table itself.
        return GossipMessage("members", self.me.node_id, to, (), None, payload)

    def _count(self, name: str, by: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by

    def _reject(self, reason: str) -> list[Outbound]:
        self._count("rejected." + reason)
        return []


_NO_META: Mapping[str, Any] = {}


def _is_alive(entry: Entry) -> bool:
    return entry.status == ALIVE


def _is_dead(entry: Entry) -> bool:
    return entry.status == DEAD


def _gossip_peer(entry: Entry) -> bool:
    return entry.status in LIVE and (entry.suspicion is None or
                                     not entry.suspicion.refusal_backed)


def _checked_metadata(metadata: Mapping[str, Any], limit: int) -> dict[str, Any]:
    """A copy of `metadata` if it is msgpack-native and at most `limit` bytes packed."""
    meta = dict(metadata)
    validate_value(meta, "metadata")  # ProtocolError is a ValueError
    size = packed_size(meta)
    if size > limit:
        raise ValueError(f"metadata is {size} bytes; the limit is {limit}")
    return meta
