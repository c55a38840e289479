"""deploy/: the compose example's configs are valid and agree with compose.yaml and the
Dockerfile; the systemd unit stops the node through its supervisor; the healthcheck.

Docker cannot run here, so compose.yaml is read with simple text matching (no YAML
parser is a dependency): each service is the block under `  <name>:`."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

import pytest

from actors.node.config import Config, SupervisorSection, endpoint_port, load_config
from actors.testing.localcluster import free_ports

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SERVICES = ("node-a", "node-b", "node-c")


def compose_services() -> dict[str, str]:
    """service name -> its block of compose.yaml."""
    text = (DEPLOY / "compose.yaml").read_text()
    body = text.split("\nservices:\n", 1)[1].split("\nvolumes:\n", 1)[0]
    blocks = re.split(r"^  ([A-Za-z0-9_.-]+):\n", body, flags=re.M)[1:]
    return dict(zip(blocks[::2], blocks[1::2], strict=True))


def flow_list(block: str, key: str) -> list[str]:
    match = re.search(rf"^    {key}: (\[.*\])$", block, flags=re.M)
    assert match, f"no {key}: [...] in {block!r}"
    return json.loads(match[1])


def host_of(endpoint: str) -> str:
    return endpoint.split("://", 1)[1].rsplit(":", 1)[0]


def config_of(service: str) -> Config:
    return load_config(DEPLOY / "configs" / f"{service}.toml")


def test_the_compose_file_runs_the_three_nodes():
    assert tuple(compose_services()) == SERVICES


@pytest.mark.parametrize("service", SERVICES)
def test_a_compose_node_config_is_valid_and_matches_its_service(service):
    cfg = config_of(service)
    block = compose_services()[service]
    assert cfg.node.id == service
    assert cfg.network.advertise_host == service
    assert re.search(rf"^    hostname: {service}$", block, flags=re.M)
    for endpoint in (cfg.network.gossip, cfg.network.sync):
        assert host_of(endpoint) == "0.0.0.0"
    for endpoint in (cfg.local.events, cfg.local.http or ""):
        assert endpoint.removeprefix("tcp://").startswith("127.0.0.1:"), endpoint
    exposed = {int(p) for p in flow_list(block, "expose")}
    assert exposed == {endpoint_port(cfg.network.gossip), endpoint_port(cfg.network.sync)}
    others = {s: config_of(s) for s in SERVICES if s != service}
    assert set(cfg.network.seeds) == {f"tcp://{s}:{endpoint_port(c.network.gossip)}"
                                      for s, c in others.items()}
    assert {c.node.cluster for c in others.values()} == {cfg.node.cluster}


@pytest.mark.parametrize("service", SERVICES)
def test_a_compose_service_mounts_its_config_where_its_command_reads_it(service):
    block = compose_services()[service]
    command = flow_list(block, "command")
    assert command[:2] == ["run", "-c"]
    mount = re.search(rf"^      - \./configs/{service}\.toml:(\S+):ro$", block, flags=re.M)
    assert mount and mount[1] == command[2]
    data = re.search(r"^      - ([\w-]+):(\S+)$", block, flags=re.M)
    assert data and Path(data[2]) == config_of(service).node.data_dir


def test_the_dockerfile_runs_lbcluster_with_the_compose_command_and_ports():
    text = (DEPLOY / "Dockerfile").read_text()
    command = flow_list(compose_services()["node-a"], "command")
    assert 'ENTRYPOINT ["lbcluster"]' in text
    assert f"CMD {json.dumps(command)}" in text
    assert re.search(r"^FROM python:3\.11-slim$", text, flags=re.M)
    assert re.search(r"^USER lbcluster$", text, flags=re.M)
    cfg = config_of("node-a")
    exposed = re.search(r"^EXPOSE (.+)$", text, flags=re.M)
    assert exposed and {int(p) for p in exposed[1].split()} == {
        endpoint_port(cfg.network.gossip), endpoint_port(cfg.network.sync)}
    assert f"healthcheck.py {command[2]}" in text.replace('", "', " ")


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in (DEPLOY / "lbcluster.service").read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_the_systemd_unit_signals_only_the_supervisor_and_waits_for_its_stop():
    unit = unit_settings()
    assert unit["ExecStart"] == ["lbcluster run -c /etc/lbcluster/node.toml"]
    assert unit["KillMode"] in (["mixed"], ["process"])
    assert unit["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert unit["Restart"] == ["on-failure"]
    # membership's share (at most 1 s), the others' grace, 1 s to reap after KILL
    stop_s = 1 + SupervisorSection().stop_grace_s + 1
    assert float(unit["TimeoutStopSec"][0]) > stop_s
    assert int(unit["LimitNOFILE"][0]) >= 65536
    assert unit["User"] == ["lbcluster"]


def healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", DEPLOY / "healthcheck.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_healthcheck_asks_a_wildcard_bind_on_loopback():
    url = healthcheck().health_url
    assert url("0.0.0.0:9190") == "http://127.0.0.1:9190/health"
    assert url("[::]:9190") == "http://[::1]:9190/health"
    assert url("10.0.0.5:80") == "http://10.0.0.5:80/health"


def test_the_healthcheck_reports_a_node_that_does_not_answer(tmp_path):
    port = free_ports(1)[0]
    cfg = tmp_path / "node.toml"
    cfg.write_text(f'[node]\ndata_dir = "d"\n[network]\ngossip = "tcp://127.0.0.1:1"\n'
                   f'sync = "tcp://127.0.0.1:2"\n[local]\nevents = "tcp://127.0.0.1:3"\n'
                   f'control = "ipc://c.sock"\nhttp = "127.0.0.1:{port}"\n')
    module = healthcheck()
    assert module.main([str(cfg)]) == 1
    assert "/health" in (module.check(str(cfg)) or "")
    assert module.main([str(tmp_path / "missing.toml")]) == 1
