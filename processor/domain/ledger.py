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
from json.encoder import encode_basestring as _json_str
from typing import Any

ZERO_HASH = "0" * 64

#: The fields of an entry without `hash`, in the canonical form's (sorted) order; the ones that are
#: integers, the rest are strings.
ENTRY_FIELDS = ("account", "balance_available", "balance_held", "delta_available", "delta_held", "entry_id",
                "explanation", "kind", "occurred_at", "partner_id", "prev_hash", "rule_id", "rules_version", "seq",
                "source_event_id")
INT_FIELDS = frozenset({"balance_available", "balance_held", "delta_available", "delta_held", "seq"})


def canonical(entry: dict[str, Any]) -> bytes:
    """The canonical form (SPEC section 6): the entry without `hash`, JSON with sorted keys, no
    spaces, non-ASCII as UTF-8."""
    body = _canonical_fast(entry)
    return body if body is not None else canonical_reference(entry)


def canonical_reference(entry: dict[str, Any]) -> bytes:
    """The canonical form by its definition, with `json.dumps`: what `canonical` must equal byte for
    byte (tests/unit/test_core_speed_invariants.py proves it on random entries)."""
    body = {k: v for k, v in entry.items() if k != "hash"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _canonical_fast(e: dict[str, Any]) -> bytes | None:
    """The canonical form of an entry with exactly `ENTRY_FIELDS` (and maybe `hash`), its integers
    plain `int`s and its strings plain `str`s, written out field by field: about a fifth of the cost
    of `json.dumps(sort_keys=True)` (which sorts, dispatches on types and builds an encoder each time)
    on the hot path. The same bytes by construction: keys in sorted order, integers by `int.__repr__`
    and strings by `json.encoder.encode_basestring`, exactly what `json.dumps(ensure_ascii=False)`
    applies to them. Anything else (other keys, bools, subclasses...) is None: `json.dumps` decides."""
    if len(e) != (16 if "hash" in e else 15):
        return None
    try:
        account, kind, entry_id, partner_id = e["account"], e["kind"], e["entry_id"], e["partner_id"]
        explanation, occurred_at, prev_hash = e["explanation"], e["occurred_at"], e["prev_hash"]
        rule_id, rules_version, source_event_id = e["rule_id"], e["rules_version"], e["source_event_id"]
        bal_avail, bal_held, d_avail, d_held, seq = (e["balance_available"], e["balance_held"], e["delta_available"],
                                                     e["delta_held"], e["seq"])
    except KeyError:
        return None
    if not (type(account) is str and type(kind) is str and type(entry_id) is str and type(partner_id) is str
            and type(explanation) is str and type(occurred_at) is str and type(prev_hash) is str
            and type(rule_id) is str and type(rules_version) is str and type(source_event_id) is str
            and type(bal_avail) is int and type(bal_held) is int and type(d_avail) is int and type(d_held) is int
            and type(seq) is int):
        return None
    return (f'{{"account":{_json_str(account)},"balance_available":{bal_avail!r},"balance_held":{bal_held!r},'
            f'"delta_available":{d_avail!r},"delta_held":{d_held!r},"entry_id":{_json_str(entry_id)},'
            f'"explanation":{_json_str(explanation)},"kind":{_json_str(kind)},'
            f'"occurred_at":{_json_str(occurred_at)},"partner_id":{_json_str(partner_id)},'
            f'"prev_hash":{_json_str(prev_hash)},"rule_id":{_json_str(rule_id)},'
            f'"rules_version":{_json_str(rules_version)},"seq":{seq!r},'
            f'"source_event_id":{_json_str(source_event_id)}}}').encode()


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
