"""The metrics collector and health verdict read the supervisor's tables at scrape time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from actors.node.config import SupervisorSection
from actors.node.eventlog import EventLog
from actors.node.lifecycle import Lifecycle
from actors.node.metrics import NodeCollector, node_health
from actors.node.plan import is_essential

NAMES = ("membership", "anti_entropy", "provider.kv")


def tables() -> tuple[EventLog, Lifecycle]:
    events = EventLog("a", sinks=())
    life = Lifecycle(NAMES, is_essential, SupervisorSection(), lambda kind, data: None,
                     lambda code: None, {})
    return events, life


def scrape(events: EventLog, life: Lifecycle) -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(NodeCollector("a", events, life, lambda: {"control_requests": 7}))
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_the_scrape_reports_members_restarts_events_keys_and_counters():
    events, life = tables()
    events.emit("node.joined", {"node_id": "b", "status": "alive"}, "b")
    events.emit("node.failed", {"node_id": "c", "status": "dead"}, "c")
    events.emit("state.changed", {"key": "k"})
    events.emit("state.changed", {"key": "j"})
    kv, membership = life.actors["provider.kv"], life.actors["membership"]
    kv.book.restarts = 2
    kv.counters = {"local_writes": 5, "errors.apply_remote_state": 3, "label": "x"}
    kv.status = {"provider": "kv", "keys": 4}
    membership.counters = {"sent": 11}
    membership.status = {"core": {"probes": 9}, "members": {"alive": 2}}
    got = scrape(events, life)
    assert got[("lbcluster_members", (("status", "alive"),))] == 2  # b and this node
    assert got[("lbcluster_members", (("status", "dead"),))] == 1
    assert got[("lbcluster_members", (("status", "suspect"),))] == 0
    assert got[("lbcluster_actor_restarts_total", (("actor", "provider.kv"),))] == 2
    assert got[("lbcluster_actor_restarts_total", (("actor", "membership"),))] == 0
    assert got[("lbcluster_events_total", (("type", "state.changed"),))] == 2
    assert got[("lbcluster_state_keys", (("type", "kv"),))] == 4
    assert got[("lbcluster_provider_errors_total",
                (("actor", "provider.kv"), ("error", "apply_remote_state")))] == 3
    counter = "lbcluster_actor_counter_total"
    assert got[(counter, (("actor", "membership"), ("counter", "sent")))] == 11
    assert got[(counter, (("actor", "membership"), ("counter", "core.probes")))] == 9
    assert got[(counter, (("actor", "supervisor"), ("counter", "control_requests")))] == 7
    assert not any(labels == (("actor", "provider.kv"), ("counter", "label"))
                   for _, labels in got)  # not a number: not exported


def test_health_needs_every_actor_ready_and_a_running_node():
    _, life = tables()
    for state in life.actors.values():
        state.ready = True
    assert node_health(life, lambda: False)[0] is True
    kv = life.actors["provider.kv"]
    kv.ready, kv.pid = False, None
    ok, body = node_health(life, lambda: False)
    assert not ok and body["reasons"] == ["provider.kv is restarting"]
    kv.book.given_up_at = 1.0
    assert node_health(life, lambda: False)[1]["reasons"] == ["provider.kv is degraded"]
    kv.ready, kv.book.given_up_at = True, None
    ok, body = node_health(life, lambda: True)
    assert not ok and "stopping" in body["reasons"][0]
