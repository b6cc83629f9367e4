"""The auditor's standalone ledger check (`incentives verify`), with no worker needed.

Reads every ledger entry from ClickHouse (`ledger FINAL`, in partner and seq order, streamed) or
from the `points-ledger` topic, and checks each partner's chain with the domain's own
`chain_breaks` (SPEC section 6): every entry's hash recomputed from its canonical form, every
`prev_hash` link, seq contiguity from 1, and each entry's balances after = the previous balances of
its account + its deltas. Every break is reported with its partner and seq.

ClickHouse keeps `occurred_at` to the second and within 1970..2106 (the column's range); the
ledger's canonical form has it to the second too, so the hash can be recomputed from the row. An
entry dated outside that range (clamped by the sink) cannot be, and shows as a hash break.

The topic may hold a record more than once (at-least-once delivery): identical copies count once;
two different records with the same partner and seq are a break of their own.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import groupby
from typing import Any

from processor import topics
from processor.domain.ledger import chain_breaks

LEDGER_COLUMNS = ("entry_id", "partner_id", "seq", "account", "kind", "delta_available", "delta_held",
                  "balance_available", "balance_held", "rule_id", "rules_version", "source_event_id",
                  "occurred_at", "explanation", "prev_hash", "hash")


@dataclass(frozen=True)
class Break:
    partner_id: str
    seq: int
    problem: str


@dataclass
class Report:
    source: str
    partners: int = 0
    entries: int = 0
    breaks: list[Break] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return not self.breaks

    def document(self) -> dict[str, Any]:
        return {"source": self.source, "verified": self.verified, "partners": self.partners,
                "entries": self.entries, "breaks": [asdict(b) for b in self.breaks]}


def check(entries: Iterable[dict[str, Any]], source: str,
          progress: Callable[[int], None] | None = None) -> Report:
    """Check entries that come grouped by partner, each partner's in seq order."""
    report = Report(source)
    for partner, group in groupby(entries, key=lambda e: e["partner_id"]):
        chain = list(group)
        report.partners += 1
        report.entries += len(chain)
        report.breaks += [Break(partner, seq, what) for seq, what in chain_breaks(chain)]
        if progress is not None:
            progress(len(chain))
    return report


def clickhouse_entries(settings: Any, partner: str | None = None) -> Iterator[dict[str, Any]]:
    """Every entry of `ledger FINAL` (or one partner's), in partner and seq order, streamed."""
    from projections.migrate import check_identifier, client

    conn = client(settings)
    where, params = ("WHERE partner_id = %(partner)s", {"partner": partner}) if partner else ("", {})
    sql = (f"SELECT {', '.join(LEDGER_COLUMNS)} FROM {check_identifier(settings.clickhouse_database)}.ledger "
           f"FINAL {where} ORDER BY partner_id, seq")
    try:
        for row in conn.execute_iter(sql, params, settings={"max_block_size": 10_000}):
            entry = dict(zip(LEDGER_COLUMNS, row, strict=True))
            entry["occurred_at"] = entry["occurred_at"].strftime("%Y-%m-%dT%H:%M:%SZ")
            yield entry
    finally:
        conn.disconnect()


def topic_entries(log: dict[int, list[tuple[int, bytes]]], partner: str | None = None,
                  duplicates: list[Break] | None = None) -> list[dict[str, Any]]:
    """The entries of a `points-ledger` log ({partition: [(offset, bytes)]}), one per partner and
    seq, in partner and seq order. A record that is not a ledger entry, or a second different
    record for a partner and seq, goes to `duplicates` as a break."""
    by_key: dict[tuple[str, int], dict[str, Any]] = {}
    for partition in sorted(log):
        for offset, value in log[partition]:
            where = f"{topics.POINTS_LEDGER}:{partition}:{offset}"
            try:
                entry = json.loads(value)
                key = (str(entry["partner_id"]), int(entry["seq"]))
            except (ValueError, TypeError, KeyError) as exc:
                if duplicates is not None:
                    duplicates.append(Break("", 0, f"{where}: not a ledger entry ({type(exc).__name__})"))
                continue
            if partner is not None and key[0] != partner:
                continue
            seen = by_key.setdefault(key, entry)
            if seen != entry and duplicates is not None:
                duplicates.append(Break(key[0], key[1], f"{where}: a different entry with the same partner "
                                                        f"and seq as an earlier record"))
    return [by_key[k] for k in sorted(by_key)]


def verify_clickhouse(settings: Any, partner: str | None = None,
                      progress: Callable[[int], None] | None = None) -> Report:
    return check(clickhouse_entries(settings, partner), "clickhouse", progress)


def verify_topic(log: dict[int, list[tuple[int, bytes]]], partner: str | None = None) -> Report:
    problems: list[Break] = []
    report = check(topic_entries(log, partner, problems), "kafka")
    report.breaks = problems + report.breaks
    return report
