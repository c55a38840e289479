"""The control routing table: built from what each actor kind declares (`serves`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MINIMAL_CONFIG

from actors.node.config import ConfigError, load_config
from actors.node.plan import plan_actors, plan_routes
from actors.node.routing import Route, RouteConflict, RoutingTable

TABLE = RoutingTable([
    Route("members", "membership"), Route("metadata.", "membership"),
    Route("state", "anti_entropy"), Route("provider.kv.", "provider.kv", strip=True),
    Route("kv.", "provider.kv", strip=True), Route("provider.", "catch_all"),
])


@pytest.mark.parametrize(("op", "routed"), [
    ("members", ("membership", "members")),
    ("metadata.set", ("membership", "metadata.set")),  # a core actor gets the op unchanged
    ("state", ("anti_entropy", "state")),
    ("kv.set", ("provider.kv", "set")),  # a provider's short name is stripped
    ("provider.kv.get", ("provider.kv", "get")),
    ("provider.kv.a.b", ("provider.kv", "a.b")),
    ("provider.rate.add", ("catch_all", "provider.rate.add")),  # the longest prefix wins
    ("membersx", None),  # exact ops are exact
    ("metadata.", None),  # a prefix alone names no op
    ("kv", None),
    ("status", None),  # the supervisor's own ops are not in the table
])
def test_each_op_is_routed_to_the_actor_that_declared_it(op, routed):
    assert TABLE.resolve(op) == routed


def test_two_actors_declaring_one_op_is_refused():
    with pytest.raises(RouteConflict, match=r"provider\.b declares 'x\.', which provider\.a"):
        RoutingTable([Route("x.", "provider.a"), Route("x.", "provider.b")])


def test_an_actor_cannot_claim_a_supervisor_op():
    with pytest.raises(RouteConflict, match="the supervisor"):
        RoutingTable([Route("status", "membership")])


CONFIG = MINIMAL_CONFIG + '[[providers]]\ntype = "kv"\n'


def test_the_plan_routes_what_the_actor_classes_declare(tmp_path: Path):
    path = tmp_path / "node.toml"
    path.write_text(CONFIG)
    cfg = load_config(path)
    table = plan_routes(cfg, plan_actors(cfg))
    assert table.resolve("kv.set") == ("provider.kv", "set")
    assert table.resolve("provider.kv.del") == ("provider.kv", "del")
    assert table.resolve("metadata.set") == ("membership", "metadata.set")
    assert table.resolve("attach") == ("anti_entropy", "attach")
    assert table.resolve("local") == ("anti_entropy", "local")
    assert table.resolve("members") == ("membership", "members")


def test_a_provider_claiming_another_actors_prefix_is_a_config_error(tmp_path: Path):
    path = tmp_path / "node.toml"
    path.write_text(CONFIG + '[[providers]]\ntype = "greedy"\n'
                    'module = "support_providers:GreedyProvider"\n')
    cfg = load_config(path)
    with pytest.raises(ConfigError, match=r"providers\[1\].module: provider.greedy declares"):
        plan_routes(cfg, plan_actors(cfg))
