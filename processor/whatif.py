"""What-if: the recorded log folded under the current program and under a proposed one, compared.

Both folds are the auditor's replay (`processor.replay` for a file, `processor.kafka_replay` for the
recorded log), with the same events and only the program changed, so the difference is exactly what
the rule change would have done to every partner: points awarded, balances, rebates, tiers and
alerts. `compare` is pure: two replay documents (with their ledgers) in, the SPEC section 10
document out.

Money: `value_cents` of a partner or a total is points awarded x the program's `point_value_cents`
plus rebates earned (cents); before uses the current program's point value, after the proposed one's.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from processor.domain.program import Program, ProgramError
from processor.kafka_replay import replay_log
from processor.replay import replay_lines

AWARD_KINDS = ("earn", "bonus", "spiff")
TOP_MOVERS = 10


def check_programs(current: Program, proposed: Program) -> None:
    """The proposed program must say it is another version (it is stamped on every entry)."""
    if proposed.version == current.version:
        raise ProgramError(f"the proposed program's version {proposed.version!r} is the current one's: "
                           f"give it a new 'version' so its ledger entries can be told apart")


def fold_lines(lines: list[str], program: Program, until_ms: int | None = None,
               progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """The replay document (with the ledger) of JSON lines in file order, as `replay --source FILE`."""
    return replay_lines(_counted(lines, progress) if progress else lines, until=until_ms, program=program,
                        include_ledger=True)


def _counted(lines: Iterable[str], progress: Callable[[int], None], every: int = 1000) -> Iterator[str]:
    n = 0
    for n, line in enumerate(lines, 1):
        if n % every == 0:
            progress(every)
        yield line
    progress(n % every)


def fold_log(log: dict[int, list[tuple[int, bytes]]], program: Program, until_ms: int | None = None) -> dict[str, Any]:
    """The replay document (with the ledger) of the recorded log, as `replay --source kafka`."""
    return replay_log(log, program, until_ms).document(include_ledger=True)


def _ledger_figures(ledger: Iterable[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per partner: points awarded (earn, bonus, spiff) and rebates earned."""
    figures: dict[str, dict[str, int]] = {}
    for entry in ledger:
        f = figures.setdefault(entry["partner_id"], {"points_awarded": 0, "rebate_cents_earned": 0})
        amount = entry["delta_available"] + entry["delta_held"]
        if entry["account"] == "points" and entry["kind"] in AWARD_KINDS:
            f["points_awarded"] += amount
        elif entry["account"] == "rebate" and entry["kind"] == "rebate":
            f["rebate_cents_earned"] += amount
    return figures


def _figures(partner: dict[str, Any] | None, ledger: dict[str, int] | None, point_value: int) -> dict[str, Any]:
    partner = partner or {}
    ledger = ledger or {"points_awarded": 0, "rebate_cents_earned": 0}
    points = partner.get("points", {"available": 0, "held": 0})
    rebate = partner.get("rebate_cents", {"available": 0, "held": 0})
    return {
        "tier": partner.get("tier"),
        "points_awarded": ledger["points_awarded"],
        "points_available": points["available"],
        "points_held": points["held"],
        "rebate_cents_earned": ledger["rebate_cents_earned"],
        "rebate_cents": rebate["available"] + rebate["held"],
        "value_cents": ledger["points_awarded"] * point_value + ledger["rebate_cents_earned"],
    }


NUMBERS = ("points_awarded", "points_available", "points_held", "rebate_cents_earned", "rebate_cents", "value_cents")


def compare(before: dict[str, Any], after: dict[str, Any], current: Program, proposed: Program) -> dict[str, Any]:
    """The what-if document: `partners` (each `{"before": P, "after": P}`, P the replay's partner
    object), `totals`, `tiers`, `movers`, `alerts`, plus `differences` (per partner, only those
    with one) and `rules_version`."""
    ledger_before = _ledger_figures(before.get("ledger", []))
    ledger_after = _ledger_figures(after.get("ledger", []))
    ids = sorted(set(before["partners"]) | set(after["partners"]))
    ranks = {tier: i for i, tier in enumerate(proposed.tier_order)}
    partners: dict[str, Any] = {}
    differences: dict[str, Any] = {}
    totals = {name: {"before": 0, "after": 0, "difference": 0} for name in NUMBERS}
    moves: Counter[tuple[str, str]] = Counter()
    direction_counts = {"up": 0, "down": 0, "unchanged": 0}
    movers = []
    for pid in ids:
        b, a = before["partners"].get(pid), after["partners"].get(pid)
        partners[pid] = {"before": b, "after": a}
        fb = _figures(b, ledger_before.get(pid), current.point_value_cents)
        fa = _figures(a, ledger_after.get(pid), proposed.point_value_cents)
        diff = {name: fa[name] - fb[name] for name in NUMBERS}
        for name in NUMBERS:
            totals[name]["before"] += fb[name]
            totals[name]["after"] += fa[name]
            totals[name]["difference"] += diff[name]
        direction = "unchanged"
        if fb["tier"] != fa["tier"]:
            direction = "up" if ranks.get(fa["tier"] or "", -1) > ranks.get(fb["tier"] or "", -1) else "down"
            moves[(fb["tier"] or "", fa["tier"] or "")] += 1
        direction_counts[direction] += 1
        if any(diff.values()) or direction != "unchanged":
            differences[pid] = {"tier": {"before": fb["tier"], "after": fa["tier"], "direction": direction},
                                **{name: {"before": fb[name], "after": fa[name], "difference": diff[name]}
                                   for name in NUMBERS}}
        movers.append({"partner_id": pid, "tier_before": fb["tier"], "tier_after": fa["tier"],
                       "points_awarded_difference": diff["points_awarded"],
                       "rebate_cents_difference": diff["rebate_cents_earned"],
                       "value_cents_difference": diff["value_cents"]})
    gainers = sorted((m for m in movers if m["value_cents_difference"] > 0),
                     key=lambda m: (-m["value_cents_difference"], m["partner_id"]))[:TOP_MOVERS]
    losers = sorted((m for m in movers if m["value_cents_difference"] < 0),
                    key=lambda m: (m["value_cents_difference"], m["partner_id"]))[:TOP_MOVERS]
    alerts_before = {a["alert_id"]: a for a in before["alerts"]}
    alerts_after = {a["alert_id"]: a for a in after["alerts"]}
    return {
        "rules_version": {"before": current.version, "after": proposed.version},
        "point_value_cents": {"before": current.point_value_cents, "after": proposed.point_value_cents},
        "partners": partners,
        "differences": differences,
        "totals": {**totals, "partners": len(ids), "partners_changed": len(differences),
                   "events_applied": {"before": before["events_applied"], "after": after["events_applied"]},
                   "rejections": {"before": len(before["rejections"]), "after": len(after["rejections"])}},
        "tiers": {**direction_counts,
                  "moves": [{"from": f, "to": t, "partners": n} for (f, t), n in sorted(
                      moves.items(), key=lambda item: (ranks.get(item[0][0], -1), ranks.get(item[0][1], -1)))]},
        "movers": {"gainers": gainers, "losers": losers},
        "alerts": {"appear": [alerts_after[i] for i in alerts_after if i not in alerts_before],
                   "disappear": [alerts_before[i] for i in alerts_before if i not in alerts_after],
                   "before": len(alerts_before), "after": len(alerts_after)},
    }
