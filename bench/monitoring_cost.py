"""The cost of monitoring at idle: `/metrics` scraped as Prometheus would, and event handlers.

A 3-node local cluster (`lan` profile) is measured at idle three ways, each on a
fresh cluster:

* plain: no `[local] http`, no handlers;
* metrics: `[local] http` on every node and a scraper that GETs `/metrics` from
  each node every 15 s (Prometheus' default scrape interval) during the window;
  afterwards one scrape of one node is timed 20 times (median, and the body size),
  and the node's CPU (all its processes) per scrape is read over 200 more;
* handlers: two `[[handlers]]` running `true`, subscribed to `node.` events.

For each: CPU % of one core and PSS MiB per node, summed over all of a node's
processes (`membership_bench._idle_cpu_and_pss`). The window starts `--settle`
seconds after every node sees every other alive, so the join is not measured.

    python bench/monitoring_cost.py [--window 30] [--settle 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actors.testing.localcluster import LocalCluster, LocalNode, free_ports, toml_value
from bench.membership_bench import _cpu_seconds, _idle_cpu_and_pss, _views_agree, _wait

SCRAPE_INTERVAL_S = 15.0  # Prometheus' default scrape_interval
TIMED_SCRAPES = 20
CPU_SCRAPES = 200
HANDLERS = [{"events": ["node."], "command": ["true"]}] * 2


def _scrape(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        return len(reply.read())


def _add_handlers(node: LocalNode, handlers: list[dict[str, Any]]) -> None:
    """Append [[handlers]] tables each time the node's config is written."""
    write = node.write_config

    def write_with_handlers() -> Path:
        path = write()
        tables = "".join("\n[[handlers]]\n" + "".join(f"{k} = {toml_value(v)}\n"
                                                      for k, v in h.items()) for h in handlers)
        with path.open("a", encoding="utf-8") as f:
            f.write(tables)
        return path

    node.write_config = write_with_handlers  # type: ignore[method-assign]


class Scraper:
    """GET /metrics from every port every `interval_s`, the first after half of it (so a
    window of 2 intervals holds exactly 2 scrapes per node, as under Prometheus)."""

    def __init__(self, ports: list[int], interval_s: float) -> None:
        self.ports, self.interval_s = ports, interval_s
        self.done = threading.Event()
        self.scrapes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        wait_s = self.interval_s / 2
        while not self.done.wait(wait_s):
            for port in self.ports:
                _scrape(port)
                self.scrapes += 1
            wait_s = self.interval_s

    def __enter__(self) -> Scraper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


def _measure(root: Path, name: str, window_s: float, settle_s: float,
             prepare: Callable[[LocalCluster], None],
             during: Callable[[LocalCluster], Any]) -> dict[str, Any]:
    cluster = LocalCluster(root / name, 3, profile="lan")
    prepare(cluster)
    try:
        cluster.start(60)
        everyone = {node.name: "alive" for node in cluster.nodes}
        if _wait(lambda: _views_agree(cluster.nodes, everyone), 60) is None:
            raise RuntimeError(f"{name}: the cluster did not converge")
        time.sleep(settle_s)
        with during(cluster) as extra:
            cpu, pss = _idle_cpu_and_pss(cluster.nodes, window_s)
        result = {"mode": name, "cpu_percent_per_node": round(cpu, 2),
                  "pss_mib_per_node": round(pss, 1)}
        if isinstance(extra, Scraper):
            result["scrapes_per_node"] = extra.scrapes // len(extra.ports)
            result.update(_time_one_scrape(cluster.nodes[0], extra.ports[0]))
        return result
    finally:
        cluster.stop()


def _time_one_scrape(node: LocalNode, port: int) -> dict[str, Any]:
    """Wall time of one scrape (median of 20), and the node's CPU per scrape over 200
    back to back (CPU time is counted in 10 ms ticks: one scrape is far below that)."""
    times, size = [], 0
    for _ in range(TIMED_SCRAPES):
        t0 = time.perf_counter()
        size = _scrape(port)
        times.append(time.perf_counter() - t0)
    cpu0 = _cpu_seconds(node)
    for _ in range(CPU_SCRAPES):
        _scrape(port)
    cpu_ms = (_cpu_seconds(node) - cpu0) / CPU_SCRAPES * 1000
    return {"scrape_median_ms": round(statistics.median(times) * 1000, 2),
            "scrape_max_ms": round(max(times) * 1000, 2), "scrape_bytes": size,
            "scrape_node_cpu_ms": round(cpu_ms, 2),
            "scrape_cpu_percent_at_15s": round(cpu_ms / 1000 / SCRAPE_INTERVAL_S * 100, 4)}


class _Nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def run(window_s: float, settle_s: float) -> list[dict[str, Any]]:
    ports = free_ports(3)

    def with_http(cluster: LocalCluster) -> None:
        for node, port in zip(cluster.nodes, ports, strict=True):
            node.extra = {"local": {"http": f"127.0.0.1:{port}"}}

    def with_handlers(cluster: LocalCluster) -> None:
        for node in cluster.nodes:
            _add_handlers(node, HANDLERS)

    with tempfile.TemporaryDirectory(prefix="lbc-moncost-") as tmp:
        root = Path(tmp)
        return [
            _measure(root, "plain", window_s, settle_s, lambda c: None, lambda c: _Nothing()),
            _measure(root, "metrics", window_s, settle_s, with_http,
                     lambda c: Scraper(ports, SCRAPE_INTERVAL_S)),
            _measure(root, "handlers", window_s, settle_s, with_handlers,
                     lambda c: _Nothing()),
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=30.0, help="idle window, seconds")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds after convergence before the window")
    args = parser.parse_args()
    for result in run(args.window, args.settle):
        print(result, flush=True)


if __name__ == "__main__":
    main()
