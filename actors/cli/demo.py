"""`lbcluster demo`: a real local cluster, a short story, and its live events.

N nodes (each a supervisor with its actors) start on free loopback ports in a
temporary folder. The demo then writes a key on one node, kills an actor
with SIGKILL on another (the supervisor restarts it), and, with three nodes
or more, kills a whole node, so every kind of event shows up; afterwards it
keeps writing a counter. It ends after --duration seconds or at Ctrl-C with
a members table, and removes everything it made.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zmq

from actors.cli import render
from actors.sdk.client import NodeClient
from actors.testing.localcluster import LocalCluster, LocalNode
from transport.codec import DecodeError, unpack_untrusted
from transport.rpc import RpcError
from transport.sockets import make_socket


def _say(text: str) -> None:
    print(f"\033[1m--- {text}\033[0m" if sys.stdout.isatty() else f"--- {text}", flush=True)


def _client(node: LocalNode) -> NodeClient:
    """A client that fails at once: the demo goes on when a node is down."""
    return NodeClient(control=node.control, events=node.events, retry_s=0.0)


def _story(cluster: LocalCluster) -> list[tuple[float, str, Callable[[], Any]]]:
    nodes = cluster.nodes
    steps: list[tuple[float, str, Callable[[], Any]]] = [
        (1.0, f"writing greeting=hello on {nodes[0].name}",
         lambda: _on(nodes[0], lambda c: c.kv_set("greeting", "hello"))),
        (2.5, f"kill -9 of the kv provider actor on {nodes[-1].name}",
         lambda: _on(nodes[-1], lambda c: _kill_actor(c, "provider.kv"))),
    ]
    if len(nodes) >= 3:
        steps.append((5.0, f"kill -9 of the whole node {nodes[-1].name}",
                       nodes[-1].kill_group))
    return steps


def _on(node: LocalNode, action: Callable[[NodeClient], Any]) -> Any:
    with _client(node) as client:
        return action(client)


def _kill_actor(client: NodeClient, actor: str) -> None:
    for row in client.snapshot()["actors"]:
        if row["name"] == actor and row["pid"]:
            os.kill(row["pid"], signal.SIGKILL)


def run_demo(count: int, duration: float | None) -> int:
    if count < 1:
        print("lbcluster: demo: --nodes must be at least 1", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="lbc-demo-"))
    cluster = LocalCluster(root, count, profile="local")
    ctx = zmq.Context()
    sub = make_socket(ctx, zmq.SUB, hwm=100000)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    for node in cluster.nodes:
        sub.connect(node.events)
    _say(f"starting {count} nodes in {root}")
    try:
        cluster.start()
        _say("cluster up; events follow (Ctrl-C to stop)")
        _loop(cluster, sub, duration)
        _members(cluster)
        return 0
    except KeyboardInterrupt:
        _members(cluster)
        return 0
    except (RuntimeError, TimeoutError) as exc:
        print(f"lbcluster: demo: {exc}", file=sys.stderr)
        return 1
    finally:
        _say("stopping")
        sub.close(linger=0)
        ctx.term()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def _loop(cluster: LocalCluster, sub: zmq.Socket, duration: float | None) -> None:
    start = time.monotonic()
    steps = _story(cluster)
    counter, next_write = 0, start + 8.0
    colour = sys.stdout.isatty()
    while duration is None or time.monotonic() - start < duration:
        if sub.poll(100, zmq.POLLIN):
            with contextlib.suppress(DecodeError):
                event = unpack_untrusted(sub.recv_multipart()[-1])
                if isinstance(event, dict):
                    print(render.format_event(event, colour), flush=True)
        elapsed = time.monotonic() - start
        while steps and steps[0][0] <= elapsed:
            _, text, action = steps.pop(0)
            _say(text)
            with contextlib.suppress(RpcError, OSError):
                action()
        if time.monotonic() >= next_write:
            counter += 1
            next_write += 3.0
            with contextlib.suppress(RpcError, OSError), _client(cluster.nodes[0]) as client:
                client.kv_set("counter", counter)


def _members(cluster: LocalCluster) -> None:
    for node in cluster.nodes:
        with contextlib.suppress(RpcError, OSError):
            if node.proc is None or node.proc.poll() is not None:
                continue
            rows = _on(node, NodeClient.members)
            _say(f"members as {node.name} sees them")
            print(render.table(rows, render.MEMBER_COLUMNS[:-1]), flush=True)
            return
