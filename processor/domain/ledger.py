"""Ledger entries and their hash chain (SPEC section 6).

Each entry's `hash` is the hex SHA-256 of its canonical form (the entry without `hash`, JSON with
sorted keys, no spaces, UTF-8) and links to the previous entry of the same partner by `prev_hash`,
so an auditor can check a partner's history from the topic or ClickHouse with a few lines of code.
`entry_id` is `partner_id:seq`, deterministic, so a re-run writes the same ids.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

ZERO_HASH = "0" * 64


def canonical(entry: dict[str, Any]) -> bytes:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_hash(entry: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(entry)).hexdigest()


def seal(entry: dict[str, Any]) -> bytes:
    """Set the entry's `hash` and return the whole entry as JSON bytes (what goes on the topic),
    encoding it once: the canonical form with `hash` appended."""
    body = canonical(entry)
    entry["hash"] = hashlib.sha256(body).hexdigest()
    return body[:-1] + b',"hash":"' + entry["hash"].encode() + b'"}'


def verify_chain(entries: Iterable[dict[str, Any]]) -> list[str]:
    """Problems found in one partner's entries (in seq order); empty when the chain holds."""
    problems: list[str] = []
    prev = ZERO_HASH
    balances: dict[str, tuple[int, int]] = {}
    for n, e in enumerate(entries, 1):
        where = f"{e.get('partner_id')}#{e.get('seq')}"
        if e.get("seq") != n:
            problems.append(f"{where}: seq {e.get('seq')} where {n} expected")
        if e.get("prev_hash") != prev:
            problems.append(f"{where}: prev_hash does not match the previous entry's hash")
        if entry_hash(e) != e.get("hash"):
            problems.append(f"{where}: hash does not match the entry's canonical form")
        avail, held = balances.get(e["account"], (0, 0))
        avail, held = avail + e["delta_available"], held + e["delta_held"]
        balances[e["account"]] = (avail, held)
        if (avail, held) != (e.get("balance_available"), e.get("balance_held")):
            problems.append(f"{where}: balances after do not equal the sum of deltas")
        prev = e.get("hash", "")
    return problems
