"""What validation checks, read off the Avro schemas themselves.

The schemas in `schemas/` are the single statement of each event's fields, so the validator is
derived from them once at load time instead of being a second, hand-kept list that could drift:
a field's kind, whether it is required (no `default`), its default and its enum symbols.
Only the shapes our event schemas use are understood; anything else is refused at load time, so
a schema change that the validator cannot follow fails loudly at start-up, not per event.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: Field kinds the validator knows; each maps to one check in `validation.py`.
STRING, INT, LONG, BOOLEAN, ENUM, TIMESTAMP = "string", "int", "long", "boolean", "enum", "timestamp"

#: Checks beyond the Avro type, keyed by (record name, field): a value that fails is `invalid_field`.
#: `period` is a calendar month; month 00 or 13 would silently break rebate and expiry arithmetic.
PATTERNS: dict[tuple[str, str], re.Pattern[str]] = {
    ("PeriodClosed", "period"): re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])"),
}


class SchemaError(ValueError):
    """A schema the codec cannot use (bad Avro, unsupported shape, incompatible history)."""


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    kind: str
    #: True for ["null", T] unions: absent, null and "" all mean None.
    optional: bool
    #: True when the field may be omitted (it has a default, or is optional).
    has_default: bool
    default: Any
    symbols: frozenset[str] = frozenset()
    pattern: re.Pattern[str] | None = None

    @property
    def required(self) -> bool:
        return not self.has_default


@dataclass(frozen=True, slots=True)
class RecordSpec:
    name: str
    fields: tuple[FieldSpec, ...]
    #: Required plain string fields: Avro lets a producer write "" there, which counts as missing.
    required_strings: tuple[str, ...]
    #: Fields with a PATTERNS entry, rechecked on decoded Avro too.
    patterned: tuple[FieldSpec, ...]
    #: ["null", "string"] fields: Avro lets a producer write "" there, which means None (absent).
    optional_strings: tuple[str, ...] = ()


def short_name(fullname: str) -> str:
    return fullname.rsplit(".", 1)[-1]


def record_spec(schema: dict) -> RecordSpec:
    """Build the validation spec of one (unparsed) record schema; SchemaError if it has an unknown shape."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise SchemaError("an event schema must be an Avro record")
    name = short_name(schema["name"])
    named: dict[str, dict] = {}
    fields = tuple(_field_spec(name, f, named) for f in schema["fields"])
    required_strings = tuple(f.name for f in fields if f.kind == STRING and f.required)
    patterned = tuple(f for f in fields if f.pattern is not None)
    optional_strings = tuple(f.name for f in fields if f.optional)
    return RecordSpec(name, fields, required_strings, patterned, optional_strings)


def _field_spec(record: str, field: dict, named: dict[str, dict]) -> FieldSpec:
    fname = field["name"]
    ftype = field["type"]
    optional = False
    if isinstance(ftype, list):
        if len(ftype) != 2 or ftype[0] != "null":
            raise SchemaError(f"{record}.{fname}: only [\"null\", T] unions are supported")
        optional = True
        ftype = ftype[1]
    kind, symbols = _kind(record, fname, ftype, named)
    if optional and kind != STRING:
        raise SchemaError(f"{record}.{fname}: only optional strings are supported")
    has_default = "default" in field or optional
    default = field.get("default")
    if optional and default is not None:
        raise SchemaError(f"{record}.{fname}: an optional field must default to null")
    return FieldSpec(fname, kind, optional, has_default, default, symbols, PATTERNS.get((record, fname)))


def _kind(record: str, fname: str, ftype: Any, named: dict[str, dict]) -> tuple[str, frozenset[str]]:
    if isinstance(ftype, str):
        if ftype in (STRING, INT, LONG, BOOLEAN):
            return ftype, frozenset()
        ref = named.get(ftype) or named.get(short_name(ftype))
        if ref is None:
            raise SchemaError(f"{record}.{fname}: unsupported type {ftype!r}")
        ftype = ref
    if isinstance(ftype, dict):
        t = ftype.get("type")
        if t == "enum":
            named[ftype["name"]] = ftype
            named[short_name(ftype["name"])] = ftype
            return ENUM, frozenset(ftype["symbols"])
        if t == LONG and ftype.get("logicalType") == "timestamp-millis":
            return TIMESTAMP, frozenset()
        if t in (STRING, INT, LONG, BOOLEAN) and "logicalType" not in ftype:
            return t, frozenset()
    raise SchemaError(f"{record}.{fname}: unsupported type {ftype!r}")
