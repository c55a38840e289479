"""Membership at scale: the pure SWIM + Lifeguard cores in a discrete-event simulation.

    python bench/simulate.py --nodes 10,100,1000,10000 --json docs/results/simulation.json
    python bench/simulate.py --report docs/results/simulation.json      # tables as markdown
    python bench/simulate.py --plot docs/results/simulation.json --out docs/results  # matplotlib

Per cluster size N one seeded cluster (LAN profile, the `actors/testing/sim`
network) goes through these phases in order: join (all nodes start within
1 s and join via 3 seeds), settle, load (per-member traffic at rest),
dissemination (one metadata update, Serf's convergence measure), detection
(silent crashes, then crashes with refused-connection evidence; each victim
is restarted and rejoins before the next trial), false alarms (loss 1 %,
loss 5 %, then a few slow members), and for N <= 100 a partition and a
Lifeguard-off control. From --converged-from nodes up (default 5,000) the
cluster starts converged (every core adopts one shared view of the others,
`Sim.start_converged`) and the join phase times --joiners nodes joining it;
the partition there cuts off 1 % of the members for less than the shortest
suspicion timeout. A CPU-time budget and a memory cap per N stop a size that
does not fit and record how far it got. docs/simulation.md explains the
model and the results.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from actors.membership.core.suspicion import suspicion_bounds
from actors.membership.core.timing import PROFILES, push_pull_scale
from actors.testing.sim import NetModel, Sim
from bench.simreport import dig, plot, render
from bench.simrun import Alarms, OverBudget, Run, quantiles, rss_gb

Result = dict[str, Any]
ROOT = Path(__file__).resolve().parents[1]
FRACTIONS = (("50%", 0.5), ("99%", 0.99), ("99.9%", 0.999), ("99.99%", 0.9999), ("100%", 1.0))
START_SPREAD_S = 1.0  # non-seed nodes boot uniformly within the first second
JOIN_CAP_S, SETTLE_CAP_S, LOAD_WINDOW_S = 180.0, 90.0, 30.0
# Converged start (large N): 10 s of 10,000 members is 100,000 member-seconds, more than
# 30 s at 1,000, and each virtual second there costs several CPU seconds.
LOAD_WINDOW_LARGE_S = 10.0
STEADY_MSGS_PER_NODE_S = 2.2  # ping + ack = 2 per member per period, plus a little
SLOW_MEMBERS = 3
PARTITION_S = 30.0
# Converged start: the cut-off 1 % stays apart for less than the shortest suspicion
# timeout (16 s at 10,000), so no side declares the other dead. Longer, each side would
# fail the other, and on healing every table merged from the other side would turn its
# "dead" rows into suspicions (remote dead -> suspect, memberlist's mergeState): on the
# order of N^2 of them. Even the short cut is costly at 10,000 (docs/simulation.md).
SHORT_PARTITION_S = 10.0


# --- reference figures (REFERENCE.md §2.3, §3) -------------------------------------------


def serf_seconds(n: int, fraction: float, interval_s: float = 0.2, fanout: int = 3) -> float:
    """Serf's convergence simulator: `1/(1+(N+1)e^(-contact*N*round))`, whole rounds."""
    contact = fanout / n * 0.5
    for rounds in range(1, 101):
        if 1.0 / (1.0 + (n + 1) * math.exp(-contact * n * rounds)) >= fraction:
            return rounds * interval_s
    return math.inf


def swim_periods(n: int) -> float:
    """E[periods to first detection] with round-robin probing and unsynchronised members.

    Each of the m = n-1 survivors reaches the victim in its shuffled list at a
    uniform point of its m-period cycle; SWIM counts whole periods, so this is
    sum_k P(X > k periods) = sum_k (1-k/m)^m, which tends to e/(e-1) as m grows.
    """
    m = max(1, n - 1)
    return sum((1.0 - k / m) ** m for k in range(m))


# --- a run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    nodes: tuple[int, ...]
    seed: int
    latency: str
    no_codec_from: int
    budget_s: float
    max_rss_gb: float
    quick: bool
    converged_from: int = 5000
    joiners: int = 10
    phases: tuple[str, ...] = ()  # run only these (after join and settle); () = all


def make_run(n: int, opts: Options, timing: Any, label: str) -> Run:
    net = NetModel(latency=opts.latency, codec=n < opts.no_codec_from)
    sim = Sim(n, timing, net, seed=opts.seed * 1_000_003 + n)
    return Run(sim, label, opts.seed + n, opts.budget_s, opts.max_rss_gb)


# --- phases -----------------------------------------------------------------------------


def start_all(run: Run) -> float:
    """Seeds boot at 0, the others uniformly within START_SPREAD_S; all join via the seeds.

    Returns:
        When the last node starts.
    """
    starts = [0.0 if i in run.seeds else run.rng.uniform(0, START_SPREAD_S) for i in range(run.n)]
    for i, at in enumerate(starts):
        run.sim.start(i, at, run.seeds)
    return max(starts)


def start_joiners(run: Run, joiners: int) -> float:
    """All but the last `joiners` nodes start converged at 0; those join via the seeds
    within START_SPREAD_S. Returns when the last one starts."""
    members = list(range(run.n - joiners))
    run.sim.start_converged(members)
    run.views.converged(members)
    starts = [run.rng.uniform(0, START_SPREAD_S) for _ in range(joiners)]
    for i, at in zip(range(run.n - joiners, run.n), starts, strict=True):
        run.sim.start(i, at, run.seeds)
    return max(starts)


def phase_join(run: Run, joiners: int = 0) -> Result:
    """Everyone joins from scratch, or (joiners > 0) that many join a converged cluster."""
    sim, views, n = run.sim, run.views, run.n
    last_start = start_joiners(run, joiners) if joiners else start_all(run)
    marks: dict[str, float | None] = {name: None for name, _ in FRACTIONS}
    curve: list[tuple[float, float, float]] = []

    def check() -> bool:
        complete = sum(1 for i in range(n) if views.sees_all_alive(i, n - 1))
        curve.append((round(sim.now, 3), complete / n, sum(views.alive) / max(1, n * (n - 1))))
        for name, frac in FRACTIONS:
            if marks[name] is None and complete >= math.ceil(frac * n):
                marks[name] = sim.now
        return complete == n

    alarms = Alarms(run)
    ok = run.advance(JOIN_CAP_S, check)
    span = sim.now
    meter = sim.meter
    return {"converged": ok, "converged_s": span if ok else None,
            "start": "converged" if joiners else "scratch", "joiners": joiners or n,
            "periods": span / sim.timing.probe_interval_s if ok else None,
            "last_start_s": last_start, "after_last_start_s": span - last_start if ok else None,
            "complete_views_at_s": marks, "curve": curve[:: max(1, len(curve) // 200)],
            "msgs_per_node_s": sum(meter.messages.values()) / (n * span),
            "bytes_per_node_s": sum(meter.bytes.values()) / (n * span),
            "false_failures": alarms.summary(span)["failed_episodes"]}


def phase_settle(run: Run) -> Result:
    """Let the join's gossip drain: 2-s windows until only probing traffic is left."""
    sim, t0, rate = run.sim, run.sim.now, math.inf
    while rate > STEADY_MSGS_PER_NODE_S and sim.now - t0 < SETTLE_CAP_S:
        sim.reset_meter()
        run.advance(sim.now + 2.0)
        msgs = sum(c for t, c in sim.meter.messages.items() if t != "members")
        rate = msgs / (run.n * 2.0)
    return {"settle_s": sim.now - t0, "msgs_per_node_s_at_end": rate,
            "settled": rate <= STEADY_MSGS_PER_NODE_S}


def phase_load(run: Run, w: float = LOAD_WINDOW_S) -> Result:
    """Per-member traffic at rest; push-pull amortised over its (scaled) period."""
    sim, n = run.sim, run.n
    codec, sim.net.codec = sim.net.codec, True  # bytes are always measured here
    sim.reset_meter()
    run.advance(sim.now + w)
    sim.net.codec = codec
    meter = sim.meter
    by_type = {t: {"msgs": c / (n * w), "bytes": meter.bytes[t] / (n * w)}
               for t, c in sorted(meter.messages.items())}
    probing = [(c, meter.bytes[t]) for t, c in meter.messages.items() if t != "members"]
    interval = push_pull_scale(sim.timing.push_pull_interval_s, n)
    table = meter.largest.get("members", 0)
    pp_msgs, pp_bytes = 2.0 / interval, 2.0 * table / interval
    msgs = sum(c for c, _ in probing) / (n * w) + pp_msgs
    size = sum(b for _, b in probing) / (n * w) + pp_bytes
    return {"window_s": w, "msgs_per_node_s": msgs, "bytes_per_node_s": size,
            "push_pull": {"interval_s": interval, "table_bytes": table,
                          "msgs_per_node_s": pp_msgs, "bytes_per_node_s": pp_bytes},
            "by_type_in_window": by_type,
            "max_node_msgs_s": max(node.sent for node in sim.nodes) / w,
            "max_node_bytes_s": max(node.sent_bytes for node in sim.nodes) / w}


def phase_dissemination(run: Run, count: int = 5) -> Result:
    """One metadata change at a time; when has each fraction of the others seen it?"""
    samples = [broadcast_once(run, k) for k in range(count)]
    out: Result = {"broadcasts": count, "samples": samples}
    for name, f in FRACTIONS:
        got = [t for t in (s[name] for s in samples) if t is not None]
        out[name] = sum(got) / len(got) if len(got) == count else None
        out["serf_" + name] = serf_seconds(run.n, f) if f < 1 else None
    return out


def broadcast_once(run: Run, k: int) -> dict[str, float | None]:
    sim, (b,) = run.sim, run.pick()
    core = sim.nodes[b].core
    assert core is not None
    subject, inc, t0 = sim.nodes[b].info.node_id, core.incarnation(), sim.now
    seen: dict[int, float] = {}

    def listener(now: float, obs: int, ev: Any) -> None:
        if ev.kind == "node.updated" and ev.node.node_id == subject and \
                ev.incarnation > inc and obs not in seen:
            seen[obs] = now - t0

    sim.listeners.append(listener)
    sim.set_metadata(b, {"round": k})
    others = len(run.sim.up()) - 1
    run.advance(t0 + 15.0, lambda: len(seen) >= others, 0.01)
    sim.listeners.remove(listener)
    times = sorted(seen.values())
    run.advance(sim.now + 1.0)
    return {name: times[math.ceil(f * others) - 1] if len(times) >= math.ceil(f * others)
            else None for name, f in FRACTIONS}


def health_scores(run: Run) -> list[int]:
    return [node.core.health_score() for node in run.sim.nodes if node.up and node.core]


def crash_trial(run: Run, victim: int, refusals: bool) -> Result:
    """Crash `victim` in a calm cluster, time its detection, then restart it and time the rejoin.

    Calm: every member's Lifeguard health score back at 0, so one trial's
    failed probes (which raise the probers' scores) do not slow the next.
    """
    calm_from = run.sim.now
    run.advance(calm_from + 60.0, lambda: max(health_scores(run)) == 0, 0.1)
    sim, vid, t0 = run.sim, run.sim.nodes[victim].info.node_id, run.sim.now
    first_ping: list[float] = []
    first_suspect: list[float] = []
    failed: dict[int, float] = {}

    def tap(src: int, dst: int, msg: Any) -> None:
        if dst == victim and msg.msg_type == "ping" and not first_ping:
            first_ping.append(sim.now - t0)

    def listener(now: float, obs: int, ev: Any) -> None:
        if ev.node.node_id != vid:
            return
        if ev.kind == "node.suspect" and not first_suspect:
            first_suspect.append(now - t0)
        elif ev.kind == "node.failed" and obs not in failed:
            failed[obs] = now - t0

    sim.tap = tap
    sim.listeners.append(listener)
    sim.crash(victim, refusals)
    survivors = len(run.sim.up())
    _, max_s = suspicion_window(run)
    done = run.advance(t0 + max_s + 30.0, lambda: len(failed) >= survivors, 0.01)
    sim.tap = None
    sim.listeners.remove(listener)
    times = sorted(failed.values())
    trial = {"calm_wait_s": t0 - calm_from, "health_max_after": max(health_scores(run)),
             "first_ping_s": first_ping[0] if first_ping else None,
             "first_suspect_s": first_suspect[0] if first_suspect else None,
             "first_failed_s": times[0] if times else None,
             "all_failed_s": times[-1] if done else None}
    core = sim.nodes[victim].core
    assert core is not None
    run.views.reset(victim)
    t1 = sim.now
    sim.restart(victim, run.seeds, core.incarnation() + 1)
    back = run.advance(t1 + 60.0, run.all_see_all, 0.05)
    trial["rejoin_s"] = sim.now - t1 if back else None
    return trial


def suspicion_window(run: Run) -> tuple[float, float]:
    t = run.sim.timing
    return suspicion_bounds(t.suspicion_mult, t.suspicion_max_mult, run.n, t.probe_interval_s)


def phase_detection(run: Run, refusals: bool, trials: int) -> Result:
    alarms = Alarms(run)
    t0 = run.sim.now
    nacks = {k: run.counter(k) for k in ("nacks_received", "late_nacks", "probe_failures")}
    rows = [crash_trial(run, run.pick()[0], refusals) for _ in range(trials)]
    period = run.sim.timing.probe_interval_s
    out: Result = {"trials": len(rows), "refusals": refusals,
                   "false_failures": alarms.summary(run.sim.now - t0)["failed_episodes"]}
    for key in ("first_ping_s", "first_suspect_s", "first_failed_s", "all_failed_s", "rejoin_s"):
        values = [r[key] for r in rows if r[key] is not None]
        out[key] = quantiles(values)
        out[key]["missing"] = len(rows) - len(values)
    pings = [r["first_ping_s"] / period for r in rows if r["first_ping_s"] is not None]
    # SWIM counts the period in which the victim is first probed (detection at its end).
    out["swim_periods_measured"] = sum(math.ceil(p) for p in pings) / len(pings) if pings else None
    out["swim_periods_expected"] = swim_periods(run.n)
    out["suspicion_min_max_s"] = suspicion_window(run)
    # Lifeguard: nacks from ping-req relays that arrive after the probe ended count as missing.
    out.update({k: run.counter(k) - v for k, v in nacks.items()})
    out["health_max_after"] = quantiles([float(r["health_max_after"]) for r in rows])
    out["rows"] = rows
    return out


def phase_alarms(run: Run, loss: float, slow: int, seconds: float) -> Result:
    """A long quiet run under loss and/or slow members: every suspicion is false."""
    sim = run.sim
    chosen = run.pick(slow) if slow else []
    for i in chosen:
        sim.nodes[i].slow = True
    sim.net.loss = loss
    before = {k: run.counter(k) for k in ("probes", "probe_failures", "refutations")}
    alarms = Alarms(run)
    run.advance(sim.now + seconds)
    out = alarms.summary(seconds)
    out.update({"loss": loss, "slow_members": len(chosen), "seconds": seconds})
    out.update({k: run.counter(k) - v for k, v in before.items()})
    scores = [(node.slow, node.core.health_score()) for node in sim.nodes
              if node.up and node.core is not None]
    out["health_score_max"] = {"slow": max((s for slow_, s in scores if slow_), default=None),
                               "healthy": max((s for slow_, s in scores if not slow_), default=0)}
    out["failed_per_member_hour"] = out["failed_episodes"] / max(1e-9, out["healthy_member_hours"])
    sim.net.loss = 0.0
    for i in chosen:
        sim.nodes[i].slow = False
    run.advance(sim.now + 10.0)  # let refutations settle before the next phase
    return out


def phase_partition(run: Run, seconds: float = PARTITION_S, cut: int = 0) -> Result:
    """Split the cluster (in halves, or the last `cut` nodes off), heal, time the merge."""
    sim, half = run.sim, run.n - cut if cut else run.n // 2
    sim.partition([0 if i < half else 1 for i in range(run.n)])
    t0 = sim.now
    run.advance(t0 + seconds)
    views = run.views.not_alive
    sides = [i for i in run.sim.up() if i < half], [i for i in run.sim.up() if i >= half]
    cross = [views[i].get(j) for a, b in (sides, sides[::-1]) for i in a for j in b]
    sim.partition(None)
    t1, timeouts = sim.now, run.counter("suspicion_timeouts")
    heal = [heal_sample(run, 0.0, timeouts)]
    merged = False
    while not merged and sim.now < t1 + 180.0:  # one-second steps, to see how the merge goes
        merged = run.advance(min(t1 + 180.0, sim.now + 1.0), run.all_see_all, 0.1)
        heal.append(heal_sample(run, sim.now - t1, timeouts))
    return {"partition_s": seconds, "sides": [half, run.n - half],
            "cross_pairs_dead": sum(1 for v in cross if v == "dead") / max(1, len(cross)),
            "cross_pairs_suspect": sum(1 for v in cross if v == "suspect") / max(1, len(cross)),
            "merge_s": sim.now - t1 if merged else None, "heal": heal}


def heal_sample(run: Run, t: float, timeouts0: int) -> dict[str, Any]:
    """After a heal: (observer, member) pairs held suspect or dead, observers that do not
    yet see everyone alive, and suspicions that ran out since the heal."""
    held, up = Counter(v for others in run.views.not_alive for v in others.values()), run.sim.up()
    return {"t": round(t, 2), "suspect": held["suspect"], "dead": held["dead"],
            "incomplete": sum(1 for i in up if not run.views.sees_all_alive(i, len(up) - 1)),
            "suspicion_timeouts": run.counter("suspicion_timeouts") - timeouts0}


# --- one size, all phases ------------------------------------------------------------------


def alarm_seconds(n: int, quick: bool) -> float:
    """Long enough for >= ~10 healthy member-hours per condition, short enough at large N."""
    return 20.0 if quick else min(3600.0, max(45.0, 45_000.0 / n))


def trials_for(n: int, quick: bool) -> int:
    return 2 if quick else (40 if n <= 100 else max(3, 5000 // n))


def phases_for(run: Run, opts: Options) -> list[tuple[str, Callable[[], Result]]]:
    n, quick = run.n, opts.quick
    fp_s, trials, slow = alarm_seconds(n, quick), trials_for(n, quick), min(SLOW_MEMBERS, n // 4)
    joiners = opts.joiners if n >= opts.converged_from else 0
    steps: list[tuple[str, Callable[[], Result]]] = [
        ("join", lambda: phase_join(run, joiners)),
        ("settle", lambda: phase_settle(run)),
        ("load", lambda: phase_load(run, LOAD_WINDOW_LARGE_S if joiners else LOAD_WINDOW_S)),
        ("dissemination", lambda: phase_dissemination(run, 2 if quick else 5)),
        ("detection_silent", lambda: phase_detection(run, False, trials)),
        ("detection_refused", lambda: phase_detection(run, True, trials)),
        ("alarms_loss_1", lambda: phase_alarms(run, 0.01, 0, fp_s)),
        ("alarms_loss_5", lambda: phase_alarms(run, 0.05, 0, fp_s)),
        ("alarms_slow", lambda: phase_alarms(run, 0.0, slow, fp_s)),
    ]
    if n <= 100:
        steps.append(("partition", lambda: phase_partition(run)))
    elif joiners:
        steps.append(("partition", lambda: phase_partition(run, SHORT_PARTITION_S, n // 100)))
    if opts.phases:  # the cluster is made by join and settle, so they always run
        steps = [(name, step) for name, step in steps
                 if name in ("join", "settle") or name in opts.phases]
    return steps


def lifeguard_off_phases(run: Run, quick: bool) -> list[tuple[str, Callable[[], Result]]]:
    fp_s, slow = alarm_seconds(run.n, quick), min(SLOW_MEMBERS, run.n // 4)
    return [("join", lambda: phase_join(run)), ("settle", lambda: phase_settle(run)),
            ("alarms_slow", lambda: phase_alarms(run, 0.0, slow, fp_s))]


def run_phases(run: Run, steps: list[tuple[str, Callable[[], Result]]],
               saved: Callable[[Result], object] | None = None) -> Result:
    """Run `steps` in order; `saved` gets the results so far after each one."""
    out: Result = {"nodes": run.n, "codec": run.sim.net.codec}
    try:
        for name, step in steps:
            run.phase = name
            cpu = time.process_time()
            out[name] = step()
            out[name]["cpu_s"] = time.process_time() - cpu
            out[name]["sim_end_s"] = run.sim.now
            print(f"  [{run.label}] {name}: {brief(out[name])}", flush=True)
            if saved is not None:  # an hour-long size leaves its finished phases behind
                saved({**out, "partial": True})
    except OverBudget as exc:
        views, n = run.views, run.n
        out["aborted"] = {"reason": str(exc), "phase": run.phase, "sim_time_s": run.sim.now,
                          "core_calls": run.sim.handled,
                          "complete_views": sum(views.sees_all_alive(i, n - 1) for i in range(n)),
                          "pairs_known": sum(views.alive) / max(1, n * (n - 1))}
        print(f"  [{run.label}] aborted: {out['aborted']}", flush=True)
    out["cpu_s"] = time.process_time() - run.cpu0
    out["wall_s"] = time.monotonic() - run.wall0
    out["rss_gb_at_end"] = rss_gb()
    # The process's peak so far (sizes run one after another share a process).
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    return out


def brief(r: Result) -> str:
    keep = ("converged_s", "settle_s", "msgs_per_node_s", "bytes_per_node_s", "99.99%",
            "failed_episodes", "suspect_episodes", "merge_s", "cpu_s")
    parts = [f"{k}={_fmt(r[k])}" for k in keep if k in r]
    for key in ("first_suspect_s", "all_failed_s"):
        if key in r:
            parts.append(f"{key}.mean={_fmt(r[key].get('mean'))}")
    return " ".join(parts)


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def run_size(n: int, opts: Options, saved: Callable[[Result], object] | None = None) -> Result:
    timing = PROFILES["lan"]
    print(f"n={n}: codec={'on' if n < opts.no_codec_from else 'off'}", flush=True)
    run = make_run(n, opts, timing, f"n={n}")
    out = run_phases(run, phases_for(run, opts), saved)
    if opts.phases:
        out["phases_only"] = list(opts.phases)
    if n <= 100 and "aborted" not in out and (not opts.phases or "lifeguard_off" in opts.phases):
        off = replace(timing, awareness_max=1, suspicion_max_mult=1)
        ctl = make_run(n, replace(opts, seed=opts.seed + 7), off, f"n={n} lifeguard-off")
        out["lifeguard_off"] = run_phases(ctl, lifeguard_off_phases(ctl, opts.quick))
    return out


def meta(argv: list[str], wall: float) -> Result:
    return {"command": "python bench/simulate.py " + " ".join(argv), "run_wall_s": wall,
            "python": platform.python_version(), "machine": platform.machine(),
            "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M"),
            "profile": "lan", "timing": asdict(PROFILES["lan"]),
            "swim_first_detection_periods": math.e / (math.e - 1)}


# --- profiling -----------------------------------------------------------------------------


def profile(n: int, opts: Options, where: str, seconds: float, top: int = 15) -> str:
    """cProfile `seconds` of virtual time: the start of the join, at rest after it, or
    the first seconds of 1 % of the members cut off."""
    import cProfile
    import pstats

    run = make_run(n, opts, PROFILES["lan"], f"n={n} profile")
    joiners = opts.joiners if n >= opts.converged_from else 0
    if where in ("steady", "partition"):
        phase_join(run, joiners)
        phase_settle(run)
        if where == "partition":  # the large-N cut of phase_partition, profiled from its start
            run.sim.partition([0 if i < n - n // 100 else 1 for i in range(n)])
    elif joiners:
        start_joiners(run, joiners)
    else:
        start_all(run)
    prof, t0, cpu = cProfile.Profile(), run.sim.now, time.process_time()
    prof.enable()
    run.advance(t0 + seconds)
    prof.disable()
    cpu = time.process_time() - cpu
    raw: dict[Any, Any] = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())
    core = [kv for kv in raw.items() if "/core/" in kv[0][0] or "/transport/" in kv[0][0]]
    head = f"n={n} {where}: {seconds} s virtual from t={t0:.1f} s, {cpu:.1f} s CPU under " \
           f"cProfile, {run.sim.handled} core calls"
    return "\n".join([
        head, "", "By own time (all functions):", "",
        *_profile_rows(sorted(raw.items(), key=lambda kv: -kv[1][2])[:top], total), "",
        "By time with callees (core and transport functions):", "",
        *_profile_rows(sorted(core, key=lambda kv: -kv[1][3])[:top], total), ""])


def _profile_rows(ranked: list[tuple[Any, Any]], total: float) -> list[str]:
    rows = ["| own time | with callees | calls | function |", "|---|---|---|---|"]
    for (path, line, func), (_, calls, own, cum, _) in ranked:
        short = path.split(f"{ROOT}/")[-1].split("site-packages/")[-1]
        rows.append(f"| {100 * own / total:.1f} % | {100 * cum / total:.1f} % | {calls:,} "
                    f"| `{short}:{line}({func})` |")
    return rows


# --- command line -------------------------------------------------------------------------


def merge_size(old: Result | None, new: Result) -> Result:
    """`new` replaces `old`, unless it ran only some phases (`--phases`): then those
    phases replace `old`'s, each with the cost of its own run beside it."""
    only = new.get("phases_only")
    if old is None or not only:
        return new
    merged = dict(old)
    cost = {k: new.get(k) for k in ("cpu_s", "wall_s", "peak_rss_gb")}
    for name in only:
        if name in new:
            merged[name] = {**new[name], "separate_run": cost}
            if dig(merged, "aborted", "phase") == name:
                del merged["aborted"]  # the earlier run's cut-short attempt at it
    if "aborted" in new:
        merged["aborted"] = new["aborted"]
    return merged


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", default="10,100,1000", help="comma-separated cluster sizes")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--latency", choices=("uniform", "lognormal"), default="uniform")
    p.add_argument("--no-codec", action="store_true", help="skip the codec at every size")
    p.add_argument("--no-codec-from", type=int, default=5000,
                   help="skip the codec for sizes >= this (the load window still encodes)")
    p.add_argument("--budget-min", type=float, default=60.0, help="CPU-time cap per size")
    p.add_argument("--max-rss-gb", type=float, default=8.0, help="memory cap per size")
    p.add_argument("--quick", action="store_true", help="short phases, for a smoke run")
    p.add_argument("--converged-from", type=int, default=5000,
                   help="from this size up, start converged and time --joiners joining it")
    p.add_argument("--joiners", type=int, default=10)
    p.add_argument("--phases", default="",
                   help="comma-separated phases to run after join and settle (default: all)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--combine", type=Path, nargs="+",
                   help="merge results files run separately into --json (later wins) and exit")
    p.add_argument("--report", type=Path, help="print the tables of a results file and exit")
    p.add_argument("--plot", type=Path, help="draw charts of a results file and exit")
    p.add_argument("--profile", choices=("join", "steady", "partition"),
                   help="only cProfile --profile-s virtual seconds per size and print hotspots")
    p.add_argument("--profile-s", type=float, default=3.0)
    p.add_argument("--out", type=Path, default=Path("docs/results"), help="chart directory")
    return p.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    if args.combine:  # sizes run separately (e.g. 10,000 beside 10,100,1,000), one file
        docs = [json.loads(path.read_text()) for path in args.combine]
        by_n: dict[int, Result] = {}
        for size in (s for d in docs for s in d["sizes"]):
            by_n[size["nodes"]] = merge_size(by_n.get(size["nodes"]), size)
        runs = [r for d in docs for r in d["meta"].get("runs", [d["meta"]])]
        combined = {"meta": {"runs": runs}, "sizes": [by_n[n] for n in sorted(by_n)]}
        if args.json:
            args.json.write_text(json.dumps(combined, indent=1, default=str) + "\n")
        print(render(combined), end="")
        return 0
    if args.report or args.plot:
        doc = json.loads((args.report or args.plot).read_text())
        if args.plot:
            print("\n".join(str(p) for p in plot(doc, args.out)))
        else:
            print(render(doc), end="")
        return 0
    opts = Options(tuple(int(x) for x in args.nodes.split(",")), args.seed, args.latency,
                   0 if args.no_codec else args.no_codec_from, args.budget_min * 60.0,
                   args.max_rss_gb, args.quick, args.converged_from, args.joiners,
                   tuple(p for p in args.phases.split(",") if p))
    known = {name for name, _ in phases_for(make_run(10, opts, PROFILES["lan"], "names"),
                                             replace(opts, phases=()))} | {"lifeguard_off"}
    if set(opts.phases) - known:
        print(f"unknown phases {sorted(set(opts.phases) - known)}; known: {sorted(known)}",
              file=sys.stderr)
        return 2
    if args.profile:
        for n in opts.nodes:
            print(profile(n, opts, args.profile, args.profile_s), flush=True)
        return 0
    wall = time.monotonic()
    sizes: list[Result] = []

    def save(current: list[Result]) -> Result:
        doc = {"meta": meta(argv, time.monotonic() - wall), "sizes": current}
        if args.json:  # after every phase, so a long run leaves what it finished behind
            args.json.write_text(json.dumps(doc, indent=1, default=str) + "\n")
        return doc

    for n in opts.nodes:
        sizes.append(run_size(n, opts, lambda partial: save([*sizes, partial])))
        doc = save(sizes)
    print(render(doc), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
