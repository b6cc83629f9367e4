"""A fast reader for Avro bodies written with the current schema of their record, the common case.

`fastavro.schemaless_reader` costs ~14 microseconds an event here: per call it re-reads the parsed
schema, builds its decoder and options, and walks the schema's dicts field by field. Our event
schemas are flat records of strings, ints, longs, booleans, enums and ["null", "string"] unions, so
each one is compiled once, at registration, into a plain Python function that reads its fields in
order with byte arithmetic (~4 us; `reader_source` shows the code of a plan).

Only what fastavro would read the same way is read here: a body whose bytes are anything but the
plain encoding (a varint over 9 bytes, an int beyond 32 bits, a boolean byte other than 0 or 1, a
union or enum index out of range, a negative or overlong length, invalid UTF-8, a body that ends
early or late) gives None, and `avro.decode` then reads it with fastavro exactly as before, which
decides, with the same value or the same error as ever. So this is an optimisation, never a second
opinion (tests/unit/test_core_speed_invariants.py compares the two on random and broken bodies).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

#: Field kinds of a plan.
STRING, LONG, INT, BOOLEAN, ENUM, OPTIONAL_STRING = range(6)

_PRIMITIVES = {"string": STRING, "long": LONG, "int": INT, "boolean": BOOLEAN}

#: (field name, kind, enum symbols) for each field of a record, in schema order.
Plan = tuple[tuple[str, int, tuple[str, ...]], ...]
#: Reads the record at `data[pos:]` (which must end exactly at the end of `data`), or None.
Reader = Callable[[bytes, int], "dict[str, Any] | None"]


def plan(schema: dict[str, Any]) -> Plan | None:
    """The plan of a parsed record schema (fastavro's `parse_schema` form, logical types removed),
    or None when it has a shape this reader does not handle (fastavro reads those)."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return None
    named: dict[str, tuple[str, ...]] = {}
    steps = []
    for field in schema.get("fields", ()):
        step = _step(field.get("type"), named)
        if step is None or not isinstance(field.get("name"), str):
            return None
        steps.append((field["name"], step[0], step[1]))
    return tuple(steps)


def _step(ftype: Any, named: dict[str, tuple[str, ...]]) -> tuple[int, tuple[str, ...]] | None:
    if isinstance(ftype, list):
        if len(ftype) == 2 and ftype[0] == "null" and _step(ftype[1], named) == (STRING, ()):
            return OPTIONAL_STRING, ()
        return None
    if isinstance(ftype, str):
        if ftype in _PRIMITIVES:
            return _PRIMITIVES[ftype], ()
        if ftype in named:
            return ENUM, named[ftype]
        return None
    if isinstance(ftype, dict):
        t = ftype.get("type")
        if t == "enum" and all(isinstance(s, str) for s in ftype.get("symbols", ())):
            symbols = tuple(ftype["symbols"])
            named[ftype["name"]] = symbols
            return ENUM, symbols
        if isinstance(t, str) and t in _PRIMITIVES and set(ftype) == {"type"}:
            return _PRIMITIVES[t], ()
    return None


def reader(steps: Plan) -> Reader:
    """The compiled reader of a plan."""
    namespace: dict[str, Any] = {f"S{i}": symbols for i, (_name, kind, symbols) in enumerate(steps) if kind == ENUM}
    exec(compile(reader_source(steps), "<avro_plain reader>", "exec"), namespace)  # noqa: S102 - our own code
    return namespace["read"]  # type: ignore[no-any-return]


def reader_source(steps: Plan) -> str:
    """The Python source of a plan's reader: straight-line code, one block per field."""
    lines = ["def read(data, pos):", "    end = len(data)", "    try:"]
    for i, (_name, kind, _symbols) in enumerate(steps):
        v, ind = f"v{i}", " " * 8
        if kind == BOOLEAN:
            lines += [f"{ind}{v} = data[pos]", f"{ind}pos += 1", f"{ind}if {v} > 1:", f"{ind}    return None",
                      f"{ind}{v} = {v} == 1"]
            continue
        if kind == OPTIONAL_STRING:     # union index 0 (null) is the byte 0, index 1 (string) the byte 2
            lines += [f"{ind}b = data[pos]", f"{ind}pos += 1", f"{ind}if b == 0:", f"{ind}    {v} = None",
                      f"{ind}elif b != 2:", f"{ind}    return None", f"{ind}else:"]
            ind += "    "
        lines += _varint(ind)
        if kind in (STRING, OPTIONAL_STRING):
            lines += [f"{ind}stop = pos + n", f"{ind}if n < 0 or stop > end:", f"{ind}    return None",
                      f"{ind}{v} = data[pos:stop].decode()", f"{ind}pos = stop"]
        elif kind == LONG:
            lines += [f"{ind}{v} = n"]
        elif kind == INT:
            lines += [f"{ind}if not -2147483648 <= n <= 2147483647:", f"{ind}    return None", f"{ind}{v} = n"]
        else:
            lines += [f"{ind}if not 0 <= n < len(S{i}):", f"{ind}    return None", f"{ind}{v} = S{i}[n]"]
    lines += ["    except (IndexError, UnicodeDecodeError):", "        return None", "    if pos != end:",
              "        return None",
              "    return {" + ", ".join(f"{name!r}: v{i}" for i, (name, _k, _s) in enumerate(steps)) + "}"]
    return "\n".join(lines) + "\n"


def _varint(ind: str) -> list[str]:
    """A zigzag varint into `n`; a tenth byte gives None (fastavro's 64-bit arithmetic decides)."""
    return [f"{ind}b = data[pos]", f"{ind}pos += 1",
            f"{ind}if b < 0x80:",
            f"{ind}    n = (b >> 1) ^ -(b & 1)",
            f"{ind}else:",
            f"{ind}    n = b & 0x7F",
            f"{ind}    shift = 7",
            f"{ind}    while b & 0x80:",
            f"{ind}        if shift > 56:",
            f"{ind}            return None",
            f"{ind}        b = data[pos]",
            f"{ind}        pos += 1",
            f"{ind}        n |= (b & 0x7F) << shift",
            f"{ind}        shift += 7",
            f"{ind}    n = (n >> 1) ^ -(n & 1)"]
