"""Avro single-object encoding: `C3 01`, the writer schema's 8-byte fingerprint, the Avro body.

This is the Kafka wire format of `partner-events`. Putting the fingerprint in every message means
a message written years ago still says which schema wrote it, so it can be read after the schema
has evolved: `decode` resolves any known writer version into the current schema of its record.

`decode` is the hot path (tens of thousands of messages a second), so it does one dict lookup, one
read of the body and a few cheap checks; schemas are parsed once, by the registry. A body of the
current schema is read by `avro_plain` (two to three times faster than fastavro), any other (an older
writer, or bytes that are not the plain encoding) by fastavro.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from io import BytesIO
from typing import Any, cast

from fastavro import schemaless_reader, schemaless_writer

from .errors import UNDECODABLE, InvalidEvent
from .schema_registry import MAGIC, SchemaRegistry, default_registry
from .validation import check_decoded, validate

_HEADER_SIZE = len(MAGIC) + 8


def encode(event: Mapping[str, Any], registry: SchemaRegistry | None = None) -> bytes:
    """Validate `event` (InvalidEvent if it is not valid) and encode it with its current schema."""
    reg = registry or default_registry
    normalised = validate(event, reg)
    current = reg.current(normalised["event_type"])
    out = BytesIO()
    out.write(current.header)
    schemaless_writer(out, current.plain, normalised)
    return out.getvalue()


def decode(data: bytes | bytearray | memoryview | None, registry: SchemaRegistry | None = None) -> dict[str, Any]:
    """The event in `data`, in the current schema of its record, or InvalidEvent.

    `occurred_at` is int epoch millis, enums are str, optional fields None, `event_type` the
    record name. Anything that is not a whole, known single-object message is `undecodable`,
    including a record with no value at all (a tombstone: the broker delivers `None`).
    """
    reg = registry or default_registry
    if data is None:
        raise InvalidEvent(UNDECODABLE, "record has no value (null, a tombstone)")
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidEvent(UNDECODABLE, f"record value is a {type(data).__name__}, not bytes")
    if len(data) < _HEADER_SIZE or data[:2] != MAGIC:
        raise InvalidEvent(UNDECODABLE, _describe_bad_header(data))
    fp = bytes(data[2:_HEADER_SIZE])
    writer = reg.writer(fp)
    if writer is None:
        raise InvalidEvent(UNDECODABLE, f"unknown schema fingerprint {fp.hex()} (no known writer schema)")
    if writer.fast_reader is not None:
        event = writer.fast_reader(data if type(data) is bytes else bytes(data), _HEADER_SIZE)
        if event is not None:
            event["event_type"] = writer.name
            check_decoded(event, writer.spec)
            return event
    # Not the current schema, or not its plain encoding: fastavro reads it (and refuses what it refuses).
    body = BytesIO(data)
    body.seek(_HEADER_SIZE)
    # Any failure of the body, whatever fastavro raises for it (EOFError, UnicodeDecodeError,
    # SchemaResolutionError, ...), is bad input, never a reason to stop the processor.
    try:
        event = cast(dict[str, Any], schemaless_reader(body, writer.plain, writer.reader))
    except Exception as exc:  # noqa: BLE001
        raise InvalidEvent(
            UNDECODABLE, f"{writer.name} body does not decode: {type(exc).__name__}: {exc}",
            event_type=writer.name) from None
    if body.tell() != len(data):
        raise InvalidEvent(
            UNDECODABLE, f"{writer.name} body has {len(data) - body.tell()} trailing bytes",
            event_type=writer.name)
    event["event_type"] = writer.name
    check_decoded(event, writer.spec)
    return event


def decode_batch(
    messages: Iterable[bytes | bytearray | memoryview | None], registry: SchemaRegistry | None = None
) -> list[dict[str, Any] | InvalidEvent]:
    """Decode many messages; a refused one is returned as its InvalidEvent, in place, so a batch
    never stops at a bad message and the caller can pair each result with its offset."""
    reg = registry or default_registry
    out: list[dict[str, Any] | InvalidEvent] = []
    append = out.append
    for data in messages:
        try:
            append(decode(data, reg))
        except InvalidEvent as refusal:
            append(refusal)
    return out


def _describe_bad_header(data: bytes | bytearray | memoryview) -> str:
    if len(data) >= 2 and data[:2] != MAGIC:
        return f"not an Avro single-object message: starts with {bytes(data[:2]).hex()}, expected c301"
    return f"message of {len(data)} bytes is too short for an Avro single-object header ({_HEADER_SIZE} bytes)"
