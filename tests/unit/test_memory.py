"""The heap trimmer: its schedule, and that glibc's malloc_trim is really found here."""

from __future__ import annotations

import gc
import platform

import pytest

from actors.node import memory
from actors.node.memory import Freezer, Trimmer


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


class _Clock:
    """Each reading is `step` later than the last: every collection looks that long."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_a_slow_full_collection_freezes_its_survivors_at_the_next_tick() -> None:
    before = gc.get_freeze_count()
    freezer = Freezer(slow_s=0.05, clock=_Clock(step=0.1))
    try:
        assert freezer.tick() is False  # nothing collected yet
        gc.collect(1)
        assert freezer.tick() is False  # a young collection: never a reason
        survivor = [{"state": i} for i in range(100)]
        gc.collect()
        assert gc.get_freeze_count() == before  # not from inside the collection
        assert freezer.tick() is True
        assert gc.get_freeze_count() >= before + 1
        # frozen: out of every generation a collection walks
        assert gc.is_tracked(survivor)
        assert not any(o is survivor for o in gc.get_objects())
        assert freezer.freezes == 1 and freezer.tick() is False
    finally:
        freezer.close()
        gc.unfreeze()


def test_a_fast_full_collection_freezes_nothing() -> None:
    before = gc.get_freeze_count()
    freezer = Freezer(slow_s=0.05, clock=_Clock(step=0.01))
    try:
        gc.collect()
        assert freezer.tick() is False
        assert gc.get_freeze_count() == before
    finally:
        freezer.close()
        gc.unfreeze()
