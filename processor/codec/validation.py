"""Turn any dict claiming to be an event into the one normalised shape the domain core accepts.

Both input paths end here: a JSON line (after `json.loads`) and a dict handed to the producer
API. The result has exactly the current schema's fields in schema order, defaults filled
(`source` "unknown", `currency` "USD", optional fields None), `occurred_at` as int epoch
millis, so the core never sees a missing key, a float amount or a time zone. Anything else
raises `InvalidEvent` with the SPEC section 9 reason code of the *first* bad field in schema
order, so the same input always gets the same reason.

Avro messages do not come through here (their types are guaranteed by the schema);
`check_decoded` does the few checks Avro cannot express (empty strings, `period`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from . import specs
from .errors import UNDECODABLE, UNKNOWN_EVENT_TYPE, InvalidEvent, invalid_field, missing_field, unknown_enum
from .schema_registry import SchemaRegistry, default_registry
from .specs import FieldSpec, RecordSpec
from .timestamps import MAX_MILLIS, MIN_MILLIS, datetime_to_millis, parse_iso_millis

_INT_RANGE = (-(2**31), 2**31 - 1)
_LONG_RANGE = (-(2**63), 2**63 - 1)
_MISSING = object()
#: How to describe the expected form of a patterned field (specs.PATTERNS) in a refusal.
_FORMAT = {"period": "a month YYYY-MM (01-12)"}


def validate(event: Mapping[str, Any], registry: SchemaRegistry | None = None) -> dict[str, Any]:
    """The normalised copy of `event`, or InvalidEvent; unknown extra keys are dropped.

    `occurred_at` may be given as int epoch millis, an ISO-8601 string with an offset, or an
    aware datetime. `event_type` picks the schema.
    """
    spec = _spec(event, registry or default_registry)
    out = _quick(spec, event)
    return out if out is not None else _field_by_field(spec, event)


def validate_field_by_field(event: Mapping[str, Any], registry: SchemaRegistry | None = None) -> dict[str, Any]:
    """`validate` without its fast path: what it must always equal (the tests compare the two)."""
    spec = _spec(event, registry or default_registry)
    return _field_by_field(spec, event)


def _spec(event: Mapping[str, Any], reg: SchemaRegistry) -> RecordSpec:
    if not isinstance(event, Mapping):
        raise InvalidEvent(UNDECODABLE, f"an event must be an object, got {type(event).__name__}")
    event_type = event.get("event_type")
    if not isinstance(event_type, str) or event_type not in reg:
        if event_type is None or event_type == "":
            message = "event_type is missing"
        else:
            message = f"unknown event_type {_show(event_type)}; known: {', '.join(reg.event_types)}"
        raise InvalidEvent(UNKNOWN_EVENT_TYPE, message, field="event_type", **_readable_ids(event))
    return reg.current(event_type).spec


def _field_by_field(spec: RecordSpec, event: Mapping[str, Any]) -> dict[str, Any]:
    ids = _readable_ids(event)
    out: dict[str, Any] = {}
    for field in spec.fields:
        out[field.name] = _check(spec, field, event.get(field.name, _MISSING), ids)
    return out


_QuickCheck = Callable[[Mapping[str, Any]], "dict[str, Any] | None"]
_QUICK: dict[int, tuple[RecordSpec, _QuickCheck]] = {}


def _quick(spec: RecordSpec, event: Mapping[str, Any]) -> dict[str, Any] | None:
    """The normalised event when every field is plainly right (the common case: exact types, ASCII
    strings, a time in the canonical form), checked in one pass by a function compiled once per
    record (`_quick_source`); None when anything needs a closer look, and `validate` then goes field
    by field as before, which decides (same result, same first reason). Every case it accepts is
    one `_check` accepts, with the same value (tests/unit/test_core_speed_invariants.py)."""
    found = _QUICK.get(id(spec))
    if found is None or found[0] is not spec:
        namespace: dict[str, Any] = {"parse": parse_iso_millis, "MIN": MIN_MILLIS, "MAX": MAX_MILLIS}
        for i, field in enumerate(spec.fields):
            namespace[f"D{i}"] = None if field.optional else field.default
            namespace[f"S{i}"] = field.symbols
            namespace[f"R{i}"] = field.pattern
        exec(compile(_quick_source(spec), f"<quick check {spec.name}>", "exec"), namespace)  # noqa: S102
        found = _QUICK[id(spec)] = (spec, namespace["check"])
    return found[1](event)


def _quick_source(spec: RecordSpec) -> str:
    lines = ["def check(event):", "    get = event.get"]
    for i, field in enumerate(spec.fields):
        v = f"v{i}"
        lines.append(f"    {v} = get({field.name!r})")
        absent = f"{v} = D{i}" if field.has_default else "return None"
        lines += [f"    if {v} is None:", f"        {absent}", "    else:"]
        kind = field.kind
        if kind == specs.STRING:
            lines += [f"        if type({v}) is not str or not {v} or not {v}.isascii():", "            return None"]
            if field.pattern is not None:
                lines += [f"        if R{i}.fullmatch({v}) is None:", "            return None"]
        elif kind == specs.ENUM:
            lines += [f"        if type({v}) is not str or {v} not in S{i}:", "            return None"]
        elif kind == specs.TIMESTAMP:
            lines += [f"        if type({v}) is str:",
                      "            try:",
                      f"                {v} = parse({v})",
                      "            except ValueError:",
                      "                return None",
                      f"        elif type({v}) is not int or not MIN <= {v} <= MAX:",
                      "            return None"]
        elif kind == specs.BOOLEAN:
            lines += [f"        if type({v}) is not bool:", "            return None"]
        else:                                                    # int, long
            low, high = _INT_RANGE if kind == specs.INT else _LONG_RANGE
            lines += [f"        if type({v}) is not int or not {low} <= {v} <= {high}:", "            return None"]
    lines.append("    return {" + ", ".join(f"{f.name!r}: v{i}" for i, f in enumerate(spec.fields)) + "}")
    return "\n".join(lines) + "\n"


def check_decoded(event: dict[str, Any], spec: RecordSpec) -> None:
    """The checks an Avro-decoded event still needs: "" in a required string, pattern, time range;
    and "" in an optional string becomes None, as `validate` makes it (one shape whatever the path)."""
    for name in spec.required_strings:
        if not event[name]:
            raise _refuse(missing_field(name), spec, name, "is empty", event)
    for name in spec.optional_strings:
        if event[name] == "":
            event[name] = None
    for field in spec.patterned:
        value, pattern = event[field.name], field.pattern
        if value is not None and pattern is not None and pattern.fullmatch(value) is None:
            what = f"{_show(value)} is not {_FORMAT.get(field.name, 'valid')}"
            raise _refuse(invalid_field(field.name), spec, field.name, what, event)
    occurred_at = event.get("occurred_at")
    if occurred_at is not None and not MIN_MILLIS <= occurred_at <= MAX_MILLIS:
        raise _refuse(invalid_field("occurred_at"), spec, "occurred_at", "is outside years 0001-9999", event)


def _check(spec: RecordSpec, field: FieldSpec, value: Any, ids: dict) -> Any:
    name = field.name
    if value is _MISSING or value is None or (value == "" and field.kind != specs.STRING):
        if field.has_default:
            return None if field.optional else field.default
        raise InvalidEvent(missing_field(name), f"{spec.name}: required field {name!r} is missing",
                           field=name, **ids)
    kind = field.kind
    if kind == specs.STRING:
        if not isinstance(value, str):
            raise _wrong(spec, field, value, "a string", ids)
        if value == "":
            if field.optional:
                return None
            if field.required:
                raise InvalidEvent(missing_field(name), f"{spec.name}: required field {name!r} is empty",
                                   field=name, **ids)
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise _wrong(spec, field, value, "valid Unicode text", ids) from None
        if field.pattern is not None and field.pattern.fullmatch(value) is None:
            raise _wrong(spec, field, value, _FORMAT.get(name, f"matching {field.pattern.pattern}"), ids)
        return value
    if kind == specs.ENUM:
        if not isinstance(value, str):
            raise _wrong(spec, field, value, "one of " + ", ".join(sorted(field.symbols)), ids)
        if value not in field.symbols:
            raise InvalidEvent(
                unknown_enum(name),
                f"{spec.name}: {name!r} is {_show(value)}, not one of {', '.join(sorted(field.symbols))}",
                field=name, **ids)
        return value
    if kind == specs.TIMESTAMP:
        return _timestamp(spec, field, value, ids)
    if kind == specs.BOOLEAN:
        if not isinstance(value, bool):
            raise _wrong(spec, field, value, "true or false", ids)
        return value
    # int or long; bool is an int subclass in Python but never a number here.
    if not isinstance(value, int) or isinstance(value, bool):
        raise _wrong(spec, field, value, "an integer", ids)
    low, high = _INT_RANGE if kind == specs.INT else _LONG_RANGE
    if not low <= value <= high:
        raise _wrong(spec, field, value, f"an integer from {low} to {high}", ids)
    return int(value)


def _timestamp(spec: RecordSpec, field: FieldSpec, value: Any, ids: dict) -> int:
    expected = "an ISO-8601 UTC timestamp like 2026-10-05T12:00:00Z"
    if isinstance(value, str):
        try:
            return parse_iso_millis(value)
        except ValueError:
            raise _wrong(spec, field, value, expected, ids) from None
    if isinstance(value, datetime):
        try:
            return datetime_to_millis(value)
        except ValueError:
            raise _wrong(spec, field, value, "an aware datetime within years 0001-9999", ids) from None
    if isinstance(value, int) and not isinstance(value, bool):
        if MIN_MILLIS <= value <= MAX_MILLIS:
            return int(value)
        raise _wrong(spec, field, value, "epoch milliseconds within years 0001-9999", ids)
    raise _wrong(spec, field, value, expected, ids)


def _wrong(spec: RecordSpec, field: FieldSpec, value: Any, expected: str, ids: dict) -> InvalidEvent:
    return InvalidEvent(
        invalid_field(field.name),
        f"{spec.name}: {field.name!r} must be {expected}, got {type(value).__name__} {_show(value)}",
        field=field.name, **ids)


def _refuse(reason: str, spec: RecordSpec, name: str, what: str, event: Mapping) -> InvalidEvent:
    return InvalidEvent(reason, f"{spec.name}: field {name!r} {what}", field=name, **_readable_ids(event))


def _readable_ids(event: Mapping) -> dict[str, str | None]:
    """The ids a refusal can still name the event by: only non-empty strings count."""
    out: dict[str, str | None] = {}
    for key in ("event_id", "partner_id", "event_type"):
        value = event.get(key)
        out[key] = value if isinstance(value, str) and value else None
    return out


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
