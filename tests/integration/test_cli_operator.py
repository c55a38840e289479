"""The operator's CLI against real nodes: events that end, call, stdin values,
LBCLUSTER_CONFIG, strict JSON and process titles (issues 12, 13 and 14)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from typing import Any

import psutil
import pytest
from conftest import wait_until

from actors.cli.errors import EXIT_FAIL, EXIT_TIMEOUT, EXIT_USAGE
from actors.sdk import NodeClient
from actors.testing.localcluster import LocalNode

pytestmark = pytest.mark.slow
CMD = [sys.executable, "-m", "actors.cli.main"]


def lbcluster(*args: str, timeout: float = 30, stdin: str | None = None,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CMD, *args], capture_output=True, text=True, timeout=timeout,
                          input=stdin, env=env)


def _one_line(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert result.returncode == code, result
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def node(clusters) -> LocalNode:
    return clusters(1).start().nodes[0]


def test_events_against_a_stopped_node_exits_1_with_one_line(clusters):
    cfg = str(clusters(1).nodes[0].write_config())
    # The generous subprocess timeout is the bound: it used to hang forever.
    _one_line(lbcluster("events", "-c", cfg, timeout=20), EXIT_FAIL, "not running")
    _one_line(lbcluster("events", "-c", cfg, "--snapshot", "--timeout", "30", timeout=20),
              EXIT_FAIL, "not running")


def test_events_exits_1_with_one_line_when_the_node_stops_while_watching(node):
    proc = subprocess.Popen([*CMD, "events", "-c", str(node.config_path), "--json",
                             "--snapshot", "--grace", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(proc.stdout.readline())  # the stream is up
        assert first["snapshot"]["node_id"] == node.name
        node.stop()
        assert proc.wait(30) == EXIT_FAIL
        err = proc.stderr.read()
        assert err.strip().count("\n") == 0 and "node stopped" in err, err
        assert "Traceback" not in err
    finally:
        proc.kill()
        proc.wait()


def test_events_takes_a_new_snapshot_when_the_node_restarts_within_the_grace(node):
    proc = subprocess.Popen([*CMD, "events", "-c", str(node.config_path), "--json",
                             "--snapshot", "--grace", "60", "--type", "state."],
                            stdout=subprocess.PIPE, text=True)
    try:
        first = json.loads(proc.stdout.readline())
        pid = node.proc.pid
        node.stop()
        node.start()
        node.wait_ready()
        assert node.proc.pid != pid
        second = json.loads(proc.stdout.readline())  # blocks until the new snapshot
        assert "snapshot" in second and second["snapshot"]["node_id"] == first[
            "snapshot"]["node_id"]
        assert lbcluster("kv", "set", "after", "1", "-c", str(node.config_path)).returncode == 0
        event = json.loads(proc.stdout.readline())
        assert event["type"] == "state.changed" and event["data"]["key"] == "after"
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_events_timeout_without_events_exits_3_with_one_line(node):
    result = lbcluster("events", "-c", str(node.config_path), "--type", "no.such.type.",
                       "--timeout", "1")
    _one_line(result, EXIT_TIMEOUT, "no event within 1 s")
    assert result.stdout == ""
    result = lbcluster("events", "-c", str(node.config_path), "--type", "no.such.type.",
                       "--timeout", "1", "--count", "2")
    _one_line(result, EXIT_TIMEOUT, "no event")


def test_call_reaches_any_control_op_and_reports_errors_by_code(node):
    cfg = str(node.config_path)
    done = lbcluster("call", "provider.kv.set", '{"key": "a", "value": 1}', "-c", cfg, "--json")
    assert done.returncode == 0, done
    assert isinstance(json.loads(done.stdout)["version"], int)
    got = json.loads(lbcluster("call", "kv.get", '{"key": "a"}', "-c", cfg, "--json").stdout)
    assert got["value"] == 1 and got["found"] is True
    status = lbcluster("call", "status", "-c", cfg)
    assert status.returncode == 0 and json.loads(status.stdout)["node_id"] == node.name
    _one_line(lbcluster("call", "no.such.op", "-c", cfg), EXIT_FAIL, "unknown_op: ")
    _one_line(lbcluster("call", "kv.set", '{"key": "a", "value": 1', "-c", cfg), EXIT_USAGE,
              "invalid JSON")


def test_kv_set_reads_the_value_from_stdin_and_from_a_file(node, tmp_path):
    cfg = str(node.config_path)
    assert lbcluster("kv", "set", "w", "-", "-c", cfg, stdin='{"b1": 3}\n').returncode == 0
    (tmp_path / "pem").write_text("line one\nline two\n")
    assert lbcluster("kv", "set", "cert", f"@{tmp_path / 'pem'}", "-c", cfg).returncode == 0
    with NodeClient(cfg) as client:
        assert client.kv_get("w") == {"b1": 3}
        assert client.kv_get("cert") == "line one\nline two"
    _one_line(lbcluster("kv", "set", "x", f"@{tmp_path / 'none'}", "-c", cfg), EXIT_USAGE,
              "no such file")


def test_unencodable_values_are_one_line_and_the_node_keeps_nothing(node):
    cfg = str(node.config_path)
    for value in ("123456789012345678901234567890", "NaN", "Infinity"):
        _one_line(lbcluster("kv", "set", "bad", value, "-c", cfg), EXIT_FAIL, "encode")
    # A value that starts with "-" follows "--", as for any argparse program.
    _one_line(lbcluster("kv", "set", "-c", cfg, "--", "bad", "-Infinity"), EXIT_FAIL, "encode")
    _one_line(lbcluster("call", "kv.set", '{"key": "bad", "value": 123456789012345678901234567890}',
                        "-c", cfg), EXIT_FAIL, "encode")
    assert lbcluster("kv", "get", "bad", "-c", cfg).returncode == EXIT_FAIL


def test_state_json_is_strict_even_when_a_client_stored_nan(node):
    cfg = str(node.config_path)
    with NodeClient(cfg) as client:
        client.kv_set("ratio", math.nan)  # msgpack carries NaN; JSON cannot
    out = lbcluster("state", "-c", cfg, "--json", "--type", "kv").stdout

    def refuse(name: str) -> Any:
        raise AssertionError(f"not strict JSON: {name}")

    states = json.loads(out, parse_constant=refuse)["states"]
    assert [s["value"] for s in states if s["key"] == "ratio"] == ["NaN"]
    assert "NaN" in lbcluster("kv", "get", "ratio", "-c", cfg).stdout


def test_lbcluster_config_stands_in_for_dash_c(node):
    env = {**os.environ, "LBCLUSTER_CONFIG": str(node.config_path)}
    members = lbcluster("members", "--json", env=env)
    assert members.returncode == 0, members
    assert [m["node_id"] for m in json.loads(members.stdout)["members"]] == [node.name]
    assert lbcluster("kv", "set", "e", "1", env=env).returncode == 0
    assert json.loads(lbcluster("kv", "get", "e", "--json", env=env).stdout)["value"] == 1


def test_version_prints_the_installed_package_version():
    result = lbcluster("--version")
    assert result.returncode == 0 and result.stdout.startswith("lbcluster 0.")


def test_every_process_of_a_node_is_titled_with_its_node_and_role(node):
    def title(pid: int) -> str:
        return " ".join(psutil.Process(pid).cmdline()).strip()

    with NodeClient(str(node.config_path)) as client:
        actors = {a["name"]: a["pid"] for a in client.status()["actors"] if a["pid"]}
    assert {"membership", "anti_entropy", "provider.kv"} <= set(actors)
    for name, pid in actors.items():
        want = f"lbcluster[{node.name}] {name}"
        wait_until(lambda pid=pid, want=want: title(pid) == want, what=f"{want} of {pid}")
    supervisor = psutil.Process(node.proc.pid)
    assert title(supervisor.pid) == f"lbcluster[{node.name}] supervisor"
    others = {title(c.pid) for c in supervisor.children() if c.pid not in actors.values()}
    assert f"lbcluster[{node.name}] zygote" in others


def test_the_demo_runs_its_story_and_cleans_up():
    result = lbcluster("demo", "--nodes", "2", "--duration", "6", timeout=90)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "state.changed" in out and "key=greeting" in out
    assert "actor.restarted" in out  # the killed kv actor came back
    assert "members as n0 sees them" in out and "NODE_ID" in out
    folder = out.split("starting 2 nodes in ", 1)[1].split()[0]
    assert not os.path.exists(folder)
