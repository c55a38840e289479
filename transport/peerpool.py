"""Outbound peer sockets: one monitored DEALER per peer address, bounded, shared by the shells.

Theory of operation. The membership and anti-entropy shells send one-way
messages to peers through one DEALER per address, without blocking. Peers
are named by untrusted input (member tables, replies), so the pool bounds
what they can cost:

* at most `max_peers` DEALERs; dialling one more hangs up the least recently
  used (a send makes a peer the most recently used);
* libzmq keeps what is queued to a peer that is not connected until it
  answers, so the bytes queued to unconnected peers share one budget
  (`UNCONNECTED_BUDGET`); small messages (probes, acks) always pass, and a
  peer with messages queued and no connection for `UNCONNECTED_GIVE_UP_S`
  is hung up by `sweep`, and its queue with it;
* a socket error (out of sockets or descriptors, a bad address, a full
  queue) is counted in `counters` and the message dropped: nothing here
  raises into the actor loop.

Each DEALER has a socket monitor (the pool's `watcher` polls it). A
connection that drops and whose reconnect is then *refused* (libzmq reports
CLOSED after CONNECT_DELAYED, with no CONNECTED between) means nothing
listens on that address any more: `on_refused` reports it, as early
evidence of a crashed process; `on_connected` reports every connection.

Each peer costs three sockets (the DEALER and the two ends of its monitor
pair), and a context's socket limit (1,023 by default) can be raised only
before its first socket exists. The actor runtime sizes its context for
`sockets_for(MAX_PEERS)` before it makes any socket, and the pool dials
through that context (the watcher's `ctx`): one more context would cost each
actor two more threads (I/O and reaper) and their memory for nothing. A
watcher without a context that large (a test's) gets a pool-owned one.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import zmq

from transport.peering import PeerSecurity
from transport.rpc import recv_frames
from transport.sockets import close_monitored, make_socket

# Peers talked to recently; one evicted is dialled again when next needed (a TCP
# handshake on loopback or a LAN: well under a probe timeout).
MAX_PEERS = 256
# Bytes queued, in all, to peers whose connection is not (yet, or any longer) up. A
# whole member table is up to 1 MiB: replies to addresses nobody listens on (a
# forger's) would otherwise hold max_peers x hwm of them. A joiner's first table,
# or an anti-entropy chunk, fits many times over.
UNCONNECTED_BUDGET = 16 << 20
SMALL_MESSAGE = 4 << 10  # probes and acks: never held back by the budget
# An honest node answers a dial within milliseconds (a crashed one was already
# reported by its refusal), so this only frees what forgers pinned.
UNCONNECTED_GIVE_UP_S = 10.0
SOCKETS_PER_PEER = 3  # DEALER, and the PAIR at each end of its monitor
# libzmq's reaper thread frees a closed socket's slot a moment later: a burst of
# evictions holds several times the open sockets closing. Past this, a dial fails
# (counted as dial_failed) until the reaper catches up.
CLOSING_ROOM = 4
# Reconnect quickly (a refusal is seen ~50 ms after a crash), back off for dead peers.
RECONNECT_IVL_MS, RECONNECT_IVL_MAX_MS = 50, 2000
_MONITOR_EVENTS = (zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_CLOSED
                   | zmq.EVENT_CONNECT_DELAYED)

PeerCallback = Callable[[str, float], None]


def monitor_event(frames: list[bytes]) -> int:
    """The event number of a socket monitor message: its first frame starts with it as
    a native uint16. Read here rather than with zmq.utils.monitor, which imports
    zmq.asyncio and with it asyncio, ssl and socket: ~9 MiB in every actor."""
    if len(frames) != 2 or len(frames[0]) != 6:
        raise ValueError("not a socket monitor message")
    return int.from_bytes(frames[0][:2], sys.byteorder)


def sockets_for(max_peers: int) -> int:
    """The MAX_SOCKETS a context needs to hold a pool of `max_peers` (and 64 others)."""
    return CLOSING_ROOM * max_peers * SOCKETS_PER_PEER + 64


class Watcher(Protocol):
    """Polls sockets for the pool: an `Actor` (its runtime's poller)."""

    def watch(self, sock: zmq.Socket, handler: Callable[[float], None]) -> None: ...

    def unwatch(self, sock: zmq.Socket) -> None: ...


@dataclass
class Peer:
    address: str
    sock: zmq.Socket
    monitor: zmq.Socket
    connected: bool = False
    # CONNECTED seen once: a later refusal means the process behind it is gone.
    was_connected: bool = False
    dialing: bool = False  # CONNECT_DELAYED seen: a reconnect is under way
    unsent: int = 0  # bytes queued while not connected (counted in the shared budget)
    down_since: float = field(default_factory=time.monotonic)
    closed: bool = False


class PeerPool:
    """One DEALER per peer address; see the module docstring.

    Args:
        watcher: polls the monitor sockets (the actor).
        security: sets up CURVE for a dial (None, or security off: plain TCP).
        counters: the actor's counters; the pool counts into them.
        hwm: each DEALER's send queue, in messages.
        max_peers: DEALERs kept at once.
        on_connected, on_refused: monitor evidence, by address (see the module docstring).
    """

    def __init__(self, watcher: Watcher, security: PeerSecurity | None, counters: Counter[str], *,
                 hwm: int, max_peers: int = MAX_PEERS,
                 on_connected: PeerCallback | None = None,
                 on_refused: PeerCallback | None = None) -> None:
        self._watcher, self._security, self.counters = watcher, security, counters
        self._hwm, self.max_peers = hwm, max_peers
        self._on_connected, self._on_refused = on_connected, on_refused
        self._peers: dict[str, Peer] = {}  # least recently used first
        self._ctx: zmq.Context | None = None  # found or made at the first dial
        self._owns_ctx = False
        self.unsent = 0  # sum of Peer.unsent

    def __len__(self) -> int:
        return len(self._peers)

    def __contains__(self, address: object) -> bool:
        return address in self._peers

    def addresses(self) -> list[str]:
        """Dialled addresses, least recently used first."""
        return list(self._peers)

    def peers(self) -> Iterator[Peer]:
        return iter(self._peers.values())

    @property
    def context(self) -> zmq.Context:
        if self._ctx is None:
            shared = getattr(self._watcher, "ctx", None)
            need = sockets_for(self.max_peers)
            if isinstance(shared, zmq.Context) and shared.get(zmq.MAX_SOCKETS) >= need:
                self._ctx = shared
            else:
                self._ctx, self._owns_ctx = zmq.Context(), True
                self._ctx.set(zmq.MAX_SOCKETS, need)
        return self._ctx

    # -- sending -------------------------------------------------------------------
    def send(self, address: str, data: bytes, node_id: str | None) -> bool:
        """Queue `data` to `address` without blocking; False when it was dropped (counted).

        `node_id` names the peer's key when [security] is on (dialling only).
        """
        peer = self._peers.pop(address, None)
        if peer is not None:
            self._peers[address] = peer  # most recently used last
        else:
            peer = self._dial(address, node_id)
            if peer is None:
                return False
        if not peer.connected and len(data) > SMALL_MESSAGE and \
                self.unsent + len(data) > UNCONNECTED_BUDGET:
            self.counters["send_unconnected_full"] += 1
            return False
        try:
            peer.sock.send(data, zmq.NOBLOCK)
        except zmq.Again:
            self.counters["send_queue_full"] += 1
            return False
        except zmq.ZMQError:  # the socket broke under us: drop it, dial afresh next time
            self.counters["send_failed"] += 1
            self.hang_up(address)
            return False
        self.counters["sent"] += 1
        self.counters["bytes_sent"] += len(data)
        if not peer.connected:
            peer.unsent += len(data)
            self.unsent += len(data)
        return True

    def _dial(self, address: str, node_id: str | None) -> Peer | None:
        while len(self._peers) >= self.max_peers:  # bounded sockets, whatever peers claim
            self.hang_up(next(iter(self._peers)))
            self.counters["peers_evicted"] += 1
        try:
            sock = make_socket(self.context, zmq.DEALER, hwm=self._hwm)
        except zmq.ZMQError:  # out of sockets or descriptors: drop this message, live on
            self.counters["dial_failed"] += 1
            return None
        if self._security is not None and not self._security.prepare(sock, node_id):
            sock.close(linger=0)
            self.counters["send_no_key"] += 1
            return None
        try:
            sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
            sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_IVL_MAX_MS)
            monitor = sock.get_monitor_socket(_MONITOR_EVENTS)  # before connect: see it all
        except zmq.ZMQError:
            sock.close(linger=0)
            self.counters["dial_failed"] += 1
            return None
        try:
            sock.connect(address)
        except zmq.ZMQError:  # callers pass tcp endpoints; this is the last guard
            close_monitored(sock, monitor)
            self.counters["dial_refused_address"] += 1
            return None
        peer = Peer(address, sock, monitor)
        self._peers[address] = peer
        self._watcher.watch(monitor, lambda now: self._on_monitor(peer, now))
        return peer

    # -- monitor evidence ------------------------------------------------------------
    def _on_monitor(self, peer: Peer, now: float) -> None:
        evidence: list[tuple[PeerCallback | None, str]] = []
        while not peer.closed:
            try:
                frames = recv_frames(peer.monitor)
                if frames is None:
                    break
                event = monitor_event(frames)
            except (zmq.ZMQError, ValueError):
                break
            if event == zmq.EVENT_CONNECT_DELAYED:
                peer.dialing = True
            elif event == zmq.EVENT_CONNECTED:
                peer.connected = peer.was_connected = True
                peer.dialing = False
                self._settle(peer)  # what waited for this connection is on its way
                evidence.append((self._on_connected, peer.address))
            elif event == zmq.EVENT_DISCONNECTED:
                peer.connected, peer.down_since = False, now
            elif event == zmq.EVENT_CLOSED and peer.dialing and peer.was_connected:
                peer.dialing = False
                self.counters["connections_refused"] += 1
                evidence.append((self._on_refused, peer.address))
        # Reported after reading: a callback may send, and a send may evict this peer.
        for callback, address in evidence:
            if callback is not None:
                callback(address, now)

    # -- hanging up --------------------------------------------------------------------
    def hang_up(self, address: str, linger: int = 0) -> None:
        """Close the socket to `address` (and drop its queue); a no-op if none."""
        peer = self._peers.pop(address, None)
        if peer is None:
            return
        self._settle(peer)
        peer.closed = True
        self._watcher.unwatch(peer.monitor)
        close_monitored(peer.sock, peer.monitor, linger=linger)

    def hang_up_all(self, linger: int = 0) -> None:
        for address in list(self._peers):
            self.hang_up(address, linger)

    def sweep(self, now: float) -> None:
        """Hang up peers that held queued messages unconnected past UNCONNECTED_GIVE_UP_S."""
        stale = [p.address for p in self._peers.values()
                 if p.unsent and not p.connected and now - p.down_since > UNCONNECTED_GIVE_UP_S]
        for address in stale:
            self.hang_up(address)
            self.counters["peers_unreachable_dropped"] += 1

    def close(self, linger: int = 0) -> None:
        """Hang up every peer (`linger` ms for what is queued), then end the context if
        the pool made it (a shared one waits out the linger when its owner ends it)."""
        self.hang_up_all(linger)
        if self._ctx is not None and self._owns_ctx:
            self._ctx.term()  # waits out the linger of what was just closed
        self._ctx, self._owns_ctx = None, False

    def _settle(self, peer: Peer) -> None:
        self.unsent -= peer.unsent
        peer.unsent = 0
