"""The SDK (actors/sdk.py) against real nodes: NodeClient, events, attached providers."""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import wait_until

from actors.sdk import HostedProvider, NodeClient, NodeUnavailable, RpcError, attach
from transport.protocol import LamportClock

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
WEIGHTS_MODULE = "examples.my_provider:WeightsProvider"


@pytest.fixture
def examples(monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """The examples/ folder importable here and by the nodes this test starts."""
    monkeypatch.syspath_prepend(str(REPO))
    paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    return SimpleNamespace(lb_app=importlib.import_module("examples.lb_app"),
                           my_provider=importlib.import_module("examples.my_provider"))


@pytest.fixture
def sdk() -> Iterator[SimpleNamespace]:
    """NodeClients and attached providers, closed at teardown."""
    made: list[NodeClient | HostedProvider[Any]] = []

    def client(node: Any, **kwargs: Any) -> NodeClient:
        made.append(NodeClient(control=node.control, events=node.events, **kwargs))
        return made[-1]  # type: ignore[return-value]

    def hosted(provider: Any, node: Any, **kwargs: Any) -> HostedProvider[Any]:
        made.append(attach(provider, control=node.control, **kwargs))
        return made[-1]  # type: ignore[return-value]

    yield SimpleNamespace(client=client, attach=hosted)
    for item in reversed(made):
        item.close()


def _states(client: NodeClient, state_type: str) -> dict[str, Any]:
    return {row["key"]: row["value"] for row in client.state(state_type)}


def _sees(client: NodeClient, state_type: str, key: str, value: Any) -> Callable[[], bool]:
    return lambda: _states(client, state_type).get(key) == value


def _holds(hosted: HostedProvider[Any], key: str, value: Any) -> Callable[[], bool]:
    return lambda: hosted.read(lambda p: p.get(key)) == value


def test_kv_written_through_one_node_is_read_and_deleted_through_the_others(clusters, sdk):
    cluster = clusters(3).start()
    a, b, c = (sdk.client(n) for n in cluster.nodes)
    assert a.kv_set("k", {"w": 3}) > 0
    for client in (a, b, c):
        wait_until(lambda cl=client: cl.kv_get("k") == {"w": 3}, what="kv value everywhere")
    wait_until(lambda: sorted(m["node_id"] for m in c.members() if m["status"] == "alive")
               == ["n0", "n1", "n2"], what="three alive members")
    assert b.kv_delete("k") is True
    for client in (a, b, c):
        wait_until(lambda cl=client: cl.kv_get("k") is None, what="kv delete everywhere")
    assert a.kv_delete("never-set") is False
    assert a.status()["node_id"] == "n0" and a.node_id == "n0"


def test_a_call_to_a_node_that_is_not_running_raises_node_unavailable(clusters, examples):
    node = clusters(1).nodes[0]
    node.write_config()  # configured, never started
    started = time.monotonic()
    with NodeClient(node.config_path, retry_s=0.3) as client, \
            pytest.raises(NodeUnavailable, match="not running"):
        client.kv_get("k")
    with pytest.raises(NodeUnavailable):
        attach(examples.lb_app.BackendWeights, node.config_path, retry_s=0.3)
    assert time.monotonic() - started < 3.0


def test_an_attached_providers_write_reaches_every_nodes_state_and_events(
        clusters, subscriber, sdk, examples):
    cluster = clusters(3).start()
    sub = subscriber([n.events for n in cluster.nodes], ("state.changed",))
    hosted = sdk.attach(examples.lb_app.BackendWeights, cluster.nodes[0])
    assert hosted.attached and hosted.node_id == "n0"
    with hosted.writing() as weights:
        weights.set("b1", 5)
    for node in cluster.nodes:
        wait_until(_sees(sdk.client(node), "backends", "b1", 5), what=f"b1 on {node.name}")
    sub.wait_for(lambda e: e["data"]["key"] == "b1" and e["source"] == "n0")
    assert hosted.flush() and hosted.counters["local_sent"] == 1
    assert not hosted.errors


def test_a_node_without_the_provider_also_publishes_state_changed(
        clusters, subscriber, sdk, examples):
    cluster = clusters(2).start()
    sub = subscriber([cluster.nodes[1].events], ("state.changed",))
    hosted = sdk.attach(examples.lb_app.BackendWeights, cluster.nodes[0])
    with hosted.writing() as weights:
        weights.set("b1", 5)
    wait_until(_sees(sdk.client(cluster.nodes[1]), "backends", "b1", 5), what="b1 on n1")
    sub.wait_for(lambda e: e["data"]["key"] == "b1", timeout_s=3)


def test_a_node_whose_attached_provider_closed_still_replicates_its_type(clusters, sdk, examples):
    cluster = clusters(2).start()
    n0, n1 = cluster.nodes
    gone = sdk.attach(examples.lb_app.BackendWeights, n0)
    theirs = sdk.attach(examples.lb_app.BackendWeights, n1)
    gone.close()
    with theirs.writing() as weights:
        weights.set("b3", 3)
    wait_until(_sees(sdk.client(n0), "backends", "b3", 3), timeout_s=10, what="b3 on n0")


def test_a_write_on_another_nodes_attached_provider_reaches_this_ones_by_apply(
        clusters, sdk, examples):
    cluster = clusters(2).start()
    n0, n1 = cluster.nodes
    mine = sdk.attach(examples.lb_app.BackendWeights, n0)  # built by the SDK
    theirs = sdk.attach(examples.lb_app.BackendWeights(node_id="n1", clock=LamportClock()), n1)
    with theirs.writing() as weights:
        weights.set("b2", 7)
    wait_until(_holds(mine, "b2", 7), what="n1's write in n0's provider")
    with mine.writing() as weights:
        weights.set("b2", 9)  # newer: wins everywhere
    wait_until(_holds(theirs, "b2", 9), what="n0's overwrite in n1's provider")
    assert mine.read(lambda p: p.states["b2"].version) > 1
    assert mine.counters["applied"] >= 1 and not mine.errors and not theirs.errors


def test_an_attached_provider_re_registers_after_its_node_restarts(clusters, sdk, examples):
    cluster = clusters(2).start()
    n0, n1 = cluster.nodes
    mine = sdk.attach(examples.lb_app.BackendWeights, n0, reattach_s=0.5, timeout_s=1.0)
    theirs = sdk.attach(examples.lb_app.BackendWeights, n1, reattach_s=0.5)
    with mine.writing() as weights:
        weights.set("before", 1)
    wait_until(_holds(theirs, "before", 1), what="the first write")
    n0.stop()
    wait_until(lambda: not mine.attached, what="the SDK to notice the node is gone")
    with mine.writing() as weights:
        weights.set("during", 2)  # the node is down: repaired by the next registration
    with theirs.writing() as weights:
        weights.set("missed", 3)
    n0.start()
    assert sdk.client(n0, retry_s=20.0).kv_get("none") is None  # waits for the restart
    wait_until(lambda: mine.attached, what="re-registration")
    wait_until(_holds(theirs, "during", 2), what="the write made while the node was down")
    wait_until(_holds(mine, "missed", 3), what="the write the provider missed")
    with mine.writing() as weights:
        weights.set("after", 4)
    wait_until(_holds(theirs, "after", 4), what="a write after the restart")
    assert mine.counters["attaches"] >= 2 and not mine.errors.get("internal")


def test_a_renewed_registration_does_not_ship_the_whole_table_again(clusters, sdk, examples):
    cluster = clusters(2).start()
    n0, n1 = cluster.nodes
    mine = sdk.attach(examples.lb_app.BackendWeights, n0, reattach_s=0.2)
    theirs = sdk.attach(examples.lb_app.BackendWeights, n1, reattach_s=0.2)
    with mine.writing() as weights:
        for i in range(50):
            weights.set(f"b{i}", i)
    wait_until(_holds(theirs, "b49", 49), what="the writes on the other node")
    wait_until(lambda: mine.counters["renewals"] >= 5, what="five renewals")
    assert mine.counters["attaches"] == 1  # the whole table travelled once
    wait_until(lambda: next(a for a in sdk.client(n0).status()["actors"]
                            if a["name"] == "anti_entropy")["counters"].get("attach_renewed", 0)
               >= 5, what="the node counting renewals")
    with mine.writing() as weights:  # replication still works between renewals
        weights.set("late", 1)
    wait_until(_holds(theirs, "late", 1), what="a write after the renewals")


def test_events_with_a_snapshot_yield_only_newer_events_and_survive_a_restart(clusters, sdk):
    node = clusters(1).start().nodes[0]
    client = sdk.client(node, retry_s=20.0)
    stream = client.events(("state.",), snapshot=True, timeout_s=40)
    snap = next(stream)
    assert snap["type"] == "snapshot" and snap["node_id"] == "n0"
    assert "provider.kv" in {a["name"] for a in snap["data"]["actors"]}
    client.kv_set("e1", 1)
    client.kv_set("e2", 2)
    first, second = next(stream), next(stream)
    assert [first["data"]["key"], second["data"]["key"]] == ["e1", "e2"]
    assert snap["seq"] < first["seq"] < second["seq"]
    node.stop()
    node.start()
    again = next(stream)  # a new supervisor counts seq from 1: a fresh snapshot first
    assert again["type"] == "snapshot"
    client.kv_set("e3", 3)
    after: list[dict[str, Any]] = []
    while not after or after[-1]["data"].get("key") != "e3":
        after.append(next(stream))  # (a restarted provider may first replay its keys)
    seqs = [again["seq"], *(e["seq"] for e in after)]
    assert seqs == sorted(set(seqs)) and all(e["type"] == "state.changed" for e in after)
    stream.close()


def test_a_provider_listed_in_the_config_with_module_runs_and_replicates(
        clusters, sdk, examples):
    providers = [{"type": "kv"}, {"type": "weights", "module": WEIGHTS_MODULE,
                                  "options": {"max_weight": 100}}]
    cluster = clusters(2, providers=providers).start()
    a, b = (sdk.client(n) for n in cluster.nodes)
    a.call("provider.weights.set", {"backend": "b1", "weight": 5})
    wait_until(_sees(b, "weights", "b1", 5), what="the weight on the other node")
    assert b.call("provider.weights.get", {"backend": "b1"})["weight"] == 5
    with pytest.raises(RpcError, match="run by this node"):
        attach(examples.my_provider.WeightsProvider, control=cluster.nodes[0].control)
    hosted = sdk.attach(examples.my_provider.WeightsProvider, cluster.nodes[1],
                        options={"type": "backends"})  # the same class, hosted by a program
    with hosted.writing() as weights:
        weights.set_weight("b9", 9)
    wait_until(_sees(a, "backends", "b9", 9), what="the hosted weight on the other node")


def test_an_attached_provider_hears_of_a_failed_node(clusters, sdk, examples):
    class Recording(examples.lb_app.BackendWeights):  # type: ignore[name-defined]
        failed: list[str] = []

        def on_node_failure(self, node_id: str) -> None:
            self.failed.append(node_id)

    cluster = clusters(3).start()
    hosted = sdk.attach(Recording, cluster.nodes[0])
    cluster.nodes[2].kill_group()
    wait_until(lambda: hosted.read(lambda p: "n2" in p.failed), what="on_node_failure(n2)")
    assert hosted.counters["node_failures"] >= 1
