"""ZAP (RFC 27) for the CURVE server sockets of one process: admits the listed keys.

libzmq asks the handler bound at ``inproc://zeromq.zap.01`` of a socket's context
about every CURVE handshake. This one answers from the process's own loop (the
owner watches `sock` and calls `handle`), so no thread is needed: pyzmq's
ThreadAuthenticator would add one per process and import asyncio, ssl and socket
(~9 MiB). The User-Id it returns is the node id the key belongs to; the inbox
compares it with each message's claimed sender (transport/peering.py).
"""

from __future__ import annotations

import contextlib

import zmq
from zmq.utils import z85

from transport.rpc import recv_frames
from transport.security import Keyring

ENDPOINT = "inproc://zeromq.zap.01"
VERSION = b"1.0"
BATCH = 100


class ZapHandler:
    def __init__(self, ctx: zmq.Context, keyring: Keyring, counters: dict[str, int]) -> None:
        self.keyring = keyring
        self.counters = counters
        self.sock = ctx.socket(zmq.REP)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(ENDPOINT)

    def handle(self, now: float = 0.0) -> None:
        """Answer what waits (at most BATCH requests)."""
        for _ in range(BATCH):
            if (frames := recv_frames(self.sock)) is None:
                return
            self.sock.send_multipart(self.answer(frames))

    def answer(self, frames: list[bytes]) -> list[bytes]:
        if len(frames) < 6 or frames[0] != VERSION:
            request_id = frames[1] if len(frames) > 1 else b""
            return [VERSION, request_id, b"500", b"malformed request", b"", b""]
        request_id, mechanism, credentials = frames[1], frames[5], frames[6:]
        if mechanism != b"CURVE":  # another socket's NULL handshake: not ours to refuse
            return [VERSION, request_id, b"200", b"OK", b"", b""]
        node = self.keyring.by_key.get(z85.encode(credentials[0])) if (
            credentials and len(credentials[0]) == 32) else None
        if node is None:
            self.counters["zap_denied"] = self.counters.get("zap_denied", 0) + 1
            return [VERSION, request_id, b"400", b"key not admitted", b"", b""]
        return [VERSION, request_id, b"200", b"OK", node.encode(), b""]

    def close(self) -> None:
        # Unbind first: a closed socket leaves the context's endpoint table only when
        # libzmq's reaper gets to it, so the next handler's bind could find it taken.
        with contextlib.suppress(zmq.ZMQError):
            self.sock.unbind(ENDPOINT)
        self.sock.close(linger=0)
