"""`json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()`, faster.

Every output record but the ledger's (stage-2 forwards, alerts, tier changes, decisions, dead-letter
headers) is a flat dict in this form, about two an event. `json.dumps` with these options builds a
`JSONEncoder` and a C encoder per call and sorts the items every time (~4-7 us for a small record).
The records of one kind always have the same keys in the same order, so each key layout is compiled
once into a function that writes the sorted keys out and formats each value the way `json.dumps`
does (`json.encoder.encode_basestring` for `str`, `int.__repr__` for `int`, `true`/`false`/`null`);
~1 us. A value of any other type (a float, a list, a subclass) makes the function give up, and the
record goes through the C encoder with the options above: the same bytes, either way
(tests/unit/test_core_speed_invariants.py compares them on random records).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from json.encoder import encode_basestring
from typing import Any

try:
    from json.encoder import c_make_encoder as _c_make_encoder  # type: ignore[attr-defined]
except ImportError:                                              # pragma: no cover - CPython has it
    _c_make_encoder = None

_Writer = Callable[[dict[str, Any]], "str | None"]
_WRITERS: dict[tuple[Any, ...], _Writer | None] = {}
_MAX_LAYOUTS = 256


def dumps_sorted(record: dict[str, Any]) -> bytes:
    """The record as compact JSON with sorted keys, non-ASCII as UTF-8 (see the module docstring)."""
    layout = tuple(record)
    try:
        writer = _WRITERS[layout]
    except KeyError:
        writer = None
        if len(_WRITERS) < _MAX_LAYOUTS:           # record kinds are few; anything beyond is not cached
            writer = _WRITERS[layout] = _compile(layout)
    if writer is not None:
        text = writer(record)
        if text is not None:
            return text.encode()
    return reference(record)


def reference(record: dict[str, Any]) -> bytes:
    """What `dumps_sorted` must equal: json.dumps's own C encoder with the same options."""
    if _c_make_encoder is None:                                  # pragma: no cover
        return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    encoder = _c_make_encoder({}, None, encode_basestring, None, ":", ",", True, False, True)
    return "".join(encoder(record, 0)).encode()


def _compile(layout: tuple[Any, ...]) -> _Writer | None:
    """The writer of records with these keys (in this insertion order), or None (non-str keys)."""
    if not all(type(k) is str for k in layout) or len(layout) > 64:
        return None
    keys = sorted(layout)
    namespace: dict[str, Any] = {"E": encode_basestring, "I": int.__repr__}
    lines = ["def write(r):"]
    parts = []
    for i, key in enumerate(keys):
        namespace[f"K{i}"] = key
        namespace[f"P{i}"] = ("{" if i == 0 else ",") + encode_basestring(key) + ":"
        lines += [f"    v = r[K{i}]",
                  "    t = type(v)",
                  f"    if t is str: s{i} = E(v)",
                  f"    elif t is int: s{i} = I(v)",
                  f"    elif v is None: s{i} = 'null'",
                  f"    elif v is True: s{i} = 'true'",
                  f"    elif v is False: s{i} = 'false'",
                  "    else: return None"]
        parts += [f"P{i}", f"s{i}"]
    lines.append(f"    return ''.join(({', '.join(parts)}, '}}'))" if keys else "    return '{}'")
    exec(compile("\n".join(lines) + "\n", "<compact_json writer>", "exec"), namespace)  # noqa: S102 - our own code
    return namespace["write"]  # type: ignore[no-any-return]
