"""What the membership and anti-entropy shells share about their peers' sockets.

With ``[security]`` on, an outbound DEALER to a peer needs that peer's public
key (found by node id in the keyring), and every inbound message arrives from
the supervisor prefixed with the node id of the key that sent it: a message
whose claimed sender differs is a spoof and is dropped. With security off
both checks are no-ops (and sender ids cannot be verified: see
docs/SECURITY.md).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import zmq

from actors.node.config import Config
from transport.codec import DecodeError, decode_untrusted
from transport.protocol import GossipMessage
from transport.security import Keyring, load_keypair, secure_client


class PeerSecurity:
    def __init__(self, cfg: Config) -> None:
        sec = cfg.security
        self.keys = None
        self.keyring: Keyring | None = None
        if sec.enabled:
            public, secret, allowed = sec.key_files()
            self.keys = load_keypair(public, secret)
            self.keyring = Keyring(allowed)

    @property
    def enabled(self) -> bool:
        return self.keyring is not None

    def spoofed(self, frames: list[bytes], msg: GossipMessage) -> bool:
        """True when the key that sent `frames` does not belong to `msg.sender`."""
        if self.keyring is None:
            return False
        return frames[0].decode("utf-8", "replace") != msg.sender

    def prepare(self, sock: zmq.Socket, node_id: str | None) -> bool:
        """Set up `sock` to dial `node_id`; False when its key is unknown."""
        if self.keyring is None or self.keys is None:
            return True
        key = self.keyring.key_for(node_id) if node_id else None
        if key is None:
            return False
        secure_client(sock, self.keys, key)
        return True

    def admits(self, node_id: str) -> bool:
        return self.keyring is None or self.keyring.admits(node_id)

    def reload(self) -> None:
        if self.keyring is not None:
            self.keyring.reload()


INBOX_BATCH = 1000


def read_inbox(sock: zmq.Socket, cluster: str, security: PeerSecurity,
               counters: Counter[str], batch: int = INBOX_BATCH,
               budget_s: float = 0.05) -> Iterator[GossipMessage]:
    """Decode what waits on an inbound socket; drop and count the bad and the spoofed.

    The batch is bounded in count and in time, so a flood (or messages that are
    expensive to handle) cannot starve the actor's timers and heartbeats."""
    stop_at = time.monotonic() + budget_s
    for _ in range(batch):
        if time.monotonic() > stop_at:
            counters["inbox_yielded"] += 1
            return
        if not sock.poll(0, zmq.POLLIN):
            return
        frames = sock.recv_multipart()
        counters["bytes_received"] += len(frames[-1])
        try:
            msg = decode_untrusted(frames, cluster)
        except DecodeError as exc:
            counters[f"dropped.{exc.reason}"] += 1
            continue
        if security.spoofed(frames, msg):
            counters["dropped.spoofed_sender"] += 1
            continue
        counters["received"] += 1
        yield msg
