"""The `[haproxy]` section: valid tables load; every mistake is one ConfigError naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from actors.node.config import ConfigError, load_config
from actors.node.plan import plan_actors

BASE = """
[node]
id = "a"
data_dir = "data/a"
[network]
gossip = "tcp://127.0.0.1:7946"
sync = "tcp://127.0.0.1:7947"
[local]
events = "tcp://127.0.0.1:7948"
control = "ipc://data/a/control.sock"
[[providers]]
type = "health"
"""
GOOD = """
[haproxy]
runtime_api = "unix:///run/haproxy/admin.sock"
servers = { web1 = "be_app/web1", web2 = "be_app/web2" }
"""


def write(tmp_path: Path, text: str, base: str = BASE) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(base + text)
    return path


def test_the_section_loads_and_adds_the_haproxy_actor(tmp_path):
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg.haproxy is not None
    assert cfg.haproxy.runtime_api == "unix:///run/haproxy/admin.sock"
    assert cfg.haproxy.servers == {"web1": "be_app/web1", "web2": "be_app/web2"}
    assert cfg.haproxy.interval_s == 2.0
    assert "haproxy" in plan_actors(cfg)


def test_without_the_section_there_is_no_bridge(tmp_path):
    cfg = load_config(write(tmp_path, ""))
    assert cfg.haproxy is None and "haproxy" not in plan_actors(cfg)


def test_tcp_and_an_interval_are_accepted(tmp_path):
    cfg = load_config(write(tmp_path, GOOD.replace(
        '"unix:///run/haproxy/admin.sock"', '"tcp://127.0.0.1:9999"\ninterval_ms = 500')))
    assert cfg.haproxy is not None and cfg.haproxy.interval_s == 0.5


@pytest.mark.parametrize(("table", "key"), [
    ('runtime_api = "http://127.0.0.1:1"\nservers = { a = "b/c" }', "haproxy.runtime_api"),
    ('runtime_api = "unix://admin.sock"\nservers = { a = "b/c" }', "haproxy.runtime_api"),
    ('runtime_api = "tcp://127.0.0.1:0"\nservers = { a = "b/c" }', "haproxy.runtime_api"),
    ('runtime_api = 9999\nservers = { a = "b/c" }', "haproxy.runtime_api"),
    ('servers = { a = "b/c" }', "haproxy.runtime_api"),
    ('runtime_api = "tcp://127.0.0.1:9999"', "haproxy.servers"),
    ('runtime_api = "tcp://127.0.0.1:9999"\nservers = ["b/c"]', "haproxy.servers"),
    ('runtime_api = "tcp://127.0.0.1:9999"\nservers = {}', "haproxy.servers"),
    ('runtime_api = "tcp://127.0.0.1:9999"\nservers = { a = "web1" }', "haproxy.servers.a"),
    ('runtime_api = "tcp://127.0.0.1:9999"\nservers = { a = 1 }', "haproxy.servers.a"),
    ('runtime_api = "tcp://127.0.0.1:9999"\nservers = { a = "b/c; shutdown" }',
     "haproxy.servers.a"),
    ('runtime_api = "tcp://127.0.0.1:9999"\nservers = { a = "b/c", d = "b/c" }',
     "haproxy.servers.d"),
    ('runtime_api = "tcp://127.0.0.1:9999"\nservers = { a = "b/c" }\ninterval_ms = 0',
     "haproxy.interval_ms"),
    ('runtime_api = "tcp://127.0.0.1:9999"\nservers = { a = "b/c" }\nport = 1',
     "haproxy.port"),
])
def test_mistakes_name_the_key(tmp_path, table, key):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, "[haproxy]\n" + table + "\n"))
    assert err.value.key == key
    assert "\n" not in str(err.value)


def test_the_bridge_needs_the_health_provider(tmp_path):
    cfg = load_config(write(tmp_path, GOOD, base=BASE.replace('type = "health"',
                                                              'type = "kv"')))
    with pytest.raises(ConfigError) as err:
        plan_actors(cfg)
    assert err.value.key == "haproxy"


def test_a_bad_value_is_one_line_and_exit_code_2(tmp_path):
    path = write(tmp_path, GOOD.replace("be_app/web2", "web2"))
    proc = subprocess.run([sys.executable, "-m", "supervisor", "-c", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "haproxy.servers.web2" in proc.stderr
