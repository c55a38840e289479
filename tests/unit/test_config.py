"""Config loading: valid files become frozen dataclasses; mistakes become ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.membership.core.timing import PROFILES
from actors.node.config import ConfigError, advertised, load_config

BASE = """
[node]
id = "a"
cluster = "c1"
data_dir = "data/a"
[network]
gossip = "tcp://127.0.0.1:7946"
sync = "tcp://127.0.0.1:7947"
seeds = ["tcp://127.0.0.1:7956"]
[local]
events = "tcp://127.0.0.1:7948"
control = "ipc://data/a/control.sock"
"""


def write(tmp_path: Path, extra: str = "", base: str = BASE) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(base + "\n" + extra)
    return path


def test_a_minimal_config_loads_with_defaults(tmp_path):
    cfg = load_config(write(tmp_path))
    assert cfg.node.id == "a" and cfg.node.cluster == "c1"
    assert cfg.node.data_dir == (tmp_path / "data/a").resolve()
    assert cfg.local.control == f"ipc://{(tmp_path / 'data/a/control.sock').resolve()}"
    assert cfg.membership_profile == "lan"
    assert cfg.supervisor.max_restarts == 5
    assert cfg.providers == ()


def test_the_core_tables_arrive_typed(tmp_path):
    cfg = load_config(write(tmp_path, "[membership]\nprofile = 'test'\nprobe_interval_ms = 200\n"
                                      "[anti_entropy]\ninterval_ms = 250\n[log]\nlevel = 'debug'"))
    assert cfg.membership.probe_interval_s == 0.2
    assert cfg.membership.probe_timeout_s == PROFILES["test"].probe_timeout_s
    assert cfg.anti_entropy.interval_s == 0.25 and cfg.anti_entropy.fanout == 2
    assert cfg.log.level == "DEBUG" and cfg.supervisor.stop_grace_s == 3.0


def test_providers_keep_their_options(tmp_path):
    cfg = load_config(write(tmp_path, '[[providers]]\ntype = "kv"\noptions = { a = 1 }\n'))
    assert cfg.providers[0].type == "kv" and cfg.providers[0].options == {"a": 1}
    assert cfg.providers[0].actor_name == "provider.kv"


@pytest.mark.parametrize(("extra", "key"), [
    ("[nodes]\nx = 1", "nodes"),
    ("[supervisor]\nmax_restarts = true", "supervisor.max_restarts"),
    ("[supervisor]\nmax_restarts = -1", "supervisor.max_restarts"),
    ("[supervisor]\nmax_restarts_window_s = 0", "supervisor.max_restarts_window_s"),
    ("[log]\nlevel = 'LOUD'", "log.level"),
    ("[log]\njson = 1", "log.json"),
    ("[supervisor]\nstop_grace_s = inf", "supervisor.stop_grace_s"),
    ("[membership]\nprobe_timeout_ms = 2000", "membership.probe_timeout_ms"),
    ("[membership]\nprofile = 'fast'", "membership.profile"),
    ("[membership]\nprobe_interval = 1", "membership.probe_interval"),
    ("[anti_entropy]\nfanout = 0", "anti_entropy.fanout"),
    ("[anti_entropy]\ninterval_ms = 'soon'", "anti_entropy.interval_ms"),
    ("[[providers]]\ntype = 'kv'\n[[providers]]\ntype = 'kv'", "providers[1].type"),
    ("[[providers]]\nmodule = 'x:Y'", "providers[0].type"),
    ("[[providers]]\ntype = 'x'\nmodule = 'no_colon'", "providers[0].module"),
    ("[security]\ncurve_secret_key_file = 'missing.key'", "security.curve_public_key_file"),
    ("[security]\ncurve_secret_key_file = 'a'\ncurve_public_key_file = 'b'\n"
     "allowed_keys_dir = 'c'", "security.curve_secret_key_file"),
])
def test_mistakes_name_the_key(tmp_path, extra, key):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, extra))
    assert info.value.key == key
    assert str(info.value).startswith(str(tmp_path / "node.toml"))


@pytest.mark.parametrize(("old", "new", "key"), [
    ('gossip = "tcp://127.0.0.1:7946"', 'gossip = "udp://x:1"', "network.gossip"),
    ('gossip = "tcp://127.0.0.1:7946"', 'gossip = "tcp://127.0.0.1:99999"', "network.gossip"),
    ('sync = "tcp://127.0.0.1:7947"', 'sync = "tcp://127.0.0.1:7946"', "network.sync"),
    ('seeds = ["tcp://127.0.0.1:7956"]', 'seeds = ["nope"]', "network.seeds[0]"),
    ('control = "ipc://data/a/control.sock"', 'control = "tcp://127.0.0.1:1"', "local.control"),
    ('cluster = "c1"', 'cluster = "has space"', "node.cluster"),
    ('data_dir = "data/a"\n', "", "node.data_dir"),
])
def test_bad_values_name_the_key(tmp_path, old, new, key):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, base=BASE.replace(old, new)))
    assert info.value.key == key


def test_a_long_ipc_path_is_refused(tmp_path):
    base = BASE.replace("ipc://data/a/control.sock", "ipc://" + "d" * 120 + "/c.sock")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, base=base))
    assert info.value.key == "local.control"


def test_missing_and_unreadable_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml")
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "dir.toml")


def test_advertised_replaces_only_the_host():
    assert advertised("tcp://0.0.0.0:7946", "10.0.0.5") == "tcp://10.0.0.5:7946"
    assert advertised("tcp://127.0.0.1:7946", None) == "tcp://127.0.0.1:7946"


def test_binding_every_interface_needs_an_advertised_host(tmp_path):
    base = BASE.replace("tcp://127.0.0.1:7946", "tcp://0.0.0.0:7946")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, base=base))
    assert info.value.key == "network.advertise_host"
    cfg = load_config(write(tmp_path, base=base.replace(
        'seeds =', 'advertise_host = "10.1.2.3"\nseeds =')))
    assert cfg.network.advertise_host == "10.1.2.3"


def test_seeds_may_name_their_node_and_must_with_security(tmp_path):
    base = BASE.replace('seeds = ["tcp://127.0.0.1:7956"]',
                        'seeds = ["node-b@tcp://127.0.0.1:7956", "tcp://127.0.0.1:7966"]')
    cfg = load_config(write(tmp_path, base=base))
    assert cfg.network.seeds == ("tcp://127.0.0.1:7956", "tcp://127.0.0.1:7966")
    assert cfg.network.seed_ids == {"tcp://127.0.0.1:7956": "node-b"}
    from transport.security import write_keypair

    write_keypair(tmp_path / "keys", "a")
    (tmp_path / "allowed").mkdir()
    secure = ("[security]\ncurve_public_key_file = 'keys/a.key'\n"
              "curve_secret_key_file = 'keys/a.key_secret'\nallowed_keys_dir = 'allowed'\n")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, secure, base=base))
    assert info.value.key == "network.seeds[1]"
    cfg = load_config(write(tmp_path, secure, base=base.replace(', "tcp://127.0.0.1:7966"', "")))
    assert cfg.security.enabled
