"""Replicated-state benchmark on real processes over 127.0.0.1.

    python bench/state_bench.py [--nodes 3,5,10] [--json FILE]

For each cluster size it measures, with the built-in kv provider:
- propagation latency: single writes spaced apart on a rotating origin node,
  from just before ``kv.set`` is sent to ``state.changed`` on each node (event
  timestamps: same machine, same clock), for "every node has it" and per node;
- sustained write rate: pipelined ``kv.set`` for a while from one node, then
  from every node at once; the rate the slowest node applied them, the backlog
  left when writing stops, and whether every node holds every write (counted
  from events, from each node's key counts, and a ``kv.get`` sample);
- idle anti-entropy traffic per node (the actor's ``bytes_sent`` / ``sent``
  counters) with 10 and with 10,000 keys in sync, on a fresh cluster.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import zmq

from actors.testing.localcluster import LocalCluster, LocalNode
from transport.codec import DecodeError, pack, unpack_untrusted
from transport.rpc import RpcError, RpcTimeout, parse_reply_untrusted, recv_frames
from transport.sockets import make_socket

REPLY_GRACE_S = 15.0  # after the last send: a request still unanswered counts as lost


# -- talking to nodes ----------------------------------------------------------------


class Control:
    """One DEALER on a node's control socket, with any number of requests in flight."""

    def __init__(self, ctx: zmq.Context, node: LocalNode) -> None:
        self.node = node
        self.sock = make_socket(ctx, zmq.DEALER, hwm=100_000)
        self.sock.connect(node.control)
        self.ids = itertools.count(1)

    def send(self, op: str, args: dict[str, Any]) -> int:
        rid = next(self.ids)
        self.sock.send(pack({"id": rid, "op": op, "args": args}))
        return rid

    def replies(self) -> list[tuple[int, RpcError | None]]:
        """Every reply already here, as (id, error or None); never blocks."""
        out = []
        while (frames := recv_frames(self.sock)) is not None:
            rid, _, error = _parse_reply(frames[-1])
            if rid is not None:
                out.append((rid, error))
        return out

    def call(self, op: str, args: dict[str, Any] | None = None, timeout_s: float = 10.0) -> Any:
        """Synchronous request; replies to older requests are skipped by id.

        Raises: RpcError from the node, RpcTimeout after `timeout_s`.
        """
        rid = self.send(op, args or {})
        deadline = time.monotonic() + timeout_s
        while self.sock.poll(max(1, int((deadline - time.monotonic()) * 1000)), zmq.POLLIN):
            got, result, error = _parse_reply(self.sock.recv())
            if got == rid:
                if error is not None:
                    raise error
                return result
            if time.monotonic() >= deadline:
                break
        raise RpcTimeout(op, timeout_s)

    def actors(self) -> dict[str, dict[str, Any]]:
        """Each actor's `status` row by name (counters as of its last heartbeat, <= 0.5 s old)."""
        return {row["name"]: row for row in self.call("status")["actors"]}


def _unpack_or_none(frame: bytes) -> Any:
    try:
        return unpack_untrusted(frame)
    except DecodeError:
        return None


def _event_or_none(frame: bytes) -> Any:
    """An event from one of the benchmark's own nodes, decoded without the checks an
    untrusted peer gets: this thread sees every event of every node, and its CPU is
    taken from the same cores the nodes it measures run on."""
    try:
        return msgpack.unpackb(frame, raw=False)
    except ValueError:
        return None


def _parse_reply(frame: bytes) -> tuple[int | None, Any, RpcError | None]:
    """(id, result, error) of a reply; the id is None only for garbage."""
    try:
        rid, result = parse_reply_untrusted(frame)
        return rid, result, None
    except RpcError as exc:
        body = _unpack_or_none(frame)
        got = body.get("id") if isinstance(body, dict) else None
        return (got if isinstance(got, int) else None), None, exc


def _wait(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step_s)
    return False


def node_view(ctl: Control) -> dict[str, Any]:
    """Key counts of the anti-entropy mirror and the kv provider, and the counters
    that explain a difference between them."""
    rows = ctl.actors()
    ae, kv = rows.get("anti_entropy", {}), rows.get("provider.kv", {})
    ae_counters, ae_status = ae.get("counters", {}), ae.get("status", {})
    return {"node": ctl.node.name,
            "mirror_keys": ae_status.get("keys", -1),
            "provider_keys": kv.get("status", {}).get("keys", -1),
            "apply_failed": ae_counters.get("apply_failed", 0),
            "send_queue_full": ae_counters.get("send_queue_full", 0),
            "provider_local_writes": kv.get("counters", {}).get("local_writes", 0),
            "provider_local_deferred": kv.get("counters", {}).get("local_deferred", 0),
            "mirror_local_changes": ae_status.get("core", {}).get("local_changes", 0),
            "restarts": sum(int(r.get("restarts", 0)) for r in rows.values())}


def _all_hold(ctls: list[Control], keys: int, field_names: tuple[str, ...]) -> bool:
    """Every node holds exactly `keys` keys in each of `field_names` (of node_view)."""
    return all(view[f] == keys for view in map(node_view, ctls) for f in field_names)


BOTH = ("mirror_keys", "provider_keys")


def _wait_peers(ctls: list[Control], timeout_s: float = 60.0) -> bool:
    """Until every anti-entropy actor knows every other node (fast push needs peers)."""
    want = len(ctls) - 1
    return _wait(lambda: all(c.actors()["anti_entropy"]["status"].get("peers") == want
                             for c in ctls), timeout_s, 0.25)


# -- events ----------------------------------------------------------------------------


class StateEvents(threading.Thread):
    """Collects every node's `state.changed` events in its own thread.

    The writer never waits on it, and latencies come from the events' own
    timestamps, so when this thread reads an event does not matter.
    """

    def __init__(self, nodes: list[LocalNode]) -> None:
        super().__init__(daemon=True)
        self.endpoints = [n.events for n in nodes]
        self.seen: list[tuple[str, str, float]] = []  # (node, key, timestamp); append-only
        self.stopping = threading.Event()

    def run(self) -> None:
        ctx = zmq.Context()
        sub = make_socket(ctx, zmq.SUB, hwm=2_000_000)
        sub.setsockopt(zmq.SUBSCRIBE, b"state.changed")
        for endpoint in self.endpoints:
            sub.connect(endpoint)
        try:
            while not self.stopping.is_set():
                if not sub.poll(50, zmq.POLLIN):
                    continue
                for _ in range(10_000):
                    if (frames := recv_frames(sub)) is None:
                        break
                    event = _event_or_none(frames[-1])
                    if isinstance(event, dict) and isinstance(event.get("data"), dict):
                        self.seen.append((event["source"], event["data"]["key"],
                                          event["timestamp"]))
        finally:
            sub.close(linger=0)
            ctx.term()


@dataclass
class Tally:
    """Which node has reported which key, by tag (the key's text before the first '.')."""

    events: StateEvents
    first: dict[str, dict[str, float]] = field(default_factory=dict)  # tag|node -> key -> ts
    cursor: int = 0

    def update(self) -> None:
        new = self.events.seen[self.cursor:]
        self.cursor += len(new)
        for node, key, ts in new:
            self.first.setdefault(f"{key.partition('.')[0]}|{node}", {}).setdefault(key, ts)

    def of(self, tag: str, node: str) -> dict[str, float]:
        return self.first.get(f"{tag}|{node}", {})

    def wait_complete(self, tag: str, nodes: list[str], keys: int, timeout_s: float,
                      stall_s: float = 10.0) -> bool:
        """Until every node reported `keys` keys of `tag`; gives up at `timeout_s`, or
        sooner when no new event arrived for `stall_s` (writes that will never come)."""
        deadline = time.monotonic() + timeout_s
        progress_at, seen = time.monotonic(), -1
        while time.monotonic() < min(deadline, progress_at + stall_s):
            self.update()
            if all(len(self.of(tag, n)) >= keys for n in nodes):
                return True
            if self.cursor != seen:
                progress_at, seen = time.monotonic(), self.cursor
            time.sleep(0.05)
        return False


def subscribe_all(ctls: list[Control], tally: Tally, tries: int = 20) -> int:
    """Until a probe write is reported by every node: then every SUB link is live.

    Returns the number of probe keys written.
    """
    names = [c.node.name for c in ctls]
    for i in range(tries):
        ctls[0].call("kv.set", {"key": f"probe.{i}", "value": i})
        if tally.wait_complete("probe", names, i + 1, 1.0):
            return i + 1
    raise TimeoutError("state.changed never arrived from every node")


# -- 1. propagation latency ------------------------------------------------------------


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50, p99, max in milliseconds (nearest rank)."""
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None, "n": 0}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p * len(ordered)) - 1)] * 1000, 2)
    return {"p50_ms": rank(0.5), "p99_ms": rank(0.99), "max_ms": rank(1.0), "n": len(ordered)}


def measure_latency(ctls: list[Control], tally: Tally, writes: int,
                    spacing_s: float) -> dict[str, Any]:
    sent: list[tuple[str, str, float]] = []  # key, origin, time just before sending
    next_at = time.monotonic()
    for i in range(writes):
        ctl = ctls[i % len(ctls)]
        key = f"lat.{i}"
        t0 = time.time()
        ctl.call("kv.set", {"key": key, "value": i})
        sent.append((key, ctl.node.name, t0))
        next_at += spacing_s
        time.sleep(max(0.0, next_at - time.monotonic()))
    names = [c.node.name for c in ctls]
    tally.wait_complete("lat", names, writes, 10.0)
    every: list[float] = []
    remote: list[float] = []
    origin: list[float] = []
    incomplete = 0
    for key, source, t0 in sent:
        got = {n: tally.of("lat", n)[key] for n in names if key in tally.of("lat", n)}
        if len(got) < len(names):
            incomplete += 1
            continue
        every.append(max(got.values()) - t0)
        remote += [ts - t0 for n, ts in got.items() if n != source]
        origin.append(got[source] - t0)
    return {"writes": writes, "spacing_ms": spacing_s * 1000, "incomplete": incomplete,
            "all_nodes": percentiles(every), "per_remote_node": percentiles(remote),
            "origin_node": percentiles(origin)}


# -- 2. sustained writes -----------------------------------------------------------------


@dataclass
class Pumped:
    acked: list[str] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    started: float = 0.0  # wall clock, comparable with event timestamps
    stopped: float = 0.0  # last reply
    last_send: float = 0.0


def pump(ctls: list[Control], tag: str, window: int, duration_s: float | None = None,
         total: int | None = None) -> Pumped:
    """Pipelined kv.set on every client (`window` in flight each) for a time or a count."""
    out = Pumped(started=time.time())
    inflight: list[dict[int, str]] = [{} for _ in ctls]
    counters = [itertools.count() for _ in ctls]
    poller = zmq.Poller()
    for ctl in ctls:
        poller.register(ctl.sock, zmq.POLLIN)
    end = time.monotonic() + (duration_s if duration_s is not None else 1e9)
    sent, give_up = 0, math.inf
    while True:
        sending = time.monotonic() < end and (total is None or sent < total)
        if not sending and give_up == math.inf:
            out.last_send, give_up = time.time(), time.monotonic() + REPLY_GRACE_S
        if not sending and (not any(inflight) or time.monotonic() > give_up):
            break
        for ctl, pending, ids in zip(ctls, inflight, counters, strict=True):
            while sending and len(pending) < window and (total is None or sent < total):
                key = f"{tag}.{ctl.node.name}.{next(ids)}"
                pending[ctl.send("kv.set", {"key": key, "value": sent})] = key
                sent += 1
        poller.poll(10)
        for ctl, pending in zip(ctls, inflight, strict=True):
            for rid, error in ctl.replies():
                key = pending.pop(rid, "")
                if error is None and key:
                    out.acked.append(key)
                    out.stopped = time.time()
                elif error is not None:
                    out.errors[error.code] += 1
    out.errors["no_reply"] += sum(len(p) for p in inflight)
    return out


def verify_everywhere(ctls: list[Control], expected_keys: int, sample: list[str]
                      ) -> dict[str, Any]:
    """Each node's key counts (mirror and provider) and a kv.get of a sample of keys."""
    _wait(functools.partial(_all_hold, ctls, expected_keys, BOTH), 5.0, 0.5)
    views = [node_view(ctl) for ctl in ctls]
    missing = 0
    for ctl in ctls:
        for key in sample:
            if not ctl.call("kv.get", {"key": key})["found"]:
                missing += 1
    held = all(v[f] == expected_keys for v in views for f in BOTH)
    return {"expected_keys": expected_keys, "nodes": views, "sample_gets": len(sample) * len(ctls),
            "sample_missing": missing, "ok": missing == 0 and held}


def arrivals(seen: dict[str, float], pumped: Pumped) -> dict[str, Any]:
    """How one node took the writes: its count, rates and the acknowledged writes it lacks."""
    last = max(seen.values(), default=pumped.started)
    in_window = sum(1 for ts in seen.values() if ts <= pumped.last_send)
    never = [k for k in pumped.acked if k not in seen]
    return {"applied": len(seen), "never_applied": len(never),
            "never_applied_examples": never[:3], "last_at_s": round(last - pumped.started, 3),
            "applied_per_s": round(len(seen) / max(last - pumped.started, 1e-9)),
            "applied_in_window_per_s": round(in_window / (pumped.last_send - pumped.started))}


def measure_rate(ctls: list[Control], writers: list[Control], tally: Tally, tag: str,
                 duration_s: float, window: int) -> tuple[dict[str, Any], list[str]]:
    names = [c.node.name for c in ctls]
    pumped = pump(writers, tag, window, duration_s=duration_s)
    arrived = tally.wait_complete(tag, names, len(pumped.acked), 120.0)
    per_node = {name: arrivals(tally.of(tag, name), pumped) for name in names}
    slowest = min(per_node, key=lambda n: per_node[n]["applied_in_window_per_s"])
    last_everywhere = max(v["last_at_s"] for v in per_node.values()) + pumped.started
    result = {
        "writers": len(writers), "window": window, "duration_s": duration_s,
        "acked": len(pumped.acked), "errors": dict(+pumped.errors),
        "originated_per_s": round(len(pumped.acked) / max(pumped.stopped - pumped.started,
                                                          1e-9)),
        "slowest_node": slowest,
        "slowest_applied_in_window_per_s": per_node[slowest]["applied_in_window_per_s"],
        "slowest_applied_per_s": min(v["applied_per_s"] for v in per_node.values()),
        "backlog_s": round(max(0.0, last_everywhere - pumped.stopped), 3),
        "all_events_arrived": arrived, "per_node": per_node,
    }
    return result, pumped.acked


# -- 3. idle traffic -----------------------------------------------------------------------


def ae_traffic(ctls: list[Control]) -> list[tuple[int, int]]:
    return [(int(c["counters"].get("bytes_sent", 0)), int(c["counters"].get("sent", 0)))
            for c in (ctl.actors()["anti_entropy"] for ctl in ctls)]


def idle_traffic(ctls: list[Control], window_s: float) -> dict[str, Any]:
    t0, before = time.monotonic(), ae_traffic(ctls)
    time.sleep(window_s)
    elapsed, after = time.monotonic() - t0, ae_traffic(ctls)
    rates = [((b1 - b0) / elapsed, (m1 - m0) / elapsed)
             for (b0, m0), (b1, m1) in zip(before, after, strict=True)]
    return {"window_s": round(elapsed, 2),
            "bytes_per_node_s": round(sum(r[0] for r in rates) / len(rates), 1),
            "max_bytes_node_s": round(max(r[0] for r in rates), 1),
            "msgs_per_node_s": round(sum(r[1] for r in rates) / len(rates), 2)}


def load_keys(ctls: list[Control], tag: str, total: int, window: int) -> dict[str, Any]:
    """Load `total` keys spread over every node; ends when every node holds them all."""
    t0 = time.monotonic()
    pumped = pump(ctls, tag, window, total=total)
    written = time.monotonic() - t0
    return {"acked": len(pumped.acked), "errors": dict(+pumped.errors),
            "write_s": round(written, 2), "written_per_s": round(len(pumped.acked) / written)}


def _cluster(root: Path, n: int, profile: str, args: argparse.Namespace) -> LocalCluster:
    cluster = LocalCluster(root, n, profile=profile)
    if args.secure:  # CURVE between the nodes, to measure what it costs
        cluster.secure(root / "keys")
        for node in cluster.nodes:  # events over ipc: a tcp events socket would need keys
            node.events = f"ipc://{node.folder / 'events.sock'}"
    return cluster


def measure_idle(root: Path, n: int, profile: str, args: argparse.Namespace) -> dict[str, Any]:
    with _cluster(root, n, profile, args) as cluster, _Controls(cluster.nodes) as ctls:
        _wait_peers(ctls)
        out: dict[str, Any] = {}
        for keys, tag in ((args.small_keys, "few"), (args.keys, "bulk")):
            have = node_view(ctls[0])["mirror_keys"]
            loaded = load_keys(ctls, tag, keys - have, args.window)
            t0 = time.monotonic()
            # Idle traffic depends on the mirrors; the providers are checked apart.
            synced = _wait(functools.partial(_all_hold, ctls, keys, ("mirror_keys",)), 60, 0.5)
            loaded["in_sync_after_write_s"] = round(time.monotonic() - t0, 2)
            time.sleep(args.settle)
            views = [node_view(ctl) for ctl in ctls]
            out[str(keys)] = {"load": loaded, "mirrors_in_sync": synced,
                              "providers_hold_all": all(v["provider_keys"] == keys for v in views),
                              "nodes": views, **idle_traffic(ctls, args.idle)}
        return out


# -- driving it ------------------------------------------------------------------------------


class _Controls:
    """One context and one Control per node, closed however the block ends."""

    def __init__(self, nodes: list[LocalNode]) -> None:
        self.ctx = zmq.Context()
        self.ctls = [Control(self.ctx, node) for node in nodes]

    def __enter__(self) -> list[Control]:
        return self.ctls

    def __exit__(self, *exc: object) -> None:
        self.ctx.destroy(linger=0)


def measure_writes(root: Path, n: int, profile: str, args: argparse.Namespace) -> dict[str, Any]:
    with _cluster(root, n, profile, args) as cluster, _Controls(cluster.nodes) as ctls:
        events = StateEvents(cluster.nodes)
        events.start()
        try:
            _wait_peers(ctls)
            tally = Tally(events)
            written = subscribe_all(ctls, tally)
            latency = measure_latency(ctls, tally, args.writes, args.spacing_ms / 1000)
            written += args.writes
            rates = {}
            for label, writers in (("one_writer", ctls[:1]), ("all_writers", ctls)):
                rates[label], keys = measure_rate(ctls, writers, tally, label.replace("_", ""),
                                                  args.duration, args.window)
                written += len(keys)
                rates[label]["verify"] = verify_everywhere(
                    ctls, written, random.Random(n).sample(keys, min(20, len(keys))))
            return {"latency": latency, **rates}
        finally:
            events.stopping.set()
            events.join(5)


def run_size(n: int, profile: str, root: Path, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"nodes": n, "profile": profile, "secure": args.secure}
    result.update(measure_writes(root / f"w{n}", n, profile, args))
    if not args.skip_idle:
        result["idle"] = measure_idle(root / f"i{n}", n, profile, args)
    return result


def _ms(p: dict[str, Any]) -> str:
    return f"{p['p50_ms']} / {p['p99_ms']} / {p['max_ms']}"


def _rate(r: dict[str, Any]) -> str:
    ok = "all arrived" if r["verify"]["ok"] and r["all_events_arrived"] else "MISSING WRITES"
    errors = f", errors {r['errors']}" if r["errors"] else ""
    line = (f"{r['originated_per_s']} w/s originated, slowest node applied "
            f"{r['slowest_applied_in_window_per_s']} w/s, backlog {r['backlog_s']} s, "
            f"{r['acked']} writes, {ok}{errors}")
    if ok != "all arrived":
        line += "\n" + _missing(r)
    return line


def _missing(r: dict[str, Any]) -> str:
    """Per node: acknowledged writes it never applied, and the counters that explain it."""
    views = {v["node"]: v for v in r["verify"]["nodes"]}
    parts = []
    for name, row in r["per_node"].items():
        v = views[name]
        parts.append(f"    {name}: never applied {row['never_applied']} "
                     f"(e.g. {', '.join(row['never_applied_examples']) or '-'}); "
                     f"keys mirror {v['mirror_keys']} / provider {v['provider_keys']} of "
                     f"{r['verify']['expected_keys']}; apply_failed {v['apply_failed']}, "
                     f"send_queue_full {v['send_queue_full']}, local_deferred "
                     f"{v.get('provider_local_deferred', 0)}, restarts {v['restarts']}")
    return "\n".join(parts)


def _fmt(result: dict[str, Any]) -> str:
    lat, idle = result["latency"], result.get("idle", {})
    lines = [f"N={result['nodes']}" + (" (CURVE on)" if result.get("secure") else ""),
             f"  latency p50/p99/max ms: all nodes {_ms(lat['all_nodes'])} | "
             f"per remote node {_ms(lat['per_remote_node'])} | origin {_ms(lat['origin_node'])}"
             f" ({lat['writes']} writes, {lat['incomplete']} incomplete)",
             f"  one writer:  {_rate(result['one_writer'])}",
             f"  all writers: {_rate(result['all_writers'])}"]
    for keys, row in idle.items():
        lines.append(f"  idle, {keys} keys: {row['bytes_per_node_s']} B/s "
                     f"(max {row['max_bytes_node_s']}), {row['msgs_per_node_s']} msg/s per node;"
                     f" loaded at {row['load']['written_per_s']} w/s, mirrors in sync "
                     f"{row['load']['in_sync_after_write_s']} s after")
        if not (row["mirrors_in_sync"] and row["providers_hold_all"]):
            held = [(v["mirror_keys"], v["provider_keys"]) for v in row["nodes"]]
            lines.append(f"    NOT IN SYNC: (mirror, provider) keys per node {held}, "
                         f"apply_failed {[v['apply_failed'] for v in row['nodes']]}")
    return "\n".join(lines)


def _table(results: Iterable[dict[str, Any]]) -> str:
    head = (f"{'N':>3} {'all p50':>8} {'all p99':>8} {'all max':>8} {'node p99':>8} "
            f"{'1w orig':>8} {'1w slow':>8} {'1w lag':>7} {'Nw orig':>8} {'Nw slow':>8} "
            f"{'Nw lag':>7} {'idle10':>8} {'idle10k':>8}")
    rows = [head, "    (latency ms; rates writes/s; lag s; idle anti-entropy B/s per node)"]
    for r in results:
        lat, one, all_, idle = r["latency"], r["one_writer"], r["all_writers"], r.get("idle")
        small, big = ((idle[k]["bytes_per_node_s"] for k in idle) if idle else ("-", "-"))
        rows.append(
            f"{r['nodes']:>3} {lat['all_nodes']['p50_ms']:>8} {lat['all_nodes']['p99_ms']:>8} "
            f"{lat['all_nodes']['max_ms']:>8} {lat['per_remote_node']['p99_ms']:>8} "
            f"{one['originated_per_s']:>8} {one['slowest_applied_in_window_per_s']:>8} "
            f"{one['backlog_s']:>7} {all_['originated_per_s']:>8} "
            f"{all_['slowest_applied_in_window_per_s']:>8} {all_['backlog_s']:>7} "
            f"{small:>8} {big:>8}")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", default="3,5,10")
    parser.add_argument("--profile", default="lan")
    parser.add_argument("--writes", type=int, default=200, help="latency: writes")
    parser.add_argument("--spacing-ms", type=float, default=20.0, help="latency: between writes")
    parser.add_argument("--duration", type=float, default=10.0, help="rate: seconds of writing")
    parser.add_argument("--window", type=int, default=32, help="requests in flight per writer")
    parser.add_argument("--keys", type=int, default=10_000, help="idle: the large key count")
    parser.add_argument("--small-keys", type=int, default=10, help="idle: the small key count")
    parser.add_argument("--idle", type=float, default=20.0, help="idle: seconds sampled")
    parser.add_argument("--settle", type=float, default=3.0, help="idle: wait after in sync")
    parser.add_argument("--secure", action="store_true", help="CURVE on between the nodes")
    parser.add_argument("--skip-idle", action="store_true", help="only latency and rates")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    # A TERM (e.g. from `timeout`) unwinds like Ctrl-C, so every node is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    results: list[dict[str, Any]] = []
    started, load_before = time.monotonic(), os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="lbc-bench-") as tmp:
        for n in (int(x) for x in args.nodes.split(",")):
            results.append(run_size(n, args.profile, Path(tmp), args))
            print(_fmt(results[-1]), flush=True)
            if args.json:  # after every size, so an interrupted run keeps what it measured
                meta = {"command": "python bench/state_bench.py " + " ".join(sys.argv[1:]),
                        "cpus": os.cpu_count(), "loadavg_before": load_before,
                        "loadavg_after": os.getloadavg(),
                        "elapsed_s": round(time.monotonic() - started, 1)}
                Path(args.json).write_text(json.dumps({"meta": meta, "results": results},
                                                      indent=2))
    print(_table(results))


if __name__ == "__main__":
    main()
