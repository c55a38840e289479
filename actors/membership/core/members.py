"""The member table: one entry per known node, and the SWIM state transitions.

Theory of operation (SWIM §4.2, memberlist `state.go`): every piece of
membership news is a `News` -- alive, suspect, dead or left -- about one
node at one incarnation. The table decides whether news is fresher than what
it holds and, if so, applies it and records exactly one `MemberEvent` per
status transition. News about the local node never reaches the table: the
caller refutes it instead (`actors.membership.core.swim`).

Precedence, for news about a known member at incarnation `i` (current `c`):

| news    | accepted when                                  | result          |
|---------|------------------------------------------------|-----------------|
| alive   | i > c; if alive or suspect, at its address     | alive           |
| suspect | i >= c and status alive                        | suspect (timer) |
| suspect | i >= c and status suspect                      | confirmation    |
| dead    | i >= c and status alive or suspect             | dead            |
| left    | i >= c and status is not left                  | left            |

Everything else is stale and ignored (counted by the caller). Unknown nodes
are learned only from alive news: suspect/dead/left about a stranger says
nothing we could act on (memberlist ignores it too).

Wire forms, msgpack-native (the shell never needs to read them):

* news item (piggybacked in payload "gossip"): `{"k": kind, "n": node_id,
  "i": incarnation, "a": address, "m": metadata}` for alive ("m" omitted
  when empty); `{"k", "n", "i", "f": accuser}` for suspect (plus `"r":
  True` when refusal-backed) and dead; `{"k", "n", "i"}` for left.
* member entry (payload "members" of a "members" message): `{"id", "addr",
  "meta"?, "inc", "st"}`, st in alive|suspect|dead|left.

Memory (what a table costs per member, which is what bounds a node's table
size and a simulation of many nodes in one process): an entry, one slot in
the id index and one in the prober's order. Member records (`NodeInfo`)
are shared: a table keeps the instance `shared_info` hands out, so a
decoded copy per message, per table or per event is never kept. The
address index (`node_at`) is built on its first use. A `MemberView` lets
many tables start from one converged table: its entries are shared and
read-only, and a table copies one the first time it changes it.
"""

from __future__ import annotations

import random
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from actors.membership.core.suspicion import Suspicion, confirmations_wanted, suspicion_bounds
from actors.membership.core.timing import MembershipTiming
from transport.protocol import (
    LIVE,
    GossipMessage,
    MemberStatus,
    NodeInfo,
    ProtocolError,
    check_id,
    check_u63,
    make_node_info,
    map_to_node_info,
    node_info_to_map,
)
from transport.validate import check_counter, check_endpoint

ALIVE, SUSPECT, DEAD, LEFT = MemberStatus
STATUSES = tuple(MemberStatus)


@dataclass(frozen=True)
class Member:
    """A snapshot of one member for callers: `since` is when its status last changed."""

    node: NodeInfo
    status: str
    incarnation: int
    since: float


@dataclass(frozen=True)
class MemberEvent:
    """One status transition (or metadata change) seen by this node."""

    kind: str
    node: NodeInfo
    status: str
    incarnation: int


@dataclass(frozen=True)
class News:
    """One piece of membership news about `node_id` at `incarnation`."""

    kind: str  # alive | suspect | dead | left
    node_id: str
    incarnation: int
    info: NodeInfo | None = None  # alive only: the node's address and metadata
    accuser: str | None = None  # suspect/dead: who accuses (confirmations count distinct accusers)
    refused: bool = False  # suspect: the accuser's connection to the node was refused


@dataclass(frozen=True)
class Applied:
    """What `MemberTable.apply` did: `accepted` news is worth re-gossiping."""

    accepted: bool
    reason: str  # joined | transition | confirmed | stale | unknown | address_conflict
    urgent: bool = False  # the suspicion just became refusal-backed: spread it now


@dataclass(slots=True)
class Entry:
    """A member's state; mutable, owned by the table."""

    node: NodeInfo
    status: str
    incarnation: int
    since: float
    suspicion: Suspicion | None = None

    def snapshot(self) -> Member:
        return Member(self.node, self.status, self.incarnation, self.since)


class _SharedEntry(Entry):
    """An entry of a `MemberView`, held by many tables: never changed in place."""

    __slots__ = ()


# One NodeInfo per distinct (id, address, metadata) in the process. Weak: an instance
# no table, queue or event holds any more is freed.
_INFOS: weakref.WeakValueDictionary[tuple[str, str], NodeInfo] = weakref.WeakValueDictionary()


def shared_info(info: NodeInfo) -> NodeInfo:
    """The process's instance equal to `info` (`info` itself if it is the first).

    Every decoded message carries fresh copies of a member's id, address and
    metadata; keeping the first instance instead frees them, and lets the
    tables of one process (a simulation of thousands of nodes) hold one
    record per member instead of one per table.
    """
    key = (info.node_id, info.address)
    held = _INFOS.get(key)
    if held is not None and held.metadata == info.metadata:
        return held
    _INFOS[key] = info
    return info


class MemberView:
    """A converged member table, built once and adopted by many (`MemberTable.adopt`).

    Every member is alive; the entries are shared by every table that adopts
    the view and copied by a table the first time it changes one.

    Raises:
        ValueError: a member that is not alive, or two with the same id.
    """

    def __init__(self, members: Iterable[Member]) -> None:
        entries: dict[str, Entry] = {}
        for m in members:
            if m.status != ALIVE:
                raise ValueError(f"member {m.node.node_id!r} is {m.status}, not alive")
            info = shared_info(m.node)
            if info.node_id in entries:
                raise ValueError(f"member {info.node_id!r} appears twice")
            entries[info.node_id] = _SharedEntry(info, ALIVE, m.incarnation, m.since)
        self.entries: Mapping[str, Entry] = entries
        self.highest = max((e.incarnation for e in entries.values()), default=0)

    def __len__(self) -> int:
        return len(self.entries)


# --- wire forms --------------------------------------------------------------


def news_to_map(news: News) -> dict[str, Any]:
    """News -> a compact msgpack-native item (see the module docstring)."""
    item: dict[str, Any] = {"k": news.kind, "n": news.node_id, "i": news.incarnation}
    if news.info is not None:
        item["a"] = news.info.address
        if news.info.metadata:
            item["m"] = dict(news.info.metadata)
    if news.accuser is not None:
        item["f"] = news.accuser
    if news.refused:
        item["r"] = True
    return item


def map_to_news(item: object) -> News:
    """Parse an untrusted news item. Raises: ProtocolError (only)."""
    if not isinstance(item, Mapping):
        raise ProtocolError("not_a_map", "gossip")
    kind = item.get("k")
    if kind not in STATUSES:
        raise ProtocolError("bad_field_value", "gossip.k")
    node_id = check_id(item.get("n"), "gossip.n")
    incarnation = check_counter(item.get("i"), "gossip.i")
    if kind == ALIVE:
        info = make_node_info(node_id, check_endpoint(item.get("a"), "gossip.a"), item.get("m"))
        return News(ALIVE, node_id, incarnation, info=info)
    if kind == LEFT:
        return News(LEFT, node_id, incarnation)
    accuser = check_id(item.get("f"), "gossip.f")
    return News(kind, node_id, incarnation, accuser=accuser, refused=item.get("r") is True)


def member_to_map(entry: Entry) -> dict[str, Any]:
    """An entry of a "members" table (push-pull and join reply)."""
    result = node_info_to_map(entry.node)
    result["inc"] = entry.incarnation
    result["st"] = entry.status
    return result


def map_to_member_news(item: object, teller: str) -> News:
    """Turn an untrusted member-table entry into news, as memberlist `mergeState` does.

    A remote "dead" becomes suspect news accused by `teller`: we would rather
    suspect (and let the node refute) than declare a death we did not see.
    Raises: ProtocolError (only).
    """
    if not isinstance(item, Mapping):
        raise ProtocolError("not_a_map", "members")
    info = map_to_node_info(item)
    check_endpoint(info.address, "members.addr")
    incarnation = check_counter(item.get("inc"), "members.inc")
    status = item.get("st")
    if status == ALIVE:
        return News(ALIVE, info.node_id, incarnation, info=info)
    if status in (SUSPECT, DEAD):
        return News(SUSPECT, info.node_id, incarnation, accuser=teller)
    if status == LEFT:
        return News(LEFT, info.node_id, incarnation)
    raise ProtocolError("bad_field_value", "members.st")


def str_or_none(value: object) -> str | None:
    """`value` if it is a well-formed id string, else None."""
    try:
        return check_id(value, "id")
    except ProtocolError:
        return None


def endpoint_or_none(value: object) -> str | None:
    """`value` if it is a tcp:// endpoint we may dial, else None (never dial garbage)."""
    try:
        return check_endpoint(value, "address")
    except ProtocolError:
        return None


def u63_or_none(value: object) -> int | None:
    """`value` if it is an int in [0, 2**63), else None."""
    try:
        return check_u63(value, "seq")
    except ProtocolError:
        return None


def reply_address(pl: Mapping[str, Any]) -> str | None:
    """The sender's gossip address from a payload ("addr"), if well-formed."""
    return endpoint_or_none(pl.get("addr"))


def message_news(msg: GossipMessage, pl: Mapping[str, Any], sender: Entry | None) -> News:
    """News carried by a standalone alive/suspect/dead/leave message. Raises: ProtocolError."""
    if msg.msg_type == "leave":
        default = sender.incarnation if sender is not None else 0
        return News(LEFT, msg.sender, check_counter(pl.get("inc", default), "payload.inc"))
    node_id = check_id(pl.get("node"), "payload.node")
    inc = check_counter(pl.get("incarnation"), "payload.incarnation")
    if msg.msg_type == "alive":
        if node_id != msg.sender:
            raise ProtocolError("alive_not_self", "payload.node")
        info = make_node_info(node_id, check_endpoint(pl.get("addr"), "payload.addr"),
                              pl.get("meta"))
        return News(ALIVE, node_id, inc, info=info)
    kind = SUSPECT if msg.msg_type == "suspect" else DEAD
    return News(kind, node_id, inc, accuser=msg.sender, refused=pl.get("refused") is True)


# --- the table ---------------------------------------------------------------

_STALE = Applied(False, "stale")
_UNKNOWN = Applied(False, "unknown")
_CONFLICT = Applied(False, "address_conflict")


class MemberTable:
    """All known members, the local node included, keyed by node id."""

    def __init__(
        self, me: NodeInfo, incarnation: int, now: float, timing: MembershipTiming
    ) -> None:
        self._timing = timing
        self.me = Entry(me, ALIVE, incarnation, now)
        self._entries: dict[str, Entry] = {me.node_id: self.me}
        # Indexes, so per-message work does not grow with the table: live members
        # (n for the formulas), suspects (timers), and dead or left members other
        # than us in order of their transition (for reaping and eviction).
        self._live = 1
        self._suspects: dict[str, Entry] = {}
        self._gone: dict[str, Entry] = {}
        # address -> the id claiming it, or the ids (first claimant first) when several
        # do; the shell maps socket events back to members through it. Built on the
        # first `node_at` (a core that is never asked, as in a simulation, pays nothing).
        self._at: dict[str, str | list[str]] | None = None
        # Transitions not yet drained by the caller, in order.
        self.events: list[MemberEvent] = []

    def get(self, node_id: str) -> Entry | None:
        return self._entries.get(node_id)

    def entries(self) -> list[Entry]:
        return list(self._entries.values())

    def others(self, statuses: Collection[str] = LIVE) -> list[Entry]:
        """Members other than the local node with one of `statuses`, in id order."""
        return sorted(
            (e for e in self._entries.values() if e is not self.me and e.status in statuses),
            key=lambda e: e.node.node_id,
        )

    def sample(self, rng: random.Random, k: int, eligible: Callable[[Entry], bool],
               gone: bool = False) -> list[Entry]:
        """Up to `k` distinct members other than us for which `eligible` holds, chosen
        uniformly at random (in random order); among the dead and left ones if `gone`.

        Drawn by rejection, since in a healthy cluster nearly every member qualifies:
        a gossip round or an indirect probe then costs one C-speed copy of the table
        and O(k) Python work, not a sort. When few qualify, an exact draw among those
        that do.
        """
        pool = list((self._gone if gone else self._entries).values())
        size, me = len(pool), self.me
        chosen: list[Entry] = []
        seen: set[int] = set()
        for _ in range(4 * k + 8):
            if len(chosen) == k or len(seen) == size:
                break
            i = rng.randrange(size)
            if i not in seen:
                seen.add(i)
                if pool[i] is not me and eligible(pool[i]):
                    chosen.append(pool[i])
        if len(chosen) == k:
            return chosen
        fit = [e for e in pool if e is not me and eligible(e)]
        return rng.sample(fit, min(k, len(fit)))

    def adopt(self, view: MemberView) -> None:
        """Take every member of `view` at once (see `MemberView`); no events.

        Raises:
            ValueError: the table already knows a member other than us.
        """
        if len(self._entries) > 1:
            raise ValueError("adopt needs a table that knows only the local node")
        me_id = self.me.node.node_id
        self._entries.update(view.entries)
        self._entries[me_id] = self.me  # first in order still; never the view's copy of us
        self._live += len(self._entries) - 1
        if self._at is not None:
            for entry in self._entries.values():
                self._claim(entry)

    def _own(self, entry: Entry) -> Entry:
        """`entry`, or a private copy in its place if it is shared (about to change)."""
        if type(entry) is Entry:
            return entry
        mine = Entry(entry.node, entry.status, entry.incarnation, entry.since, entry.suspicion)
        self._entries[mine.node.node_id] = mine  # only alive entries are shared: no other index
        return mine

    def other_ids(self, statuses: Collection[str] = LIVE) -> list[str]:
        """The ids of `others(statuses)`, in the same order, without sorting entries."""
        me = self.me
        return sorted(node_id for node_id, e in self._entries.items()
                      if e is not me and e.status in statuses)

    def node_at(self, address: str) -> str | None:
        """The first member other than us that claims `address`, or None."""
        if self._at is None:
            self._at = {}
            for entry in self._entries.values():
                self._claim(entry)
        held = self._at.get(address)
        for node_id in [held] if isinstance(held, str) else held or ():
            if node_id != self.me.node.node_id:
                return node_id
        return None

    def _claim(self, entry: Entry) -> None:
        if self._at is None:
            return
        address, node_id = entry.node.address, entry.node.node_id
        held = self._at.get(address)
        if held is None:
            self._at[address] = node_id
        elif isinstance(held, str):
            if held != node_id:
                self._at[address] = [held, node_id]
        elif node_id not in held:
            held.append(node_id)

    def _unclaim(self, entry: Entry) -> None:
        if self._at is None:
            return
        address, node_id = entry.node.address, entry.node.node_id
        held = self._at.get(address)
        if held == node_id:
            del self._at[address]
        elif isinstance(held, list) and node_id in held:
            held.remove(node_id)
            if len(held) == 1:
                self._at[address] = held[0]

    def live_count(self) -> int:
        """n for the SWIM formulas: alive and suspect members, the local node included."""
        return self._live

    def mark_self_left(self, now: float) -> None:
        """The local node leaves: no longer counted live."""
        if self.me.status in LIVE:
            self._live -= 1
        self.me.status, self.me.since = LEFT, now

    def suspect_ids(self) -> list[str]:
        """Members held suspect, in the order their suspicions began."""
        return list(self._suspects)

    def has_suspects(self) -> bool:
        return bool(self._suspects)

    def has_dead(self) -> bool:
        return any(e.status == DEAD for e in self._gone.values())

    def emit(self, kind: str, entry: Entry) -> None:
        self.events.append(MemberEvent(kind, entry.node, entry.status, entry.incarnation))

    def apply(self, news: News, now: float) -> Applied:
        """Apply news about another node (never the local one); see the precedence table."""
        entry = self._entries.get(news.node_id)
        if entry is None:
            return self._learn(news, now)
        if news.kind == ALIVE:
            return self._apply_alive(entry, news, now)
        if news.incarnation < entry.incarnation:
            return _STALE
        if news.kind == SUSPECT:
            return self._apply_suspect(entry, news, now)
        if news.kind == DEAD and entry.status in LIVE:
            self._transition(self._own(entry), DEAD, news.incarnation, now, "node.failed")
            return Applied(True, "transition")
        if news.kind == LEFT and entry.status != LEFT:
            self._transition(self._own(entry), LEFT, news.incarnation, now, "node.left")
            return Applied(True, "transition")
        return _STALE

    def _learn(self, news: News, now: float) -> Applied:
        if news.kind != ALIVE or news.info is None:
            return _UNKNOWN
        entry = Entry(shared_info(news.info), ALIVE, news.incarnation, now)
        self._entries[entry.node.node_id] = entry
        self._claim(entry)
        self._live += 1
        self.emit("node.joined", entry)
        return Applied(True, "joined")

    def _apply_alive(self, entry: Entry, news: News, now: float) -> Applied:
        if news.incarnation <= entry.incarnation or news.info is None:
            return _STALE
        if entry.status in LIVE and news.info.address != entry.node.address:
            # A live member does not move: whoever says so is lying or confused, and
            # believing it would send the member's traffic elsewhere until nobody can
            # reach it to be refuted (memberlist: "conflicting address"). A member
            # that really moved is declared dead at its old address, then accepted.
            return _CONFLICT
        entry = self._own(entry)
        old_status, info_changed = entry.status, entry.node != news.info
        self._unclaim(entry)
        entry.node = shared_info(news.info)
        self._claim(entry)
        if old_status == ALIVE:
            entry.incarnation = news.incarnation
            if info_changed:
                self.emit("node.updated", entry)
            return Applied(True, "transition")
        # A left node that comes back is a new join; a suspect or dead one was refuted.
        self._transition(entry, ALIVE, news.incarnation, now,
                         "node.joined" if old_status == LEFT else "node.alive")
        if info_changed and old_status != LEFT:
            self.emit("node.updated", entry)
        return Applied(True, "transition")

    def _apply_suspect(self, entry: Entry, news: News, now: float) -> Applied:
        accuser = news.accuser or ""
        if entry.status == ALIVE:
            entry = self._own(entry)
            self._transition(entry, SUSPECT, news.incarnation, now, "node.suspect")
            entry.suspicion = self._new_suspicion(accuser, now)
            self._suspects[entry.node.node_id] = entry
            if news.refused:
                entry.suspicion.add_refusal(accuser, now)
            return Applied(True, "transition", urgent=news.refused)
        if entry.status != SUSPECT or entry.suspicion is None:
            return _STALE
        # Already suspect: this is (maybe) an independent confirmation.
        suspicion = entry.suspicion
        entry.incarnation = news.incarnation
        confirmed = suspicion.confirm(accuser)
        if news.refused and accuser not in suspicion.refused_by:
            became_backed = suspicion.add_refusal(accuser, now)
            return Applied(True, "confirmed", urgent=became_backed)
        return Applied(True, "confirmed") if confirmed else _STALE

    def _new_suspicion(self, accuser: str, now: float) -> Suspicion:
        t, n = self._timing, self.live_count()
        min_s, max_s = suspicion_bounds(
            t.suspicion_mult, t.suspicion_max_mult, n, t.probe_interval_s
        )
        k = confirmations_wanted(t.suspicion_mult, n)
        return Suspicion(accuser, now, k, min_s, max_s, t.refused_timeout_s)

    def _transition(
        self, entry: Entry, status: str, incarnation: int, now: float, kind: str
    ) -> None:
        self._live += (status in LIVE) - (entry.status in LIVE)
        entry.status, entry.incarnation, entry.since = status, incarnation, now
        entry.suspicion = None
        node_id = entry.node.node_id
        self._suspects.pop(node_id, None)
        self._gone.pop(node_id, None)
        if status in (DEAD, LEFT) and entry is not self.me:
            self._gone[node_id] = entry  # at the end: the latest transition
        self.emit(kind, entry)

    def withdraw_refusal(self, node_id: str, witness: str) -> bool:
        """Remove `witness`'s refusal evidence about `node_id`; True if it had any."""
        entry = self._entries.get(node_id)
        if entry is None or entry.suspicion is None:
            return False
        return entry.suspicion.withdraw_refusal(witness)

    def expired(self, now: float) -> list[Entry]:
        """Suspect members whose suspicion deadline has passed."""
        return [
            e for e in self._suspects.values()
            if e.suspicion is not None and e.suspicion.deadline() <= now
        ]

    def next_expiry(self) -> float | None:
        deadlines = [e.suspicion.deadline() for e in self._suspects.values() if e.suspicion]
        return min(deadlines, default=None)

    def __len__(self) -> int:
        return len(self._entries)

    def full(self) -> bool:
        return len(self._entries) >= self._timing.max_members

    def evict_longest_gone(self) -> str | None:
        """Drop the dead or left member that has been so longest; its id, or None."""
        victim = next(iter(self._gone), None)
        if victim is not None:
            self._unclaim(self._gone.pop(victim))
            del self._entries[victim]
        return victim

    def reap(self, now: float, after_s: float) -> list[str]:
        """Forget dead and left members `after_s` after their transition; return their ids."""
        gone = []
        for node_id, entry in self._gone.items():  # oldest transition first
            if entry.since + after_s > now:
                break
            gone.append(node_id)
        for node_id in gone:
            self._unclaim(self._gone.pop(node_id))
            del self._entries[node_id]
        return gone

    def next_reap(self, after_s: float) -> float | None:
        first = next(iter(self._gone.values()), None)
        return None if first is None else first.since + after_s
