"""The simulator itself: its network's faults, pauses, scenarios and determinism."""

from __future__ import annotations

import random

import pytest

from actors.membership.core.timing import PROFILES
from actors.testing.sim import NetModel, Network, Scenario, Sim, build, expect, start
from transport.protocol import GossipMessage

LOSSY = Scenario("test-12-lossy-crash", "test", 12, seed=7,
                 net=NetModel(loss=0.05, duplicate=0.05), settle_s=2.0,
                 steps=((0.5, "crash", ("n5",)), (1.0, "split", ()), (3.0, "heal", ())))


def ping(sender: str = "n1") -> GossipMessage:
    return GossipMessage("ping", sender, None, (), None,
                         {"seq": 3, "addr": f"tcp://{sender}.sim:7946", "inc": 0})


def test_the_same_seed_replays_the_same_run_event_for_event() -> None:
    def trace(sc: Scenario) -> list[tuple[float, str, str, str]]:
        sim, log = build(sc)
        sim.run_until(sim.now + 6.0)
        return [(o.time, o.observer, o.event.kind, o.event.node.node_id)
                for o in log.observations]

    first = trace(LOSSY)
    assert first == trace(LOSSY)
    assert any(kind == "node.failed" for _, _, kind, _ in first)  # the faults did happen
    other = Scenario(LOSSY.name, LOSSY.profile, LOSSY.nodes, LOSSY.seed + 1, LOSSY.net,
                     settle_s=LOSSY.settle_s, steps=LOSSY.steps)
    assert trace(other) != first


def test_a_message_crosses_the_real_codec_and_is_metered_by_its_encoded_size() -> None:
    network = Network(NetModel(), random.Random(0))
    wire, size = network.encode(ping())
    assert isinstance(wire, bytes) and size == len(wire) > 0
    assert network.decode(wire) == ping()
    assert network.meter.messages == {"ping": 1} and network.meter.bytes == {"ping": size}
    network.model.codec = False  # what was encoded before still decodes
    assert network.decode(wire) == ping() and network.encode(ping()) == (ping(), 0)


def test_the_network_duplicates_drops_and_cuts_as_its_model_says() -> None:
    rng = random.Random(1)
    assert len(Network(NetModel(duplicate=1.0), rng).delays(0, 1)) == 2
    assert Network(NetModel(loss=1.0), rng).delays(0, 1) == []
    cut = Network(NetModel(), rng)
    cut.partition([0, 0, 1])
    assert len(cut.delays(0, 1)) == 1 and cut.delays(0, 2) == [] == cut.delays(2, 1)
    cut.partition(None)
    assert len(cut.delays(0, 2)) == 1
    some = Network(NetModel(loss=0.2, duplicate=0.3, latency_min_s=0.001, latency_max_s=0.002),
                   rng)
    copies = [some.delays(0, 1) for _ in range(20_000)]
    arrived = sum(len(c) for c in copies) / len(copies)
    assert abs(arrived - 1.3 * 0.8) < 0.03  # 1.3 copies sent on average, 80 % arrive
    assert all(0.001 <= d <= 0.002 for c in copies for d in c)


def test_a_paused_node_neither_sends_nor_handles_until_it_resumes() -> None:
    sim, _ = start(Scenario("test-4", "test", 4, seed=3))
    sim.run_until(2.0)
    sent_by: list[int] = []
    sim.tap = lambda src, dst, msg: sent_by.append(src)
    sim.pause(3)
    sim.run_until(sim.now + 0.5)
    node = sim.nodes[3]
    assert 3 not in sent_by and node.held  # others kept sending to it; it kept quiet
    sim.resume(3)
    assert not node.held and 3 in sent_by  # answered what it held, then ticked
    assert sim.run_until(sim.now + 5.0, lambda: all(
        set(sim.view(i).values()) == {"alive"} for i in range(4)))


def test_a_scenario_step_the_simulator_does_not_know_is_refused_when_built() -> None:
    with pytest.raises(ValueError, match="'reboot'"):
        build(Scenario("bad", "test", 3, seed=1, settle_s=0.1, steps=((0.1, "reboot", ("n1",)),)))


def test_a_failed_expectation_names_the_scenario_and_its_seed() -> None:
    with pytest.raises(AssertionError, match=r"\[scenario=test-12-lossy-crash seed=7\]"):
        expect(LOSSY, False, "never")


def test_a_converged_start_needs_no_join_traffic_and_every_core_sees_all() -> None:
    sim = Sim(8, PROFILES["test"], NetModel(), seed=2)
    sim.start_converged(list(range(8)))
    assert all(set(sim.view(i)) == {f"n{j}" for j in range(8)} for i in range(8))
    sim.run_until(1.0)
    assert "join" not in sim.meter.messages
