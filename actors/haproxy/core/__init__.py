"""Pure decisions of the HAProxy bridge (no sockets, no clock, no logging)."""
