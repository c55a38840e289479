"""The supervisor's config keys: [supervisor] provider_retry_s, [local] http, [[handlers]]."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import MINIMAL_CONFIG

from actors.node.config import ConfigError, HandlerSpec, http_address, load_config
from actors.node.handlers import handler_env, matches

BASE = MINIMAL_CONFIG


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


HANDLER = '[[handlers]]\nevents = ["node.failed", "node.joined"]\ncommand = ["/bin/true", "-x"]\n'


def test_handlers_are_read_in_order_with_a_default_timeout(tmp_path):
    cfg = load(tmp_path, HANDLER + '[[handlers]]\nevents = ["state."]\ncommand = ["c"]\n'
               "timeout_s = 2\n")
    assert [(h.events, h.command, h.timeout_s) for h in cfg.handlers] == [
        (("node.failed", "node.joined"), ("/bin/true", "-x"), 10.0),
        (("state.",), ("c",), 2.0)]
    assert load(tmp_path).handlers == ()


@pytest.mark.parametrize(("text", "key"), [
    ('[[handlers]]\nevents = []\ncommand = ["c"]\n', "handlers[0].events"),
    ('[[handlers]]\nevents = ["node."]\ncommand = [""]\n', "handlers[0].command"),
    ('[[handlers]]\nevents = ["node."]\n', "handlers[0].command"),
    (HANDLER + "timeout_s = 0\n", "handlers[0].timeout_s"),
    (HANDLER + "shell = true\n", "handlers[0].shell"),
    ('handlers = "x"\n', "handlers"),
])
def test_a_bad_handler_names_its_key(tmp_path, text, key):
    path = tmp_path / "node.toml"
    path.write_text(text + BASE if text.startswith("handlers") else BASE + "\n" + text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == key


def test_a_handler_matches_by_type_prefix_and_gets_the_event_in_its_environment():
    spec = HandlerSpec(events=("node.failed", "state."), command=("x",))
    assert matches(spec, "node.failed") and matches(spec, "state.changed")
    assert not matches(spec, "node.joined")
    env = handler_env({"type": "node.failed", "node_id": "b", "seq": 42}, "a")
    assert env == {"LBC_EVENT_TYPE": "node.failed", "LBC_NODE_ID": "b", "LBC_SELF": "a",
                   "LBC_SEQ": "42"}
