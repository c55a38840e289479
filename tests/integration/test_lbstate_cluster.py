"""The `rate` and `stick_table` built-ins across real nodes, through control calls."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import wait_until

pytestmark = pytest.mark.slow

WINDOW_S = 8


def _all_alive(cluster: Any) -> None:
    names = {n.name for n in cluster.nodes}
    wait_until(lambda: all({m["node_id"] for m in n.request("members")
                            if m["status"] == "alive"} == names for n in cluster.nodes),
               timeout_s=30, what="membership convergence")


def _rate(node: Any, key: str = "api") -> dict[str, Any]:
    result: dict[str, Any] = node.request("provider.rate.get", {"key": key})
    return result


def test_rate_totals_add_up_across_nodes_and_a_killed_nodes_shard_leaves_after_the_window(
        clusters: Any) -> None:
    cluster = clusters(3, providers=[{"type": "rate", "options": {"window_s": WINDOW_S}}])
    cluster.start()
    _all_alive(cluster)
    n0, n1, n2 = cluster.nodes
    for node, n in ((n0, 10), (n1, 20), (n2, 30)):
        assert node.request("provider.rate.add", {"key": "api", "n": n}) == {}
    expected = {"total": 60, "per_node": {"n0": 10, "n1": 20, "n2": 30}, "window_s": WINDOW_S}
    wait_until(lambda: all(_rate(n) == expected for n in cluster.nodes),
               timeout_s=WINDOW_S - 1, what="the same total on every node",
               explain=lambda: [_rate(n) for n in cluster.nodes])

    def everyone_counts(nodes: list[Any], members: set[str]) -> bool:
        for node in nodes:  # keep traffic flowing, so live shards stay in the window
            node.request("provider.rate.add", {"key": "live"})
        return all(set(_rate(n, "live")["per_node"]) == members for n in nodes)

    wait_until(lambda: everyone_counts(cluster.nodes, {"n0", "n1", "n2"}), timeout_s=20,
               what="every shard of 'live' on every node")
    n2.kill_group()  # kill -9: supervisor and actors
    # Failure is not a delete: the dead node's counts stay until the window passes them.
    assert {"n0", "n1", "n2"} <= set(_rate(n0, "live")["per_node"])
    wait_until(lambda: everyone_counts([n0, n1], {"n0", "n1"}), timeout_s=WINDOW_S + 30,
               what="the killed node's shard to leave the total",
               explain=lambda: [_rate(n, "live") for n in (n0, n1)])
    # Nothing added since: all aged out. Not at the same instant as 'live': a read
    # counts the oldest second in part, so a shard of a few counts (n2's 'live')
    # rounds to nothing while larger ones ('api') still show a count for up to a second.
    wait_until(lambda: _rate(n0, "api")["per_node"] == {}, timeout_s=5,
               what="'api' to age out", explain=lambda: _rate(n0, "api"))


def test_rate_refuses_bad_arguments_with_one_error(clusters: Any) -> None:
    from transport.rpc import RpcError

    cluster = clusters(1, providers=[{"type": "rate"}]).start()
    node = cluster.nodes[0]
    for args in ({"key": "api", "n": -1}, {"n": 1}, {"key": "api", "n": "x"}):
        with pytest.raises(RpcError):
            node.request("provider.rate.add", args)
    assert _rate(node)["total"] == 0


def test_a_restarted_node_keeps_counting_on_top_of_its_journaled_shard(clusters: Any) -> None:
    cluster = clusters(1, providers=[{"type": "rate", "options": {"window_s": 120}}]).start()
    node = cluster.nodes[0]
    node.request("provider.rate.add", {"key": "api", "n": 5})  # the first flush is at once
    wait_until(lambda: any(r["key"] == "api@n0" for r in node.request("state")),
               what="the shard written")
    assert node.stop() == 0
    node.start()
    node.wait_ready()
    assert _rate(node)["per_node"] == {"n0": 5}
    node.request("provider.rate.add", {"key": "api", "n": 2})
    wait_until(lambda: [sum(n for _, n in r["value"]["b"]) for r in node.request("state")
                        if r["key"] == "api@n0"] == [7], what="the shard rewritten as 5 + 2")


def _entry(node: Any, key: str) -> dict[str, Any]:
    result: dict[str, Any] = node.request("provider.stick_table.get", {"key": key})
    return result


def _versions(node: Any, key: str) -> list[int]:
    return [r["version"] for r in node.request("state", {"tombstones": True})
            if r["state_type"] == "stick_table" and r["key"] == key]


def test_stick_table_entries_replicate_and_expire_on_every_node_without_traffic(
        clusters: Any) -> None:
    cluster = clusters(3, providers=[{"type": "stick_table", "options": {"ttl_s": 600}}])
    cluster.start()
    _all_alive(cluster)
    n0, n1, n2 = cluster.nodes
    assert n0.request("provider.stick_table.put",
                      {"key": "client-1", "value": "web-2", "ttl_s": 4}) == {}
    assert n1.request("provider.stick_table.put", {"key": "client-2", "value": "web-3"}) == {}
    # client-1's state reaches every node whether or not it expired there already (a
    # loaded machine may take longer than its 4 s to get it everywhere).
    wait_until(lambda: all(_versions(n, "client-1")
                           and _entry(n, "client-2")["value"] == "web-3" for n in cluster.nodes),
               timeout_s=20, what="both entries on every node")
    assert 500 < _entry(n2, "client-2")["expires_in_s"] <= 600  # the ttl_s option
    before = [_versions(n, "client-1") for n in cluster.nodes]
    wait_until(lambda: not any(_entry(n, "client-1")["found"] for n in cluster.nodes),
               timeout_s=20, what="client-1 to expire on every node")
    assert [_versions(n, "client-1") for n in cluster.nodes] == before  # no tombstone
    assert all(_entry(n, "client-2")["found"] for n in cluster.nodes)
    assert n2.request("provider.stick_table.del", {"key": "client-2"}) == {}
    wait_until(lambda: not any(_entry(n, "client-2")["found"] for n in cluster.nodes),
               timeout_s=20, what="the delete on every node")


def test_a_rate_provider_hosted_in_a_program_counts_with_the_nodes(clusters: Any) -> None:
    from actors.providers.rate import RateProvider
    from actors.sdk import attach

    cluster = clusters(2, providers=[{"type": "rate", "options": {"window_s": 60}}])
    cluster.nodes[0].providers = [{"type": "kv"}]  # n0 lends its replication to the program
    cluster.start()
    _all_alive(cluster)
    n0, n1 = cluster.nodes
    with attach(RateProvider, control=n0.control, options={"window_s": 60}) as hosted:
        rate = hosted.provider
        for _ in range(500):
            rate.add("api")  # the fast path: no lock of the SDK's, no round trip
        # No writing() block: the host thread is woken and flushes within flush_ms.
        wait_until(lambda: _rate(n1)["per_node"] == {"n0": 500}, timeout_s=20,
                   what="the program's counts on the other node")
        assert hosted.counters["local_sent"] < 50  # 500 adds, coalesced into a few states
        n1.request("provider.rate.add", {"key": "api", "n": 7})
        wait_until(lambda: rate.per_node("api") == {"n0": 500, "n1": 7}, timeout_s=20,
                   what="the node's counts in the program")
        assert rate.total("api") == 507


def test_two_programs_counting_at_once_read_each_other_exactly_once_they_stop(
        clusters: Any) -> None:
    """Two programs count at once, each hosting `rate` on its own node, over two whole
    seconds, so each one's shard carries a rate the other reads forward. Once they stop,
    the rate-0 flush must reach the other side, or it would go on carrying a stopped
    count (tests/unit/test_own_writes.py: such a flush made during an `apply`)."""
    import threading
    import time

    from actors.providers.rate import RateProvider
    from actors.sdk import attach

    cluster = clusters(2, providers=[{"type": "kv"}])
    cluster.start()
    _all_alive(cluster)
    n0, n1 = cluster.nodes
    with attach(RateProvider, control=n0.control, options={"window_s": 60}) as p0, \
            attach(RateProvider, control=n1.control, options={"window_s": 60}) as p1:
        counted = {"n0": 0, "n1": 0}

        def count(name: str, rate: RateProvider) -> None:
            end = time.monotonic() + 2.5  # over two whole seconds: shards carry a rate
            while time.monotonic() < end:
                for _ in range(20):
                    rate.add("api")
                counted[name] += 20
                time.sleep(0.002)

        threads = [threading.Thread(target=count, args=("n0", p0.provider)),
                   threading.Thread(target=count, args=("n1", p1.provider))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for hosted in (p0, p1):
            wait_until(lambda h=hosted: h.provider.per_node("api") == counted, timeout_s=20,
                       what="every count, and no count carried forward, in both programs",
                       explain=lambda h=hosted: (h.provider.per_node("api"), counted))
        time.sleep(1.0)  # and it stays exact: nothing carried forward after the stop
        assert p0.provider.per_node("api") == p1.provider.per_node("api") == counted
