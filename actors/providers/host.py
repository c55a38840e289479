"""The provider actor: hosts one `StateProvider` in its own process.

The host turns requests into provider calls (through `ProviderAdapter`, the
same adapter the SDK's `attach` uses) and makes every change visible: each
state the provider accepts (a local write or a remote state) is published as
``state.changed`` and handed to the anti-entropy actor, which spreads it to
the other nodes. The provider stays the authority for its own type: remote
states reach it only through ``apply_remote_state``.

An exception in the provider never ends this process: the adapter counts it,
and the host logs each distinct error once with its traceback and publishes
``provider.error``. Only a provider that kills the process itself (a
segfault, ``os._exit``) is restarted, and given up alone if it keeps dying.

Durability: every change is appended to a journal in ``data_dir`` before the
request is answered, and the journal is folded into a snapshot now and then
and at shutdown. A restarted provider replays snapshot plus journal before
it serves, so a kill -9 loses no acknowledged write.
"""

from __future__ import annotations

import contextlib
from typing import Any

import zmq

from actors.node.config import ProviderSpec
from actors.providers.adapter import ProviderAdapter, own_writes
from actors.providers.outbox import LocalOutbox
from actors.runtime import DEFER, Actor, NodeEnv
from actors.storage.journal import StateJournal
from transport.protocol import LIVE, LamportClock, SyncableState, state_key, syncable_state_to_map
from transport.rpc import AsyncClient, Request, RpcError

# Requests that reach the provider's own code as a local write (a command).
MEMBERS_REFRESH_S = 5.0
_QUERIES = frozenset({"sync_state", "digest", "apply", "clock", "node_failed", "state",
                      "quarantine"})


class ProviderActor(Actor):
    subscriptions = ("node.",)

    def __init__(self, name: str, env: NodeEnv, ctx: zmq.Context, spec: ProviderSpec,
                 provider_cls: type) -> None:
        super().__init__(name, env, ctx)
        self.spec = spec
        self.clock = LamportClock()
        provider = provider_cls(node_id=env.node_id, clock=self.clock, options=dict(spec.options))
        self.adapter = ProviderAdapter(provider, self.clock, self.counters)
        self.journal = StateJournal(env.config.node.data_dir / "state" / spec.type)
        self.ae: AsyncClient | None = None
        self.outbox = LocalOutbox()
        # Changes taken from the provider and not yet journaled, newest per key: local
        # ones also go to anti-entropy. Replies wait here until their changes are saved.
        self._local: dict[tuple[str, str], SyncableState] = {}
        self._remote: dict[tuple[str, str], SyncableState] = {}
        self._replies: list[tuple[Request, Any]] = []
        self.live: dict[str, bool] = {env.node_id: True}
        self.next_members = 0.0

    def setup(self, now: float) -> None:
        restored = self.journal.load()
        if self.journal.corrupt:
            self.log.error("provider snapshot was corrupt; moved aside, resyncing")
            self.counters["snapshot_corrupt"] += 1
        if restored:
            self.counters["restored"] = self.adapter.replay(restored, now)["applied"]
        try:
            held = self.adapter.sync_state(now)
        except RpcError:
            held = []
        if held:
            self.clock.update(max(s.version for s in held))
        self._report_faults()
        self.ae = AsyncClient.connect(self.ctx, self.env.rpc_endpoint("anti_entropy"))
        self.watch(self.ae.sock, lambda now: self.ae.on_readable() if self.ae else None)
        self.membership = AsyncClient.connect(self.ctx, self.env.rpc_endpoint("membership"))
        self.watch(self.membership.sock, lambda now: self.membership.on_readable())
        self._ask_members(now)
        self._members_changed(now)

    def _ask_members(self, now: float) -> None:
        # At setup and then every MEMBERS_REFRESH_S: a join published while this actor's
        # event subscription was still connecting is never delivered to it, and a provider
        # with a stale view would compute other owners than its peers do, for good.
        self.next_members = now + MEMBERS_REFRESH_S
        self.membership.request("members", {}, now, 5.0,
                                lambda rows, error: self._on_members(rows, error, now))

    def _on_members(self, rows: Any, error: RpcError | None, now: float) -> None:
        if error is not None or not isinstance(rows, list):
            return
        live = {row["node_id"]: row.get("status") in LIVE for row in rows
                if isinstance(row, dict) and isinstance(row.get("node_id"), str)}
        live.update({n: False for n in self.live if n not in live})  # reaped unseen
        live[self.env.node_id] = True
        if live != self.live:
            self.live = live
            self._members_changed(now)

    def _members_changed(self, now: float) -> None:
        self.adapter.members(sorted(n for n, up in self.live.items() if up), now)
        self._collect(now)

    def handle_request(self, req: Request, now: float) -> Any:
        try:
            result = self.adapter.handle(req.op, req.args, now)
        finally:
            # A command may have written (even one that then raised); an apply may have
            # changed states. Either way, what changed is journaled and sent.
            self._collect(now, req if req.op in _QUERIES else None)
            self._report_faults()
        if req.id and (self._unsaved or self._replies):
            # Acknowledged only once journaled: at the end of this batch of requests,
            # in order, with one journal write for the whole batch (see `_flush`).
            self._replies.append((req, result))
            return DEFER
        return result

    def on_event(self, event: dict[str, Any], now: float) -> None:
        node_id, data = event.get("node_id"), event.get("data")
        if not isinstance(node_id, str) or not isinstance(data, dict):
            return
        if event.get("type") == "node.failed":
            self.adapter.node_failed(node_id, now)
            self.counters["node_failures"] += 1
        up = data.get("status") in LIVE
        if self.live.get(node_id) != up:
            self.live[node_id] = up
            self._members_changed(now)
        self._collect(now)
        self._report_faults()

    def tick(self, now: float) -> None:
        self.adapter.tick(now)
        self._collect(now)
        self._report_faults()
        self._flush()
        self._flush_outbox()
        self.membership.expire(now)
        if now >= self.next_members:
            self._ask_members(now)
        if self.ae is not None:
            self.ae.expire(now)

    def next_deadline(self) -> float | None:
        due = self.adapter.next_deadline()
        return self.next_members if due is None else min(due, self.next_members)

    @property
    def _unsaved(self) -> bool:
        return bool(self._local or self._remote)

    def _collect(self, now: float, node_req: Request | None = None) -> None:
        """Take what the provider changed; `_flush` journals and sends it. All of it is
        local, except after a request from the node (`node_req`: an apply, a clock...),
        where only the provider's own writes are."""
        changed = self.adapter.changes(now)
        if node_req is None:
            for s in changed:
                self._local[state_key(s)] = s
            return
        own = {id(s) for s in own_writes(changed, self.env.node_id, node_req.op,
                                         node_req.args)}
        for s in changed:
            (self._local if id(s) in own else self._remote)[state_key(s)] = s

    def _flush(self) -> None:
        """End of a batch: one journal write, the events, the hand-over to anti-entropy,
        then the replies that waited for the journal."""
        if self._unsaved:
            local, remote = list(self._local.values()), list(self._remote.values())
            self._local, self._remote = {}, {}
            changed = remote + local
            self.journal.append(changed)
            if self.journal.compaction_due:
                self._compact(self.adapter.last_now)
            self.publish_changed(changed)
            self.counters["local_writes"] += len(local)
            self.counters["remote_applied"] += len(remote)
            self.outbox.add(local)
        replies, self._replies = self._replies, []
        for req, result in replies:
            self.reply(req, result)

    def _compact(self, now: float) -> None:
        # A provider that cannot list its states now keeps the journal growing instead.
        with contextlib.suppress(RpcError):
            self.journal.compact(self.adapter.sync_state(now))

    def _report_faults(self) -> None:
        for fault in self.adapter.take_faults():
            self.log.bind(method=fault.method, error=fault.error, trace=fault.trace).error(
                "provider raised")
            self.publish("provider.error", self.env.node_id,
                         {"actor": self.name, "method": fault.method, "error": fault.error})

    def _flush_outbox(self) -> None:
        ae = self.ae
        if ae is None or not self.outbox.pending:
            return
        if not self.outbox.flush(lambda states: ae.notify(
                "local", {"states": [syncable_state_to_map(s) for s in states]})):
            self.counters["local_deferred"] += 1  # the queue is full: kept for the next try

    def shutdown(self, now: float) -> None:
        self._collect(now)
        self._flush()
        self._flush_outbox()
        self._compact(now)
        self.adapter.close(now)
        self._report_faults()

    def status(self) -> dict[str, Any]:
        return {"provider": self.spec.type, "keys": self.adapter.key_count(),
                "quarantined": self.adapter.quarantine_rows(),
                "last_error": self.adapter.last_error}
