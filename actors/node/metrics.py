"""What the monitoring endpoint reports: Prometheus metrics and the node's health.

`NodeCollector` is a custom prometheus_client collector: nothing is updated
per event; at each scrape it reads the supervisor's tables (the event log's
member table and per-type counts, each actor's restart book and the counters
its last heartbeat carried). Scrapes run on the HTTP thread while the
supervisor's loop updates those tables, so every table is copied first with
one C-level call (`dict(...)`, `list(...)`), which the GIL makes atomic, and
heartbeats replace an actor's counters wholesale, never in place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from actors.node.eventlog import EventLog
from actors.node.lifecycle import Lifecycle
from transport.protocol import MemberStatus

MEMBER_STATUSES = tuple(MemberStatus)
ERROR_PREFIX = "errors."  # a provider's error counters: errors.<method> and the like


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class NodeCollector(Collector):
    def __init__(self, node_id: str, events: EventLog, life: Lifecycle,
                 own_counters: Callable[[], dict[str, int]]) -> None:
        self.node_id, self.events, self.life = node_id, events, life
        self.own_counters = own_counters

    def collect(self) -> Iterator[Metric]:
        yield self._members()
        actors = list(self.life.actors.values())
        restarts = CounterMetricFamily("lbcluster_actor_restarts",
                                       "Restarts of each actor since the node started",
                                       labels=["actor"])
        ready = GaugeMetricFamily("lbcluster_actor_ready", "1 while the actor is ready",
                                  labels=["actor"])
        degraded = GaugeMetricFamily("lbcluster_actor_degraded",
                                     "1 while the actor is given up (waiting for its retry)",
                                     labels=["actor"])
        for a in actors:
            restarts.add_metric([a.name], a.book.restarts)
            ready.add_metric([a.name], 1 if a.ready else 0)
            degraded.add_metric([a.name], 1 if a.book.given_up else 0)
        yield from (restarts, ready, degraded)
        events = CounterMetricFamily("lbcluster_events", "Events published, by type",
                                     labels=["type"])
        for kind, count in sorted(dict(self.events.by_type).items()):
            events.add_metric([kind], count)
        yield events
        yield from self._actor_counters(actors)

    def _members(self) -> Metric:
        counts: dict[str, int] = dict.fromkeys(MEMBER_STATUSES, 0)
        for row in list(dict(self.events.members).values()):
            status = str(row.get("status"))
            counts[status] = counts.get(status, 0) + 1
        if self.node_id not in self.events.members:
            counts[MemberStatus.ALIVE] += 1  # this node, until an event says otherwise
        members = GaugeMetricFamily("lbcluster_members", "Members this node knows, by status",
                                    labels=["status"])
        for status, count in counts.items():
            members.add_metric([status], count)
        return members

    def _actor_counters(self, actors: list[Any]) -> Iterator[Metric]:
        counters = CounterMetricFamily(
            "lbcluster_actor_counter", "Each actor's counters as its last heartbeat reported "
            "them (core.* from its protocol core); they restart at 0 with the actor",
            labels=["actor", "counter"])
        errors = CounterMetricFamily("lbcluster_provider_errors",
                                     "Provider errors, by actor and counter (errors.*)",
                                     labels=["actor", "error"])
        keys = GaugeMetricFamily("lbcluster_state_keys", "Replicated keys each provider holds",
                                 labels=["type"])
        for name, values in [("supervisor", dict(self.own_counters()))] + [
                (a.name, {**a.counters, **_core(a.status)}) for a in actors]:
            for counter, value in sorted(values.items()):
                if not _number(value):
                    continue
                if counter.startswith(ERROR_PREFIX):
                    errors.add_metric([name, counter[len(ERROR_PREFIX):]], value)
                else:
                    counters.add_metric([name, counter], value)
        for a in actors:
            status = a.status
            if isinstance(status.get("provider"), str) and _number(status.get("keys")):
                keys.add_metric([status["provider"]], status["keys"])
        yield from (counters, errors, keys)


def _core(status: dict[str, Any]) -> dict[str, Any]:
    core = status.get("core")
    return {f"core.{k}": v for k, v in core.items()} if isinstance(core, dict) else {}


def node_health(life: Lifecycle, stopping: Callable[[], bool]) -> tuple[bool, dict[str, Any]]:
    """Healthy when every actor is ready and the node is a member (its membership
    actor runs and it is not leaving); otherwise the reasons."""
    reasons = []
    if stopping():
        reasons.append("the node is stopping (left the cluster)")
    if "membership" not in life.actors:
        reasons.append("no membership actor: the node is not a member")
    for a in list(life.actors.values()):
        if not a.ready:
            reasons.append(f"{a.name} is {a.state}")
    states = {a.name: a.state for a in list(life.actors.values())}
    if reasons:
        return False, {"status": "unavailable", "reasons": reasons, "actors": states}
    return True, {"status": "ok", "actors": states}
