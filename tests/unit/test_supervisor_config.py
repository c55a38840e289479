"""The supervisor's config keys: [supervisor] provider_retry_s, [local] http, [[handlers]]."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.node.config import ConfigError, http_address, load_config

BASE = """
[node]
id = "a"
data_dir = "data"
[network]
gossip = "tcp://127.0.0.1:7946"
sync = "tcp://127.0.0.1:7947"
[local]
events = "tcp://127.0.0.1:7948"
control = "ipc://data/control.sock"
"""


def load(tmp_path: Path, text: str = "", local: str = ""):
    path = tmp_path / "node.toml"
    path.write_text(BASE + local + "\n" + text)
    return load_config(path)


def test_provider_retry_s_defaults_to_60_and_can_be_set(tmp_path):
    assert load(tmp_path).supervisor.provider_retry_s == 60.0
    assert load(tmp_path, "[supervisor]\nprovider_retry_s = 2.5").supervisor.provider_retry_s == 2.5


@pytest.mark.parametrize(("value", "needle"), [
    ("0", "must be greater than 0"), ('"60"', "not str"), ("true", "not a boolean")])
def test_a_bad_provider_retry_s_names_its_key(tmp_path, value, needle):
    with pytest.raises(ConfigError, match=r"supervisor\.provider_retry_s") as caught:
        load(tmp_path, f"[supervisor]\nprovider_retry_s = {value}")
    assert needle in str(caught.value)


def test_http_is_off_by_default_and_takes_host_colon_port(tmp_path):
    assert load(tmp_path).local.http is None
    assert load(tmp_path, local='http = "127.0.0.1:9190"').local.http == "127.0.0.1:9190"
    assert load(tmp_path, local='http = "[::1]:9190"').local.http == "[::1]:9190"
    assert http_address("[::1]:9190") == ("::1", 9190)


@pytest.mark.parametrize(("value", "needle"), [
    ('"9190"', "HOST:PORT"), ('"tcp://127.0.0.1:9190"', "HOST:PORT"),
    ('"127.0.0.1:0"', "between 1 and 65535"), ("9190", "not int")])
def test_a_bad_http_address_names_its_key(tmp_path, value, needle):
    with pytest.raises(ConfigError, match=r"local\.http") as caught:
        load(tmp_path, local=f"http = {value}")
    assert needle in str(caught.value)
