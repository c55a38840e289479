"""Run every benchmark on real processes and collect the figures.

    python -m bench [--nodes 3,5,10,20] [--state-nodes 3,5,10] [--json docs/results/bench.json]
                    [--charts docs/results]

Each benchmark runs as its own process (one crash cannot take the others'
figures with it) and prints its own table; the JSON gathers their results
with the machine they came from. `--charts DIR` draws PNGs of them with
bench/charts.py (needs matplotlib: `pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _run(name: str, args: list[str], json_out: Path | None) -> dict[str, Any]:
    cmd = [sys.executable, str(HERE / f"{name}.py"), *args]
    if json_out is not None:
        cmd += ["--json", str(json_out)]
    print(f"\n== {name}: {' '.join(cmd[1:])}", flush=True)
    started = time.monotonic()
    code = subprocess.call(cmd)
    result: dict[str, Any] = {"command": " ".join(["python", *cmd[1:]]), "exit_code": code,
                              "elapsed_s": round(time.monotonic() - started, 1)}
    if json_out is not None and json_out.exists():
        result["results"] = json.loads(json_out.read_text())
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="3,5,10,20", help="membership cluster sizes")
    parser.add_argument("--state-nodes", default="3,5,10", help="state-sharing cluster sizes")
    parser.add_argument("--json", help="write all results here")
    parser.add_argument("--charts", help="draw PNG charts into this folder (needs --json)")
    args = parser.parse_args()
    membership_sizes = ",".join(n for n in args.nodes.split(",") if int(n) >= 3)
    report: dict[str, Any] = {"machine": {
        "cpus": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "loadavg_before": os.getloadavg()}}
    with tempfile.TemporaryDirectory(prefix="lbc-benchall-") as tmp:
        out = Path(tmp)
        report["codec"] = _run("codec_bench", [], None)
        report["runtime"] = _run("runtime_bench", ["--kills", "20", "--nodes", "3"], None)
        report["membership"] = _run("membership_bench", ["--nodes", membership_sizes],
                                    out / "membership.json")
        report["state"] = _run("state_bench", ["--nodes", args.state_nodes], out / "state.json")
    report["machine"]["loadavg_after"] = os.getloadavg()
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
        if args.charts:
            subprocess.call([sys.executable, str(HERE / "charts.py"), args.json,
                             "--out", args.charts])
    failed = [k for k, v in report.items() if isinstance(v, dict) and v.get("exit_code")]
    print(f"\nbenchmarks done; failed: {failed or 'none'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
