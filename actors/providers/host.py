"""The provider actor: hosts one `StateProvider` in its own process.

The host turns requests into provider calls and makes every change visible:
each state the provider accepts (a local write or a remote state) is
published as ``state.changed`` and handed to the anti-entropy actor, which
spreads it to the other nodes. The provider stays the authority for its
own type: remote states reach it only through ``apply_remote_state``.

Durability: every change is appended to a journal in ``data_dir`` before the
request is answered, and the journal is folded into a snapshot now and then
and at shutdown. A restarted provider replays snapshot plus journal before
it serves, so a kill -9 loses no acknowledged write.

Commands: a provider exposes commands as methods named ``cmd_<op>(args,
now)``; ``lbcluster kv set`` reaches ``KvProvider.cmd_set``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import zmq

from actors.node.config import ProviderSpec
from actors.providers.outbox import LocalOutbox
from actors.runtime import Actor, NodeEnv
from actors.storage.journal import StateJournal
from transport.protocol import (
    LamportClock,
    StateProvider,
    SyncableState,
    is_tombstone,
    state_key,
    syncable_state_to_map,
)
from transport.rpc import AsyncClient, Request, RpcError
from transport.views import parse_states_untrusted, state_row

COMPACT_EVERY = 1000  # journal records between snapshots


LIVE = ("alive", "suspect")


class ProviderActor(Actor):
    subscriptions = ("node.",)

    def __init__(self, name: str, env: NodeEnv, ctx: zmq.Context, spec: ProviderSpec,
                 provider_cls: type) -> None:
        super().__init__(name, env, ctx)
        self.spec = spec
        self.clock = LamportClock()
        self.provider: StateProvider = provider_cls(node_id=env.node_id, clock=self.clock,
                                                    options=dict(spec.options))
        self.journal = StateJournal(env.config.node.data_dir / "state" / spec.type)
        self.versions: dict[tuple[str, str], tuple[int, str]] = {}
        self.ae: AsyncClient | None = None
        self.outbox = LocalOutbox()
        self.live: dict[str, bool] = {env.node_id: True}

    def setup(self, now: float) -> None:
        restored = self.journal.load()
        if self.journal.corrupt:
            self.log.error("provider snapshot was corrupt; moved aside, resyncing")
            self.counters["snapshot_corrupt"] += 1
        if restored:
            result = self.provider.apply_remote_state(restored)
            self.counters["restored"] = result["applied"]
            drain = getattr(self.provider, "drain_changes", None)
            if drain is not None:
                drain()  # what we restored is already on disk and already published
        self.versions = {state_key(s): (s.version, s.source_node)
                         for s in self.provider.get_sync_state()}
        if self.versions:
            self.clock.update(max(v for v, _ in self.versions.values()))
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
        hook = getattr(self.provider, "on_members", None)
        if hook is not None:
            hook(sorted(n for n, up in self.live.items() if up), now)
            self._publish_changes(now, local=True)

    def handle_request(self, req: Request, now: float) -> Any:
        match req.op:
            case "sync_state":
                return [syncable_state_to_map(s) for s in self.provider.get_sync_state()]
            case "digest":
                return [[t, k, v] for (t, k), v in self.provider.get_state_digest().items()]
            case "apply":
                self._witness(req.args.get("clock"))
                return self._apply_untrusted(req.args.get("states"), now)
            case "clock":
                self._witness(req.args.get("clock"))
                return {}
            case "node_failed":
                self.provider.on_node_failure(str(req.args["node_id"]))
                return {}
            case "state":
                return [state_row(s) for s in self.provider.get_sync_state()
                        if not is_tombstone(s) or req.args.get("tombstones")]
        command = getattr(self.provider, f"cmd_{req.op}", None)
        if command is None:
            raise RpcError("unknown_op", f"provider {self.spec.type} has no command {req.op!r}")
        result = command(req.args, now)
        self._publish_changes(now, local=True)
        return result

    def _witness(self, clock: Any) -> None:
        if isinstance(clock, int) and not isinstance(clock, bool) and clock >= 0:
            self.clock.update(clock)

    def _apply_untrusted(self, raw: Any, now: float) -> dict[str, int]:
        states, rejected = parse_states_untrusted(raw)
        for s in states:
            self.clock.update(s.version)
        result = self.provider.apply_remote_state(states)
        self._publish_changes(now, local=False)
        return {"applied": result["applied"], "conflicts": result["conflicts"],
                "rejected": result["rejected"] + rejected}

    def on_event(self, event: dict[str, Any], now: float) -> None:
        node_id, data = event.get("node_id"), event.get("data")
        if not isinstance(node_id, str) or not isinstance(data, dict):
            return
        if event.get("type") == "node.failed":
            self.provider.on_node_failure(node_id)
            self.counters["node_failures"] += 1
        up = data.get("status") in LIVE
        if self.live.get(node_id) != up:
            self.live[node_id] = up
            self._members_changed(now)
        self._publish_changes(now, local=True)

    def tick(self, now: float) -> None:
        self._flush_outbox()
        hook = getattr(self.provider, "tick", None)
        if hook is not None:
            hook(now)
            self._publish_changes(now, local=True)
        self.membership.expire(now)
        if self.ae is not None:
            self.ae.expire(now)

    def next_deadline(self) -> float | None:
        hook = getattr(self.provider, "next_deadline", None)
        return hook() if hook is not None else None

    def _changed(self) -> list[SyncableState]:
        drain = getattr(self.provider, "drain_changes", None)
        if drain is not None:
            changed: Iterable[SyncableState] = drain()
        else:  # any provider: diff its digest against what we last saw
            changed = [s for s in self.provider.get_sync_state()
                       if self.versions.get(state_key(s)) != (s.version, s.source_node)]
        out = []
        for s in changed:
            self.versions[state_key(s)] = (s.version, s.source_node)
            out.append(s)
        return out

    def _publish_changes(self, now: float, local: bool) -> None:
        changed = self._changed()
        if not changed:
            return
        self.journal.append(changed)
        if self.journal.records >= COMPACT_EVERY:
            self.journal.compact(self.provider.get_sync_state())
        for s in changed:
            row = state_row(s)
            del row["value"]  # events say what changed; the value is one `state` away
            self.publish("state.changed", s.source_node, row)
        self.counters["local_writes" if local else "remote_applied"] += len(changed)
        if local:
            self.outbox.add(changed)
            self._flush_outbox()

    def _flush_outbox(self) -> None:
        ae = self.ae
        if ae is None or not self.outbox.pending:
            return
        if not self.outbox.flush(lambda states: ae.notify(
                "local", {"states": [syncable_state_to_map(s) for s in states]})):
            self.counters["local_deferred"] += 1  # the queue is full: kept for the next try

    def shutdown(self, now: float) -> None:
        self.journal.compact(self.provider.get_sync_state())
        close = getattr(self.provider, "close", None)
        if close is not None:
            close()

    def status(self) -> dict[str, Any]:
        return {"provider": self.spec.type, "keys": len(self.versions)}
