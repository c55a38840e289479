"""The HAProxy bridge end to end: two lbcluster nodes, each with its own real HAProxy,
two real HTTP backends that count the checks they receive.

HAProxy runs no checks of its own here, so every request a backend counts
comes from lbcluster's health provider.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until

from actors.testing.haproxy import LBC_PATH, CountingBackend, HAProxyProcess, haproxy_binary
from actors.testing.localcluster import LocalCluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
NO_HAPROXY = ("needs the haproxy binary (Debian: apt-get install haproxy; .ci/run installs "
              "it when run as root)")

INTERVAL_MS = 500  # the health provider's check interval
NAMES = ("web1", "web2")


@dataclass
class Bed:
    cluster: LocalCluster
    haproxies: list[HAProxyProcess]
    backends: dict[str, CountingBackend]

    def states(self) -> list[dict[str, str]]:
        return [h.admin_states() for h in self.haproxies]

    def everywhere(self, name: str, admin: str, stat: str) -> bool:
        """Every HAProxy shows `name` with this forced state and `show stat` status."""
        return all(h.admin_states().get(name) == admin and h.stat_status().get(name) == stat
                   for h in self.haproxies)

    def health(self) -> list[dict[str, Any]]:
        return [{r["name"]: (r["status"], r["checked_by"], r["owners"])
                 for r in n.request("provider.health.list")} for n in self.cluster.nodes]

    def bridge(self, node: int) -> dict[str, Any]:
        actors = self.cluster.nodes[node].request("status")["actors"]
        return next(a for a in actors if a["name"] == "haproxy")

    def explain(self) -> dict[str, Any]:
        return {"haproxy": self.states(), "health": self.health(),
                "bridges": [self.bridge(i) for i in range(len(self.haproxies))]}


@pytest.fixture
def bed(clusters, tmp_path: Path) -> Iterator[Bed]:
    if haproxy_binary() is None:
        pytest.skip(NO_HAPROXY)
    backends = {name: CountingBackend() for name in NAMES}
    haproxies: list[HAProxyProcess] = []
    try:
        for b in backends.values():
            b.start()
        ports = {name: b.port for name, b in backends.items()}
        haproxies = [HAProxyProcess(tmp_path / f"h{i}", ports) for i in range(2)]
        for h in haproxies:
            h.start()
        providers: list[dict[str, Any]] = [{"type": "health", "options": {
            "backends": [{"name": n, "check": "http",
                          "url": f"http://127.0.0.1:{p}{LBC_PATH}"} for n, p in ports.items()],
            "interval_ms": INTERVAL_MS, "fast_interval_ms": 100, "timeout_ms": 1000,
            "replicas": 1, "rise": 2, "fall": 2}},
            {"type": "circuit_breaker", "options": {"failure_threshold": 1, "open_s": 600}}]
        cluster = clusters(2, providers=providers)
        for node in cluster.nodes:  # each node's checks say who made them: ?from=<node>
            health = {**providers[0], "options": {**providers[0]["options"], "backends": [
                {**b, "url": f"{b['url']}?from={node.name}"}
                for b in providers[0]["options"]["backends"]]}}
            node.providers = [health, providers[1]]
        for node, h in zip(cluster.nodes, haproxies, strict=True):
            node.extra = {**node.extra, "haproxy": {
                "runtime_api": h.runtime_api, "interval_ms": 500,
                "servers": {n: f"be_app/{n}" for n in NAMES}}}
        cluster.start()
        yield Bed(cluster, haproxies, backends)
    finally:
        for h in haproxies:
            h.stop()
        for b in backends.values():
            b.stop()


def all_up(bed: Bed) -> bool:
    return all(row[n][0] == "up" for row in bed.health() for n in NAMES)


def test_a_dead_backend_is_maint_on_every_haproxy_and_ready_when_back(bed):
    wait_until(lambda: all_up(bed), timeout_s=30, what="both backends up", explain=bed.explain)
    wait_until(lambda: bed.everywhere("web1", "ready", "no check"), timeout_s=10,
               what="web1 ready everywhere", explain=bed.explain)

    bed.backends["web1"].stop()
    wait_until(lambda: bed.everywhere("web1", "maint", "MAINT"), timeout_s=30,
               what="web1 MAINT on both HAProxy", explain=bed.explain)
    assert all(s["web2"] == "ready" for s in bed.states())

    bed.backends["web1"].start()
    wait_until(lambda: bed.everywhere("web1", "ready", "no check"), timeout_s=30,
               what="web1 ready again on both HAProxy", explain=bed.explain)


def test_with_one_replica_each_backend_is_checked_by_one_node_only(bed):
    wait_until(lambda: all_up(bed), timeout_s=30, what="both backends up", explain=bed.explain)

    def agreed() -> bool:  # every node sees both members and names the same owner
        rows = bed.health()
        return all(r[n][2] == rows[0][n][2] for r in rows for n in NAMES)

    wait_until(agreed, timeout_s=30, what="the nodes agree on the owners", explain=bed.explain)
    assert all(len(row[n][2]) == 1 for row in bed.health() for n in NAMES)  # one replica
    owner = {name: bed.health()[0][name][2][0] for name in NAMES}
    before = {n: b.snapshot() for n, b in bed.backends.items()}

    def hits(name: str, node: str) -> int:
        path = f"{LBC_PATH}?from={node}"
        return bed.backends[name].snapshot()[path] - before[name][path]

    for name in NAMES:  # the owner goes on checking; the other node never does
        wait_until(lambda n=name: hits(n, owner[n]) >= 3, timeout_s=30,
                   what=f"three more checks of {name} by its owner", explain=bed.explain)
    others = {name: [n.name for n in bed.cluster.nodes if n.name != owner[name]]
              for name in NAMES}
    assert {name: [hits(name, o) for o in others[name]] for name in NAMES} == \
        {name: [0] for name in NAMES}


def test_a_restarted_or_reloaded_haproxy_gets_the_whole_view_again(bed):
    wait_until(lambda: all_up(bed), timeout_s=30, what="both backends up", explain=bed.explain)
    bed.backends["web2"].stop()
    wait_until(lambda: bed.everywhere("web2", "maint", "MAINT"), timeout_s=30,
               what="web2 MAINT on both HAProxy", explain=bed.explain)
    commands = bed.bridge(0)["counters"].get("commands", 0)

    bed.haproxies[0].restart()  # the new process starts with every server ready
    wait_until(lambda: bed.everywhere("web2", "maint", "MAINT"), timeout_s=30,
               what="web2 MAINT again on the restarted HAProxy", explain=bed.explain)
    wait_until(lambda: bed.bridge(0)["counters"].get("commands", 0) > commands, timeout_s=10,
               what="the bridge counted its correction", explain=bed.explain)
    assert bed.states()[0]["web1"] == "ready"

    commands = bed.bridge(0)["counters"].get("commands", 0)
    bed.haproxies[0].reload()  # a new worker, from the config file again
    wait_until(lambda: bed.everywhere("web2", "maint", "MAINT"), timeout_s=30,
               what="web2 MAINT again after the reload", explain=bed.explain)
    wait_until(lambda: bed.bridge(0)["counters"].get("commands", 0) > commands, timeout_s=10,
               what="the bridge counted its correction", explain=bed.explain)

    bed.haproxies[1].stop()  # down for a while: the bridge fails, counts, backs off
    wait_until(lambda: bed.bridge(1)["counters"].get("failures_connect", 0) >= 2,
               timeout_s=30, what="failed exchanges counted", explain=bed.explain)
    bed.haproxies[1].start()
    wait_until(lambda: bed.everywhere("web2", "maint", "MAINT"), timeout_s=30,
               what="web2 MAINT on the HAProxy that was down", explain=bed.explain)
    assert bed.bridge(1)["restarts"] == 0


def test_an_open_breaker_drains_and_a_down_backend_beats_it(bed):
    wait_until(lambda: all_up(bed), timeout_s=30, what="both backends up", explain=bed.explain)
    bed.cluster.nodes[0].request("provider.circuit_breaker.record",
                                 {"upstream": "web2", "ok": False})
    wait_until(lambda: bed.everywhere("web2", "drain", "DRAIN"), timeout_s=30,
               what="web2 DRAIN on both HAProxy", explain=bed.explain)

    bed.backends["web2"].stop()  # down beats open
    wait_until(lambda: bed.everywhere("web2", "maint", "MAINT"), timeout_s=30,
               what="web2 MAINT over its open breaker", explain=bed.explain)
    bed.backends["web2"].start()  # up again, breaker still open: drained
    wait_until(lambda: bed.everywhere("web2", "drain", "DRAIN"), timeout_s=30,
               what="web2 DRAIN again", explain=bed.explain)

    bed.cluster.nodes[1].request("provider.circuit_breaker.reset", {"upstream": "web2"})
    wait_until(lambda: bed.everywhere("web2", "ready", "no check"), timeout_s=30,
               what="web2 ready after the reset", explain=bed.explain)


def test_a_runtime_api_that_never_answers_does_not_stall_the_actor(clusters):
    """A listener that accepts and stays silent: every exchange runs into its 2-s
    deadline, and meanwhile the actor's loop keeps serving: it refreshes its view of
    the verdicts every 200 ms. A loop that waited on HAProxy would refresh at most once
    per exchange."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        cluster = clusters(1, providers=[{"type": "health", "options": {"backends": [
            {"name": "web1", "check": "tcp", "address": f"127.0.0.1:{port}"}]}}])
        cluster.nodes[0].extra = {"haproxy": {"runtime_api": f"tcp://127.0.0.1:{port}",
                                              "servers": {"web1": "be_app/web1"},
                                              "interval_ms": 200}}
        node = cluster.start().nodes[0]

        def bridge() -> dict[str, Any]:
            return next(a for a in node.request("status")["actors"] if a["name"] == "haproxy")

        def timeouts(row: dict[str, Any]) -> int:
            return int(row["counters"].get("failures_timeout", 0))

        first = wait_until(lambda: (row := bridge()) and timeouts(row) >= 1 and row,
                           timeout_s=60, what="a timed-out exchange", explain=bridge)
        last = wait_until(lambda: (row := bridge()) and timeouts(row) >= timeouts(first) + 2
                          and row, timeout_s=60, what="two more timeouts", explain=bridge)
        exchanges = timeouts(last) - timeouts(first)
        views = last["counters"]["views"] - first["counters"]["views"]
        assert views >= 3 * exchanges, (first, last)
        assert last["ready"] and last["restarts"] == 0 and last["status"]["failures"] >= 3
