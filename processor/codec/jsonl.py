"""JSON lines, the file and CLI form of events: one JSON object per line, same field names as the
Avro schemas, `occurred_at` as ISO-8601 UTC text.

Reading goes through the same `validate` as every other input, so a file is refused for exactly
the reasons a Kafka message would be. Writing is canonical (schema field order, compact, `Z`
times, seconds unless there are milliseconds), so JSON -> event -> Avro -> event -> JSON gives
back the same line and files diff cleanly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .errors import UNDECODABLE, InvalidEvent
from .schema_registry import SchemaRegistry
from .timestamps import format_iso_millis
from .validation import validate

# Characters that str.splitlines() treats as line breaks but json.dumps(ensure_ascii=False) leaves
# raw: escaped, so that a line stays one line for every reader.
_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def from_json_line(line: str | bytes, registry: SchemaRegistry | None = None) -> dict[str, Any]:
    """The normalised event of one JSON line, or InvalidEvent (`undecodable` if it is not a JSON object).

    A line is UTF-8 text: bytes that are not UTF-8 (including encoded surrogates, which `json.loads`
    would let through) and text holding a lone surrogate (what a file read with
    `errors="surrogateescape"` gives for a bad byte) are `undecodable`, wherever the bad character is,
    even in a key that would be ignored.
    """
    if isinstance(line, bytes | bytearray):
        try:
            line = bytes(line).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEvent(UNDECODABLE, f"not UTF-8 text: {exc}") from None
    elif isinstance(line, str) and not line.isascii():
        try:
            line.encode("utf-8")
        except UnicodeEncodeError as exc:
            bad = ord(line[exc.start])
            what = f"byte 0x{bad - 0xDC00:02x}" if 0xDC80 <= bad <= 0xDCFF else f"lone surrogate U+{bad:04X}"
            raise InvalidEvent(UNDECODABLE, f"not UTF-8 text: {what} at character {exc.start}") from None
    try:
        obj = json.loads(line)
    except (ValueError, TypeError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError are ValueErrors
        raise InvalidEvent(UNDECODABLE, f"not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidEvent(UNDECODABLE, f"a JSON object was expected, got {type(obj).__name__}")
    return validate(obj, registry)


def to_json_line(event: Mapping[str, Any], registry: SchemaRegistry | None = None) -> str:
    """The canonical JSON line of `event` (validated first; InvalidEvent if invalid), without newline."""
    obj = validate(event, registry)
    obj["occurred_at"] = format_iso_millis(obj["occurred_at"])
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    if not text.isascii():
        for raw, escaped in _LINE_BREAKS.items():
            text = text.replace(raw, escaped)
    return text
