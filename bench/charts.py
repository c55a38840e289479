"""PNG charts of a `python -m bench` results file (matplotlib: `pip install -e '.[bench]'`).

    python bench/charts.py docs/results/bench.json --out docs/results

Draws, against cluster size, what a user compares a cluster library on:
failure detection (kill -9 to `node.failed` on every survivor), state
propagation (write to every node), and the idle cost of a node, each with
the Serf figures measured on this same kind of machine (REFERENCE.md) and
our targets beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

# Serf on this kind of machine over loopback (README "Where we aim"; REFERENCE.md).
SERF_DETECT_S = (5.4, 6.9)
SERF_EVENT_P99_MS = {5: 225.0, 20: 534.0}
SERF_IDLE = {"cpu_percent": 0.4, "rss_mib": 14.0}
TARGET_DETECT_S, TARGET_P99_MS = 1.0, 50.0


def _results(doc: dict[str, Any], part: str) -> list[dict[str, Any]]:
    block = doc.get(part, {})
    rows = block.get("results", []) if isinstance(block, dict) else []
    if isinstance(rows, dict):  # state_bench writes {"meta", "results"}
        rows = rows.get("results", [])
    return sorted((r for r in rows if isinstance(r, dict) and "nodes" in r),
                  key=lambda r: r["nodes"])


def pyplot() -> Any:
    """matplotlib's pyplot without a display, or a one-line way to get it."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("charts need matplotlib: pip install -e '.[bench]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: Path, dpi: int = 100) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path


def draw(doc: dict[str, Any], out: Path) -> list[Path]:
    plt = pyplot()
    out.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    members, state = _results(doc, "membership"), _results(doc, "state")

    if members:
        fig, ax = plt.subplots(figsize=(7, 4))
        ns = [r["nodes"] for r in members]
        med = [statistics.median(r["detect_s"]) for r in members]
        lo = [m - min(r["detect_s"]) for m, r in zip(med, members, strict=True)]
        hi = [max(r["detect_s"]) - m for m, r in zip(med, members, strict=True)]
        ax.errorbar(ns, med, yerr=[lo, hi], marker="o", capsize=4,
                    label="lbcluster: median (min-max over survivors)")
        ax.axhspan(*SERF_DETECT_S, color="tab:red", alpha=0.2, label="Serf, same machine")
        ax.axhline(TARGET_DETECT_S, color="tab:green", ls="--", label="target 1 s")
        ax.set(xlabel="nodes", ylabel="seconds", ylim=(0, 8), xticks=ns,
               title="kill -9 to node.failed on every survivor")
        ax.legend(fontsize=8)
        made.append(save_png(fig, out / "bench_detection.png"))

        fig, (cpu, pss) = plt.subplots(1, 2, figsize=(9, 3.6))
        cpu.plot(ns, [r.get("idle_cpu_percent_per_node") for r in members], marker="o",
                 label="lbcluster (all its processes)")
        cpu.axhline(SERF_IDLE["cpu_percent"], color="tab:red", ls=":", label="Serf agent")
        cpu.set(xlabel="nodes", ylabel="% of one core", title="Idle CPU per node", xticks=ns,
                ylim=(0, None))
        pss.plot(ns, [r.get("pss_mib_per_node") for r in members], marker="o",
                 label="lbcluster PSS")
        pss.axhline(SERF_IDLE["rss_mib"], color="tab:red", ls=":", label="Serf agent RSS")
        pss.set(xlabel="nodes", ylabel="MiB", title="Memory per node", xticks=ns, ylim=(0, None))
        cpu.legend(fontsize=8)
        pss.legend(fontsize=8)
        made.append(save_png(fig, out / "bench_idle.png"))

    if state:
        fig, ax = plt.subplots(figsize=(7, 4))
        ns = [r["nodes"] for r in state]
        for pct, style in (("p50_ms", "o-"), ("p99_ms", "s-")):
            ax.plot(ns, [r["latency"]["all_nodes"][pct] for r in state], style,
                    label=f"lbcluster write, {pct[:3]}")
        ax.plot(list(SERF_EVENT_P99_MS), list(SERF_EVENT_P99_MS.values()), "x:",
                color="tab:red", label="Serf user event, p99")
        ax.axhline(TARGET_P99_MS, color="tab:green", ls="--", label="target p99 50 ms")
        ax.set(xlabel="nodes", ylabel="ms (log)", yscale="log",
               title="A write reaching every node")
        ax.legend(fontsize=8)
        made.append(save_png(fig, out / "bench_propagation.png"))
    return made


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="a `python -m bench --json` file")
    parser.add_argument("--out", type=Path, default=Path("docs/results"))
    args = parser.parse_args(argv)
    for path in draw(json.loads(args.results.read_text()), args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
