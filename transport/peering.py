"""What the membership and anti-entropy shells share about their peers' sockets.

Each of the two actors reads its peers on a ROUTER bound onto the public port
the supervisor holds (`open_inbox`; transport/sockets.py says why).

With ``[security]`` on, that ROUTER is a CURVE server and the actor answers
ZAP itself (transport/zap.py), which binds each connection to the node id of
the admitted key that opened it; libzmq hands that id, as User-Id, with every
message. A message whose key is no longer admitted is dropped (a revocation
takes effect per message, also on connections already open), and so is one
whose claimed sender differs (a spoof). An outbound DEALER to a peer needs
that peer's public key, found by node id in the keyring. With security off
these checks are no-ops (and sender ids cannot be verified: see
docs/SECURITY.md).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import zmq

from actors.node.config import Config
from transport.codec import DEFAULT_LIMITS, DecodeError, decode_untrusted
from transport.protocol import GossipMessage
from transport.rpc import recv_frames
from transport.security import Keyring, load_keypair, secure_client, secure_server
from transport.sockets import bind_listening, make_socket
from transport.zap import ZapHandler

# Queues count messages, not bytes, and a message may be 1 MiB: 1,000 (per peer
# connection) covers a burst, and past it TCP back-pressure holds the rest at the sender.
INBOUND_HWM = 1000
# The largest frame the codec would decode from a peer: libzmq cuts off a sender of
# anything longer before it is queued, so a queue of INBOUND_HWM frames is bounded
# in bytes too (a 4 MiB default would let it hold 4 GiB of garbage).
INBOUND_MAXMSGSIZE = DEFAULT_LIMITS.max_message_bytes


class PeerSecurity:
    def __init__(self, cfg: Config) -> None:
        sec = cfg.security
        self.keys = None
        self.keyring: Keyring | None = None
        self.zap: ZapHandler | None = None  # set by open_inbox, with CURVE on
        if sec.enabled:
            public, secret, allowed = sec.key_files()
            self.keys = load_keypair(public, secret)
            self.keyring = Keyring(allowed)

    @property
    def enabled(self) -> bool:
        return self.keyring is not None

    def open_inbox(self, ctx: zmq.Context, listener_fd: int, endpoint: str,
                   counters: Counter[str]) -> zmq.Socket:
        """The actor's ROUTER on the public port whose listening descriptor it inherited.
        With CURVE on, the owner must also serve `self.zap` from its loop."""
        sock = make_socket(ctx, zmq.ROUTER, hwm=INBOUND_HWM, maxmsgsize=INBOUND_MAXMSGSIZE)
        if self.keys is not None and self.keyring is not None:
            self.zap = ZapHandler(ctx, self.keyring, counters)
            secure_server(sock, self.keys)
        bind_listening(sock, listener_fd, endpoint)
        return sock

    def prepare(self, sock: zmq.Socket, node_id: str | None) -> bool:
        """Set up `sock` to dial `node_id`; False when its key is unknown."""
        if self.keyring is None or self.keys is None:
            return True
        key = self.keyring.key_for(node_id) if node_id else None
        if key is None:
            return False
        secure_client(sock, self.keys, key)
        return True

    def admits(self, node_id: str | None) -> bool:
        return self.keyring is None or (node_id is not None and self.keyring.admits(node_id))

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
        if security.enabled:  # the User-Id rides on the frame: received as one
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            sent_by, body = _user_id(parts[-1]), parts[-1].bytes
        elif (frames := recv_frames(sock)) is None:
            return
        else:
            body = frames[-1]
        counters["bytes_received"] += len(body)
        if security.enabled and not security.admits(sent_by):
            counters["dropped.unadmitted"] += 1  # revoked since its connection opened
            continue
        try:
            msg = decode_untrusted(body, cluster)
        except DecodeError as exc:
            counters[f"dropped.{exc.reason}"] += 1
            continue
        if security.enabled and sent_by != msg.sender:
            counters["dropped.spoofed_sender"] += 1
            continue
        counters["received"] += 1
        yield msg


def _user_id(frame: zmq.Frame) -> str | None:
    """The node id ZAP bound to the key of the connection `frame` came in on."""
    try:
        user = frame.get("User-Id")
    except zmq.ZMQError:  # no ZAP answer behind it
        return None
    return user if isinstance(user, str) else None
