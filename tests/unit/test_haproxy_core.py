"""The HAProxy bridge's pure core: precedence, parsing, diff, backoff, the step machine."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actors.haproxy.core.backoff import CAP_S, backoff_s, retry_at
from actors.haproxy.core.bridge import Bridge, Read, Write
from actors.haproxy.core.desired import (
    AdminState,
    breaker_view,
    desired_state,
    desired_states,
    health_view,
)
from actors.haproxy.core.names import (
    RuntimeAddress,
    ServerRef,
    parse_runtime_api,
    parse_server_ref,
)
from actors.haproxy.core.servers_state import (
    StateParseError,
    command_errors,
    command_line,
    commands_for,
    forced_state,
    parse_servers_state_untrusted,
)

READY, DRAIN, MAINT = AdminState.READY, AdminState.DRAIN, AdminState.MAINT
WEB1, WEB2 = ServerRef("be_app", "web1"), ServerRef("be_app", "web2")
HEADER = ("# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
          "srv_iweight srv_time_since_last_change srv_check_status srv_check_result "
          "srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id "
          "srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr "
          "srv_agent_addr srv_agent_port")


def listing(*servers: tuple[str, int]) -> str:
    """A `show servers state` reply as HAProxy 2.6 prints it."""
    lines = ["1", HEADER]
    for i, (name, admin) in enumerate(servers, 1):
        lines.append(f"2 be_app {i} {name} 127.0.0.1 2 {admin} 1 1 5 1 0 0 0 0 0 0 - "
                     f"808{i} - 0 0 - - 0")
    return "\n".join(lines) + "\n\n"


# -- precedence ------------------------------------------------------------------------

@pytest.mark.parametrize(("health", "breaker", "expected"), [
    ("down", None, MAINT),
    ("down", "open", MAINT),  # down beats open
    ("down", "closed", MAINT),
    ("up", "open", DRAIN),  # open beats up
    (None, "open", DRAIN),
    ("up", None, READY),
    ("up", "closed", READY),
    ("up", "half_open", READY),  # the trial needs traffic
    (None, "closed", READY),  # a breaker that closed again undoes its drain
    (None, None, None),  # no verdict: leave the server alone
])
def test_down_beats_open_beats_up(health, breaker, expected):
    assert desired_state(health, breaker) is expected


def test_desired_states_cover_only_servers_with_a_verdict():
    servers = {"web1": WEB1, "web2": WEB2, "web3": ServerRef("be_app", "web3")}
    desired = desired_states(servers, {"web1": "down", "web2": "up"}, {"web2": "open"})
    assert desired == {WEB1: MAINT, WEB2: DRAIN}


def test_views_skip_malformed_rows_and_deleted_breakers_are_closed():
    rows = [
        {"key": "web1", "value": {"status": "down"}, "deleted": False},
        {"key": "web2", "value": {"status": "sideways"}, "deleted": False},
        {"key": 3, "value": {"status": "up"}},
        "garbage",
        {"key": "web4", "value": None, "deleted": True},
    ]
    assert health_view(rows) == {"web1": "down"}
    assert health_view("not a list") == {}
    breakers = [{"key": "a", "value": {"state": "open"}, "deleted": False},
                {"key": "b", "value": None, "deleted": True}]
    assert breaker_view(breakers) == {"a": "open", "b": "closed"}


# -- names -----------------------------------------------------------------------------

def test_server_refs_allow_haproxy_names_only():
    assert parse_server_ref("be_app/web-1.a:b") == ServerRef("be_app", "web-1.a:b")
    for bad in ("be_app", "be_app/", "/web1", "be/web1; shutdown sessions", "a/b/c", "a /b"):
        with pytest.raises(ValueError):
            parse_server_ref(bad)


def test_runtime_api_is_a_unix_path_or_a_tcp_port():
    assert parse_runtime_api("unix:///run/haproxy/admin.sock") == RuntimeAddress(
        path="/run/haproxy/admin.sock")
    assert parse_runtime_api("tcp://127.0.0.1:9999") == RuntimeAddress(host="127.0.0.1",
                                                                        port=9999)
    assert parse_runtime_api("tcp://[::1]:9999").host == "::1"
    for bad in ("unix://relative.sock", "unix:///" + "x" * 200, "tcp://host", "tcp://h:0",
                "tcp://h:70000", "http://h:1", "/run/admin.sock"):
        with pytest.raises(ValueError):
            parse_runtime_api(bad)


# -- show servers state ----------------------------------------------------------------

def test_forced_state_reads_the_runtime_bits_only():
    assert forced_state(0) is READY
    assert forced_state(0x01) is MAINT
    assert forced_state(0x08) is DRAIN
    assert forced_state(0x09) is MAINT
    assert forced_state(0x04) is READY  # maintenance from the config file is not ours
    assert forced_state(0x20) is READY


def test_a_real_listing_parses_by_header_names():
    assert parse_servers_state_untrusted(listing(("web1", 1), ("web2", 8))) == {
        WEB1: MAINT, WEB2: DRAIN}
    moved = "1\n# srv_admin_state srv_name be_name extra\n0 web1 be_app x\n"
    assert parse_servers_state_untrusted(moved) == {WEB1: READY}
    assert parse_servers_state_untrusted("1\n" + HEADER + "\n\n") == {}


@pytest.mark.parametrize("reply", [
    "", "Unknown command.\n", "2\n" + HEADER + "\n", "1\nno header\n",
    "1\n# be_name srv_name\n", "1\n" + HEADER + "\n2 be_app 1\n",
    listing(("web1", 0)).replace(" 2 0 1 1 ", " 2 x 1 1 "),
])
def test_anything_else_is_a_parse_error(reply):
    with pytest.raises(StateParseError):
        parse_servers_state_untrusted(reply)


@given(st.one_of(st.text(), st.lists(st.text(st.sampled_from("0123456789 abx_/\n#"))).map(
    lambda lines: "\n".join(["1", HEADER, *lines]))))
def test_parsing_garbage_raises_only_state_parse_error(text):
    with contextlib.suppress(StateParseError):
        states = parse_servers_state_untrusted(text)
        assert all(isinstance(s, AdminState) for s in states.values())


def test_the_diff_lists_differences_on_listed_servers_only():
    ghost = ServerRef("be_app", "ghost")
    desired = {WEB1: MAINT, WEB2: READY, ghost: MAINT}
    observed = {WEB1: READY, WEB2: READY}
    changes = commands_for(desired, observed)
    assert changes == {WEB1: MAINT}
    assert command_line({WEB1: MAINT, WEB2: DRAIN}) == (
        "set server be_app/web1 state maint; set server be_app/web2 state drain")


def test_any_text_in_a_write_reply_is_an_error():
    assert command_errors("\n\n") == []
    assert command_errors("No such server.\n\n\n") == ["No such server."]
    assert command_errors("Permission denied\n") == ["Permission denied"]


# -- backoff ---------------------------------------------------------------------------

@pytest.mark.parametrize(("failures", "expected"), [
    (0, 0.0), (1, 0.1), (2, 0.2), (3, 0.4), (6, 3.2), (7, CAP_S), (10_000, CAP_S)])
def test_backoff_doubles_up_to_its_cap(failures, expected):
    assert backoff_s(failures) == pytest.approx(expected)
    assert retry_at(failures, 100.0) == pytest.approx(100.0 + expected)


@given(st.integers(0, 10_000), st.integers(0, 10_000))
def test_backoff_never_shrinks_as_failures_grow(a, b):
    lo, hi = sorted((a, b))
    assert 0 <= backoff_s(lo) <= backoff_s(hi) <= CAP_S


# -- the step machine ------------------------------------------------------------------

def bridge() -> Bridge:
    return Bridge({"web1": WEB1, "web2": WEB2}, interval_s=2.0)


def test_nothing_is_written_before_haproxy_is_read():
    b = bridge()
    b.set_views({"web1": "down"}, {})
    assert b.next_step(0.0) == Read()
    assert b.next_deadline() == 0.0


def test_a_read_then_only_the_difference_is_written():
    b = bridge()
    b.set_views({"web1": "down", "web2": "up"}, {})
    b.begin(b.next_step(0.0))
    assert b.next_step(0.0) is None and b.next_deadline() is None  # one step at a time
    assert b.on_reply(listing(("web1", 0), ("web2", 0)), 0.0).ok
    step = b.next_step(0.0)
    assert step == Write({WEB1: MAINT})
    assert step.line == "set server be_app/web1 state maint"
    b.begin(step)
    outcome = b.on_reply("\n", 0.01)
    assert outcome.ok and outcome.applied == {WEB1: MAINT}
    assert b.next_step(0.02) is None
    assert b.next_deadline() == 2.0  # the periodic read


def test_a_changed_verdict_is_written_without_waiting_for_the_next_read():
    b = bridge()
    b.set_views({"web1": "up"}, {})
    b.begin(b.next_step(0.0))
    b.on_reply(listing(("web1", 0), ("web2", 0)), 0.0)
    assert b.next_step(0.5) is None
    b.set_views({"web1": "down"}, {})
    assert b.next_deadline() == 0.0
    assert b.next_step(0.5) == Write({WEB1: MAINT})


def test_the_periodic_read_repairs_a_restarted_haproxy():
    b = bridge()
    b.set_views({"web1": "down"}, {"web2": "open"})
    b.begin(b.next_step(0.0))
    b.on_reply(listing(("web1", 1), ("web2", 8)), 0.0)  # already as desired
    assert b.next_step(1.0) is None
    step = b.next_step(2.0)
    assert step == Read()
    b.begin(step)
    b.on_reply(listing(("web1", 0), ("web2", 0)), 2.0)  # a fresh process: all ready
    assert b.next_step(2.0) == Write({WEB1: MAINT, WEB2: DRAIN})


def test_failures_back_off_and_force_a_fresh_read():
    b = bridge()
    b.set_views({"web1": "down"}, {})
    b.begin(b.next_step(0.0))
    outcome = b.on_failure("connect", "ConnectionRefusedError", 10.0)
    assert not outcome.ok and outcome.reason == "connect" and b.failures == 1
    assert b.next_step(10.05) is None and b.next_deadline() == pytest.approx(10.1)
    b.begin(b.next_step(10.1))
    b.on_reply("garbage", 10.1)
    assert b.failures == 2 and b.next_deadline() == pytest.approx(10.3)
    b.begin(b.next_step(10.3))
    b.on_reply(listing(("web1", 0), ("web2", 0)), 10.3)
    assert b.failures == 0
    b.begin(b.next_step(10.3))
    outcome = b.on_reply("Permission denied.\n", 10.3)  # a socket without level admin
    assert not outcome.ok and outcome.reason == "refused" and b.failures == 1
    assert b.observed is None and b.next_step(10.5) == Read()


def test_servers_haproxy_does_not_list_are_reported_and_never_written():
    b = Bridge({"web1": WEB1, "ghost": ServerRef("be_app", "ghost")}, interval_s=2.0)
    b.set_views({"web1": "down", "ghost": "down"}, {})
    assert b.missing() == []
    b.begin(b.next_step(0.0))
    b.on_reply(listing(("web1", 0)), 0.0)
    assert b.missing() == [ServerRef("be_app", "ghost")]
    assert b.next_step(0.0) == Write({WEB1: MAINT})
