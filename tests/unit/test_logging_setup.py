"""actors.logs: one line per record, bound fields, JSON, and a handler a forked actor keeps."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import pytest

from actors import logs


@pytest.fixture
def stderr(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """What the handler wrote; it is built inside each test, on pytest's captured stderr."""
    logs._configured_for = None
    yield lambda: capsys.readouterr().err
    logs._configured_for = None
    for handler in list(logging.getLogger(logs.NAME).handlers):
        logging.getLogger(logs.NAME).removeHandler(handler)


def test_a_line_names_node_and_actor_then_the_bound_fields(stderr: Callable[[], str]) -> None:
    logs.configure("info", as_json=False)
    log = logs.get(node="n1", actor="membership", pid=42)
    log.bind(member="n3", reason="no ack from n3").warning("node.suspect")
    log.debug("below the level")
    (line,) = stderr().splitlines()
    assert line.endswith(' WARNING n1/membership node.suspect member=n3 reason="no ack from n3"')


def test_json_lines_carry_fields_and_the_traceback(stderr: Callable[[], str]) -> None:
    logs.configure("DEBUG", as_json=True)
    try:
        raise ValueError("boom")
    except ValueError:
        logs.get(node="n1", actor="kv", message="a field may not hide the message").exception(
            "actor crashed")
    record = json.loads(stderr())
    assert record["level"] == "ERROR" and record["message"] == "actor crashed"
    assert record["node"] == "n1" and record["actor"] == "kv"
    assert "ValueError: boom" in record["exception"]


def test_loguru_levels_are_accepted(stderr: Callable[[], str]) -> None:
    logs.configure("SUCCESS", as_json=False)
    log = logs.get()
    log.log("TRACE", "no")
    log.info("no")
    log.log("success", "yes")
    assert stderr().split()[1:] == ["SUCCESS", "-/-", "yes"]


def test_same_settings_keep_the_handler(stderr: Callable[[], str]) -> None:
    logs.configure("INFO", as_json=False)
    kept = logging.getLogger(logs.NAME).handlers[0]
    logs.configure("info", as_json=False)  # what each forked actor does
    assert logging.getLogger(logs.NAME).handlers == [kept]
    logs.configure("INFO", as_json=True)
    assert logging.getLogger(logs.NAME).handlers[0] is not kept
    assert len(logging.getLogger(logs.NAME).handlers) == 1
