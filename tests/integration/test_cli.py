"""The `lbcluster` command line against real nodes, and every class of config error."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from actors.testing.localcluster import LocalNode, free_ports

pytestmark = pytest.mark.slow


def lbcluster(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "actors.cli.main", *args], capture_output=True,
                          text=True, timeout=timeout)


def _node(tmp_path: Path, **extra) -> LocalNode:
    g, s, e = free_ports(3)
    return LocalNode(name="solo", folder=tmp_path / "solo", gossip=f"tcp://127.0.0.1:{g}",
                     sync=f"tcp://127.0.0.1:{s}", events=f"tcp://127.0.0.1:{e}", seeds=[],
                     extra=extra)


def _config_with(tmp_path: Path, text: str) -> Path:
    node = _node(tmp_path)
    path = node.write_config()
    path.write_text(path.read_text() + "\n" + text)
    return path


def _one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_a_missing_config_file_is_one_line_and_exit_2(tmp_path):
    _one_line_error(lbcluster("run", "-c", str(tmp_path / "nope.toml")), "nope.toml",
                    "not found")


def test_invalid_toml_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[node\nid = 1")
    _one_line_error(lbcluster("run", "-c", str(path)), "bad.toml", "invalid TOML")


@pytest.mark.parametrize(("toml_extra", "needles"), [
    ("[log]\nlevell = 'INFO'", ("log.levell", "unknown key")),
    ("[supervisor]\nmax_restarts = 'five'", ("supervisor.max_restarts", "integer")),
    ("[membership]\nprobe_interval_ms = 'fast'", ("membership",)),
    ("[[providers]]\ntype = 'mine'\nmodule = 'no_such_pkg.mod:Thing'", ("providers[1]",)),
    ("[[providers]]\ntype = 'other'", ("providers[1].type", "not built in")),
])
def test_config_mistakes_name_the_file_and_key(tmp_path, toml_extra, needles):
    _one_line_error(lbcluster("run", "-c", str(_config_with(tmp_path, toml_extra))),
                    "node.toml", *needles)


@pytest.mark.parametrize(("provider", "needles"), [
    ({"type": "kv", "options": {"max_value_bytes": "big"}},
     ("providers[0].options.max_value_bytes", "must be an integer, not str")),
    ({"type": "kv", "options": {"max_value_bytes": 2 << 20}},  # past one wire frame
     ("providers[0].options.max_value_bytes", "must be between 1 and")),
    ({"type": "kv", "options": {"tombstone_grace_s": 0}},
     ("providers[0].options.tombstone_grace_s", "must be between")),
    ({"type": "health", "options": {"rise": 0}}, ("providers[0].options.rise", "between 1")),
    ({"type": "circuit_breaker", "options": {"open_s": "30"}},
     ("providers[0].options.open_s", "must be a number")),
])
def test_a_bad_built_in_provider_option_is_one_line_naming_file_and_key(tmp_path, provider,
                                                                        needles):
    node = _node(tmp_path)
    node.providers = [provider]
    _one_line_error(lbcluster("run", "-c", str(node.write_config())), "node.toml", *needles)
    assert not (node.folder / "control.sock").exists(), "the node must not have started"


def test_a_bad_endpoint_names_its_key(tmp_path):
    node = _node(tmp_path)
    node.gossip = "tcp://127.0.0.1"
    _one_line_error(lbcluster("run", "-c", str(node.write_config())), "network.gossip")


def test_an_ipc_path_too_long_names_its_key(tmp_path):
    node = _node(tmp_path)
    deep = tmp_path / ("x" * 60) / ("y" * 60)
    path = node.write_config()
    path.write_text(path.read_text().replace(node.control, f"ipc://{deep}/control.sock"))
    _one_line_error(lbcluster("run", "-c", str(path)), "local.control", "longer than")


def test_a_port_in_use_names_its_key(tmp_path):
    node = _node(tmp_path)
    holder = socket.socket()
    holder.bind(("127.0.0.1", int(node.gossip.rsplit(":", 1)[1])))
    holder.listen()
    try:
        _one_line_error(lbcluster("run", "-c", str(node.write_config())), "network.gossip",
                        "in use")
    finally:
        holder.close()


def test_commands_fail_with_one_line_when_the_node_is_not_running(tmp_path):
    path = _node(tmp_path).write_config()
    for args in (("status",), ("members",), ("kv", "get", "x"), ("state",)):
        result = lbcluster(*args, "-c", str(path))
        assert result.returncode == 1, result
        assert result.stderr.strip().count("\n") == 0
        assert "not running" in result.stderr


def test_status_kv_and_state_over_the_control_socket(tmp_path):
    node = _node(tmp_path)
    node.start()
    try:
        node.wait_ready()
        cfg = str(node.config_path)
        status = json.loads(lbcluster("status", "-c", cfg, "--json").stdout)
        assert status["node_id"] == "solo"
        names = {a["name"] for a in status["actors"]}
        assert {"supervisor", "provider.kv"} <= names
        assert all(a["pid"] for a in status["actors"])
        table = lbcluster("status", "-c", cfg).stdout.splitlines()
        assert "STATE" in table[1].split()
        assert any(line.split()[:1] == ["provider.kv"] and "ready" in line.split()
                   for line in table)
        assert lbcluster("kv", "set", "color", '{"r": 1}', "-c", cfg).returncode == 0
        got = json.loads(lbcluster("kv", "get", "color", "-c", cfg, "--json").stdout)
        assert got["value"] == {"r": 1}
        assert lbcluster("kv", "del", "color", "-c", cfg).returncode == 0
        assert lbcluster("kv", "get", "color", "-c", cfg).returncode == 1
        lbcluster("kv", "set", "plain", "hello world", "-c", cfg)
        state = json.loads(lbcluster("state", "-c", cfg, "--json", "--type", "kv").stdout)
        assert [s["value"] for s in state["states"] if s["key"] == "plain"] == ["hello world"]
    finally:
        node.stop()


def test_events_prints_json_lines_after_a_snapshot(tmp_path):
    node = _node(tmp_path)
    node.start()
    try:
        node.wait_ready()
        cfg = str(node.config_path)
        proc = subprocess.Popen([sys.executable, "-m", "actors.cli.main", "events", "-c", cfg,
                                 "--json", "--snapshot", "--count", "1", "--timeout", "20",
                                 "--type", "state."], stdout=subprocess.PIPE, text=True)
        try:
            first = json.loads(proc.stdout.readline())
            assert "snapshot" in first and first["snapshot"]["node_id"] == "solo"
            lbcluster("kv", "set", "k", "1", "-c", cfg)
            event = json.loads(proc.stdout.readline())
            assert event["type"] == "state.changed" and event["data"]["key"] == "k"
            assert event["seq"] > first["snapshot"]["seq"]
            assert proc.wait(20) == 0
        finally:
            proc.kill()
            proc.wait()
    finally:
        node.stop()
