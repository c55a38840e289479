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
the supervisor's sync proxy; outbound goes through one DEALER per peer,
never blocking (a slow peer drops its own messages, not everyone's).
"""

from __future__ import annotations

import functools
import random
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import zmq

from actors.config import SYNC_META_KEY
from actors.core.antientropy import AntiEntropy, Outbound, ae_config_for
from actors.core.store import Store
from actors.rpc import AsyncClient, Request, RpcError
from actors.runtime import Actor, NodeEnv
from actors.views import state_row
from transport.codec import DecodeError, decode_untrusted, encode
from transport.protocol import (
    LamportClock,
    ProtocolError,
    SyncableState,
    is_tombstone,
    map_to_syncable_state,
    syncable_state_to_map,
)
from transport.sockets import bind, make_socket

PEER_HWM = 256
RPC_TIMEOUT_S = 5.0
LIVE = ("alive", "suspect")


class AntiEntropyActor(Actor):
    subscriptions = ("node.",)

    def __init__(self, name: str, env: NodeEnv, ctx: zmq.Context) -> None:
        super().__init__(name, env, ctx)
        self.cluster = env.config.node.cluster
        self.config = ae_config_for(env.config.anti_entropy)
        self.clock = LamportClock()
        self.store = Store(tombstone_grace_s=self.config.tombstone_grace_s)
        self.peers: dict[str, str] = {}  # node id -> sync endpoint of live members
        self.dealers: dict[str, zmq.Socket] = {}
        self.providers: dict[str, AsyncClient] = {}

    def setup(self, now: float) -> None:
        self.core = AntiEntropy(self.env.node_id, self.store, self.config, random.Random(),
                                self.clock)
        self.inbox = make_socket(self.ctx, zmq.PULL, hwm=10000)
        bind(self.inbox, self.env.sync_in)
        self.watch(self.inbox, self._on_inbox)
        for spec in self.env.config.providers:
            client = AsyncClient.connect(self.ctx, self.env.rpc_endpoint(spec.actor_name))
            self.providers[spec.type] = client
            self.watch(client.sock, _readable(client))
            client.request("sync_state", {}, now, RPC_TIMEOUT_S, self._on_provider_state)
        self.membership = AsyncClient.connect(self.ctx, self.env.rpc_endpoint("membership"))
        self.watch(self.membership.sock, lambda now: self.membership.on_readable())
        self.membership.request("members", {}, now, RPC_TIMEOUT_S, self._on_members)

    # -- peers -------------------------------------------------------------------
    def _on_members(self, rows: Any, error: RpcError | None) -> None:
        if error is None and isinstance(rows, list):
            for row in rows:
                if isinstance(row, dict):
                    self._track(row)

    def on_event(self, event: dict[str, Any], now: float) -> None:
        data = event.get("data")
        if isinstance(data, dict):
            self._track(data)

    def _track(self, row: dict[str, Any]) -> None:
        node_id, status = row.get("node_id"), row.get("status")
        metadata = row.get("metadata") if isinstance(row.get("metadata"), dict) else {}
        endpoint = metadata.get(SYNC_META_KEY) if metadata else None
        if not isinstance(node_id, str) or node_id == self.env.node_id:
            return
        if status in LIVE and isinstance(endpoint, str):
            self.peers[node_id] = endpoint
        else:
            self.peers.pop(node_id, None)
            sock = self.dealers.pop(node_id, None)
            if sock is not None:
                sock.close(linger=0)

    # -- inbound -----------------------------------------------------------------
    def _on_inbox(self, now: float) -> None:
        for _ in range(1000):
            if not self.inbox.poll(0, zmq.POLLIN):
                break
            frames = self.inbox.recv_multipart()
            self.counters["bytes_received"] += len(frames[-1])
            try:
                msg = decode_untrusted(frames, self.cluster)
            except DecodeError as exc:
                self.counters[f"dropped.{exc.reason}"] += 1
                continue
            self.counters["received"] += 1
            result = self.core.handle(msg, now)
            self._send(result.replies)
            if result.to_apply:
                self._offer(result.to_apply, now)

    def _offer(self, states: list[SyncableState], now: float) -> None:
        """Hand remote states to the providers that own their types."""
        by_type: dict[str, list[SyncableState]] = defaultdict(list)
        for s in states:
            by_type[s.state_type].append(s)
        for state_type, batch in by_type.items():
            client = self.providers.get(state_type)
            if client is None:
                # No provider of this type here: keep relaying it for those who have one.
                self.core.applied(batch)
                self.counters["relayed_unowned"] += len(batch)
                continue
            client.request("apply", {"states": [syncable_state_to_map(s) for s in batch]},
                           now, RPC_TIMEOUT_S,
                           functools.partial(self._on_applied, batch))

    def _on_applied(self, batch: list[SyncableState], result: Any,
                    error: RpcError | None) -> None:
        if error is not None:
            self.counters["apply_failed"] += len(batch)
            return
        self.core.applied(batch)
        for key in ("applied", "conflicts", "rejected"):
            if isinstance(result, dict) and isinstance(result.get(key), int):
                self.counters[key] += result[key]

    def _on_provider_state(self, raw: Any, error: RpcError | None) -> None:
        if error is None and isinstance(raw, list):
            self.core.applied(_states(raw))

    # -- local writes and ticks ---------------------------------------------------
    def handle_request(self, req: Request, now: float) -> Any:
        match req.op:
            case "local":
                states = _states(req.args.get("states"))
                self._send(self.core.local_changes(states, now, list(self.peers)))
                return {"accepted": len(states)}
            case "state":
                wanted = req.args.get("type")
                return [state_row(s) for s in self.store.items(wanted)
                        if not is_tombstone(s) or req.args.get("tombstones")]
        raise RpcError("unknown_op", f"anti_entropy has no operation {req.op!r}")

    def tick(self, now: float) -> None:
        self._send(self.core.tick(now, list(self.peers)))
        for client in (*self.providers.values(), self.membership):
            client.expire(now)

    def next_deadline(self) -> float | None:
        deadlines: list[float | None] = [self.core.next_deadline()]
        deadlines += [c.next_deadline() for c in (*self.providers.values(), self.membership)]
        return min((d for d in deadlines if d is not None), default=None)

    def _send(self, outbound: list[Outbound]) -> None:
        for out in outbound:
            endpoint = self.peers.get(out.peer)
            if endpoint is None:
                self.counters["send_unknown_peer"] += 1
                continue
            sock = self.dealers.get(out.peer)
            if sock is None:
                sock = make_socket(self.ctx, zmq.DEALER, hwm=PEER_HWM)
                sock.connect(endpoint)
                self.dealers[out.peer] = sock
            try:
                data = encode(out.message, self.cluster)
                sock.send(data, zmq.NOBLOCK)
                self.counters["sent"] += 1
                self.counters["bytes_sent"] += len(data)
            except zmq.Again:
                self.counters["send_queue_full"] += 1

    def status(self) -> dict[str, Any]:
        return {"peers": len(self.peers), "keys": len(self.store.digest()),
                "core": dict(self.core.counters)}


def _readable(client: AsyncClient) -> Callable[[float], None]:
    return lambda now: client.on_readable()


def _states(raw: Any) -> list[SyncableState]:
    out = []
    for item in raw if isinstance(raw, list) else []:
        try:
            out.append(map_to_syncable_state(item))
        except ProtocolError:
            continue
    return out
