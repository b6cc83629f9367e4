"""The `schema-mix` fault of `incentives chaos`: a newer upstream writer of `SaleRecorded` mid-run.

A producer upgraded before the processor writes `SaleRecorded` v2: the current schema plus one
optional field with a default, `campaign_id` (`schemas/SaleRecorded.v2.avsc` in this folder). The
contract schema (`schemas/SaleRecorded.avsc`) does not change. The processor knows v2 as a writer
through `INCENTIVES_WRITER_SCHEMAS` (processor/config.py), which the chaos stack sets to this
folder for every process it starts; the oracle's replay reads with the same registry. Each v2
message must decode to the record its v1 encoding gives (Avro resolution drops `campaign_id`) and
be applied like it, never dead-lettered.
"""
from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from io import BytesIO
from pathlib import Path
from typing import Any

from fastavro import schemaless_writer

from processor.codec import MAGIC, SchemaRegistry, schema_fingerprint, validate

#: The writer schemas of the chaos stack: the value of its `INCENTIVES_WRITER_SCHEMAS`.
SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"
V2_FILE = SCHEMA_DIR / "SaleRecorded.v2.avsc"
#: The field v2 adds.
ADDED_FIELD = "campaign_id"


@functools.cache
def registry() -> SchemaRegistry:
    """This repository's schemas plus the writers of `SCHEMA_DIR`, as the chaos stack's processes load them."""
    return SchemaRegistry.from_directory(writers=(SCHEMA_DIR,))


@functools.cache
def v2_fingerprint() -> bytes:
    """The 8 bytes that name the v2 writer on the wire."""
    return schema_fingerprint(json.loads(V2_FILE.read_text(encoding="utf-8")))


def encode_v2(event: Mapping[str, Any], campaign_id: str | None = None) -> bytes:
    """`event` (a valid `SaleRecorded`; InvalidEvent if not) single-object encoded with the v2
    writer, `campaign_id` set as given."""
    reg = registry()
    normalised = validate(event, reg)
    if normalised["event_type"] != "SaleRecorded":
        raise ValueError(f"the v2 writer writes SaleRecorded, not {normalised['event_type']}")
    writer = reg.writer(v2_fingerprint())
    assert writer is not None, "registry() registers every schema of SCHEMA_DIR"
    out = BytesIO()
    out.write(MAGIC + writer.fingerprint)
    schemaless_writer(out, writer.plain, {**normalised, ADDED_FIELD: campaign_id})
    return out.getvalue()
