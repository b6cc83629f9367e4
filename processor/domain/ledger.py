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


def chain_breaks(entries: Iterable[dict[str, Any]]) -> list[tuple[int, str]]:
    """Every break in one partner's entries (read in seq order), as (seq, what is wrong).

    Checks each entry's hash against its canonical form, its `prev_hash` against the previous
    entry's hash, seq contiguity from 1, and its balances after against the previous balances of
    its account plus its deltas (the first entry of an account: its deltas). After a gap or a
    reordering the check goes on from the entry as stored, so one tampered, missing or moved entry
    is reported where it is, not again at every later entry."""
    breaks: list[tuple[int, str]] = []
    expected, prev = 1, ZERO_HASH
    balances: dict[Any, tuple[Any, Any]] = {}
    for e in entries:
        seq: Any = e.get("seq")
        in_order = seq == expected
        if not in_order:
            if isinstance(seq, int) and seq > expected:
                missing = f"seq {expected}" if seq == expected + 1 else f"seqs {expected}..{seq - 1}"
                breaks.append((expected, f"{missing} missing (the next entry is seq {seq})"))
            else:
                breaks.append((seq if isinstance(seq, int) else expected,
                               f"seq {seq} where {expected} was expected (out of order or repeated)"))
        elif e.get("prev_hash") != prev:
            breaks.append((seq, f"prev_hash does not link to seq {seq - 1}'s hash" if seq > 1
                           else "prev_hash of the first entry is not 64 zeros"))
        if entry_hash(e) != e.get("hash"):
            breaks.append((seq if isinstance(seq, int) else expected,
                           "hash does not match the entry's canonical form (SPEC section 6)"))
        account = e.get("account")
        stored = (e.get("balance_available"), e.get("balance_held"))
        if in_order:
            avail, held = balances.get(account, (0, 0))
            if (avail + e["delta_available"], held + e["delta_held"]) != stored:
                breaks.append((seq, f"{account} balances after {stored[0]}/{stored[1]} are not the previous "
                                    f"{avail}/{held} plus the deltas {e['delta_available']}/{e['delta_held']}"))
        balances[account] = stored     # go on from the entry as stored
        prev = e.get("hash", "")
        if isinstance(seq, int):
            expected = max(expected, seq + 1)
    return breaks


def verify_chain(entries: Iterable[dict[str, Any]]) -> list[str]:
    """Problems found in one partner's entries (in seq order), as text; empty when the chain holds."""
    entries = list(entries)
    partner = entries[0].get("partner_id") if entries else ""
    return [f"{partner}#{seq}: {what}" for seq, what in chain_breaks(entries)]
