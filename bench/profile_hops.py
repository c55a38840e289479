"""Where a pipelined kv.set's time goes: py-spy on every process of two nodes.

Runs ``bench/throughput.py --only pipelined`` (one writer, node n0), waits for
the pump to be under way, then samples with py-spy every process of the
writing node (n0) and of one receiving node (n1), plus the benchmark's own
process (the client), for ``--seconds``. For each process it prints the share
of a core it used (from /proc: user + system time over the window, so the
ZeroMQ I/O threads count too) and its top functions by self time and by
inclusive time (from the collapsed stacks).

    flock /tmp/bench.lock python bench/profile_hops.py [--seconds 12] [--out DIR]

Needs py-spy (``PY_SPY`` or on PATH) and the right to ptrace the node processes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
TICK = os.sysconf("SC_CLK_TCK")
LINENO = re.compile(r":\d+\)$")  # a frame's line number: functions are what we rank


def descendants(root: int) -> dict[int, str]:
    """pid -> title of every process under `root` (from /proc)."""
    children: dict[int, list[int]] = {}
    titles: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
        titles[int(entry.name)] = cmd
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        out[pid] = titles.get(pid, "?")
        todo.extend(children.get(pid, []))
    return out


def cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime + stime


def role(title: str) -> str | None:
    """`n0 supervisor` for a node process of n0/n1, `client` for the benchmark."""
    if "throughput.py" in title:
        return "client (bench pump)"
    for node in ("n0", "n1"):
        tag = f"lbcluster[{node}] "
        if title.startswith(tag) and "zygote" not in title:
            return f"{node} {title[len(tag):]}"
    return None


def summarize(raw: Path, seconds: float, rate: int, top: int) -> tuple[float, list, list]:
    """(share of a core sampled busy, top self, top inclusive) from py-spy's raw output."""
    own: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = [LINENO.sub(")", f) for f in stack.split(";")]
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    def share(c: Counter[str]) -> list[tuple[str, float]]:
        return [(f, round(100 * n / max(total, 1), 1)) for f, n in c.most_common(top)]
    return 100 * total / (seconds * rate), share(own), share(incl)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="sampling window")
    parser.add_argument("--warmup", type=float, default=14.0,
                        help="seconds from the benchmark's start to the pump being under way")
    parser.add_argument("--rate", type=int, default=50, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=6)
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--out", type=Path, default=Path("/tmp/profile_hops"))
    args = parser.parse_args()
    spy = os.environ.get("PY_SPY") or shutil.which("py-spy") or "py-spy"
    args.out.mkdir(parents=True, exist_ok=True)
    pipe_s = args.warmup + args.seconds + 6
    bench = subprocess.Popen(
        [sys.executable, str(HERE / "throughput.py"), "--only", "pipelined",
         "--windows", str(args.window), "--pipelined-s", str(pipe_s)],
        stdout=subprocess.PIPE, text=True)
    time.sleep(args.warmup)
    procs = {pid: r for pid, t in descendants(bench.pid).items() if (r := role(t))}
    before = {pid: cpu_ticks(pid) for pid in procs}
    spies = {pid: subprocess.Popen(
        [spy, "record", "-f", "raw", "--nonblocking", "-r", str(args.rate),
         "-d", str(int(args.seconds)), "-p", str(pid),
         "-o", str(args.out / f"{r.replace(' ', '_')}.txt")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for pid, r in procs.items()}
    started = time.monotonic()
    for proc in spies.values():
        proc.wait()
    elapsed = time.monotonic() - started
    used = {pid: 100 * (cpu_ticks(pid) - before[pid]) / TICK / elapsed for pid in procs}
    report, _ = bench.communicate()
    print(report)
    print(f"{'process':28} {'% core':>7} {'py-spy busy':>11}  top self (share of its samples)")
    for pid, r in sorted(procs.items(), key=lambda kv: kv[1]):
        raw = args.out / f"{r.replace(' ', '_')}.txt"
        if not raw.exists():
            print(f"{r:28} {used[pid]:7.1f}  (no samples)")
            continue
        busy, own, incl = summarize(raw, args.seconds, args.rate, args.top)
        print(f"{r:28} {used[pid]:7.1f} {busy:11.1f}  "
              + "; ".join(f"{f} {p}%" for f, p in own))
        print(f"{'':48}incl: " + "; ".join(f"{f} {p}%" for f, p in incl[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
