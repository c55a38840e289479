"""The CLI's arguments and values: reading, parsing and refusing before anything is sent."""

from __future__ import annotations

import io
from importlib import metadata

import pytest

from actors.cli import main as cli
from actors.cli.errors import EXIT_FAIL, EXIT_USAGE, CliError
from actors.cli.values import check_encodable, parse_json_args, parse_value, read_value

HUGE = "123456789012345678901234567890"


@pytest.mark.parametrize(("text", "value"), [
    ("3", 3), ('{"w": 3}', {"w": 3}), ('"quoted"', "quoted"), ("hello world", "hello world"),
    ("null", None), ("nan", "nan"), (str(2**64 - 1), 2**64 - 1), (str(-(2**63)), -(2**63)),
])
def test_a_value_is_json_when_it_parses_and_else_the_string(text, value):
    assert parse_value(text) == value


@pytest.mark.parametrize("text", [HUGE, f"[1, {{\"a\": {HUGE}}}]", str(2**64), str(-(2**63) - 1),
                                  "NaN", "Infinity", "-Infinity", '{"x": NaN}', '"\\ud800"'])
def test_values_that_cannot_be_encoded_are_refused_with_exit_1(text):
    with pytest.raises(CliError) as caught:
        parse_value(text)
    assert caught.value.code == EXIT_FAIL
    assert "\n" not in str(caught.value)


def test_a_huge_integer_is_named_shortly():
    with pytest.raises(CliError, match=r"11111111112222222222\.\.\.\(50 digits\)"):
        check_encodable({"a": [int("1" * 10 + "2" * 10 + "3" * 30)]})
    with pytest.raises(CliError, match=r"integer 12345678901234567890"):
        parse_value("1234567890123456789" + "0" * 11)


def test_dash_reads_the_value_from_stdin_without_its_final_newline():
    assert read_value("-", io.StringIO('{"w": 3}\n')) == {"w": 3}
    assert read_value("-", io.StringIO("two words\n")) == "two words"


def test_at_file_reads_the_value_from_a_file(tmp_path):
    (tmp_path / "v.json").write_text('[1, 2]\n')
    (tmp_path / "cert.pem").write_text("-----BEGIN-----\nabc\n-----END-----\n")
    assert read_value(f"@{tmp_path / 'v.json'}", io.StringIO()) == [1, 2]
    assert read_value(f"@{tmp_path / 'cert.pem'}", io.StringIO()) == (
        "-----BEGIN-----\nabc\n-----END-----")
    assert read_value("@", io.StringIO()) == "@"  # nothing after @: the string itself


@pytest.mark.parametrize(("content", "needle"), [(None, "no such file"),
                                                  (b"\xff\xfe", "not UTF-8")])
def test_an_unreadable_file_is_one_line_and_exit_2(tmp_path, content, needle):
    path = tmp_path / "value"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CliError, match=needle) as caught:
        read_value(f"@{path}", io.StringIO())
    assert caught.value.code == EXIT_USAGE


@pytest.mark.parametrize("text", ["{", "[1]", '"s"', "{'a': 1}"])
def test_call_arguments_that_are_not_a_json_object_exit_2(text):
    with pytest.raises(CliError) as caught:
        parse_json_args(text)
    assert caught.value.code == EXIT_USAGE


def test_call_arguments_that_cannot_be_encoded_exit_1():
    assert parse_json_args('{"key": "a", "value": 1}') == {"key": "a", "value": 1}
    for text in (f'{{"n": {HUGE}}}', '{"n": NaN}'):
        with pytest.raises(CliError) as caught:
            parse_json_args(text)
        assert caught.value.code == EXIT_FAIL


def test_lbcluster_config_stands_in_for_dash_c_on_every_node_command(monkeypatch, tmp_path):
    monkeypatch.setenv(cli.CONFIG_ENV, str(tmp_path / "node.toml"))
    parser = cli.build_parser()
    for argv in (["run"], ["members"], ["status"], ["state"], ["events"], ["leave"],
                 ["kv", "get", "k"], ["kv", "set", "k", "v"], ["kv", "del", "k"],
                 ["call", "status"]):
        assert parser.parse_args(argv).config == str(tmp_path / "node.toml"), argv
    assert parser.parse_args(["members", "-c", "other.toml"]).config == "other.toml"


def test_without_lbcluster_config_dash_c_is_required(monkeypatch, capsys):
    monkeypatch.delenv(cli.CONFIG_ENV, raising=False)
    with pytest.raises(SystemExit) as caught:
        cli.build_parser().parse_args(["members"])
    assert caught.value.code == EXIT_USAGE
    assert "--config" in capsys.readouterr().err


def test_every_argument_of_every_command_has_help_text():
    parser = cli.build_parser()
    assert parser.epilog and "examples:" in parser.epilog

    def walk(p):
        for action in p._actions:
            if action.dest != "help" and action.choices is None:
                assert action.help, (p.prog, action.dest)
            for sub in (action.choices or {}).values() if isinstance(action.choices, dict) else ():
                walk(sub)

    walk(parser)


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as caught:
        cli.main(["--version"])
    assert caught.value.code == 0
    assert capsys.readouterr().out.strip() == f"lbcluster {metadata.version('lbcluster')}"


@pytest.mark.parametrize("value", [HUGE, "NaN", "Infinity"])
def test_kv_set_of_an_unencodable_value_is_one_line_exit_1_and_sends_nothing(
        tmp_path, capsys, value):
    # The config does not even exist: the value is refused before any node is asked.
    code = cli.main(["kv", "set", "k", value, "-c", str(tmp_path / "none.toml")])
    err = capsys.readouterr().err
    assert code == EXIT_FAIL
    assert err.count("\n") == 1 and "Traceback" not in err and "encode" in err


def test_kv_set_from_a_missing_file_is_one_line_exit_2(tmp_path, capsys):
    code = cli.main(["kv", "set", "k", f"@{tmp_path / 'nope'}", "-c", str(tmp_path / "n.toml")])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and err.count("\n") == 1 and "no such file" in err


def test_call_with_bad_json_is_one_line_exit_2(tmp_path, capsys):
    code = cli.main(["call", "status", "{nope", "-c", str(tmp_path / "n.toml")])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and err.count("\n") == 1 and "invalid JSON" in err


def test_a_new_command_is_one_row_of_the_table():
    assert len({c.name for c in cli.COMMANDS}) == len(cli.COMMANDS)
    names = set(cli.build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert names == {c.name for c in cli.COMMANDS}
