"""The heap trimmer: its schedule, and that glibc's malloc_trim is really found here."""

from __future__ import annotations

import platform

import pytest

from actors.node import memory
from actors.node.memory import Trimmer


def test_trims_at_most_once_per_period(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(memory, "_TRIM", lambda pad: calls.append(pad) or 1)
    t = Trimmer(every_s=10.0)
    for now in (0.0, 0.5, 9.9, 10.0, 15.0, 20.1):
        t.tick(now)
    assert calls == [0, 0, 0] and t.trims == 3


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_malloc_trim_is_available_on_glibc() -> None:
    assert memory._TRIM is not None
    assert memory._TRIM(0) in (0, 1)
