"""Poison messages for `incentives chaos`: the four kinds of bad input a real log brings.

Every kind is refused by the codec (`processor.codec.decode` raises InvalidEvent), so the worker
must dead-letter each one exactly once and go on:
- `garbage`: bytes that are not an Avro single-object message at all;
- `unknown_fingerprint`: a well-formed header naming a schema nobody has, then a real body;
- `truncated_avro`: a real message cut short (a producer that died mid-write);
- `invalid_event`: valid Avro of a known schema whose content fails validation (an empty required
  field), which only the project's own checks catch.
"""
from __future__ import annotations

import random
from io import BytesIO
from typing import Any

from fastavro import schemaless_writer

from processor.codec import encode, validate
from processor.codec.schema_registry import MAGIC, default_registry

KINDS = ("garbage", "unknown_fingerprint", "truncated_avro", "invalid_event")


def poison(kind: str, rng: random.Random, sale: dict[str, Any]) -> bytes:
    """One poison message of `kind`, built from a valid `SaleRecorded` event `sale` (its
    `event_id` should be unique: an `invalid_event` keeps it, so it is dead-lettered under it)."""
    if kind == "garbage":
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(8, 200)))
        return b"\x00" + data if data[:2] == MAGIC else data
    if kind == "unknown_fingerprint":
        while True:
            fp = bytes(rng.randrange(256) for _ in range(8))
            if default_registry.writer(fp) is None:
                return MAGIC + fp + encode(sale)[len(MAGIC) + 8:]
    if kind == "truncated_avro":
        whole = encode(sale)
        return whole[:rng.randrange(len(MAGIC) + 8, len(whole))]
    if kind == "invalid_event":
        current = default_registry.current("SaleRecorded")
        out = BytesIO()
        out.write(current.header)
        # valid Avro, an empty required field
        schemaless_writer(out, current.plain, {**validate(dict(sale)), "order_id": ""})
        return out.getvalue()
    raise ValueError(f"unknown poison kind {kind!r}; one of {', '.join(KINDS)}")
