"""Where an idle node's memory and CPU go, process by process.

    flock /tmp/bench.lock python bench/idle_footprint.py [--nodes 3] [--window 30] [--settle 10]

Starts a LocalCluster (default config: one kv provider), lets it settle, then
prints for node n0 each process's PSS, USS, RSS, thread count and CPU, and for
every node its summed PSS and CPU. CPU is read from /proc/*/task/*/schedstat
(nanoseconds), not psutil's 10 ms ticks, so a 30 s window resolves 0.01 %;
wake-ups are context switches per second over all of a process's threads.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import psutil

from actors.testing.localcluster import LocalCluster, LocalNode


def _tree(node: LocalNode) -> list[psutil.Process]:
    root = psutil.Process(node.proc.pid)  # type: ignore[union-attr]
    return [root, *root.children(recursive=True)]


def _cpu_ns(pid: int) -> int:
    return sum(int((task / "schedstat").read_text().split()[0])
               for task in Path(f"/proc/{pid}/task").iterdir())


def _wakeups(pid: int) -> int:
    """Context switches so far, every thread: about one per wake-up of an idle thread."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.endswith("ctxt_switches") or "ctxt_switches:" in line:
                total += int(line.split()[1])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--window", type=float, default=30.0, help="CPU window, seconds")
    parser.add_argument("--settle", type=float, default=10.0, help="idle time before measuring")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder, \
            LocalCluster(Path(folder), args.nodes) as cluster:
        time.sleep(args.settle)
        procs = {node.name: _tree(node) for node in cluster.nodes}
        before = {p.pid: _cpu_ns(p.pid) for ps in procs.values() for p in ps}
        woke = {p.pid: _wakeups(p.pid) for ps in procs.values() for p in ps}
        time.sleep(args.window)
        after = {p.pid: _cpu_ns(p.pid) for ps in procs.values() for p in ps}
        woke = {pid: _wakeups(pid) - n for pid, n in woke.items()}
        pss_nodes, cpu_nodes = [], []
        for name, ps in procs.items():
            pss = cpu = 0.0
            for p in ps:
                mem = p.memory_full_info()
                share = (after[p.pid] - before[p.pid]) / 1e9 / args.window * 100
                pss, cpu = pss + mem.pss, cpu + share
                if name == cluster.nodes[0].name:
                    print(f"  {' '.join(p.cmdline())[:30]:30s} PSS {mem.pss / 2**20:5.2f}  "
                          f"USS {mem.uss / 2**20:5.2f}  RSS {mem.rss / 2**20:5.2f} MiB  "
                          f"threads {p.num_threads()}  CPU {share:.3f} %  "
                          f"wake-ups {woke[p.pid] / args.window:.1f}/s")
            pss_nodes.append(pss / 2**20)
            cpu_nodes.append(cpu)
        n = len(cluster.nodes)
        print(f"PSS per node (MiB): {' '.join(f'{x:.2f}' for x in pss_nodes)}; "
              f"mean {sum(pss_nodes) / n:.2f}")
        print(f"CPU per node (% of one core over {args.window:.0f} s): "
              f"{' '.join(f'{x:.3f}' for x in cpu_nodes)}; mean {sum(cpu_nodes) / n:.3f}")


if __name__ == "__main__":
    main()
