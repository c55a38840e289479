"""The node's public face: its gossip and sync ports, forwarded to the actors.

The supervisor binds both TCP ROUTERs and keeps them for its whole life; a
thread forwards each to the actor's ipc endpoint through a PUSH that
*connects*, so while the actor restarts its messages wait in the queue and
peers never see the port close. Plaintext uses `zmq.proxy` (C, no GIL).
With CURVE, a Python loop forwards instead, because the actor must learn
which admitted key sent each message: it prefixes the node id the ZAP
handler bound to that key, and drops messages from keys no longer admitted
(a revocation takes effect per message, even on connections already open).
"""

from __future__ import annotations

import threading

import zmq

from transport.codec import DEFAULT_LIMITS
from transport.security import KeyPair, Keyring, secure_server
from transport.sockets import bind, make_socket

INBOUND_HWM = 1000
# The largest frame the codec would decode from a peer: libzmq cuts off a sender of
# anything longer before it is queued, so a queue of INBOUND_HWM frames is bounded
# in bytes too (a 4 MiB default would let each hop hold 4 GiB of garbage).
INBOUND_MAXMSGSIZE = DEFAULT_LIMITS.max_message_bytes


def open_gateway(ctx: zmq.Context, public: str, internal: str, name: str,
                 keys: KeyPair | None, keyring: Keyring | None,
                 counters: dict[str, int]) -> str:
    """Bind `public`, forward to `internal` in a thread; returns the bound endpoint."""
    # Queues count messages, not bytes, and a message may be 1 MiB: 1,000 per hop
    # (per connection at the front) covers an actor restart at full write rate, and
    # past it TCP back-pressure holds the rest at the sender.
    front = make_socket(ctx, zmq.ROUTER, hwm=INBOUND_HWM, maxmsgsize=INBOUND_MAXMSGSIZE)
    back = make_socket(ctx, zmq.PUSH, hwm=INBOUND_HWM, local=True,
                       maxmsgsize=INBOUND_MAXMSGSIZE)
    if keys is not None:
        secure_server(front, keys)
    try:
        resolved = bind(front, public)
    except BaseException:
        front.close(linger=0)
        back.close(linger=0)
        raise
    back.connect(internal)

    def forward() -> None:
        try:
            if keyring is None:
                zmq.proxy(front, back)
            else:
                _forward_checked(front, back, keyring, f"{name}_unadmitted", counters)
        except zmq.ContextTerminated:
            pass
        finally:
            front.close(linger=0)
            back.close(linger=0)

    threading.Thread(target=forward, name=f"gateway-{name}", daemon=True).start()
    return resolved


def _forward_checked(front: zmq.Socket, back: zmq.Socket, keyring: Keyring, counter: str,
                     counters: dict[str, int]) -> None:
    while True:
        frames = front.recv_multipart(copy=False)
        user = frames[-1].get("User-Id")
        if not isinstance(user, str) or not keyring.admits(user):
            counters[counter] = counters.get(counter, 0) + 1
            continue
        back.send_multipart([user.encode(), *(f.bytes for f in frames)])
