"""The `haproxy` actor: applies the cluster's verdicts to this node's HAProxy.

Every node that has ``[haproxy]`` runs one; each talks to its own HAProxy
through the Runtime API (`actors.haproxy.runtime_api`), and all of them act
on the same replicated verdicts, so every balancer takes a failed backend
out of rotation although only its owner node checks it.

How verdicts arrive: the actor subscribes to ``state.changed`` (which names
the state type and key, not the value) and, for a change of a configured
name, asks the local provider actor for its states (the ``state`` op, one
local request for the whole type). That is the simplest robust way: the
provider actor holds the authoritative view on this node (remote changes
included), the event makes the reaction immediate, and the same request
made every `interval_s` repairs anything missed (an event dropped, a
provider restarted). Asking anti-entropy instead would cost the same request
and add a hop for nothing.

The poll loop never waits on HAProxy: each exchange runs in one worker
thread with its own deadline, and the thread wakes the loop through a pipe
when it is done. The decisions (what to send, what a reply means, when to
retry) are `actors.haproxy.core.bridge.Bridge`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import zmq

from actors.haproxy.core.bridge import Bridge, Outcome, Step, Write
from actors.haproxy.core.desired import breaker_view, health_view
from actors.haproxy.core.names import parse_runtime_api, parse_server_ref
from actors.haproxy.runtime_api import RuntimeApiError, exchange
from actors.node.wakeup import WakeupPipe
from actors.runtime import Actor, NodeEnv
from transport.rpc import AsyncClient, RpcError

EXCHANGE_TIMEOUT_S = 2.0  # one Runtime API exchange, connect to EOF
VIEW_TIMEOUT_S = 2.0  # one `state` request to a local provider actor
VIEW_TYPES = {"health": health_view, "circuit_breaker": breaker_view}


@dataclass
class ViewSource:
    """One provider actor whose states feed the bridge."""

    client: AsyncClient
    view: dict[str, str] = field(default_factory=dict)
    asking: bool = False  # a `state` request is in flight
    again: bool = False  # a change was announced while asking: ask once more


class HAProxyActor(Actor):
    subscriptions = ("state.changed",)

    def __init__(self, name: str, env: NodeEnv, ctx: zmq.Context) -> None:
        super().__init__(name, env, ctx)
        section = env.config.haproxy
        if section is None:  # plan.py adds this actor only with [haproxy]
            raise RuntimeError("haproxy actor started without a [haproxy] section")
        self.section = section
        self.address = parse_runtime_api(section.runtime_api)
        self.bridge = Bridge({n: parse_server_ref(v) for n, v in section.servers.items()},
                             section.interval_s)
        self.sources: dict[str, ViewSource] = {}
        self.views_at = 0.0
        self.pool: ThreadPoolExecutor | None = None
        self.future: Future[str] | None = None
        self.wakeup: WakeupPipe | None = None
        self.failing = False  # since the last failure, nothing has succeeded
        self.reported_missing: list[str] = []

    # -- lifecycle -----------------------------------------------------------------------
    def setup(self, now: float) -> None:
        configured = {spec.type for spec in self.env.config.providers}
        for state_type in VIEW_TYPES:
            if state_type in configured:
                client = AsyncClient.connect(self.ctx,
                                             self.env.rpc_endpoint(f"provider.{state_type}"))
                self.sources[state_type] = ViewSource(client)
                self.watch(client.sock, _reader(client))
        wakeup = self.wakeup = WakeupPipe()
        self.watch(wakeup.fd, lambda now: wakeup.drain())
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="haproxy-api")
        self.log.bind(runtime_api=self.section.runtime_api,
                      servers=len(self.bridge.servers)).info("haproxy bridge started")

    def shutdown(self, now: float) -> None:
        # The wake pipe stays open until the process exits: an exchange still running
        # would otherwise write its wake-up byte into whatever reused the fd number.
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)

    def on_event(self, event: dict[str, Any], now: float) -> None:
        data = event.get("data")
        if not isinstance(data, dict):
            return
        source = self.sources.get(str(data.get("state_type")))
        if source is not None and data.get("key") in self.bridge.servers:
            self.counters["events"] += 1
            self._ask(source, str(data["state_type"]), now)

    def tick(self, now: float) -> None:
        for state_type, source in self.sources.items():
            source.client.expire(now)
            if now >= self.views_at or source.again:
                self._ask(source, state_type, now)
        if now >= self.views_at:
            self.views_at = now + self.section.interval_s
        self._collect(now)
        self._start_step(now)

    def next_deadline(self) -> float | None:
        due = [self.views_at, self.bridge.next_deadline()]
        due += [s.client.next_deadline() for s in self.sources.values()]
        return min((d for d in due if d is not None), default=None)

    def status(self) -> dict[str, Any]:
        desired = self.bridge.desired()
        return {"runtime_api": self.section.runtime_api, "failures": self.bridge.failures,
                "desired": {str(ref): state.value for ref, state in sorted(desired.items())},
                "in_sync": self.bridge.observed is not None and all(
                    self.bridge.observed.get(ref) is state for ref, state in desired.items()),
                "missing": self.reported_missing}

    # -- verdicts ------------------------------------------------------------------------
    def _ask(self, source: ViewSource, state_type: str, now: float) -> None:
        if source.asking:
            source.again = True
            return
        source.asking, source.again = True, False
        source.client.request("state", {"tombstones": True}, now, VIEW_TIMEOUT_S,
                              lambda rows, error: self._on_rows(state_type, rows, error))

    def _on_rows(self, state_type: str, rows: Any, error: RpcError | None) -> None:
        source = self.sources[state_type]
        source.asking = False
        if error is not None:  # the provider is restarting: keep the last view
            self.counters["view_errors"] += 1
        else:
            self.counters["views"] += 1
            source.view = VIEW_TYPES[state_type](rows)
            health, breakers = self.sources.get("health"), self.sources.get("circuit_breaker")
            self.bridge.set_views(health.view if health else {},
                                  breakers.view if breakers else {})
        # tick runs after this handler: it asks again if needed and starts the step

    # -- HAProxy -------------------------------------------------------------------------
    def _start_step(self, now: float) -> None:
        step, wakeup = self.bridge.next_step(now), self.wakeup
        if step is None or self.pool is None or wakeup is None:
            return
        self.bridge.begin(step)
        self.future = self.pool.submit(exchange, self.address, step.line, EXCHANGE_TIMEOUT_S)
        self.future.add_done_callback(lambda _: wakeup.wake())

    def _collect(self, now: float) -> None:
        future = self.future
        if future is None or not future.done():
            return
        self.future = None
        step = self.bridge.in_flight
        try:
            outcome = self.bridge.on_reply(future.result(), now)
        except RuntimeApiError as exc:
            outcome = self.bridge.on_failure(exc.reason, exc.detail, now)
        self._report(step, outcome)

    def _report(self, step: Step | None, outcome: Outcome) -> None:
        kind = "writes" if isinstance(step, Write) else "reads"
        if not outcome.ok:
            self.counters["failures"] += 1
            self.counters[f"failures_{outcome.reason}"] += 1
            log = self.log.bind(reason=outcome.reason, detail=outcome.detail,
                                failures=self.bridge.failures)
            (log.debug if self.failing else log.warning)("haproxy runtime api failed")
            self.failing = True
            return
        if self.failing:
            self.failing = False
            self.log.info("haproxy runtime api answering again")
        self.counters[kind] += 1
        for ref, state in (outcome.applied or {}).items():
            self.counters["commands"] += 1
            self.log.bind(server=str(ref), state=state.value).info("haproxy server state set")
        missing = [str(ref) for ref in self.bridge.missing()]
        if kind == "reads" and missing != self.reported_missing:
            self.reported_missing = missing
            if missing:
                self.log.bind(missing=missing).warning("haproxy does not list these servers")


def _reader(client: AsyncClient) -> Callable[[float], None]:
    return lambda now: client.on_readable()

