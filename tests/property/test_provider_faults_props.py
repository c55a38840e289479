"""Random exceptions in random provider methods: the host goes on and loses no good state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from actors.providers.adapter import QUARANTINE_RETRY_S, ProviderAdapter
from examples.sticky import StickyProvider
from transport.protocol import LamportClock, SyncableState, make_syncable_state
from transport.rpc import RpcError

METHODS = ("apply_remote_state", "get_sync_state", "get_state_digest", "on_node_failure",
           "drain_changes", "cmd_put")


class Flaky(StickyProvider):
    """Raises before doing anything on the calls whose numbers are in `faults`."""

    def __init__(self, faults: set[int]) -> None:
        super().__init__("n1", LamportClock())
        self.faults, self.calls = faults, 0
        for name in METHODS:
            setattr(self, name, self._flaky(getattr(self, name)))

    def _flaky(self, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            self.calls += 1
            if self.calls in self.faults:
                raise RuntimeError(f"injected in call {self.calls}")
            return method(*args)
        return call


ops = st.lists(st.one_of(
    st.tuples(st.just("apply"), st.lists(st.tuples(st.integers(0, 5), st.integers(1, 30)),
                                         min_size=1, max_size=6)),
    st.tuples(st.just("put"), st.integers(0, 5)),
    st.tuples(st.sampled_from(["digest", "sync_state", "node_failed", "tick"]), st.none()),
), max_size=25)


@settings(max_examples=200, deadline=None)
@given(ops=ops, faults=st.sets(st.integers(1, 80), max_size=20))
# Found by this test: a batch with two versions of a key, both refused, quarantined the
# older one over the newer, so the retry applied v1 and v2 was lost.
@example(ops=[("put", 0), ("apply", [(0, 2), (0, 1)])], faults={3, 4, 5})
def test_injected_exceptions_never_escape_and_never_lose_a_good_state(ops, faults) -> None:
    provider = Flaky(faults)
    adapter = ProviderAdapter(provider, provider.clock)
    offered: dict[str, SyncableState] = {}  # newest remote state per key
    acked: dict[str, int] = {}  # key -> version of a put the caller was told succeeded
    sent: dict[str, int] = {}  # what change detection handed on (to journal and peers)
    now = 0.0
    for op, arg in ops:
        now += 0.1
        try:
            if op == "apply":
                batch = [make_syncable_state("sticky", f"k{k}", f"v{v}", v, "n2")
                         for k, v in arg]
                for s in batch:
                    if s.key not in offered or s.version > offered[s.key].version:
                        offered[s.key] = s
                adapter.apply(batch, now)
            elif op == "put":
                acked[f"p{arg}"] = adapter.handle("put", {"key": f"p{arg}", "value": "w"},
                                                  now)["version"]
            elif op == "node_failed":
                adapter.handle(op, {"node_id": "n3"}, now)
            elif op == "tick":
                adapter.tick(now)
            else:
                adapter.handle(op, {}, now)
        except RpcError:
            pass  # an answer to the caller; anything else escaping fails the test
        sent.update((s.key, s.version) for s in adapter.changes(now))
    provider.faults = set()  # the storm passes; quarantined states are retried
    for delay in QUARANTINE_RETRY_S:
        now += delay
        adapter.tick(now)
        sent.update((s.key, s.version) for s in adapter.changes(now))
    held = {s.key: s.version for s in provider.get_sync_state()}
    for key, s in offered.items():
        assert held.get(key, -1) >= s.version, f"remote state {key} v{s.version} lost"
    for key, version in acked.items():
        assert sent.get(key, -1) >= version, f"acknowledged put {key} v{version} never sent"
    assert adapter.quarantined == 0
