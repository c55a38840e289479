"""Reading `show servers state` and turning a difference into commands.

`show servers state` (format version 1) prints the version, a header line
naming the fields (``# be_id be_name srv_id srv_name ...``), then one line
per server. Fields are found by their header names, so columns added by a
newer HAProxy do not matter. ``srv_admin_state`` is a bit field; the bridge
manages only the two bits the Runtime API forces (HAProxy's server-t.h):
``0x01`` FMAINT (``state maint``) and ``0x08`` FDRAIN (``state drain``);
``state ready`` clears both. Other bits (maintenance from the config file,
inherited from a tracked server, DNS resolution) are HAProxy's own business.
"""

from __future__ import annotations

from collections.abc import Mapping

from actors.haproxy.core.desired import AdminState
from actors.haproxy.core.names import ServerRef

FORCED_MAINT = 0x01
FORCED_DRAIN = 0x08
_FIELDS = ("be_name", "srv_name", "srv_admin_state")


class StateParseError(ValueError):
    """The reply is not a `show servers state` listing (short reason in args[0])."""


def forced_state(admin_bits: int) -> AdminState:
    """The state the Runtime API last forced, from `srv_admin_state`."""
    if admin_bits & FORCED_MAINT:
        return AdminState.MAINT
    if admin_bits & FORCED_DRAIN:
        return AdminState.DRAIN
    return AdminState.READY


def parse_servers_state_untrusted(text: str) -> dict[ServerRef, AdminState]:
    """Every server HAProxy lists -> its forced state. Raises: StateParseError."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or lines[0].strip() != "1":
        raise StateParseError("not a version 1 servers state listing")
    if len(lines) < 2 or not lines[1].startswith("#"):
        raise StateParseError("missing header line")
    header = lines[1].lstrip("#").split()
    try:
        at = [header.index(name) for name in _FIELDS]
    except ValueError:
        raise StateParseError("header lacks be_name, srv_name or srv_admin_state") from None
    states: dict[ServerRef, AdminState] = {}
    for line in lines[2:]:
        fields = line.split()
        if len(fields) < len(header):
            raise StateParseError("short server line")
        backend, server, admin = (fields[i] for i in at)
        if not admin.isdigit():
            raise StateParseError("srv_admin_state is not a number")
        states[ServerRef(backend, server)] = forced_state(int(admin))
    return states


def commands_for(desired: Mapping[ServerRef, AdminState],
                 observed: Mapping[ServerRef, AdminState]) -> dict[ServerRef, AdminState]:
    """The servers whose observed state differs from the desired one (servers HAProxy
    does not list are left out: a command for them could only fail)."""
    return {ref: state for ref, state in sorted(desired.items())
            if ref in observed and observed[ref] is not state}


def command_line(changes: Mapping[ServerRef, AdminState]) -> str:
    """One Runtime API line: the commands separated by ``;`` (HAProxy runs them in order)."""
    return "; ".join(f"set server {ref} state {state.value}" for ref, state in changes.items())


def command_errors(reply: str) -> list[str]:
    """A successful `set server` prints an empty line; any text is an error message."""
    return [line.strip() for line in reply.splitlines() if line.strip()]
