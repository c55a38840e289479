"""Anti-entropy between two nodes' mirrors, and the fast push of fresh changes.

Theory of operation (pure: no sockets, no clock reads; randomness from the
`random.Random` given at construction; every input is untrusted):

* Each node's anti-entropy actor keeps a mirror `Store` of every replicated
  type. Remote states that change the mirror are returned in
  `HandleResult.to_apply` so the shell offers them to the provider of their
  type; the mirror does not wait for the provider, so a node relays types it
  has no provider for and never asks twice for what it already has.
* Periodic repair, stateless (any message may be lost, duplicated or late):
  every `interval_s` the node opens a session with `fanout` random peers.

    1. A -> B  summary {ae: "syn", count, hash, horizon}. Equal: done (one
       short message, whatever the number of keys).
    2. B -> A  summary {ae: "buckets", b: [[bucket, xor], ...], n: [[bucket,
       keys], ...]} (non-empty buckets; `DIGEST_BUCKETS` of them at most; `n`
       is optional, older nodes send none).
    3. A -> B  pull, digest = A's versions in a share of the differing buckets
       (at most `SESSION_DIGEST_KEYS` keys here, so no step grows with the
       table; later rounds take the rest), payload
       {ae: "digest", buckets, after, last, horizon, srcs, src}, chunked in
       position order (bucket, type, key); a chunk covers positions in
       (after, its greatest digest key], or (after, end) when `last`.
       `src[i]` indexes `srcs` for the i-th key of sorted(digest), so ties
       (equal version, other writer) are resolved like everywhere else.
    4. B -> A  push-pull / push {ae: "delta", forget?}: B's states A lacks,
       with a digest of the keys B wants from A (0 = not held); `forget` =
       [[type, key, version], ...] (see below).
    5. A -> B  push {ae: "delta"}: the wanted states.

* Forget (resynchronising a node that was away longer than the tombstone
  grace period). When one side holds a key that the other lacks and the
  holder's version is <= the other's GC horizon for that type, the key was
  deleted and GC'd there (or is a write the other will never accept): the
  holder forgets it (drops it, raises its own horizon) instead of sending it.
  The responder of step 4 forgets its own such keys (it knows A's horizons)
  and lists A's in `forget`; a pushed state rejected as below the horizon is
  answered with `forget` too. Forgetting a live value puts a tombstone
  (version + 1, source = this node) in `to_apply`, so the provider drops it.
* Fast push: while a node has at most `DIRECT_PUSH_MAX` live peers,
  `local_changes` pushes fresh states straight to every one of them (hops 1:
  nobody forwards), so a write reaches every node on the first pass instead of
  waiting for the repair round when a random push missed it. In a larger
  cluster it pushes to `push_fanout` random
  peers with {ae: "fast", hops: push_hops, seen: [ids]}; a receiver that finds
  them new forwards them to `push_fanout` peers not in `seen` with hops - 1
  (never back to the sender; nothing is sent with hops 0), so a change travels
  <= push_hops hops. `seen` (the pusher, its targets and the `seen` it got)
  steers forwards toward nodes the push has not reached yet.
* Quiet backoff: a round that finds the mirror as it was at the last round,
  with no peer disagreeing since, doubles the time to the next one, up to
  `2**QUIET_DOUBLINGS` intervals (8 s by default). Any change (a local write,
  a push or repair that changed the mirror, a peer's summary that differs, a
  new peer) brings the next round back within one interval. An idle cluster
  so spends an eighth of the rounds it did on confirming it is in sync, and a
  silent divergence is still found within 8 s (memberlist's push-pull runs
  every 30 s).
* While changes stream (a fast push sent or received within the last
  interval), a node starts only one repair round in `STREAM_ROUNDS`: during a
  stream every summary differs because of changes in flight, and each such
  round would compare digests of the whole table for nothing. Repair resumes
  its full pace as soon as the stream stops.
* Every message we build encodes to at most `max_chunk_bytes` and carries at
  most `max_states_per_message` states or digest entries (a single state
  larger than the bound travels alone). The core witnesses every version and
  peer horizon on its Lamport clock, and keeps each type's highest peer
  horizon: a provider's clock must stay above `clock_floor(type)` so its
  local writes stay above the cluster's horizons of that type.
* Untrusted payload fields are read by `actors.anti_entropy.core.wire`, which raises
  `Malformed` and nothing else; `handle` counts it and drops the message.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from actors.anti_entropy.core.recent import RecentlySent
from actors.anti_entropy.core.wire import (
    MAX_SEEN,
    Cover,
    Malformed,
    encoded_size,
    read_bucket_counts,
    read_bucket_hashes,
    read_cover,
    read_forget,
    read_horizons,
    read_seen,
    read_sources,
    read_uint,
)
from actors.core.ratelimit import RateLimit
from actors.core.store import (
    DEFAULT_TOMBSTONE_GRACE_S,
    DIGEST_BUCKETS,
    STORED,
    StateKey,
    Store,
    Summary,
    Verdict,
    count_verdict,
    empty_result,
)
from transport.codec import DEFAULT_LIMITS
from transport.protocol import (
    GossipMessage,
    LamportClock,
    Order,
    SyncableState,
    compare_states,
    is_tombstone,
    make_message,
    retarget,
    state_key,
    syncable_state_to_map,
)
from transport.settings import Field, build
from transport.validate import MAX_COUNTER, plausible_counter

MIN_CHUNK_BYTES = 4096
# Envelope (magic, version, cluster <= 64 chars, tag), sender and target ids,
# map keys and list headers: a generous allowance over the payload we size.
_ENVELOPE_BYTES = 1024
# A state sent to a peer is not sent to it again for this many rounds (see recent.py).
RESEND_HOLD_ROUNDS = 4
# Up to this many live peers a fresh change goes to all of them at once (see the docstring).
DIRECT_PUSH_MAX = 64
STREAM_ROUNDS = 10  # while changes stream, one repair round in this many (see the docstring)
QUIET_DOUBLINGS = 3  # an idle node in sync spaces its rounds up to 2**3 intervals apart
# A session's digest covers differing buckets holding at most this many keys (at least
# one bucket): building and answering it is one step of each actor's loop, so it must
# not grow with the table. The other differing buckets wait for later rounds.
SESSION_DIGEST_KEYS = 20_000
_WINS = (Order.NEWER, Order.CONFLICT_WIN)
_LOSES = (Order.OLDER, Order.CONFLICT_LOSE)


@dataclass(frozen=True)
class AntiEntropyConfig:
    interval_s: float = 1.0  # one round of sessions per interval
    fanout: int = 2  # peers per round
    push_fanout: int = 3  # peers a fresh change is pushed to (0: no fast push)
    push_hops: int = 3  # a pushed change travels at most this many hops
    max_chunk_bytes: int = 256 * 1024  # encoded size bound of every message sent
    max_states_per_message: int = 2000  # states, or digest entries, per message
    tombstone_grace_s: float = DEFAULT_TOMBSTONE_GRACE_S  # keep tombstones this long
    max_keys: int = 1_000_000  # remote states for keys beyond this many are refused


# The `[anti_entropy]` keys. The upper bounds of the sizes are the codec's receive
# limits, so a peer never refuses what we send.
FIELDS: tuple[Field, ...] = (
    Field("interval_ms", float, attr="interval_s", scale=0.001, low=1, high=3_600_000,
          why="one round of repair sessions per interval"),
    Field("fanout", int, low=1, high=64, why="peers per repair round"),
    Field("push_fanout", int, low=0, high=64, why="peers a fresh change is pushed to (0: none)"),
    Field("push_hops", int, low=1, high=16, why="a pushed change travels at most this far"),
    Field("max_chunk_bytes", int, low=MIN_CHUNK_BYTES, high=DEFAULT_LIMITS.max_message_bytes,
          why="encoded size bound of every message sent"),
    Field("max_states_per_message", int, low=1, high=DEFAULT_LIMITS.max_states,
          why="states, or digest entries, per message"),
    Field("tombstone_grace_s", float, low=0.001, high=365 * 86400,
          why="a deleted key's tombstone is kept this long"),
    Field("max_keys", int, low=1, high=100_000_000, why="remote keys beyond this are refused"),
)


def ae_config_for(overrides: Mapping[str, Any]) -> AntiEntropyConfig:
    """The config of an `[anti_entropy]` table (keys: FIELDS). Raises: SettingsError."""
    return build(AntiEntropyConfig, FIELDS, overrides)


@dataclass(frozen=True, slots=True)
class Outbound:
    peer: str  # a node id; the shell maps it to an address
    message: GossipMessage


@dataclass
class HandleResult:
    replies: list[Outbound] = field(default_factory=list)
    # States that changed the mirror (and forget tombstones): offer them to providers.
    to_apply: list[SyncableState] = field(default_factory=list)


@dataclass
class _Plan:
    """What one digest chunk asks of the responder."""

    send: list[SyncableState] = field(default_factory=list)
    want: dict[StateKey, int] = field(default_factory=dict)
    forget: list[list[Any]] = field(default_factory=list)
    to_apply: list[SyncableState] = field(default_factory=list)


class AntiEntropy:
    """The anti-entropy protocol of one node over its mirror; see the module docstring."""

    def __init__(self, node_id: str, store: Store, config: AntiEntropyConfig,
                 rng: random.Random, clock: LamportClock) -> None:
        self.node_id = node_id
        self.store = store
        self.config = config
        self.rng = rng
        self.clock = clock
        self.counters: Counter[str] = Counter()
        # The highest GC horizon any peer announced, per type: a provider's writes of
        # a type must be versioned above it, or that peer refuses them as forgotten.
        self.peer_horizons: dict[str, int] = {}
        self._peers: tuple[str, ...] = ()  # the latest list given to tick/local_changes/set_peers
        self._next_round_at = 0.0
        self._now = 0.0  # latest `now` seen, for applied() without one
        self._ask_basis = 0  # the store size the budget was last computed for
        self._asks = RateLimit(*self._ask_budget())
        self._recent = RecentlySent(RESEND_HOLD_ROUNDS * config.interval_s)
        # Set by the shell while its inbox has a backlog: a busy node starts no
        # session and answers no "syn" (each would bring it a digest to compare),
        # so repair cannot outgrow the time to do it; pushes still flow.
        self.busy = False
        self._pushed_at = float("-inf")  # when a fast push last went out or came in
        self._rounds_deferred = 0  # rounds skipped in a row because changes stream
        self._quiet = 0  # rounds in a row that found nothing new (see "Quiet backoff")
        self._last_round: Summary | None = None  # the mirror's summary at the last round
        self._stirred = False  # something changed or disagreed since the last round

    # -- shell entry points ---------------------------------------------------------
    def next_deadline(self) -> float:
        return self._next_round_at

    def set_peers(self, peers: Iterable[str]) -> None:
        fresh = tuple(p for p in dict.fromkeys(peers) if p != self.node_id)
        if fresh != self._peers:
            self._peers = fresh
            self._recent.forget_peers(self._peers)
            self._stir()

    def _stir(self) -> None:
        """Something changed or a peer disagreed: rounds at full pace again."""
        self._stirred, self._quiet = True, 0
        self._next_round_at = min(self._next_round_at, self._now + self.config.interval_s)

    def tick(self, now: float, peers: Sequence[str]) -> list[Outbound]:
        """Collect expired tombstones; when a round is due, send "syn" to `fanout` peers."""
        self._now = now
        self.set_peers(peers)
        self.counters["tombstones_collected"] += self.store.gc(now)
        if now < self._next_round_at:
            return []
        self._next_round_at = now + self.config.interval_s
        if self.busy:
            self.counters["rounds_skipped_busy"] += 1
            return []
        streaming = now - self._pushed_at < self.config.interval_s
        if streaming and self._rounds_deferred < STREAM_ROUNDS - 1:
            self._rounds_deferred += 1
            self.counters["rounds_deferred_streaming"] += 1
            return []
        self._rounds_deferred = 0
        mine = self.store.summary()
        quiet = mine == self._last_round and not self._stirred
        self._quiet = min(self._quiet + 1, QUIET_DOUBLINGS) if quiet else 0
        self._last_round, self._stirred = mine, False
        self._next_round_at = now + self.config.interval_s * 2 ** self._quiet
        if self._quiet:
            self.counters["rounds_spaced_quiet"] += 1
        targets = self._sample(self.config.fanout, ())
        self.counters["rounds"] += 1
        self.counters["sessions_started"] += len(targets)
        payload = {"ae": "syn", "count": mine.count, "hash": mine.hash,
                   "horizon": self.store.horizons()}
        return [self._message(p, "summary", payload=payload) for p in targets]

    def local_changes(self, states: Sequence[SyncableState], now: float,
                      peers: Sequence[str]) -> list[Outbound]:
        """Take a provider's fresh writes into the mirror and push them at once."""
        self._now = now
        self.set_peers(peers)
        # The provider is the authority for its own writes: no horizon check here.
        _, changed = self.store.apply(states, now, enforce_horizon=False)
        self._witness(changed)
        self.counters["local_changes"] += len(changed)
        if changed:
            self._pushed_at = now
            self._stir()
        return self._fast_push(changed, self.config.push_hops, ())

    def applied(self, states: Sequence[SyncableState], now: float | None = None
                ) -> list[SyncableState]:
        """Feed states a provider holds (accepted, or its whole state at start) into the
        mirror without pushing them; returns those that changed the mirror."""
        _, changed = self.store.apply(states, self._now if now is None else now)
        self._witness(changed)
        return changed

    def handle(self, msg: GossipMessage, now: float) -> HandleResult:
        """Process one decoded message. Never raises on bad peer data: counts and drops."""
        self._now = now
        if msg.sender == self.node_id or msg.target not in (None, self.node_id):
            self.counters["dropped.misdirected"] += 1
            return HandleResult()
        try:
            match msg.msg_type:
                case "summary":
                    return self._on_summary(msg)
                case "pull":
                    return self._on_pull(msg)
                case "push" | "push-pull":
                    return self._on_delta(msg, now)
                case _:
                    self.counters["dropped.not_anti_entropy"] += 1
                    return HandleResult()
        except Malformed as exc:
            self.counters[f"dropped.{exc.reason}"] += 1
            return HandleResult()

    # -- session steps ----------------------------------------------------------------
    def _on_summary(self, msg: GossipMessage) -> HandleResult:
        payload = msg.payload or {}
        match payload.get("ae"):
            case "syn":
                theirs = Summary(read_uint(payload, "count"), read_uint(payload, "hash"))
                self._witness_horizons(read_horizons(payload))
                if self.busy:
                    self.counters["syn_shed_busy"] += 1
                    return HandleResult()
                if theirs == self.store.summary():
                    self.counters["in_sync"] += 1
                    return HandleResult()
                self.counters["out_of_sync"] += 1
                self._stir()
                rows = [[b, h] for b, h in sorted(self.store.bucket_hashes().items())]
                counts = [[b, self.store.count_in((b,))] for b, _ in rows]
                reply = self._message(msg.sender, "summary",
                                      payload={"ae": "buckets", "b": rows, "n": counts})
                return HandleResult([reply])
            case "buckets":
                theirs_b, mine = read_bucket_hashes(payload), self.store.bucket_hashes()
                differing = sorted(b for b in theirs_b.keys() | mine.keys()
                                   if theirs_b.get(b, 0) != mine.get(b, 0))
                if not differing:
                    self.counters["in_sync"] += 1
                    return HandleResult()
                self._stir()
                differing = self._session_share(differing, read_bucket_counts(payload))
                if not self._ask_allowed(msg.sender, self.store.count_in(differing)):
                    return HandleResult()
                return HandleResult(self._digest_messages(msg.sender, differing))
        raise Malformed("bad_phase")

    def _session_share(self, differing: list[int], theirs: Mapping[int, int]) -> list[int]:
        """The differing buckets this session compares: a random share holding at most
        SESSION_DIGEST_KEYS keys on either side (`theirs`: the peer's bucket sizes, if
        it sent them), always one bucket, sorted. Random, so every bucket gets its turn."""
        chosen: list[int] = []
        keys = 0
        for bucket in self.rng.sample(differing, len(differing)):
            size = max(self.store.count_in((bucket,)), theirs.get(bucket, 0))
            if chosen and keys + size > SESSION_DIGEST_KEYS:
                continue
            chosen.append(bucket)
            keys += size
        if len(chosen) < len(differing):
            self.counters["session_buckets_deferred"] += len(differing) - len(chosen)
        return sorted(chosen)

    def _digest_messages(self, peer: str, buckets: list[int]) -> list[Outbound]:
        positions = self.store.positions_in(buckets)
        held = [self.store.get(t, k) for _, t, k in positions]
        states = [s for s in held if s is not None]
        srcs = sorted({s.source_node for s in states})
        index = {src: i for i, src in enumerate(srcs)}
        base = {"ae": "digest", "buckets": buckets, "horizon": self.store.horizons(),
                "srcs": srcs, "after": None, "last": False}
        overhead = encoded_size(base) + max((encoded_size(list(p)) for p in positions), default=0)
        costs = [encoded_size([s.state_type, s.key, s.version]) + 3 for s in states]
        ranges = self._split(costs, overhead)
        out = []
        for n, (lo, hi) in enumerate(ranges):
            chunk = sorted(states[lo:hi], key=state_key)
            payload = {**base, "after": list(positions[lo - 1]) if lo else None,
                       "last": n == len(ranges) - 1, "src": [index[s.source_node] for s in chunk]}
            digest = {state_key(s): s.version for s in chunk}
            out.append(self._message(peer, "pull", digest=digest, payload=payload))
        self.counters["digest_messages_sent"] += len(out)
        self.counters["digest_entries_sent"] += len(states)
        return out

    def _on_pull(self, msg: GossipMessage) -> HandleResult:
        payload = msg.payload or {}
        digest = dict(msg.digest or {})
        if payload.get("ae") == "digest":
            cover = read_cover(payload, digest)
            sources, their_h = read_sources(payload, digest), read_horizons(payload)
        elif "ae" not in payload:  # a plain seed pull: it speaks for every key
            cover, sources, their_h = Cover(tuple(range(DIGEST_BUCKETS)), None, None), {}, {}
        else:
            raise Malformed("bad_phase")
        self._witness_horizons(their_h)
        self.counters["digest_messages_received"] += 1
        mine = {(t, k) for b, t, k in self.store.positions_in(cover.buckets) if (b, t, k) in cover}
        if not self._ask_allowed(msg.sender, len(digest) + len(mine)):
            return HandleResult()
        plan = _Plan()
        for skey in sorted(mine | digest.keys()):
            self._reconcile(skey, digest.get(skey), sources.get(skey), their_h, plan)
        replies = self._delta_messages(msg.sender, plan.send, plan.want, plan.forget)
        return HandleResult(replies, plan.to_apply)

    def _reconcile(self, skey: StateKey, their_version: int | None, their_source: str | None,
                   their_h: Mapping[str, int], plan: _Plan) -> None:
        """Decide one key of a digest chunk: send ours, want theirs, or forget."""
        state_type, key = skey
        mine = self.store.get(state_type, key)
        if their_version is None:
            assert mine is not None  # the key came from our own store
            if mine.version <= their_h.get(state_type, 0):
                self._forget(state_type, key, mine.version, plan.to_apply)  # GC'd there
            else:
                plan.send.append(mine)
            return
        if mine is None:
            if their_version <= self.store.horizon(state_type):
                plan.forget.append([state_type, key, their_version])
            else:
                plan.want[skey] = 0
            return
        # Without a source (a plain seed pull), an equal version counts as the same state.
        theirs = SyncableState(state_type, key, None, their_version,
                               their_source or mine.source_node)
        order = compare_states(mine, theirs)
        if order in _WINS:
            plan.send.append(mine)
        elif order in _LOSES:
            plan.want[skey] = mine.version

    def _on_delta(self, msg: GossipMessage, now: float) -> HandleResult:
        """A push or push-pull: apply states, honour `forget`, answer wants, forward."""
        payload = msg.payload or {}
        phase = payload.get("ae", "delta")
        if phase not in ("delta", "fast"):
            raise Malformed("bad_phase")
        hops = read_uint(payload, "hops", 64) if phase == "fast" else 0
        seen = read_seen(payload) if phase == "fast" else []
        forget = read_forget(payload)
        wanted = list(msg.digest or {}) if msg.msg_type == "push-pull" else []
        for _, _, version in forget:
            self._check_plausible(version, "implausible_forget")
        states = self._believable(msg.states)
        self._witness(states)
        result, refused, changed = HandleResult(), [], []
        counts = empty_result()
        for state in states:
            if len(self.store) >= self.config.max_keys and \
                    self.store.get(state.state_type, state.key) is None:
                self.counters["dropped.store_full"] += 1
                counts["rejected"] += 1
                continue
            verdict = self.store.apply_one(state, now)
            count_verdict(counts, verdict)
            if verdict in STORED:
                changed.append(state)
            elif verdict is Verdict.BELOW_HORIZON:
                refused.append([state.state_type, state.key, state.version])
        for outcome in ("applied", "conflicts", "rejected"):
            self.counters[f"states_{outcome}"] += counts[outcome]
        # How changes arrive: the push should bring nearly all of them, repair the rest.
        self.counters["arrived_by_push" if phase == "fast" else "arrived_by_repair"] += \
            len(changed)
        if phase == "fast" and changed:
            self._pushed_at = now
        if changed or forget:
            self._stir()
        self.counters["deltas_received"] += len(msg.states)
        result.to_apply.extend(changed)
        for state_type, key, version in forget:
            self._forget(state_type, key, version, result.to_apply)
        send_back = [s for t, k in wanted if (s := self.store.get(t, k)) is not None]
        result.replies = self._delta_messages(msg.sender, send_back, {}, refused)
        if phase == "fast" and hops > 1:
            result.replies += self._fast_push(changed, hops - 1, [msg.sender, *seen])
        return result

    def _forget(self, state_type: str, key: str, version: int,
                to_apply: list[SyncableState]) -> None:
        dropped = self.store.forget(state_type, key, version)
        if dropped is None:
            return
        self.counters["forgotten"] += 1
        if not is_tombstone(dropped):
            # Tell the provider, which may still hold the value: a tombstone just above it.
            tomb = SyncableState(state_type, key, None, dropped.version + 1, self.node_id)
            self.clock.update(tomb.version)
            to_apply.append(tomb)

    # -- building messages ------------------------------------------------------------
    def _delta_messages(self, peer: str, states: Sequence[SyncableState],
                        want: Mapping[StateKey, int], forget: list[list[Any]]) -> list[Outbound]:
        """States in chunks; the first chunk also carries `want` (push-pull) and `forget`.
        States this peer was sent within the hold are left out (see recent.py)."""
        now, recent = self._now, self._recent
        fresh = [s for s in states if recent.fresh(peer, state_key(s), s.version, now)]
        self.counters["deltas_held"] += len(states) - len(fresh)
        recent.record(peer, ((state_key(s), s.version) for s in fresh), now)
        states = fresh
        if not states and not want and not forget:
            return []
        first: dict[str, Any] = {"ae": "delta"}
        if forget:
            first["forget"] = forget
        reserve = encoded_size(first) + sum(encoded_size([t, k, v]) for (t, k), v in want.items())
        ranges = self._split([encoded_size(syncable_state_to_map(s)) for s in states], 0, reserve)
        out = []
        for n, (lo, hi) in enumerate(ranges):
            payload, digest = (first, dict(want)) if n == 0 else ({"ae": "delta"}, {})
            msg_type = "push-pull" if digest else "push"
            out.append(self._message(peer, msg_type, states[lo:hi], digest or None, payload))
        self.counters["deltas_sent"] += len(states)
        self.counters["delta_messages_sent"] += len(out)
        return out

    def _fast_push(self, states: Sequence[SyncableState], hops: int,
                   seen: Sequence[str]) -> list[Outbound]:
        if not states or self.config.push_fanout == 0:
            return []
        if not seen and len(self._peers) <= DIRECT_PUSH_MAX:
            targets, hops = list(self._peers), 1
        else:
            targets = self._sample(self.config.push_fanout, seen)
        covered = sorted({self.node_id, *seen, *targets})[:MAX_SEEN]
        payload = {"ae": "fast", "hops": hops, "seen": covered}
        costs = [encoded_size(syncable_state_to_map(s)) for s in states]
        ranges = self._split(costs, encoded_size(payload))
        # Each chunk is checked once and shared by every target (see `retarget`).
        chunks = [make_message("push", self.node_id, None, states[lo:hi], None, payload)
                  for lo, hi in ranges]
        out = [Outbound(peer, retarget(chunk, peer)) for peer in targets for chunk in chunks]
        self.counters["forwarded" if seen else "fast_pushes"] += len(out)
        return out

    def _split(self, costs: list[int], overhead: int, first_reserve: int = 0
               ) -> list[tuple[int, int]]:
        """Greedy index ranges whose costs fit the message bound (one range if no costs)."""
        budget = self.config.max_chunk_bytes - _ENVELOPE_BYTES - overhead
        ranges: list[tuple[int, int]] = []
        start, used, limit = 0, 0, budget - first_reserve
        for i, cost in enumerate(costs):
            full = i - start >= self.config.max_states_per_message or used + cost > limit
            if i > start and full:  # a lone item larger than the bound still goes, alone
                ranges.append((start, i))
                start, used, limit = i, 0, budget
            used += cost
        ranges.append((start, len(costs)))
        return ranges

    def _message(self, peer: str, msg_type: str, states: Sequence[SyncableState] = (),
                 digest: Mapping[StateKey, int] | None = None,
                 payload: Mapping[str, Any] | None = None) -> Outbound:
        return Outbound(peer, make_message(msg_type, self.node_id, peer, states, digest, payload))

    def _sample(self, n: int, exclude: Sequence[str]) -> list[str]:
        candidates = [p for p in self._peers if p not in exclude]
        return self.rng.sample(candidates, min(n, len(candidates)))

    def _witness(self, states: Iterable[SyncableState]) -> None:
        # Absurd versions are refused by the store; the clock must not see them either.
        top = max((s.version for s in states if s.version <= MAX_COUNTER), default=0)
        if top:
            self.clock.update(top)

    def _witness_horizons(self, horizons: Mapping[str, int]) -> None:
        if horizons:
            top = max(horizons.values())
            # A forged horizon would also make us forget every key below it: drop the message.
            self._check_plausible(top, "implausible_horizon")
            self.clock.update(top)
            for state_type, horizon in horizons.items():
                if horizon > self.peer_horizons.get(state_type, 0):
                    self.peer_horizons[state_type] = horizon

    def clock_floor(self, state_type: str) -> int:
        """The lowest clock a provider of `state_type` may write from: above its type's
        GC horizon here and at every peer heard from. Versions of its own type reach
        it with each `apply`; other types' versions never order its writes."""
        return max(self.store.horizon(state_type), self.peer_horizons.get(state_type, 0))

    def _ask_budget(self) -> tuple[float, float, float, float]:
        """Keys compared for others, per asker and for all: what honest sessions need
        (about two per peer per interval, each going over at most our whole store),
        with room to spare; see actors.core.ratelimit."""
        self._ask_basis = len(self.store)
        keys, per_s = self._ask_basis + 1000, 1.0 / self.config.interval_s
        return 4 * keys * per_s, 8.0 * keys, 16 * keys * per_s, 32.0 * keys

    def _ask_allowed(self, asker: str, keys: int) -> bool:
        if abs(len(self.store) - self._ask_basis) > self._ask_basis // 8:
            self._asks.resize(*self._ask_budget())
        if self._asks.allow(asker, self._now, float(max(keys, 1))):
            return True
        self.counters["dropped.digest_rate"] += 1
        return False

    def _check_plausible(self, version: int, reason: str) -> None:
        if not plausible_counter(version, self.clock.current()):
            raise Malformed(reason)

    def _believable(self, states: Sequence[SyncableState]) -> Sequence[SyncableState]:
        """`states` without versions too far above our clock (see plausible_counter);
        each believed version raises the bar for the next, as the clock would."""
        high = self.clock.current()
        for version in sorted(s.version for s in states):
            if not plausible_counter(version, high):
                break
            high = max(high, version)
        else:
            return states
        kept = [s for s in states if s.version <= high]
        self.counters["dropped.implausible_version"] += len(states) - len(kept)
        return kept
