"""`NodeClient`: calls and events of one running node (see the package docstring)."""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import zmq

from actors.node.config import Config, load_config
from transport.codec import DecodeError, unpack_untrusted
from transport.errors import ProtocolError
from transport.rpc import RpcError, RpcTimeout, call
from transport.security import secure_subscriber
from transport.sockets import make_socket, unix_socket_listening

RETRY_POLL_S = 0.05
SUBSCRIBE_SETTLE_S = 0.2  # a new SUB needs a moment before the publisher sends it anything
RESTART_CHECK_S = 1.0  # how often an event stream asks whether the node was restarted


class NodeUnavailable(RpcError):
    """Nothing answers on the node's control socket (not running, or it went away)."""

    def __init__(self, control: str, detail: str) -> None:
        super().__init__("node_unavailable", f"{detail} (control socket {control})")
        self.control = control


class NodeClient:
    """Calls to one running node. Safe to share between threads (see the package docstring).

    Args:
        config: the node's config file; its `[local]` section names the sockets.
        control: the control endpoint (``ipc://...``) when there is no config file.
        events: the events endpoint; by default from the config, else asked of the node.
            With [security] on, give the config file: events then use its CURVE keys.
        timeout_s: how long a sent request may wait for its reply.
        retry_s: how long a call waits for a node that is not (yet) listening.

    Raises:
        actors.node.config.ConfigError: the config file is unreadable or invalid.
    """

    def __init__(self, config: str | Path | None = None, *, control: str | None = None,
                 events: str | None = None, timeout_s: float = 5.0,
                 retry_s: float = 2.0) -> None:
        self.config: Config | None = None
        if config is not None:
            self.config = load_config(config)
            control, events = self.config.local.control, events or self.config.local.events
        if control is None:
            raise ValueError("NodeClient needs a config file or a control endpoint")
        self.control = control
        self._events = events
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.ctx = zmq.Context()
        self._node_id: str | None = None

    # -- calls -------------------------------------------------------------------
    def call(self, op: str, args: dict[str, Any] | None = None,
             timeout_s: float | None = None) -> Any:
        """Any control operation; returns its result.

        Raises:
            NodeUnavailable: nothing listened within `retry_s`, or the node went
                away while the request was out.
            RpcTimeout: the node is up but did not answer within `timeout_s`.
            RpcError: the node refused the request (`.code`, `.message`), or code
                "unencodable": `args` holds what msgpack cannot carry (an integer
                beyond 64 bits, a foreign type); nothing was sent.
        """
        self.wait_listening()
        try:
            return call(self.ctx, self.control, op, args, timeout_s or self.timeout_s)
        except ProtocolError:
            raise RpcError("unencodable", f"{op}: arguments cannot be encoded") from None
        except RpcTimeout:
            if not self.listening():
                raise NodeUnavailable(self.control, "node stopped answering") from None
            raise

    def listening(self) -> bool:
        """True when a process accepts connections on the control socket."""
        if not self.control.startswith("ipc://"):
            return True  # not a socket file: nothing to check before sending
        return unix_socket_listening(self.control[len("ipc://"):])

    def wait_listening(self, retry_s: float | None = None) -> None:
        """Return once the node listens; raise NodeUnavailable after `retry_s`."""
        deadline = time.monotonic() + (self.retry_s if retry_s is None else retry_s)
        while not self.listening():
            if time.monotonic() >= deadline:
                raise NodeUnavailable(self.control, "node is not running")
            time.sleep(RETRY_POLL_S)

    def kv_set(self, key: str, value: Any) -> int:
        """Write a key of the built-in kv provider; returns its new version."""
        return int(self.call("kv.set", {"key": key, "value": value})["version"])

    def kv_get(self, key: str) -> Any | None:
        """The value of `key`, or None when it is not set (or deleted)."""
        result = self.call("kv.get", {"key": key})
        return result.get("value") if result.get("found") else None

    def kv_delete(self, key: str) -> bool:
        """Delete `key`; True when it existed."""
        return bool(self.call("kv.del", {"key": key}).get("existed"))

    def members(self) -> list[dict[str, Any]]:
        """Every known member: node_id, address, status, incarnation, metadata.

        From the membership actor; from the supervisor's view (its snapshot) when
        the node runs none (code "unavailable", e.g. it gave up).
        """
        try:
            return list(self.call("members"))
        except RpcError as exc:
            if exc.code != "unavailable":
                raise
        return list(self.snapshot()["members"])

    def state(self, type: str | None = None) -> list[dict[str, Any]]:
        """The replicated state this node holds (every type, or one), without tombstones."""
        return list(self.call("state", {"type": type} if type else {}))

    def status(self) -> dict[str, Any]:
        return dict(self.call("status"))

    def snapshot(self) -> dict[str, Any]:
        """Members and actors, with the event `seq` they are consistent with."""
        return dict(self.call("snapshot"))

    @property
    def node_id(self) -> str:
        if self._node_id is None:
            self._node_id = str(self.call("ping")["node_id"])
        return self._node_id

    @property
    def events_endpoint(self) -> str:
        if self._events is None:
            self._events = str(self.status()["events"])
        return connectable(self._events)

    # -- events ------------------------------------------------------------------
    def events(self, prefixes: tuple[str, ...] = ("",), snapshot: bool = False,
               timeout_s: float | None = None,
               give_up_s: float | None = None) -> Generator[dict[str, Any], None, None]:
        """Cluster events as maps {type, node_id, data, timestamp, source, seq}.

        With `snapshot`, the first item (and the first after a node restart) is
        ``{"type": "snapshot", "seq": ..., "data": {"members", "actors"}, ...}``
        and only events with a higher seq follow. Stops after `timeout_s`
        (None: never). Raises NodeUnavailable if the node is not running when
        the stream starts; later outages are waited out, or, with `give_up_s`,
        raise NodeUnavailable once nothing has listened on the control socket
        for that long (checked every RESTART_CHECK_S).
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        sub = self.subscriber(prefixes)
        try:
            yield from _EventStream(self, sub, snapshot, give_up_s).run(deadline)
        finally:
            sub.close(linger=0)

    def subscriber(self, prefixes: tuple[str, ...], hwm: int = 100000) -> zmq.Socket:
        """A SUB on the node's events (with its CURVE keys when [security] is on).

        The socket is the caller's: use it from one thread and close it.
        """
        sub = make_socket(self.ctx, zmq.SUB, hwm=hwm)
        for prefix in prefixes:
            sub.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        if self.config is not None:
            secure_subscriber(sub, self.config)
        sub.connect(self.events_endpoint)
        return sub

    def close(self) -> None:
        self.ctx.destroy(linger=0)

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _EventStream:
    """The Clone-pattern filter of `NodeClient.events` over one SUB socket."""

    def __init__(self, node: NodeClient, sub: zmq.Socket, snapshot: bool,
                 give_up_s: float | None) -> None:
        self.node, self.sub, self.snapshot = node, sub, snapshot
        self.give_up_s = give_up_s
        self.down_since: float | None = None  # when the control socket was first seen closed
        self.after = -1  # events up to this seq are covered by the snapshot
        self.last = -1  # seq of the last event yielded
        self.pid: int | None = None  # the supervisor the snapshot came from

    def run(self, deadline: float | None) -> Iterator[dict[str, Any]]:
        self.node.wait_listening()
        if self.snapshot:
            yield self._take_snapshot()
        next_check = time.monotonic() + RESTART_CHECK_S
        while deadline is None or time.monotonic() < deadline:
            wait_s = RESTART_CHECK_S if deadline is None else min(
                RESTART_CHECK_S, max(0.0, deadline - time.monotonic()))
            event = self._receive(wait_s)
            # The PUB keeps order, so once past the snapshot a seq never repeats or
            # falls, unless a new supervisor counts from 1 again.
            restarted = (event is not None and self.after < self.last
                         and 0 <= event["seq"] <= self.last)
            if restarted or time.monotonic() >= next_check:
                next_check = time.monotonic() + RESTART_CHECK_S
                self._check_outage()
                if self.snapshot and (restarted or self._restarted()):
                    snap = self._retake_snapshot()
                    if snap is not None:
                        yield snap
                    continue
            if event is not None and (not self.snapshot or event["seq"] > self.after):
                self.last = event["seq"]
                yield event

    def _check_outage(self) -> None:
        """Raise NodeUnavailable once the node has been down for `give_up_s`."""
        if self.give_up_s is None:
            return
        now = time.monotonic()
        if self.node.listening():
            self.down_since = None
        elif self.down_since is None:
            self.down_since = now
        if self.down_since is not None and now - self.down_since >= self.give_up_s:
            raise NodeUnavailable(self.node.control, "node stopped")

    def _receive(self, wait_s: float) -> dict[str, Any] | None:
        if not self.sub.poll(int(wait_s * 1000), zmq.POLLIN):
            return None
        try:
            event = unpack_untrusted(self.sub.recv_multipart()[-1])
        except DecodeError:
            return None
        if not isinstance(event, dict):
            return None
        seq = event.get("seq")
        return {**event, "seq": seq if isinstance(seq, int) else -1}

    def _take_snapshot(self) -> dict[str, Any]:
        time.sleep(SUBSCRIBE_SETTLE_S)  # (re)subscribed before the snapshot, or we miss events
        snap = self.node.snapshot()
        self.pid = self._pid()
        self.after = self.last = int(snap["seq"])
        return {"type": "snapshot", "node_id": snap["node_id"], "source": snap["node_id"],
                "seq": snap["seq"], "timestamp": time.time(),
                "data": {"members": snap["members"], "actors": snap["actors"]}}

    def _retake_snapshot(self) -> dict[str, Any] | None:
        try:
            return self._take_snapshot()
        except RpcError:  # the node went away again: the next check retries
            return None

    def _pid(self) -> int | None:
        if not self.node.listening():
            return None
        try:
            return int(self.node.call("ping", timeout_s=1.0)["pid"])
        except RpcError:
            return None

    def _restarted(self) -> bool:
        pid = self._pid()
        return pid is not None and pid != self.pid


def connectable(endpoint: str) -> str:
    """A bind address made dialable: tcp://0.0.0.0:P and tcp://*:P become loopback."""
    for wildcard in ("tcp://0.0.0.0:", "tcp://*:"):
        if endpoint.startswith(wildcard):
            return "tcp://127.0.0.1:" + endpoint[len(wildcard):]
    return endpoint
