"""The anti-entropy actor: the ZeroMQ shell around the state-sync core.

It keeps a *mirror* of every replicated state on this node (all providers'
types) so that comparing with a peer never waits on a provider process. The
providers stay the authority for their own types:

* a remote state new to the mirror is offered to the provider of its type
  (``apply`` over ipc), and counted by what that provider says;
* a local write arrives from the provider host (``local``), enters the
  mirror and is pushed at once to a few peers (fast path), and the periodic
  summary/digest exchange repairs whatever the push missed;
* on start the mirror is filled from every provider's ``sync_state``, so a
  restarted anti-entropy actor needs nothing on disk.

Peers come from membership events; each member advertises its sync endpoint
in its metadata under ``SYNC_META_KEY``. Inbound sync traffic arrives from
the supervisor's sync proxy; outbound goes through the shared `PeerPool`
(one DEALER per peer, bounded, never blocking: a slow peer drops its own
messages, not everyone's).
"""

from __future__ import annotations

import functools
import itertools
import random
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from typing import Any

import zmq

from actors.anti_entropy.core.engine import AntiEntropy, Outbound
from actors.anti_entropy.core.reconcile import (
    NewerInProvider,
    Walk,
    compare_slice,
    read_digest_rows,
)
from actors.core.store import SnapshotPieces, Store, StoreSnapshotError
from actors.node.config import SYNC_META_KEY
from actors.runtime import DEFER, Actor, NodeEnv
from actors.storage.snapshot import SnapshotError, SnapshotWriter, load_snapshot
from transport.codec import encode_many
from transport.peering import INBOX_BATCH, PeerSecurity, read_inbox
from transport.peerpool import PeerPool
from transport.protocol import (
    LIVE,
    LamportClock,
    SyncableState,
    is_tombstone,
    state_key,
    syncable_state_to_map,
)
from transport.rpc import AsyncClient, Request, RpcError
from transport.views import parse_states_untrusted, state_row

PEER_HWM = 256
SAVE_EVERY_S = 10.0
SAVE_ROWS_PER_TURN = 20_000  # mirror snapshot rows encoded per loop turn
SAVE_DUTY = 0.05  # share of the time spent writing mirror snapshots, at most
LOCAL_BUDGET_S = 0.05  # "local" work per loop turn; more waits for the next turn
REFILL_PER_TURN = 20_000  # states of a provider's whole table taken per loop turn
RECONCILE_S = 30.0
RECONCILE_DUTY = 0.02  # share of the time the periodic reconcile may take, at most
APPLY_BATCH = 1000
APPLIES_IN_FLIGHT = 2  # per provider; more waits in `to_offer`, coalesced
RPC_TIMEOUT_S = 5.0
# The peer list follows membership events; an event can be missed (a subscription
# still being set up, a full queue), so the whole list is asked for this often too.
MEMBERS_REFRESH_S = 5.0


class AntiEntropyActor(Actor):
    serves = ("state", "attach", "local")  # "attach"/"local": SDK-hosted providers
    subscriptions = ("node.", "actor.started")

    def __init__(self, name: str, env: NodeEnv, ctx: zmq.Context) -> None:
        super().__init__(name, env, ctx)
        self.cluster = env.config.node.cluster
        self.config = env.config.anti_entropy
        self.clock = LamportClock()
        self.store = Store(tombstone_grace_s=self.config.tombstone_grace_s)
        self.peers: dict[str, str] = {}  # node id -> sync endpoint of live members
        self.security = PeerSecurity(env.config)
        self.pool = PeerPool(self, self.security, self.counters, hwm=PEER_HWM)
        self.next_sweep = 0.0
        self.providers: dict[str, AsyncClient] = {}
        self.attached: dict[str, str] = {}  # state type -> endpoint of an SDK-hosted provider
        self.mirror_path = env.config.node.data_dir / "anti_entropy.bin"
        self.dirty: set[str] = set()  # types whose provider may lack what the mirror has
        self.next_reconcile = 0.0
        self.local_queue: deque[Request] = deque()  # "local" requests left for later turns
        self.local_spent = 0.0  # seconds of "local" work in this loop turn
        self.refill: deque[list[Any]] = deque()  # slices of provider tables to take in
        self.walks: dict[str, Walk] = {}  # state type -> its comparison under way
        self.walk_cost = 0.0  # seconds spent comparing slices since the last safety net
        self.newer: dict[str, NewerInProvider] = {}  # per type: what walks found newer
        self.last_now = 0.0  # for replies, which arrive without a time
        self.next_dirty_check = 0.0
        self.next_save = 0.0
        self.save_cost = 0.0  # seconds spent on the snapshot under way
        self.saving: tuple[SnapshotWriter, SnapshotPieces] | None = None  # one under way
        self.next_members = 0.0
        self.clock_told: dict[str, int] = {}  # state type -> clock its provider has
        # Remote states waiting for their provider's `apply` (see `_offer`), by type.
        self.to_offer: dict[str, dict[tuple[str, str], SyncableState]] = {}
        self.applies_in_flight: Counter[str] = Counter()

    def setup(self, now: float) -> None:
        self._restore(now)
        self.core = AntiEntropy(self.env.node_id, self.store, self.config, random.Random(),
                                self.clock)
        self.inbox = self.security.open_inbox(self.ctx, self.env.sync_fd,
                                              self.env.config.network.sync, self.counters)
        if self.security.zap is not None:
            self.watch(self.security.zap.sock, self.security.zap.handle)
        self.watch(self.inbox, self._on_inbox)
        for spec in self.env.config.providers:
            client = AsyncClient.connect(self.ctx, self.env.rpc_endpoint(spec.actor_name))
            self.providers[spec.type] = client
            self.watch(client.sock, _readable(client))
            client.request("sync_state", {}, now, RPC_TIMEOUT_S, self._on_provider_state)
        self.membership = AsyncClient.connect(self.ctx, self.env.rpc_endpoint("membership"))
        self.watch(self.membership.sock, lambda now: self.membership.on_readable())

    # -- the mirror on disk --------------------------------------------------------
    # Kept so a restarted actor remembers its GC horizons at once: without them a
    # stale copy of a deleted key could reappear here until a peer corrects it.
    def _restore(self, now: float) -> None:
        try:
            saved = load_snapshot(self.mirror_path)
            if isinstance(saved, dict):
                self.store.restore(saved, now)
        except (SnapshotError, StoreSnapshotError) as exc:
            self.log.bind(error=str(exc)).warning("mirror snapshot unreadable; rebuilding")
        versions = [s.version for s in self.store.items()]
        versions += list(self.store.horizons().values())
        if versions:
            self.clock.update(max(versions))

    def _save_step(self, now: float, rows: int = SAVE_ROWS_PER_TURN) -> None:
        """One piece of the mirror snapshot per loop turn (a whole one at 1M keys would
        stall the loop for seconds); a new one starts every SAVE_EVERY_S, or less often
        when writing one costs more than SAVE_DUTY of that time."""
        if self.saving is None:
            if now < self.next_save:
                return
            self.save_cost = 0.0
            try:
                self.saving = (SnapshotWriter(self.mirror_path), self.store.snapshot_in_pieces())
            except OSError as exc:
                self.next_save = now + SAVE_EVERY_S
                self.log.bind(error=str(exc)).warning("mirror snapshot not written")
                return
        writer, pieces = self.saving
        started = time.perf_counter()
        try:
            writer.write(pieces.next(now, rows))
            self.save_cost += time.perf_counter() - started
            if pieces.done:
                self.saving = None
                writer.commit()
                # At most SAVE_DUTY of the time goes to snapshots, however large the mirror.
                self.next_save = now + max(SAVE_EVERY_S, self.save_cost / SAVE_DUTY)
        except OSError as exc:
            self.saving = None
            self.next_save = now + SAVE_EVERY_S
            writer.abort()
            self.log.bind(error=str(exc)).warning("mirror snapshot not written")

    def shutdown(self, now: float) -> None:
        if self.saving is not None:  # the one under way is older than the mirror
            self.saving[0].abort()
            self.saving = None
        self.next_save = now
        self._save_step(now, rows=len(self.store) + 1)
        while self.saving is not None:
            self._save_step(now, rows=len(self.store) + 1)
        self.pool.close()

    # -- peers -------------------------------------------------------------------
    def _on_members(self, rows: Any, error: RpcError | None) -> None:
        if error is not None or not isinstance(rows, list):
            return
        listed = set()
        for row in rows:
            if isinstance(row, dict):
                self._track(row)
                listed.add(row.get("node_id"))
        for node_id in [p for p in self.peers if p not in listed]:  # reaped unseen
            self._track({"node_id": node_id, "status": "gone"})

    def on_event(self, event: dict[str, Any], now: float) -> None:
        data = event.get("data")
        if not isinstance(data, dict):
            return
        if event.get("type") == "actor.started":
            actor = str(data.get("actor", ""))
            if actor.startswith("provider."):  # it restarted from its own journal
                state_type = actor[len("provider."):]
                self.clock_told.pop(state_type, None)  # its clock came from that journal
                self._reconcile(state_type, now)
        else:
            self._track(data)

    # -- mirror vs providers ---------------------------------------------------------
    # A remote state enters the mirror at once, and its "apply" to the provider can
    # be lost (the provider died, or timed out). So the mirror and each provider are
    # compared after a provider restart, after a failed apply, and every
    # RECONCILE_S as a safety net: the provider gets what it lacks.
    def _reconcile(self, state_type: str, now: float) -> None:
        """Start (or restart) the comparison of the mirror with one provider; it goes a
        slice of buckets per provider reply, never the whole table in one step."""
        if state_type in self.providers:
            self.counters["reconciles"] += 1
            under_way = self.walks.get(state_type)
            if under_way is not None:
                # Its request in flight carries on (a reply or a timeout always comes),
                # so a walk asked for every second still makes progress.
                under_way.restart(self.store)
                return
            self.walks[state_type] = Walk(self.store)
            self._reconcile_next(state_type, now)

    def _reconcile_next(self, state_type: str, now: float) -> None:
        walk, client = self.walks.get(state_type), self.providers.get(state_type)
        buckets = walk.next_slice() if walk is not None else None
        if walk is None or buckets is None or client is None:
            self.walks.pop(state_type, None)
            return
        client.request("digest", {"buckets": buckets}, now, RPC_TIMEOUT_S,
                       functools.partial(self._on_digest, state_type, walk, buckets))

    def _on_digest(self, state_type: str, walk: Walk, buckets: list[int], rows: Any,
                   error: RpcError | None) -> None:
        """One slice's digest from the provider: compare it, then ask for the next."""
        if self.walks.get(state_type) is not walk:
            return  # a newer comparison started meanwhile
        started = time.perf_counter()
        try:
            self._compare(state_type, walk, buckets, rows, error)
        finally:
            self.walk_cost += time.perf_counter() - started

    def _compare(self, state_type: str, walk: Walk, buckets: list[int], rows: Any,
                 error: RpcError | None) -> None:
        held = read_digest_rows(rows) if error is None else None
        now = self.last_now
        if held is None:
            self.walks.pop(state_type, None)
            self.dirty.add(state_type)
            return
        verdict = compare_slice(self.store, state_type, buckets, held)
        if verdict.lacking:
            self.counters["reconciled_states"] += len(verdict.lacking)
            self._offer(verdict.lacking, now)
        client = self.providers.get(state_type)
        newer = self.newer.setdefault(state_type, NewerInProvider())
        if newer.confirmed(verdict.newer) and client is not None:
            # The provider knows more: take it into the mirror (and stop this walk: the
            # refill makes the mirror current, the next reconcile checks it).
            self.counters["provider_newer_refills"] += 1
            self.walks.pop(state_type, None)
            newer.walk_done()
            client.request("sync_state", {}, now, RPC_TIMEOUT_S, self._on_provider_state)
            return
        if not walk.slices:
            newer.walk_done()
        self._reconcile_next(state_type, now)

    def _track(self, row: dict[str, Any]) -> None:
        node_id, status = row.get("node_id"), row.get("status")
        metadata = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
        endpoint = metadata.get(SYNC_META_KEY) if metadata else None
        if not isinstance(node_id, str) or node_id == self.env.node_id:
            return
        old = self.peers.get(node_id)
        if status in LIVE and isinstance(endpoint, str):
            self.peers[node_id] = endpoint
        else:
            self.peers.pop(node_id, None)
        if old is not None and old != self.peers.get(node_id):
            self.pool.hang_up(old)  # gone, or moved: stop queueing to the old address

    # -- inbound -----------------------------------------------------------------
    def _on_inbox(self, now: float) -> None:
        yielded, handled = self.counters["inbox_yielded"], 0
        # What this wake-up drained goes to the providers as one apply per type (newest
        # per key), not one per message: a backlog of small pushes (many writers, or a
        # node that was descheduled) costs the provider one batch and one wake-up.
        to_apply: dict[tuple[str, str], SyncableState] = {}
        for msg in read_inbox(self.inbox, self.cluster, self.security, self.counters):
            handled += 1
            result = self.core.handle(msg, now)
            self._send(result.replies)
            for state in result.to_apply:  # a later message's state for a key is newer
                to_apply[state_key(state)] = state
        if to_apply:
            self._offer(list(to_apply.values()), now)
        # More than one batch was waiting: shed repair work until the backlog drains.
        # Only while something still waits: one slow message on a loaded machine also
        # ends a batch early, and a flag left set with an empty inbox would stop this
        # node's rounds until some peer happened to write to it (with every node so
        # stuck, repair stopped for good).
        cut_short = self.counters["inbox_yielded"] > yielded or handled >= INBOX_BATCH
        self.core.busy = cut_short and bool(self.inbox.poll(0, zmq.POLLIN))

    def _offer(self, states: list[SyncableState], now: float) -> None:
        """Hand remote states to the providers that own their types.

        At most APPLIES_IN_FLIGHT `apply` requests wait on a provider; what arrives
        meanwhile waits here, newest per key, and leaves as one batch when a reply
        comes. A loaded provider so gets fewer, larger batches instead of a queue of
        small ones (each a wake-up on both sides), and a backlog never piles up in
        front of it, where it would add to every later change's delay."""
        by_type: dict[str, list[SyncableState]] = defaultdict(list)
        for s in states:
            by_type[s.state_type].append(s)
        for state_type, whole in by_type.items():
            if state_type not in self.providers:
                # No provider of this type here: keep relaying it for those who have one.
                self.core.applied(whole)
                self.counters["relayed_unowned"] += len(whole)
                self.publish_changed(whole)  # it changed this node's copy: say so
                continue
            waiting = self.to_offer.setdefault(state_type, {})
            for s in whole:  # a later offer of a key is the mirror's newer state
                waiting[state_key(s)] = s
            self._offer_waiting(state_type, now)

    def _offer_waiting(self, state_type: str, now: float) -> None:
        waiting, client = self.to_offer.get(state_type), self.providers.get(state_type)
        while waiting and client is not None and \
                self.applies_in_flight[state_type] < APPLIES_IN_FLIGHT:
            keys = list(itertools.islice(waiting, APPLY_BATCH))
            batch = [waiting.pop(k) for k in keys]
            # The clock rides along: a provider must write above every version and GC
            # horizon this node has seen, or its next write would be forgotten.
            clock = self.clock.current()
            args = {"states": [syncable_state_to_map(s) for s in batch], "clock": clock}
            self._told(state_type, clock)  # so no "clock" notify follows every apply
            self.applies_in_flight[state_type] += 1
            sent = self.applies_in_flight[state_type]
            client.request("apply", args, now, RPC_TIMEOUT_S,
                           functools.partial(self._on_applied, batch))
            if self.applies_in_flight[state_type] < sent:
                break  # refused at once (its queue is full): the rest waits for a tick
        if not waiting:
            self.to_offer.pop(state_type, None)

    def _on_applied(self, batch: list[SyncableState], result: Any,
                    error: RpcError | None) -> None:
        state_type = batch[0].state_type
        if self.applies_in_flight[state_type] > 0:  # (not after a detach forgot them)
            self.applies_in_flight[state_type] -= 1
        if error is not None:
            self.counters["apply_failed"] += len(batch)
            self.clock_told.pop(state_type, None)  # the clock it carried may be lost too
            self.dirty.add(state_type)
            if error.code == "timeout" and state_type in self.attached:
                # The program hosting it is gone: stop waiting on it (a live SDK
                # registers again within seconds) and keep this node's copy current.
                self._detach(state_type)
                self.core.applied(batch)
                self.publish_changed(batch)
            # What waits is offered at the next tick, not from inside this callback (a
            # request refused at once, "busy", would call it again without end).
            return
        # A state the mirror still holds as offered (the usual case: `_on_delta` stored
        # that very object) would be a no-op to apply again, at the cost of a full store
        # check; only the rest (a forget's tombstone, a reconcile) go through the store.
        self.core.applied([s for s in batch if self.store.get(s.state_type, s.key) is not s])
        if state_type in self.attached:
            self.publish_changed(batch)  # no provider host publishes for an SDK provider
        for key in ("applied", "conflicts", "rejected", "quarantined"):
            if isinstance(result, dict) and isinstance(result.get(key), int):
                self.counters[key] += result[key]
        self._offer_waiting(state_type, self.last_now)

    def _on_provider_state(self, raw: Any, error: RpcError | None) -> None:
        # A whole table: parsed and taken in a slice per loop turn (see _refill_step).
        if error is None and isinstance(raw, list):
            self.refill.extend(raw[i:i + REFILL_PER_TURN]
                               for i in range(0, len(raw), REFILL_PER_TURN))

    def _refill_step(self) -> None:
        if self.refill:
            self.core.applied(_states(self.refill.popleft()))

    # -- local writes and ticks ---------------------------------------------------
    def handle_request(self, req: Request, now: float) -> Any:
        match req.op:
            case "local":
                if self.local_queue or self.local_spent >= LOCAL_BUDGET_S:
                    self.local_queue.append(req)  # answered by _local_step, in order
                    return DEFER
                return self._local(req, now)
            case "attach":
                return self._attach(req.args, now)
            case "state":
                wanted = req.args.get("type")
                return [state_row(s) for s in self.store.items(wanted)
                        if not is_tombstone(s) or req.args.get("tombstones")]
        raise RpcError("unknown_op", f"anti_entropy has no operation {req.op!r}")

    def _local(self, req: Request, now: float) -> dict[str, Any]:
        started = time.perf_counter()
        states = _states(req.args.get("states"))
        before = self.clock.current()
        self._send(self.core.local_changes(states, now, list(self.peers)))
        if states and self.clock_told.get(states[0].state_type, 0) >= before:
            # Its own writes raised our clock no higher than its own: nothing
            # to tell it (one "clock" message less per local write).
            self._told(states[0].state_type, self.clock.current())
        if states and states[0].state_type in self.attached:
            self.publish_changed(states)
        self.local_spent += time.perf_counter() - started
        return {"accepted": len(states), "clock": self.clock.current()}

    def _local_step(self, now: float) -> None:
        """A new loop turn: take queued "local" requests for up to LOCAL_BUDGET_S. The
        runtime reads hundreds of requests per wake-up, and with 500 states each a
        writing SDK program could otherwise hold one turn for seconds."""
        self.local_spent = 0.0
        while self.local_queue and self.local_spent < LOCAL_BUDGET_S:
            req = self.local_queue.popleft()
            self.reply(req, self._local(req, now))

    def _attach(self, args: dict[str, Any], now: float) -> dict[str, Any]:
        """An SDK-hosted provider (in a user's program) joins this node's replication."""
        state_type, endpoint = args.get("type"), args.get("endpoint")
        if not isinstance(state_type, str) or not isinstance(endpoint, str):
            raise RpcError("bad_request", "attach needs a type and an endpoint")
        if state_type in self.providers and state_type not in self.attached:
            raise RpcError("conflict", f"provider type {state_type!r} is run by this node")
        known = self.attached.get(state_type) == endpoint
        if not known:
            self._detach(state_type)
            client = AsyncClient.connect(self.ctx, endpoint)
            self.providers[state_type] = client
            self.attached[state_type] = endpoint
            self.watch(client.sock, _readable(client))
            self.counters["attached"] += 1
        if known and not args.get("full", True):
            # A renewal of a registration that is still current: nothing was lost
            # (a lost write or apply makes the SDK ask for everything, and a detach or
            # a restart of this actor makes it a new registration), so the whole table
            # does not travel every few seconds.
            self.counters["attach_renewed"] += 1
            return {"states": [], "clock": self.clock.current(), "renewed": True}
        states = [syncable_state_to_map(s) for s in self.store.items(state_type)]
        return {"states": states, "clock": self.clock.current()}

    def reload(self) -> None:
        self.security.reload()
        self.pool.hang_up_all()  # redial with current keys, or not at all

    def _detach(self, state_type: str) -> None:
        if self.attached.pop(state_type, None) is None:
            return
        client = self.providers.pop(state_type)
        self.unwatch(client.sock)
        client.close()
        self.counters["detached"] += 1
        self.applies_in_flight.pop(state_type, None)  # closed: no reply will come
        waiting = list(self.to_offer.pop(state_type, {}).values())
        if waiting:  # this node's copy changed: say so, as for a batch that timed out
            self.core.applied(waiting)
            self.publish_changed(waiting)

    def _tell_clocks(self) -> None:
        """A provider hears the clock when it has not yet (a new or restarted one, or
        an apply failed), or when its type's GC horizon rose above what it was told.
        Not on every remote write of another type: each notify is a wake-up of that
        provider's process, and at LB write rates it was one per push received."""
        for state_type, client in self.providers.items():
            told = self.clock_told.get(state_type)
            if told is None or self.core.clock_floor(state_type) > told:
                clock = self.clock.current()
                self._told(state_type, clock)
                client.notify("clock", {"clock": clock})

    def _told(self, state_type: str, clock: int) -> None:
        self.clock_told[state_type] = max(self.clock_told.get(state_type, 0), clock)

    def tick(self, now: float) -> None:
        self.last_now = now
        self._local_step(now)
        self._refill_step()
        if now >= self.next_members:
            self.next_members = now + MEMBERS_REFRESH_S
            self.membership.request("members", {}, now, RPC_TIMEOUT_S, self._on_members)
        self._send(self.core.tick(now, list(self.peers)))
        if now >= self.next_reconcile:
            # A whole walk costs O(keys) in all (seconds at 1M keys): the safety net
            # takes at most RECONCILE_DUTY of the actor's time, however large the table.
            self.next_reconcile = now + max(RECONCILE_S, self.walk_cost / RECONCILE_DUTY)
            self.walk_cost = 0.0
            # The safety net leaves a walk under way alone (at 1M keys one may take longer
            # than RECONCILE_S on a loaded machine, and restarting it would never finish).
            self.dirty.update(t for t in self.providers if t not in self.walks)
        if self.dirty and now >= self.next_dirty_check:
            self.next_dirty_check = now + 1.0  # a provider still restarting gets a second
            for state_type in list(self.dirty):
                self.dirty.discard(state_type)
                self._reconcile(state_type, now)
        self._save_step(now)
        if now >= self.next_sweep:
            self.next_sweep = now + 1.0
            self.pool.sweep(now)
        self._tell_clocks()
        for state_type in list(self.to_offer):
            self._offer_waiting(state_type, now)
        for client in (*self.providers.values(), self.membership):
            client.expire(now)

    def next_deadline(self) -> float | None:
        deadlines: list[float | None] = [self.core.next_deadline(), self.next_members,
                                         0.0 if self.saving or self.refill or self.local_queue
                                         else self.next_save]
        deadlines += [c.next_deadline() for c in (*self.providers.values(), self.membership)]
        return min((d for d in deadlines if d is not None), default=None)

    def _send(self, outbound: list[Outbound]) -> None:
        known = [out for out in outbound if out.peer in self.peers]
        if len(known) < len(outbound):
            self.counters["send_unknown_peer"] += len(outbound) - len(known)
        # A push to every peer carries the same states: packed once for all of them.
        for out, data in zip(known, encode_many([o.message for o in known], self.cluster),
                             strict=True):
            self.pool.send(self.peers[out.peer], data, out.peer)

    def status(self) -> dict[str, Any]:
        return {"peers": len(self.peers), "keys": len(self.store),
                # remote states waiting for a provider busy with APPLIES_IN_FLIGHT applies
                "waiting_to_apply": sum(len(w) for w in self.to_offer.values()),
                "core": dict(self.core.counters)}


def _readable(client: AsyncClient) -> Callable[[float], None]:
    return lambda now: client.on_readable()


def _states(raw: Any) -> list[SyncableState]:
    try:
        return parse_states_untrusted(raw)[0]
    except RpcError:
        return []
