"""Write-throughput benchmark on real processes over 127.0.0.1 (issue 15, item 6).

    python bench/throughput.py [--only batched,pipelined,rate,latency,memory]
                               [--nodes 3,5,10] [--keys 10000] [--secure] [--json FILE]

Scenarios (each on its own LocalCluster, stopped however the run ends):
- batched: SDK programs ("agents", one process per node, so the measuring
  process stays idle) each attach a kv-like provider of type "bulk". One
  agent (then every agent) writes W changes in blocks of 1,000 per
  `hosted.writing()` over a preloaded table of K keys; every `--sample-every`
  write goes to a fresh key with its send time in the value, and a marker key
  is written last. "Replicated writes/s" = W / (first write -> the marker held
  by every node). Every agent records when each sampled key and marker reached
  its provider (the apply hook, no events), so the delay to every node is
  measured where the state lands. Afterwards each node's anti-entropy key
  count and a checksum of every agent's table show whether anything was lost;
  `arrived_by_push` / `arrived_by_repair` are the anti-entropy core counters.
  With `--pace W`, the batched runs are paced instead: every node's agent writes
  W/N per second, what is due as one block every `--pace-tick-ms`, so the delay
  is measured at a rate the cluster may sustain rather than in a burst.
- pipelined: state_bench's pipelined `kv.set` pump (one writer) at N = 5.
- rate: an agent per node hosts `RateProvider` and counts `--rate-per-s` adds
  a second (the target's 100k; 0: as fast as it can); every agent logs (time,
  its own count, its total) so the error against the true count of the
  sliding window (t - window_s, t] over all nodes is computed afterwards, and
  after counting stops, the time until every node's total is exact (that
  needs `--rate-window-s` longer than the run, e.g. 600).
- latency: state_bench's spaced single writes on a rotating origin at N = 20
  (`--latency-spacing-ms`, 20 by default), with the cluster's CPU per write.
- memory: PSS of each node's processes (membership_bench's helper) idle and
  with 10k / 100k / 1M bulk keys held (loaded through the batched path), and
  a batched write run at each size (does the write rate hold as the table grows).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import psutil

try:
    from actors.testing.localcluster import LocalCluster, LocalNode
except ImportError:  # the tree before issue 13 (for comparison runs against older code)
    from actors.localcluster import LocalCluster, LocalNode  # type: ignore[no-redef]
from bench.membership_bench import _idle_cpu_and_pss
from bench.state_bench import (
    Control,
    StateEvents,
    Tally,
    _Controls,
    _wait,
    _wait_peers,
    measure_latency,
    measure_rate,
    percentiles,
    subscribe_all,
)

BLOCK = 1_000  # changes per `hosted.writing()`
BULK = "bulk"
RATE_KEY = "bench"
RATE_FLUSH_MS = 20  # the provider's default
RATE_WINDOW_S = 10  # the provider's default: the truth is the count of the last 10 s
RATE_PER_S = 100_000  # adds/s per node in the target (0: as fast as one thread can)
# How often an agent renews its registration (the SDK default is 2 s). Each renewal
# ships every state of the type, which at 1M keys is heavy, but it is also the only way
# back for an SDK provider the node detached (the anti-entropy actor detaches one whose
# "apply" timed out, as happens under full load at N = 10): too long and a run waits.
DEFAULT_REATTACH_S = 5.0
COUNTERS_AGE_S = 1.0  # `status` counters are as of the actor's last heartbeat (<= 0.5 s)
AE_MAX_KEYS = 5_000_000  # the mirror refuses remote keys beyond [anti_entropy] max_keys


# == the agent: an SDK program attached to one node (runs in its own process) ============


def _bulk_class() -> type:
    """KvProvider under another state type (the node itself runs "kv"), recording when
    sampled keys and markers land here."""
    from actors.providers.base import ReplicatedTable
    from actors.providers.kv import KvProvider

    class BulkKv(KvProvider):
        def __init__(self, node_id: str, clock: Any, options: Mapping[str, Any] | None = None
                     ) -> None:
            opts = dict(options or {})
            state_type = str(opts.pop("type", BULK))
            super().__init__(node_id, clock, opts)
            self._table = ReplicatedTable(state_type, node_id, clock)
            self.landed: dict[str, float] = {}  # sample or marker key -> wall time here

        def apply_remote_state(self, states: list[Any]) -> Any:
            result = super().apply_remote_state(states)
            now = time.time()
            for s in states:
                if s.key[0] != "k":  # only samples ("s.") and markers ("m.") are noted
                    self.landed.setdefault(s.key, now)
            return result

    return BulkKv


class Agent:
    """Serves JSON-line commands from stdin; one reply line each on stdout."""

    def __init__(self, control: str, kind: str, reattach_s: float) -> None:
        from actors.sdk import HostedProvider, attach

        self.kind = kind
        self.hosted: HostedProvider[Any]
        if kind == BULK:
            self.hosted = attach(_bulk_class(), control=control, options={"type": BULK},
                                 reattach_s=reattach_s, timeout_s=30.0)
        else:
            from actors.providers.rate import RateProvider  # (not in older trees)
            window_s = int(kind.partition(":")[2] or RATE_WINDOW_S)  # kind "rate:<window_s>"
            self.hosted = attach(RateProvider, control=control,
                                 options={"window_s": window_s, "flush_ms": RATE_FLUSH_MS},
                                 reattach_s=reattach_s, timeout_s=30.0)
        self.name = self.hosted.node_id

    def serve(self, inp: IO[str], out: IO[str]) -> None:
        out.write(json.dumps({"ready": self.name}) + "\n")
        out.flush()
        for line in inp:
            cmd = json.loads(line)
            if cmd["op"] == "quit":
                break
            reply = getattr(self, f"op_{cmd['op']}")(**cmd.get("args", {}))
            out.write(json.dumps(reply) + "\n")
            out.flush()
        self.hosted.close()

    # -- bulk ----------------------------------------------------------------------------
    def op_load(self, first: int, count: int) -> dict[str, Any]:
        """Keys k<first>..: value 0, in blocks; returns once the node accepted them."""
        for lo in range(first, first + count, BLOCK):
            with self.hosted.writing() as p:
                for j in range(lo, min(lo + BLOCK, first + count)):
                    p.set(f"k{j}", 0, 0.0)
        return {"flushed": self.hosted.flush(600.0)}

    def op_write(self, writes: int, keys: int, offset: int, sample_every: int,
                 start_at: float, pace: float = 0.0, tick_s: float = 0.02) -> dict[str, Any]:
        """`writes` updates over k0..k<keys-1> (from `offset`), every `sample_every`-th
        to a fresh key s.<node>.<i> holding its send time, then the marker m.<node>.

        `pace` > 0: at most that many writes/s, written every `tick_s` as one block of
        what is due (as an LB flushes what it counted); 0: as fast as possible."""
        time.sleep(max(0.0, start_at - time.time()))
        landed = self.hosted.provider.landed
        first = time.time()
        done = 0
        while done < writes:
            due = writes if pace <= 0 else min(writes, int((time.time() - first) * pace) + 1)
            if due <= done:
                time.sleep(tick_s)
                continue
            upto = min(due, done + BLOCK)
            with self.hosted.writing() as p:
                now = time.monotonic()
                for i in range(done, upto):
                    if i % sample_every == 0:
                        key, t = f"s.{self.name}.{i}", time.time()
                        p.set(key, {"t": t}, now)
                        landed[key] = t
                    else:
                        p.set(f"k{(offset + i) % keys}", i, now)
            done = upto
        with self.hosted.writing() as p:
            t = time.time()
            p.set(f"m.{self.name}", {"t": t}, time.monotonic())
            landed[f"m.{self.name}"] = t
        return {"first": first, "last": t, "flushed": self.hosted.flush(600.0)}

    def op_wait(self, markers: list[str], timeout_s: float) -> dict[str, Any]:
        """Until every marker landed here; then every sample and marker's landing time."""
        landed = self.hosted.provider.landed
        _wait(lambda: all(m in landed for m in markers), timeout_s, 0.01)
        return {"landed": dict(landed), "complete": all(m in landed for m in markers)}

    def op_forget(self) -> dict[str, Any]:
        self.hosted.read(lambda p: p.landed.clear())
        return {}

    def op_checksum(self) -> dict[str, Any]:
        """Live key count and an order-free checksum of (key, version) over the table."""
        digest = self.hosted.read(lambda p: p.get_state_digest())
        total = 0
        for (_, key), version in digest.items():
            total += zlib.crc32(f"{key}:{version}".encode())
        return {"keys": len(digest), "checksum": total % 2**64}

    def op_pss(self) -> dict[str, Any]:
        import psutil
        return {"pss": psutil.Process().memory_full_info().pss}

    # -- rate ----------------------------------------------------------------------------
    def op_count(self, start_at: float, duration_s: float, settle_s: float,
                 sample_ms: float, per_s: float) -> dict[str, Any]:
        """Count from `start_at` for `duration_s`, `per_s` adds a second (0: as fast as
        one thread can), logging (time, own count, total) every `sample_ms` (a second
        thread, so the adder never reads); then log every change of the total for
        `settle_s`."""
        provider = self.hosted.provider
        done = threading.Event()
        counted = [0]
        log: list[tuple[float, int, int]] = []

        def sampler() -> None:
            while not done.wait(sample_ms / 1000):
                log.append((time.time(), counted[0], provider.total(RATE_KEY)))
        time.sleep(max(0.0, start_at - time.time()))
        thread = threading.Thread(target=sampler, daemon=True)
        thread.start()
        end = start_at + duration_s
        add, n = provider.add, 0
        while (now := time.time()) < end:
            if per_s and n > (now - start_at) * per_s:  # ahead of the pace: wait
                time.sleep(min(end, start_at + n / per_s) - now)
                continue
            for _ in range(200):
                add(RATE_KEY, 1)
            n += 200
            counted[0] = n
        stopped = time.time()
        done.set()
        thread.join()
        after: list[tuple[float, int]] = []
        last = -1
        while time.time() < stopped + settle_s:
            total = provider.total(RATE_KEY)
            if total != last:
                after.append((time.time(), total))
                last = total
            time.sleep(0.001)
        return {"counted": n, "started": start_at, "stopped": stopped, "log": log,
                "after": after}


def agent_main(control: str, kind: str, reattach_s: float) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us (see AgentProc)
    Agent(control, kind, reattach_s).serve(sys.stdin, sys.stdout)


class AgentProc:
    """One agent process, talked to over its stdin/stdout."""

    def __init__(self, node: LocalNode, kind: str, reattach_s: float) -> None:
        self.node = node
        # This file as a script, with our interpreter and environment: the agent imports
        # the same `actors` as we do (another tree's too, for comparison runs).
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--agent", node.control,
             "--agent-kind", kind, "--reattach-s", str(reattach_s)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=open(node.folder / f"agent-{kind}.log", "ab"),  # noqa: SIM115
            text=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin, self.stdout = self.proc.stdin, self.proc.stdout
        ready = self.stdout.readline()
        if not ready:
            raise RuntimeError(f"agent on {node.name} did not start (see its log)")

    def send(self, op: str, **args: Any) -> None:
        self.stdin.write(json.dumps({"op": op, "args": args}) + "\n")
        self.stdin.flush()

    def reply(self) -> Any:
        line = self.stdout.readline()
        if not line:
            raise RuntimeError(f"agent on {self.node.name} exited")
        return json.loads(line)

    def call(self, op: str, **args: Any) -> Any:
        self.send(op, **args)
        return self.reply()

    def ask_to_quit(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.send("quit")
            self.stdin.close()

    def stop(self, deadline: float) -> None:
        """After `ask_to_quit`: wait until `deadline` (an agent busy in a command cannot
        read it), then kill."""
        try:
            self.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def call_all(agents: list[AgentProc], op: str, **args: Any) -> list[Any]:
    """The same command to every agent at once; their replies in order."""
    for a in agents:
        a.send(op, **args)
    return [a.reply() for a in agents]


@contextmanager
def agents_on(nodes: list[LocalNode], kind: str, reattach_s: float
              ) -> Iterator[list[AgentProc]]:
    started: list[AgentProc] = []
    try:
        for node in nodes:
            started.append(AgentProc(node, kind, reattach_s))
        yield started
    finally:
        for a in started:
            a.ask_to_quit()
        deadline = time.monotonic() + 3.0
        for a in started:
            a.stop(deadline)


# == the cluster ===========================================================================


def _cluster(root: Path, n: int, args: argparse.Namespace, secure: bool = False
             ) -> LocalCluster:
    cluster = LocalCluster(root, n, profile=args.profile,
                           extra={"anti_entropy": {"max_keys": AE_MAX_KEYS}})
    if secure:  # CURVE between the nodes, as state_bench does
        cluster.secure(root / "keys")
        for node in cluster.nodes:
            node.events = f"ipc://{node.folder / 'events.sock'}"
    return cluster


COUNTED = ("arrived_by_push", "arrived_by_repair", "applied", "apply_failed", "detached",
           "store_full")


def ae_rows(ctls: list[Control]) -> list[dict[str, Any]]:
    return [ctl.actors()["anti_entropy"] for ctl in ctls]


def ae_counts(ctls: list[Control]) -> dict[str, dict[str, int]]:
    """Per node: mirror keys and the core's arrival counters."""
    out = {}
    for ctl, row in zip(ctls, ae_rows(ctls), strict=True):
        core = row.get("status", {}).get("core", {})
        out[ctl.node.name] = {"mirror_keys": int(row.get("status", {}).get("keys", -1)),
                              "arrived_by_push": int(core.get("arrived_by_push", 0)),
                              "arrived_by_repair": int(core.get("arrived_by_repair", 0)),
                              "store_full": int(core.get("dropped.store_full", 0)),
                              "apply_failed": int(row.get("counters", {}).get("apply_failed", 0)),
                              # states the provider took: fewer than arrived when several
                              # writes of a key waited for one apply (newest per key)
                              "applied": int(row.get("counters", {}).get("applied", 0)),
                              "detached": int(row.get("counters", {}).get("detached", 0))}
    return out


# == 1. batched ============================================================================


def batched_run(ctls: list[Control], agents: list[AgentProc], writers: list[AgentProc],
                keys: int, args: argparse.Namespace, pace: float = 0.0) -> dict[str, Any]:
    """One measured run: `args.writes` changes split over `writers`, at `pace` writes/s
    in all (0: as fast as they can)."""
    call_all(agents, "forget")
    time.sleep(COUNTERS_AGE_S)  # status counters come with heartbeats: let them catch up
    before = ae_counts(ctls)
    share = args.writes // len(writers)
    nodes = [c.node for c in ctls]
    cpu_before, wall = _cpu_by_role(nodes, agents), time.monotonic()
    start_at = time.time() + 0.2
    for i, w in enumerate(writers):
        w.send("write", writes=share, keys=keys, offset=i * (keys // len(writers)),
               sample_every=args.sample_every, start_at=start_at, pace=pace / len(writers),
               tick_s=args.pace_tick_ms / 1000)
    wrote = [w.reply() for w in writers]
    markers = [f"m.{w.node.name}" for w in writers]
    landed = call_all(agents, "wait", markers=markers, timeout_s=args.timeout)
    wall = time.monotonic() - wall
    cpu = {role: round((t - cpu_before.get(role, 0.0)) / wall / (os.cpu_count() or 1), 3)
           for role, t in sorted(_cpu_by_role(nodes, agents).items())}
    first = min(w["first"] for w in wrote)
    done_at = max(max(r["landed"].get(m, float("inf")) for m in markers) for r in landed)
    complete = all(r["complete"] for r in landed)
    total = share * len(writers)
    delays = []
    for w in writers:  # a writer noted each of its samples' send time (a sample any node
        own = landed[agents.index(w)]["landed"]  # lacks is incomplete)
        for key, sent in own.items():
            seen = [r["landed"].get(key) for r in landed]
            if key.startswith(f"s.{w.node.name}.") and None not in seen:
                delays.append(max(seen) - sent)
    samples = len(writers) * len(range(0, share, args.sample_every))
    verify = verify_bulk(ctls, agents, args)
    time.sleep(COUNTERS_AGE_S)
    after = ae_counts(ctls)
    arrivals = {n: {k: after[n][k] - before[n][k] for k in COUNTED} for n in after}
    push = sum(a["arrived_by_push"] for a in arrivals.values())
    repair = sum(a["arrived_by_repair"] for a in arrivals.values())
    elapsed = done_at - first
    return {"writers": len(writers), "writes": total, "keys": keys, "pace": pace or None,
            "write_s": round(max(w["last"] for w in wrote) - first, 3),
            "written_per_s": round(total / max(max(w["last"] for w in wrote) - first, 1e-9)),
            "replicated_s": round(elapsed, 3) if complete else None,
            "replicated_per_s": round(total / elapsed) if complete else None,
            "delay_every_node": percentiles(delays), "samples": samples,
            "samples_incomplete": samples - len(delays),
            # share of the machine's CPU, by role, from the first write to the markers
            "cpu_share": cpu,
            "markers_complete": complete, "arrivals": arrivals,
            # None: the node has no arrival counters (older code)
            "push_share": round(push / (push + repair), 5) if push + repair else None,
            "verify": verify}


def verify_bulk(ctls: list[Control], agents: list[AgentProc], args: argparse.Namespace
                ) -> dict[str, Any]:
    """Every agent's table the same (key count and checksum), and every node's mirror
    holding as many keys as node 0's (bulk + the node's own few kv keys)."""
    def same() -> bool:
        sums = call_all(agents, "checksum")
        mirrors = [c["mirror_keys"] for c in ae_counts(ctls).values()]
        state["sums"], state["mirrors"] = sums, mirrors
        return len({(s["keys"], s["checksum"]) for s in sums}) == 1 and len(set(mirrors)) == 1
    state: dict[str, Any] = {}
    ok = _wait(same, args.verify_s, 0.5)
    return {"ok": ok, "table_keys": [s["keys"] for s in state["sums"]],
            "checksums_equal": len({s["checksum"] for s in state["sums"]}) == 1,
            "mirror_keys": state["mirrors"]}


def preload(ctls: list[Control], agents: list[AgentProc], have: int, want: int,
            args: argparse.Namespace) -> dict[str, Any]:
    """k<have>..k<want-1> written on node 0's agent; until every node's table holds them."""
    t0 = time.monotonic()
    agents[0].call("load", first=have, count=want - have)
    written = time.monotonic() - t0
    ok = _wait(lambda: all(r["keys"] >= want for r in call_all(agents, "checksum")),
               args.timeout, 0.5)
    return {"keys": want, "write_s": round(written, 2),
            "everywhere_s": round(time.monotonic() - t0, 2), "ok": ok}


def measure_batched(root: Path, n: int, args: argparse.Namespace, secure: bool
                    ) -> dict[str, Any]:
    keys = args.keys
    with _cluster(root, n, args, secure) as cluster, _Controls(cluster.nodes) as ctls:
        _wait_peers(ctls)
        with agents_on(cluster.nodes, BULK, args.reattach_s) as agents:
            out: dict[str, Any] = {"nodes": n, "secure": secure, "keys": keys,
                                   "preload": preload(ctls, agents, 0, keys, args)}
            if args.pace:  # paced runs only: latency under a load the cluster sustains
                out["pace_tick_ms"] = args.pace_tick_ms
                out["paced"] = [batched_run(ctls, agents, agents, keys, args, pace)
                                for pace in args.pace]
                return out
            out["one_writer"] = batched_run(ctls, agents, agents[:1], keys, args)
            out["all_writers"] = batched_run(ctls, agents, agents, keys, args)
            return out


# == 2. pipelined kv.set ===================================================================


def measure_pipelined(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    with _cluster(root, args.pipelined_nodes, args) as cluster, \
            _Controls(cluster.nodes) as ctls:
        events = StateEvents(cluster.nodes)
        events.start()
        try:
            _wait_peers(ctls)
            tally = Tally(events)
            subscribe_all(ctls, tally)
            out: dict[str, Any] = {"nodes": args.pipelined_nodes}
            for window in args.windows:
                before = ae_counts(ctls)
                result, _ = measure_rate(ctls, ctls[:1], tally, f"pipe{window}",
                                         args.pipelined_s, window)
                after = ae_counts(ctls)
                result.pop("per_node")
                result["arrivals"] = {n: {k: after[n][k] - before[n][k] for k in COUNTED}
                                      for n in after}
                out[f"window_{window}"] = result
            return out
        finally:
            events.stopping.set()
            events.join(5)


# == 3. rate ===============================================================================


def _own_at(run: dict[str, Any], t: float) -> float:
    """An agent's own count at wall time `t`, interpolated from its log (0 before it
    started, its final count after it stopped)."""
    if t <= run["started"]:
        return 0.0
    if t >= run["stopped"]:
        return float(run["counted"])
    prev = (run["started"], 0.0)
    for when, own, _ in run["log"]:
        if when >= t:
            span = when - prev[0]
            return prev[1] + (own - prev[1]) * ((t - prev[0]) / span if span > 0 else 1.0)
        prev = (when, own)
    span = run["stopped"] - prev[0]
    return prev[1] + (run["counted"] - prev[1]) * ((t - prev[0]) / span if span > 0 else 1.0)


def _rate_errors(runs: list[dict[str, Any]], window_s: float
                 ) -> list[tuple[float, float, float]]:
    """(seconds since start, relative error, ms behind) of every logged total, after the
    first second. The truth at `t` is every node's count in (t - window_s, t] (the
    others' interpolated from their logs); "ms behind" is (truth - total) over the
    others' mean rate: how old, in effect, the others' shards were at that read."""
    out = []
    for i, r in enumerate(runs):
        others_per_s = sum(o["counted"] / (o["stopped"] - o["started"])
                           for j, o in enumerate(runs) if j != i)
        for when, own, total in r["log"]:
            true = sum((own if j == i else _own_at(o, when)) - _own_at(o, when - window_s)
                       for j, o in enumerate(runs))
            if when >= r["started"] + 1.0 and true > 0:
                out.append((when - r["started"], abs(total - true) / true,
                            (true - total) / others_per_s if others_per_s else 0.0))
    return out


def measure_rate_provider(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    window_s = args.rate_window_s
    with _cluster(root, args.rate_nodes, args) as cluster, _Controls(cluster.nodes) as ctls:
        _wait_peers(ctls)
        with agents_on(cluster.nodes, f"rate:{window_s}", args.reattach_s) as agents:
            runs = call_all(agents, "count", start_at=time.time() + 0.3,
                            duration_s=args.rate_s, settle_s=args.rate_settle_s,
                            sample_ms=50.0, per_s=args.rate_per_s)
    truth = sum(r["counted"] for r in runs)
    errors = _rate_errors(runs, window_s)
    stop = max(r["stopped"] for r in runs)
    exact_after, off_by = [], []
    for r in runs:  # exactness after stop needs every count still in the window
        at = next((when for when, total in r["after"] if total == truth), None)
        last = r["after"][-1][1] if r["after"] else 0
        exact_after.append(round((at - stop) * 1000, 1) if at is not None and last == truth
                           else None)
        off_by.append(last - truth)
    steady = [e for since, e, _ in errors if since >= min(window_s, args.rate_s - 1.0)]
    behind = percentiles([lag for _, _, lag in errors])
    # Once the second counting started in has left the window: until then the window's
    # oldest bucket holds only part of a second of counts, which the provider reads as
    # spread over the whole second.
    settled = [e for since, e, _ in errors if since >= window_s + 1.0]
    return {"nodes": args.rate_nodes, "duration_s": args.rate_s, "flush_ms": RATE_FLUSH_MS,
            "window_s": window_s, "per_s_asked": args.rate_per_s,
            "per_node_adds_per_s": [round(r["counted"] / args.rate_s) for r in runs],
            "total_adds_per_s": round(truth / args.rate_s), "true_total": truth,
            "worst_error_after_1s": round(max((e for _, e, _ in errors), default=0.0), 5),
            "worst_error_steady": round(max(steady), 5) if steady else None,
            "steady_samples_over_1pct": sum(e > 0.01 for e in steady),
            "steady_samples": len(steady),
            "behind_ms": behind,
            "worst_error_after_first_second_left": round(max(settled), 5) if settled else None,
            "samples_over_1pct_after_first_second_left": sum(e > 0.01 for e in settled),
            "samples_after_first_second_left": len(settled),
            "error_samples": len(errors), "exact_after_stop_ms": exact_after,
            "final_total_minus_true": off_by}


# == 4. latency at N = 20 ==================================================================


def measure_idle_latency(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    with _cluster(root, args.latency_nodes, args) as cluster, _Controls(cluster.nodes) as ctls:
        events = StateEvents(cluster.nodes)
        events.start()
        try:
            _wait_peers(ctls, 120.0)
            tally = Tally(events)
            subscribe_all(ctls, tally)
            cpu_before = _cpu_by_role(cluster.nodes)
            wall = time.monotonic()
            result = measure_latency(ctls, tally, args.latency_writes,
                                     args.latency_spacing_ms / 1000)
            wall = time.monotonic() - wall
            used = {role: t - cpu_before.get(role, 0.0)
                    for role, t in _cpu_by_role(cluster.nodes).items()}
            share = sum(used.values()) / wall / (os.cpu_count() or 1)
            return {"nodes": args.latency_nodes, **result, "cluster_cpu_share": round(share, 3),
                    "cpu_ms_per_write": {role: round(t * 1000 / args.latency_writes, 2)
                                         for role, t in sorted(used.items())}}
        finally:
            events.stopping.set()
            events.join(5)


def _cpu_by_role(nodes: list[LocalNode], agents: list[AgentProc] | None = None
                 ) -> dict[str, float]:
    """CPU seconds used so far by every node's processes, summed by role (the process
    title after the node id: supervisor, zygote, an actor's name; "agent": the SDK
    programs)."""
    out: dict[str, float] = {}
    for agent in agents or []:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(agent.proc.pid).cpu_times()
            out["agent"] = out.get("agent", 0.0) + times.user + times.system
    for node in nodes:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(node.proc.pid)  # type: ignore[union-attr]
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    title = " ".join(proc.cmdline())
                    role = title.split("] ", 1)[1].strip() if "] " in title else "supervisor"
                    times = proc.cpu_times()
                    out[role] = out.get(role, 0.0) + times.user + times.system
    return out


# == 5. memory per key (and the write rate as the table grows) =============================


def measure_memory(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    with _cluster(root, 3, args) as cluster, _Controls(cluster.nodes) as ctls:
        _wait_peers(ctls)
        time.sleep(2.0)
        _, idle = _idle_cpu_and_pss(cluster.nodes, 1.0)
        with agents_on(cluster.nodes, BULK, args.memory_reattach_s) as agents:
            agent_idle = sum(a["pss"] for a in call_all(agents, "pss")) / len(agents) / 2**20
            out: dict[str, Any] = {"nodes": 3, "idle_pss_mib": round(idle, 2),
                                   "agent_idle_pss_mib": round(agent_idle, 2), "levels": {}}
            have = 0
            for level in args.memory_keys:
                load = preload(ctls, agents, have, level, args)
                have = level
                stopped = [n.name for n in cluster.nodes if n.proc and n.proc.poll() is not None]
                if stopped or not load["ok"]:
                    out["levels"][str(level)] = {
                        "load": load, "nodes": ae_counts(ctls) if not stopped else {},
                        "error": f"nodes stopped: {stopped}" if stopped else "load incomplete",
                        "node_logs": {n.name: _warnings(n) for n in cluster.nodes}}
                    print(f"  {level} keys: FAILED: {out['levels'][str(level)]['error']}",
                          flush=True)
                    break
                time.sleep(2.0)  # a collection or two, heartbeats with fresh counters
                _, pss = _idle_cpu_and_pss(cluster.nodes, 1.0)
                agent = sum(a["pss"] for a in call_all(agents, "pss")) / len(agents) / 2**20
                row = {"load": load, "pss_mib": round(pss, 2),
                       "node_bytes_per_key": round((pss - idle) * 2**20 / level),
                       "agent_bytes_per_key": round((agent - agent_idle) * 2**20 / level)}
                if not args.memory_no_writes:
                    row["batched"] = batched_run(ctls, agents, agents[:1], level, args)
                    have = max(have, level)
                out["levels"][str(level)] = row
                print(_memory_line(level, row), flush=True)
            return out


def _warnings(node: LocalNode, lines: int = 12) -> list[str]:
    """The last WARNING / ERROR lines of a node's log (it goes with the temporary folder)."""
    with contextlib.suppress(OSError):
        text = node.log_path.read_text(errors="replace").splitlines()
        return [ln for ln in text if " WARNING " in ln or " ERROR " in ln][-lines:]
    return []


# == printing ==============================================================================


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.3f} %"


def _p(d: dict[str, Any]) -> str:
    return f"{d['p50_ms']} / {d['p99_ms']} / {d['max_ms']}"


def _batched_line(label: str, r: dict[str, Any]) -> str:
    v, share = r["verify"], r["push_share"]
    lost = "nothing lost" if v["ok"] and r["markers_complete"] else (
        f"MISSING: tables {v['table_keys']}, checksums equal {v['checksums_equal']}, "
        f"mirrors {v['mirror_keys']}, markers complete {r['markers_complete']}")
    arrivals = ", ".join(f"{n} {a['arrived_by_push']}/{a['arrived_by_repair']}"
                         f" (provider took {a.get('applied', 0)})"
                         for n, a in r["arrivals"].items())
    trouble = {k: sum(a.get(k, 0) for a in r["arrivals"].values())
               for k in ("apply_failed", "detached", "store_full")}
    if any(trouble.values()):
        arrivals += f"\n      SDK applies that timed out / detached / store full: {trouble}"
    return (f"  {label}: {r['replicated_per_s']} replicated w/s ({r['writes']} writes, "
            f"written at {r['written_per_s']} w/s, all nodes after {r['replicated_s']} s); "
            f"delay to every node p50/p99/max ms {_p(r['delay_every_node'])} "
            f"({r['samples_incomplete']} of {r['samples']} samples incomplete); "
            f"by push {'n/a' if share is None else f'{share * 100:.3f} %'}; {lost}\n"
            f"      arrived push/repair per node: {arrivals}\n"
            f"      machine CPU share by role while writing: {r.get('cpu_share')}")


def report(name: str, r: dict[str, Any]) -> str:
    if name.startswith("batched") and "paced" in r:
        return "\n".join([f"batched N={r['nodes']}{' (CURVE on)' if r['secure'] else ''}, "
                          f"{r['keys']} keys, paced, every node writing a block every "
                          f"{r['pace_tick_ms']} ms",
                          *(_batched_line(f"{run['pace']} w/s", run) for run in r["paced"])])
    if name.startswith("batched"):
        return "\n".join([f"batched N={r['nodes']}{' (CURVE on)' if r['secure'] else ''}, "
                          f"{r['keys']} keys (preloaded in {r['preload']['everywhere_s']} s)",
                          _batched_line("one writer ", r["one_writer"]),
                          _batched_line("all writers", r["all_writers"])])
    if name == "pipelined":
        lines = [f"pipelined kv.set N={r['nodes']} (one writer)"]
        for key, w in r.items():
            if key.startswith("window_"):
                ok = "all arrived" if w["all_events_arrived"] else "MISSING WRITES"
                lines.append(f"  window {w['window']}: slowest node applied "
                             f"{w['slowest_applied_in_window_per_s']} w/s, originated "
                             f"{w['originated_per_s']} w/s, backlog {w['backlog_s']} s, "
                             f"{w['acked']} writes, errors {w['errors'] or 'none'}, {ok}")
        return "\n".join(lines)
    if name == "rate":
        steady = r["worst_error_steady"]
        return (f"rate N={r['nodes']} window {r['window_s']} s: adds/s per node "
                f"{r['per_node_adds_per_s']} (total {r['total_adds_per_s']}); worst error "
                f"while counting: after 1 s {r['worst_error_after_1s'] * 100:.2f} %, steady "
                f"{'-' if steady is None else f'{steady * 100:.3f} %'} "
                f"({r['steady_samples_over_1pct']} of {r['steady_samples']} steady samples "
                f"over 1 %); others' counts behind by p50/p99/max ms "
                f"{_p(r['behind_ms'])}; once the first second left the window: worst "
                f"{_pct(r.get('worst_error_after_first_second_left'))} "
                f"({r.get('samples_over_1pct_after_first_second_left')} of "
                f"{r.get('samples_after_first_second_left')} over 1 %); exact on "
                f"every node after stop (ms): "
                f"{r['exact_after_stop_ms']} (final total - true: "
                f"{r['final_total_minus_true']})")
    if name == "latency":
        return (f"latency N={r['nodes']} idle: write to every node p50/p99/max ms "
                f"{_p(r['all_nodes'])}, per remote node {_p(r['per_remote_node'])} "
                f"({r['writes']} writes {r['spacing_ms']} ms apart, {r['incomplete']} "
                f"incomplete); cluster CPU {r['cluster_cpu_share'] * 100:.0f} % of the "
                f"machine, CPU ms per write by role {r['cpu_ms_per_write']}")
    lines = [f"memory N=3: idle node PSS {r['idle_pss_mib']} MiB "
             f"(agent {r['agent_idle_pss_mib']} MiB)"]
    lines += [_memory_line(int(level), row) for level, row in r["levels"].items()]
    return "\n".join(lines)


def _memory_line(level: int, row: dict[str, Any]) -> str:
    if "error" in row:
        logs = "".join(f"\n      {name}: {ln}" for name, lns in row.get("node_logs", {}).items()
                       for ln in lns[-4:])
        return f"  {level} keys: FAILED: {row['error']}{logs}"
    line = (f"  {level} keys: node PSS {row['pss_mib']} MiB, {row['node_bytes_per_key']} "
            f"B/key per node (+ the SDK program's copy {row['agent_bytes_per_key']} B/key); "
            f"loaded in {row['load']['everywhere_s']} s")
    if "batched" in row:
        line += "\n" + _batched_line("one writer ", row["batched"])
    return line


# == driving it ============================================================================


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="batched,pipelined,rate,latency,memory",
                        help="scenarios to run (comma-separated)")
    parser.add_argument("--nodes", type=_ints, default=[3, 5, 10], help="batched: sizes")
    parser.add_argument("--keys", type=int, default=10_000, help="batched: preloaded keys")
    parser.add_argument("--writes", type=int, default=100_000, help="batched: writes per run")
    parser.add_argument("--sample-every", type=int, default=500,
                        help="batched: every n-th write is timed to every node")
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="batched: longest wait for the marker / a preload")
    parser.add_argument("--verify-s", type=float, default=30.0,
                        help="batched: longest wait for every table to match")
    parser.add_argument("--secure", action="store_true", help="CURVE on (batched only)")
    parser.add_argument("--pace", type=_ints, default=[],
                        help="batched: paced runs instead, at these total writes/s "
                             "(every node writing)")
    parser.add_argument("--pace-tick-ms", type=float, default=20.0,
                        help="paced: a writer writes what is due this often (the rate "
                             "provider's flush_ms default)")
    parser.add_argument("--pipelined-nodes", type=int, default=5)
    parser.add_argument("--windows", type=_ints, default=[32, 128],
                        help="pipelined: requests in flight")
    parser.add_argument("--pipelined-s", type=float, default=8.0, help="pipelined: seconds")
    parser.add_argument("--rate-nodes", type=int, default=3)
    parser.add_argument("--rate-s", type=float, default=15.0, help="rate: seconds of counting")
    parser.add_argument("--rate-settle-s", type=float, default=1.5,
                        help="rate: how long totals are watched after counting stops")
    parser.add_argument("--rate-per-s", type=float, default=RATE_PER_S,
                        help="rate: adds/s per node (0: as fast as one thread can)")
    parser.add_argument("--rate-window-s", type=int, default=RATE_WINDOW_S,
                        help="rate: the counters' window_s (600: nothing leaves it)")
    parser.add_argument("--latency-nodes", type=int, default=20)
    parser.add_argument("--latency-writes", type=int, default=200)
    parser.add_argument("--latency-spacing-ms", type=float, default=20.0,
                        help="latency: time between two writes' starts")
    parser.add_argument("--memory-keys", type=_ints, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--memory-reattach-s", type=float, default=60.0,
                        help="memory: SDK renewal period (each ships the whole table)")
    parser.add_argument("--memory-no-writes", action="store_true",
                        help="memory: skip the batched run at each size")
    parser.add_argument("--reattach-s", type=float, default=DEFAULT_REATTACH_S,
                        help="SDK agents: registration renewal period")
    parser.add_argument("--profile", default="lan")
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--agent", help=argparse.SUPPRESS)
    parser.add_argument("--agent-kind", default=BULK, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    known = {"batched", "pipelined", "rate", "latency", "memory"}
    args.only = [s for s in args.only.split(",") if s]
    bad = sorted(set(args.only) - known)
    if bad:
        parser.error(f"unknown scenario {bad[0]} (known: {', '.join(sorted(known))})")
    if args.writes < 1 or args.keys < 1 or args.sample_every < 1:
        parser.error("--writes, --keys and --sample-every must be at least 1")
    return args


def scenarios(args: argparse.Namespace, root: Path
              ) -> Iterator[tuple[str, Callable[[], dict[str, Any]]]]:
    for n in args.nodes if "batched" in args.only else []:
        yield f"batched_n{n}", functools.partial(measure_batched, root / f"b{n}", n, args,
                                                 args.secure)
    if "pipelined" in args.only:
        yield "pipelined", lambda: measure_pipelined(root / "p", args)
    if "rate" in args.only:
        yield "rate", lambda: measure_rate_provider(root / "r", args)
    if "latency" in args.only:
        yield "latency", lambda: measure_idle_latency(root / "l", args)
    if "memory" in args.only:
        yield "memory", lambda: measure_memory(root / "m", args)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.agent:
        agent_main(args.agent, args.agent_kind, args.reattach_s)
        return
    # A TERM (e.g. from `timeout`) unwinds like Ctrl-C, so every node is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: dict[str, Any] = {}
    meta: dict[str, Any] = {"command": "python bench/throughput.py " + " ".join(
        sys.argv[1:] if argv is None else argv), "cpus": os.cpu_count(),
        "loadavg_before": os.getloadavg()}
    print(f"load average before: {' '.join(f'{x:.2f}' for x in meta['loadavg_before'])}",
          flush=True)
    started = time.monotonic()
    random.seed(0)
    with tempfile.TemporaryDirectory(prefix="lbc-tput-") as tmp:
        for name, run in scenarios(args, Path(tmp)):
            t0 = time.monotonic()
            try:
                results[name] = run()
            except (RuntimeError, TimeoutError) as exc:  # one scenario's failure is reported
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
                print(f"{name}: FAILED: {exc}", flush=True)
            else:
                print(report(name, results[name]), flush=True)
            results[name]["elapsed_s"] = round(time.monotonic() - t0, 1)
            meta.update(loadavg_after=os.getloadavg(),
                        elapsed_s=round(time.monotonic() - started, 1))
            if args.json:  # after every scenario, so an interrupted run keeps its figures
                Path(args.json).write_text(json.dumps({"meta": meta, "results": results},
                                                      indent=2))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"{round(time.monotonic() - started)} s")


if __name__ == "__main__":
    main()
