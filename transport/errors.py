"""The one error the protocol layer raises on bad input.

It lives apart from `transport.protocol` (which re-exports it) so that
`transport.validate` and `transport.lamport` can raise it without importing
the module that imports them.
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """Malformed record, map or argument.

    Attributes:
        reason: short constant slug (e.g. "missing_field"), safe to count.
        field: the offending field, or None.
    """

    def __init__(self, reason: str, field: str | None = None) -> None:
        super().__init__(f"{reason} (field={field})")
        self.reason = reason
        self.field = field

    def __reduce__(self) -> tuple[type[ProtocolError], tuple[str, str | None]]:
        # Keep reason/field when pickled (e.g. across a multiprocessing boundary).
        return (type(self), (self.reason, self.field))
