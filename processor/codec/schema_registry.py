"""The set of event schemas, indexed the two ways the wire format needs.

A single-object-encoded message names its writer schema only by fingerprint, and the processor
always wants the *current* shape of that record. So the registry maps fingerprint -> writer
schema (every version ever used: `schemas/*.avsc` plus `schemas/history/*.avsc`, plus the
directories of `INCENTIVES_WRITER_SCHEMAS`, e.g. the newer version of an upstream producer upgraded
first) and record name -> current (reader) schema. Everything the hot path needs per message is
prepared here once: parsed schemas, the 10-byte header, the resolution pair and the validation
spec, so decoding a message is one dict lookup plus one fastavro call. More writers are more
entries of that dict, nothing more per message.

Schemas are read with their `timestamp-millis` logical type removed: fastavro would otherwise
turn `occurred_at` into a `datetime` on read (it converts by the *writer's* logical type), and
the processor works in integer epoch milliseconds. The Parsing Canonical Form drops logical
types, so the fingerprint on the wire is the same either way.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from fastavro import parse_schema
from fastavro.schema import SchemaParseException, fingerprint, to_parsing_canonical_form

from processor.config import writer_schema_dirs

from . import avro_plain
from .avro_plain import Reader
from .specs import RecordSpec, SchemaError, record_spec, short_name

#: The event types of SPEC section 3, in the order the SPEC lists them.
EVENT_TYPES: tuple[str, ...] = (
    "PartnerEnrolled",
    "PartnerOffboarded",
    "SaleRecorded",
    "SaleReturned",
    "DealRegistered",
    "DealClosed",
    "TrainingCompleted",
    "MarketingActivityCompleted",
    "RedemptionRequested",
    "PointsAdjusted",
    "AlertResolved",
    "AnomalyDetected",
    "PeriodClosed",
)

NAMESPACE = "partner.incentives"

#: Avro single-object encoding marker: every message starts with these two bytes.
MAGIC = b"\xc3\x01"

#: `schemas/` at the repository root (this file is processor/codec/schema_registry.py).
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"


def schema_fingerprint(schema: dict | str) -> bytes:
    """The 8 bytes that follow the marker: CRC-64-AVRO (Rabin) of the Parsing Canonical Form.

    fastavro returns the hex of the fingerprint's *little-endian* bytes (as Java does), which is
    exactly the byte order single-object encoding puts on the wire.
    """
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


@dataclass(frozen=True, slots=True)
class CurrentSchema:
    """The version of a record that is written today and that every older version is read into."""

    name: str
    #: As in the .avsc file (unparsed, with docs and logical types), for tools and documentation.
    source: dict
    #: Parsed, logical types removed: what encode writes with and decode reads into.
    plain: dict
    fingerprint: bytes
    #: MAGIC + fingerprint, prepended to every encoded body.
    header: bytes
    spec: RecordSpec


@dataclass(frozen=True, slots=True)
class WriterSchema:
    """One known writer version: how to read a body it wrote."""

    name: str
    fingerprint: bytes
    source: dict
    #: Parsed, logical types removed.
    plain: dict
    #: The current schema to resolve into, or None when this writer *is* the current schema.
    reader: dict | None
    spec: RecordSpec
    #: Reads a body of the current schema quickly (`avro_plain`; None: fastavro reads every body).
    fast_reader: Reader | None = None


class SchemaRegistry:
    """Writer schemas by fingerprint, current schemas by record name."""

    def __init__(self) -> None:
        self._current: dict[str, CurrentSchema] = {}
        self._writers: dict[bytes, WriterSchema] = {}

    @classmethod
    def from_directory(
        cls, directory: str | Path = SCHEMA_DIR, *, expected: tuple[str, ...] = EVENT_TYPES,
        writers: Iterable[str | Path] = (),
    ) -> SchemaRegistry:
        """Load `directory/*.avsc` as current schemas and `directory/history/*.avsc` as old writers,
        then the `*.avsc` of every directory of `writers` as known writers the same way (schemas
        this repository does not hold, e.g. a newer version an upstream producer writes already).

        Fails (SchemaError) when a schema is bad, a file is not named after its record, one of
        `expected` is missing, a writer does not resolve into its current schema, or a directory of
        `writers` does not exist or holds no schema: better not to start than to dead-letter a
        whole event type.
        """
        directory = Path(directory)
        reg = cls()
        for path in sorted(directory.glob("*.avsc")):
            schema = _load(path)
            name = reg.add_current(schema)
            if path.stem != name:
                raise SchemaError(f"{path}: record {name!r} must be in a file named {name}.avsc")
        missing = [name for name in expected if name not in reg._current]
        if missing:
            raise SchemaError(f"{directory}: no schema for {', '.join(missing)}")
        for path in sorted((directory / "history").glob("*.avsc")):
            reg._register_file(path)
        for extra in writers:
            extra = Path(extra)
            files = sorted(extra.glob("*.avsc")) if extra.is_dir() else []
            if not files:
                raise SchemaError(f"{extra}: not a directory of writer schemas (*.avsc)")
            for path in files:
                reg._register_file(path)
        return reg

    def _register_file(self, path: Path) -> None:
        schema = _load(path)                       # its errors name the file already
        try:
            self.register_writer(schema)
        except SchemaError as exc:
            raise SchemaError(f"{path}: {exc}") from None

    def add_current(self, schema: dict) -> str:
        """Make `schema` the current version of its record (and a known writer); returns the record name."""
        name, parsed, fp = _parse(schema)
        source = copy.deepcopy(schema)
        spec = record_spec(source)
        self._current[name] = CurrentSchema(name, source, parsed, fp, MAGIC + fp, spec)
        self._writers[fp] = WriterSchema(name, fp, source, parsed, None, spec, _fast_reader(parsed))
        # Older writers of this record must now resolve into the new current version.
        for old_fp, old in list(self._writers.items()):
            if old.name == name and old_fp != fp:
                self._writers[old_fp] = self._resolving_writer(old.source)
        return name

    def register_writer(self, schema: dict) -> bytes:
        """Accept messages written with an older (or other compatible) version; returns its fingerprint.

        The record must have a current schema, and every current field must be either in the
        writer or have a default; otherwise SchemaError, since such messages could never be read.
        """
        entry = self._resolving_writer(copy.deepcopy(schema))
        if entry.fingerprint not in self._writers:
            self._writers[entry.fingerprint] = entry
        return entry.fingerprint

    def _resolving_writer(self, schema: dict) -> WriterSchema:
        name, parsed, fp = _parse(schema)
        current = self._current.get(name)
        if current is None:
            raise SchemaError(f"writer schema {name!r} has no current schema to be read into")
        _check_resolvable(name, schema, current.source)
        if fp == current.fingerprint:
            return WriterSchema(name, fp, schema, parsed, None, current.spec, _fast_reader(parsed))
        return WriterSchema(name, fp, schema, parsed, current.plain, current.spec)

    @property
    def event_types(self) -> tuple[str, ...]:
        return tuple(self._current)

    def __contains__(self, name: object) -> bool:
        return name in self._current

    def current(self, name: str) -> CurrentSchema:
        """The current schema of record `name`; KeyError if unknown."""
        return self._current[name]

    def reader_schema(self, name: str) -> dict:
        """The current schema of `name` as written in its .avsc file."""
        return self._current[name].source

    def writer(self, fp: bytes) -> WriterSchema | None:
        """The writer schema with fingerprint `fp` (8 bytes, wire order), or None if unknown."""
        return self._writers.get(fp)

    def writers(self) -> dict[bytes, tuple[dict, str]]:
        """fingerprint -> (writer schema, record name), for every known writer version."""
        return {fp: (w.source, w.name) for fp, w in self._writers.items()}


def _load(path: Path) -> dict:
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaError(f"{path}: {exc}") from exc
    if not isinstance(schema, dict):
        raise SchemaError(f"{path}: an event schema must be a JSON object")
    return schema


def _parse(schema: dict) -> tuple[str, dict, bytes]:
    """Record name, parsed schema without logical types, and fingerprint of one record schema."""
    if not isinstance(schema, dict) or schema.get("type") != "record" or "name" not in schema:
        raise SchemaError("an event schema must be an Avro record with a name")
    try:
        parse_schema(schema)  # validate as written, logical types included
        plain = cast(dict, parse_schema(_without_logical_types(schema)))
        fp = schema_fingerprint(schema)
    except (SchemaParseException, KeyError, TypeError, ValueError) as exc:
        raise SchemaError(f"schema {schema.get('name')!r}: {exc}") from exc
    return short_name(schema["name"]), plain, fp


def _fast_reader(parsed: dict) -> Reader | None:
    steps = avro_plain.plan(parsed)
    return avro_plain.reader(steps) if steps is not None else None


def _without_logical_types(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_logical_types(v) for k, v in node.items() if k != "logicalType"}
    if isinstance(node, list):
        return [_without_logical_types(v) for v in node]
    return node


def _check_resolvable(name: str, writer: dict, reader: dict) -> None:
    """Refuse at registration what Avro resolution would refuse on every message: a reader field
    that the writer lacks and that has no default. (Type changes are left to fastavro.)"""
    written = set()
    for f in writer.get("fields", []):
        written.add(f["name"])
        written.update(f.get("aliases", []))
    for f in reader["fields"]:
        names = {f["name"], *f.get("aliases", [])}
        if not names & written and "default" not in f:
            raise SchemaError(
                f"writer schema {name!r} lacks field {f['name']!r}, which the current schema needs "
                "without a default"
            )


#: The schemas of this repository and the writers of `INCENTIVES_WRITER_SCHEMAS`, loaded once at
#: import (a process's environment is fixed when it starts).
default_registry = SchemaRegistry.from_directory(writers=writer_schema_dirs())
