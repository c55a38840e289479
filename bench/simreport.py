"""bench/simulate.py's results as markdown tables (`--report`) and charts (`--plot`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

Result = dict[str, Any]


def dig(r: Result, *path: str) -> Any:
    """r[path[0]][path[1]]...; None where a key is missing (results of older runs)."""
    for key in path:
        if not isinstance(r, dict) or key not in r:
            return None
        r = r[key]
    return r


def _heal_timeouts(size: Result) -> str:
    """Suspicions run out since the heal (older results did not record the heal)."""
    heal = dig(size, "partition", "heal")
    return str(heal[-1]["suspicion_timeouts"]) if heal else "-"


def _c(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) < 1000 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *["| " + " | ".join(r) + " |" for r in rows]]


def render(doc: Result) -> str:
    sizes = [s for s in doc["sizes"] if "aborted" not in s or "join" in s]
    lines = ["#### Convergence, detection, load", ""]
    lines += _table(
        ["N", "codec", "join: all views complete, s (after last start)",
         "update to 99.99 %, s (Serf)",
         "silent crash: 1st suspicion, s", "SWIM periods (expected)",
         "silent crash: failed on all, s mean / max", "refused: failed on all, s mean / max",
         "msgs/s per member", "bytes/s per member", "CPU s", "peak RSS, GB"],
        [[str(s["nodes"]) + ("*" if dig(s, "join", "start") == "converged" else ""),
          _c(s["codec"]),
          f"{_c(dig(s, 'join', 'converged_s'))} ({_c(dig(s, 'join', 'after_last_start_s'))})",
          f"{_c(dig(s, 'dissemination', '99.99%'))} ({_c(dig(s, 'dissemination', 'serf_99.99%'))})",
          _c(dig(s, "detection_silent", "first_suspect_s", "mean")),
          f"{_c(dig(s, 'detection_silent', 'swim_periods_measured'))} "
          f"({_c(dig(s, 'detection_silent', 'swim_periods_expected'))})",
          f"{_c(dig(s, 'detection_silent', 'all_failed_s', 'mean'))} / "
          f"{_c(dig(s, 'detection_silent', 'all_failed_s', 'max'))}",
          f"{_c(dig(s, 'detection_refused', 'all_failed_s', 'mean'))} / "
          f"{_c(dig(s, 'detection_refused', 'all_failed_s', 'max'))}",
          _c(dig(s, "load", "msgs_per_node_s")), _c(dig(s, "load", "bytes_per_node_s"), 0),
          _c(s.get("cpu_s"), 0), _c(s.get("peak_rss_gb"))] for s in sizes])
    lines += ["", "Join at N marked * : " + ", ".join(
        f"N={s['nodes']}: {s['join']['joiners']} nodes joining a converged cluster of "
        f"{s['nodes'] - s['join']['joiners']:,}"
        for s in sizes if dig(s, "join", "start") == "converged") + "."] if any(
        dig(s, "join", "start") == "converged" for s in sizes) else []
    lines += ["", "#### Partitions", ""]
    lines += _table(["N", "sides", "cut, s", "cross pairs dead", "cross pairs suspect",
                     "all see all alive again after, s", "suspicions timed out after the heal"],
                    [[str(s["nodes"]), " / ".join(map(str, dig(s, "partition", "sides") or [])),
                      _c(dig(s, "partition", "partition_s"), 0),
                      _c(dig(s, "partition", "cross_pairs_dead")),
                      _c(dig(s, "partition", "cross_pairs_suspect")),
                      _c(dig(s, "partition", "merge_s")), _heal_timeouts(s)]
                     for s in sizes if "partition" in s])
    lines += ["", "#### False alarms (every member is up: any failure is false)", ""]
    rows = []
    for s in sizes:
        for key, what in (("alarms_loss_1", "loss 1 %"), ("alarms_loss_5", "loss 5 %"),
                          ("alarms_slow", "slow members"), ("lifeguard_off.alarms_slow",
                                                            "slow, Lifeguard off")):
            a = dig(s, *key.split("."))
            if a is None:
                continue
            rows.append([str(s["nodes"]), what, _c(a["healthy_member_hours"], 1),
                         _c(a["probes"]), _c(a["probe_failures"]), _c(a["suspect_episodes"]),
                         _c(a["failed_episodes"]), _c(a["failed_per_member_hour"], 3),
                         f"{a['slow_suspect_episodes']} / {a['slow_failed_episodes']}",
                         _c(a["refutations"])])
    lines += _table(["N", "condition", "healthy member-hours", "probes", "failed probes",
                     "false suspicions", "false failures", "per member-hour",
                     "slow members suspected / failed", "refutations"], rows)
    lines += ["", "#### Aborted sizes", ""]
    lines += [f"- N={s['nodes']}: {s['aborted']}" for s in doc["sizes"] if "aborted" in s] \
        or ["- none"]
    return "\n".join(lines) + "\n"


# --- charts (matplotlib, imported only here) -----------------------------------------------


def plot(doc: Result, out_dir: Path) -> list[Path]:
    from bench.charts import pyplot, save_png

    plt = pyplot()

    sizes = [s for s in doc["sizes"] if dig(s, "join", "converged")]
    ns = [s["nodes"] for s in sizes]
    made = []
    fig, ax = plt.subplots(figsize=(7, 4))
    for s in sizes:
        curve, j = s["join"]["curve"], s["join"]
        label = f"N={s['nodes']}"
        if j.get("start") == "converged":
            label += f" ({j['joiners']} join a converged {s['nodes'] - j['joiners']:,})"
        ax.plot([c[0] for c in curve], [c[1] for c in curve], label=label)
    ax.set(xlabel="virtual time since the first node started (s)",
           ylabel="fraction of nodes that see all alive", title="Join via 3 seeds")
    ax.legend(fontsize=8)
    made.append(save_png(fig, out_dir / "sim_join.png", 110))
    fig, ax = plt.subplots(figsize=(7, 4))
    series = [("join: all views complete", ("join", "converged_s")),
              ("update reaches 99.99 %", ("dissemination", "99.99%")),
              ("Serf model, 99.99 %", ("dissemination", "serf_99.99%")),
              ("silent crash: failed on all (mean)", ("detection_silent", "all_failed_s", "mean")),
              ("refused: failed on all (mean)", ("detection_refused", "all_failed_s", "mean"))]
    scratch = [s for s in sizes if s["join"].get("start") != "converged"]
    for label, path in series:
        group = scratch if path[0] == "join" else sizes
        ax.plot([s["nodes"] for s in group], [dig(s, *path) for s in group], marker="o",
                label=label)
    joins = [s for s in sizes if s["join"].get("start") == "converged"]
    if joins:
        ax.plot([s["nodes"] for s in joins], [s["join"]["converged_s"] for s in joins],
                marker="*", ls="none", ms=10, label="join: 10 into a converged cluster")
    ax.set(xscale="log", yscale="log", xlabel="N", ylabel="seconds (virtual)",
           title="Time vs cluster size")
    ax.legend(fontsize=8)
    made.append(save_png(fig, out_dir / "sim_scaling.png", 110))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(ns, [dig(s, "load", "msgs_per_node_s") for s in sizes], marker="o", label="msgs/s")
    ax.plot(ns, [dig(s, "load", "bytes_per_node_s") for s in sizes], marker="o", label="bytes/s")
    ax.plot(ns, [dig(s, "join", "bytes_per_node_s") for s in sizes], marker="x", ls="--",
            label="bytes/s while joining")
    ax.set(xscale="log", yscale="log", xlabel="N", title="Per-member load (steady state)")
    ax.legend()
    made.append(save_png(fig, out_dir / "sim_load.png", 110))
    return made
