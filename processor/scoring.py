"""Scoring a simulated run against its ground truth: per alert type, what was planted, what the live
system raised, and how far they agree.

Pure (no I/O): the CLI reads the truth file and the alert ids the live system raised, and tests give
both by hand. A planted anomaly names the alert ids it must raise (`ALERT_TYPE:PARTNER_ID:TRIGGER_EVENT_ID`,
SPEC 5), so matching is exact, by id: an alert of the right type on the wrong trigger is both a false
positive and a miss. Precision is given only for the types the simulator plants: for the others
(`deal_conflict`, `earning_cap_reached`) every alert is on ordinary traffic, and what counts is how
many an analyst gets, alerts per 1,000 events.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: SPEC section 5, in its order.
ALERT_TYPES = ("duplicate_order", "near_duplicate_order", "channel_stuffing", "return_spike", "deal_conflict",
               "self_dealing", "velocity_spike", "earning_cap_reached", "large_adjustment")
#: The alert types `processor.simulation` plants.
PLANTED_TYPES = frozenset({"duplicate_order", "near_duplicate_order", "channel_stuffing", "return_spike",
                           "self_dealing", "velocity_spike", "large_adjustment"})
ALL = "all"


def alert_type_of(alert_id: str) -> str:
    return alert_id.split(":", 1)[0]


@dataclass(frozen=True)
class TypeScore:
    """One row of the score: alert ids of one type (or `all`), planted vs raised."""
    alert_type: str
    injected: int
    raised: int
    true_positives: int
    events: int
    planted: bool = True

    @property
    def false_positives(self) -> int:
        return self.raised - self.true_positives

    @property
    def missed(self) -> int:
        return self.injected - self.true_positives

    @property
    def precision(self) -> float | None:
        return self.true_positives / self.raised if self.raised and self.planted else None

    @property
    def recall(self) -> float | None:
        return self.true_positives / self.injected if self.injected else None

    @property
    def per_1000_events(self) -> float | None:
        return 1000 * self.raised / self.events if self.events else None

    def as_dict(self) -> dict[str, Any]:
        return {"injected": self.injected, "raised": self.raised, "true_positives": self.true_positives,
                "false_positives": self.false_positives, "missed": self.missed,
                "precision": _round(self.precision), "recall": _round(self.recall),
                "alerts_per_1000_events": _round(self.per_1000_events), "planted": self.planted}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def expected_ids(truth: Iterable[Mapping[str, Any]]) -> set[str]:
    """Every alert id the truth records name (header and footer records name none)."""
    return {alert_id for record in truth for alert_id in record.get("alert_ids", ())}


def score(truth: Iterable[Mapping[str, Any]], raised: Iterable[str], events: int,
          planted_types: Iterable[str] = PLANTED_TYPES) -> list[TypeScore]:
    """One row per alert type (SPEC order, then any other type seen), and a last row `all`."""
    expected, got = expected_ids(truth), set(raised)
    planted = set(planted_types)
    types = list(ALERT_TYPES) + sorted({alert_type_of(a) for a in expected | got} - set(ALERT_TYPES))
    rows = []
    for t in types:
        mine = {a for a in expected if alert_type_of(a) == t}
        theirs = {a for a in got if alert_type_of(a) == t}
        rows.append(TypeScore(t, len(mine), len(theirs), len(mine & theirs), events, t in planted or bool(mine)))
    rows.append(TypeScore(ALL, len(expected), len(got), len(expected & got), events))
    return rows


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def format_table(rows: list[TypeScore]) -> str:
    """The rows as an aligned text table."""
    head = ("alert type", "injected", "raised", "TP", "FP", "missed", "precision", "recall", "per 1k events")
    lines = [head]
    for r in rows:
        per = "-" if r.per_1000_events is None else f"{r.per_1000_events:.2f}"
        precision = _pct(r.precision) if r.planted else "not planted"
        lines.append((r.alert_type, str(r.injected), str(r.raised), str(r.true_positives), str(r.false_positives),
                      str(r.missed), precision, _pct(r.recall), per))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                             for i, (cell, w) in enumerate(zip(line, widths, strict=True))).rstrip())
        if n == 0 or n == len(lines) - 2:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def document(rows: list[TypeScore], **facts: Any) -> dict[str, Any]:
    """The JSON form: the facts given (run id, events, ...), then `types` and `all`."""
    return {**facts, "types": {r.alert_type: r.as_dict() for r in rows if r.alert_type != ALL},
            ALL: next(r.as_dict() for r in rows if r.alert_type == ALL)}


def read_truth(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The records of a truth file (JSON lines; blank lines skipped)."""
    return [json.loads(line) for line in lines if line.strip()]
