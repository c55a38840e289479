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
from actors.providers.adapter import ProviderAdapter
from actors.providers.outbox import LocalOutbox
from actors.runtime import Actor, NodeEnv
from actors.storage.journal import StateJournal
from transport.protocol import LIVE, LamportClock, syncable_state_to_map
from transport.rpc import AsyncClient, Request, RpcError
from transport.views import changed_row

# Requests that reach the provider's own code as a local write (a command).
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
        self.keys: set[str] = set()  # for status only: how many keys it holds
        self.ae: AsyncClient | None = None
        self.outbox = LocalOutbox()
        self.live: dict[str, bool] = {env.node_id: True}

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
        self.keys = {s.key for s in held}
        if held:
            self.clock.update(max(s.version for s in held))
        self._report_faults()
        self.ae = AsyncClient.connect(self.ctx, self.env.rpc_endpoint("anti_entropy"))
        self.watch(self.ae.sock, lambda now: self.ae.on_readable() if self.ae else None)
        self.membership = AsyncClient.connect(self.ctx, self.env.rpc_endpoint("membership"))
        self.watch(self.membership.sock, lambda now: self.membership.on_readable())
        self.membership.request("members", {}, now, 5.0,
                                lambda rows, error: self._on_members(rows, error, now))
        self._members_changed(now)

    def _on_members(self, rows: Any, error: RpcError | None, now: float) -> None:
        if error is not None or not isinstance(rows, list):
            return
        for row in rows:
            if isinstance(row, dict) and isinstance(row.get("node_id"), str):
                self.live[row["node_id"]] = row.get("status") in LIVE
        self._members_changed(now)

    def _members_changed(self, now: float) -> None:
        self.adapter.members(sorted(n for n, up in self.live.items() if up), now)
        self._publish_changes(now, local=True)

    def handle_request(self, req: Request, now: float) -> Any:
        try:
            return self.adapter.handle(req.op, req.args, now)
        finally:
            # A command may have written (even one that then raised); an apply may have
            # changed states. Either way, what changed is journaled and sent.
            self._publish_changes(now, local=req.op not in _QUERIES)
            self._report_faults()

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
        self._publish_changes(now, local=True)
        self._report_faults()

    def tick(self, now: float) -> None:
        self._flush_outbox()
        self.adapter.tick(now)
        self._publish_changes(now, local=True)
        self._report_faults()
        self.membership.expire(now)
        if self.ae is not None:
            self.ae.expire(now)

    def next_deadline(self) -> float | None:
        return self.adapter.next_deadline()

    def _publish_changes(self, now: float, local: bool) -> None:
        changed = self.adapter.changes(now)
        if not changed:
            return
        self.journal.append(changed)
        if self.journal.compaction_due:
            self._compact(now)
        self.keys.update(s.key for s in changed)
        for s in changed:
            self.publish("state.changed", s.source_node, changed_row(s))
        self.counters["local_writes" if local else "remote_applied"] += len(changed)
        if local:
            self.outbox.add(changed)
            self._flush_outbox()

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
        self._compact(now)
        self.adapter.close(now)
        self._report_faults()

    def status(self) -> dict[str, Any]:
        return {"provider": self.spec.type, "keys": len(self.keys),
                "quarantined": self.adapter.quarantine_rows(),
                "last_error": self.adapter.last_error}
