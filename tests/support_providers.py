"""Providers that misbehave on purpose, loaded by test nodes via `module = "..."`."""

from __future__ import annotations

import os
import time
from typing import Any

from transport.protocol import ApplyResult, LamportClock, SyncableState


class CrashyProvider:
    """Serves its first `crash_after_s` (enough to report ready), then calls
    os._exit(3) in every method: a provider that keeps dying however often it is
    restarted (a segfault in a C extension behaves the same to the supervisor).
    With option `crash_file`, it dies only while that file exists."""

    def __init__(self, node_id: str, clock: LamportClock,
                 options: dict[str, Any] | None = None) -> None:
        opts = options or {}
        self.node_id = node_id
        self.crash_at = time.monotonic() + float(opts.get("crash_after_s", 0.3))
        self.crash_file: str | None = opts.get("crash_file")

    def _maybe_die(self) -> None:
        if time.monotonic() >= self.crash_at and (
                self.crash_file is None or os.path.exists(self.crash_file)):
            os._exit(3)

    def provider_type(self) -> str:
        return "crashy"

    def get_sync_state(self) -> list[SyncableState]:
        self._maybe_die()
        return []

    def get_state_digest(self) -> dict[tuple[str, str], int]:
        self._maybe_die()
        return {}

    def apply_remote_state(self, states: list[SyncableState]) -> ApplyResult:
        self._maybe_die()
        return {"applied": 0, "conflicts": 0, "rejected": len(states)}

    def on_node_failure(self, node_id: str) -> None:
        self._maybe_die()

    def tick(self, now: float) -> None:
        self._maybe_die()

    def next_deadline(self) -> float:
        now = time.monotonic()
        return self.crash_at if now < self.crash_at else now + 0.2  # keep checking the file

    def cmd_ping(self, args: dict[str, Any], now: float) -> dict[str, Any]:
        self._maybe_die()
        return {"pong": True}


class GreedyProvider(CrashyProvider):
    """Claims the kv provider's short name: a conflict the plan must refuse."""

    serves = ("kv.",)
