"""One validator for every settings table: typed fields in, checked values out.

Theory of operation (pure: no I/O). A settings table (a `[section]` of the node
config, a provider's `options`) is declared once as a tuple of `Field`s: the key,
its type, its default, its range or check, and one line saying why. `read`
checks a table against them and returns the converted values by attribute
name; `build` makes a frozen dataclass of them. Every problem is one
`SettingsError` naming the key (unknown key, missing key, wrong type, out of
range), which the caller words for its user: the config loader prefixes the
file and section, a provider the option. The cores then receive typed
settings and parse nothing.

Types: `int` is an integer (a TOML boolean is never one); `float` is any finite
number, integers included; `str`, `bool`, `list`, `dict` are themselves. A
`scale` turns a number into a float in other units (milliseconds in the file,
seconds in the dataclass).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

T = TypeVar("T")
REQUIRED: Final = object()  # a Field default: the key must be given
Check = Callable[[Any], "str | None"]


class SettingsError(ValueError):
    """One bad setting: `.key` names it (a dotted path inside a table), `.reason` says why."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key, self.reason = key, reason


@dataclass(frozen=True, slots=True)
class Field:
    """One setting. `low`/`high` bound numbers (inclusive, before `scale`); `check`
    returns a problem or None; `attr` is the dataclass field (default: the key)."""

    key: str
    kind: type | tuple[type, ...]
    default: Any = REQUIRED
    why: str = ""
    low: float | None = None
    high: float | None = None
    check: Check | None = None
    scale: float | None = None
    attr: str | None = None

    @property
    def name(self) -> str:
        return self.attr or self.key


_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
          list: "an array", dict: "a table"}


def kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_NAMES.get(k, k.__name__) for k in kinds)


def value_of(field: Field, raw: Any) -> Any:
    """`raw` checked against `field` and converted. Raises: SettingsError."""
    kinds = field.kind if isinstance(field.kind, tuple) else (field.kind,)
    accepted = (*kinds, int) if float in kinds else kinds
    wanted = kind_name(kinds)
    if isinstance(raw, bool) and bool not in kinds:  # TOML booleans are ints in Python
        raise SettingsError(field.key, f"must be {wanted}, not a boolean")
    if not isinstance(raw, accepted):
        raise SettingsError(field.key, f"must be {wanted}, not {type(raw).__name__}")
    if isinstance(raw, float) and not math.isfinite(raw):
        raise SettingsError(field.key, f"must be a finite number, not {raw}")
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        _check_range(field, raw)
    problem = field.check(raw) if field.check else None
    if problem:
        raise SettingsError(field.key, problem)
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        if field.scale is not None:
            return float(raw) * field.scale
        if float in kinds:
            return float(raw)
    return raw


def _check_range(field: Field, value: float) -> None:
    low, high = field.low, field.high
    if (low is None or value >= low) and (high is None or value <= high):
        return
    got = f"(got {_number(value)})"
    if low is not None and high is not None:
        raise SettingsError(field.key, f"must be between {_number(low)} and {_number(high)} {got}")
    if low is not None:
        raise SettingsError(field.key, f"must be at least {_number(low)} {got}")
    raise SettingsError(field.key, f"must be at most {_number(high)} {got}")


def _number(value: float | None) -> str:
    return str(int(value)) if value is not None and value == int(value) else f"{value:g}"


def read(fields: Sequence[Field], table: object, *, defaults: bool = True) -> dict[str, Any]:
    """Check `table`; return attribute name -> value.

    Args:
        fields: the declaration of the table.
        table: the untrusted table (anything: a non-mapping is refused).
        defaults: fill absent keys with their defaults (and require keys without
            one); False returns only the keys given (a base supplies the rest).

    Raises:
        SettingsError: an unknown key, a missing required key or a bad value.
    """
    table = known_keys(table, [f.key for f in fields])
    values: dict[str, Any] = {}
    for f in fields:
        if f.key in table:
            values[f.name] = value_of(f, table[f.key])
        elif not defaults:
            continue
        elif f.default is REQUIRED:
            raise SettingsError(f.key, "is required")
        else:  # in the file's units, converted like a given value (None: not set)
            values[f.name] = None if f.default is None else value_of(f, f.default)
    return values


def known_keys(table: object, known: Iterable[str], what: str = "key") -> Mapping[str, Any]:
    """`table` itself, once it is a table of known keys. Raises: SettingsError."""
    if not isinstance(table, Mapping):
        raise SettingsError("", f"must be a table, not {type(table).__name__}")
    names = sorted(known)
    for key in table:
        if key not in names:
            raise SettingsError(str(key), f"unknown {what} (known: {', '.join(names)})")
    return table


def build(cls: type[T], fields: Sequence[Field], table: object, base: T | None = None) -> T:
    """A `cls` (a dataclass) from `table`; absent keys keep `base`'s values when given,
    else the dataclass's defaults (the Fields' defaults serve `read` alone).

    Raises: SettingsError (including from `cls`'s own cross-field checks).
    """
    given = read(fields, table, defaults=False)
    if base is None:
        return cls(**given)
    return dataclasses.replace(base, **given)  # type: ignore[type-var]


def above_zero(value: float) -> str | None:
    """A `check`: strictly positive."""
    return None if value > 0 else "must be greater than 0"
