"""``incentives whatif``: the recorded log under the current program and under a proposed one."""
from __future__ import annotations

import json
import sys
from typing import Any

import click

from processor.cli.report import table
from processor.config import load_settings
from processor.domain.program import ProgramError
from processor.domain.timeutil import parse_iso
from processor.programs import load_program

PARTNER_ROWS = 25


def _signed(n: int) -> str:
    return f"{n:+,}" if n else "0"


def render(doc: dict[str, Any]) -> str:
    rv, t = doc["rules_version"], doc["totals"]
    out = [f"What-if: {rv['before']} (now) -> {rv['after']} (proposed), {t['partners']:,} partners, "
           f"{t['events_applied']['before']:,} events applied", ""]
    rows = [{"_label": label, **t[key]} for key, label in (
        ("points_awarded", "points awarded"), ("points_available", "points available"),
        ("points_held", "points held"), ("rebate_cents_earned", "rebates earned (cents)"),
        ("value_cents", "value (cents)"))]
    out += table("Program totals", [("before", "now", "num"), ("after", "proposed", "num"),
                                    ("difference", "difference", "num")], rows)
    pv = doc["point_value_cents"]
    out += [f"  value = points awarded x point value ({pv['before']} -> {pv['after']} cents) + rebates earned", ""]
    tiers = doc["tiers"]
    out += [f"Tiers: {tiers['up']:,} partners up, {tiers['down']:,} down, {tiers['unchanged']:,} unchanged"]
    out += [f"  {m['from']} -> {m['to']}: {m['partners']:,}" for m in tiers["moves"]] + [""]
    for key, title in (("gainers", "Top gainers"), ("losers", "Top losers")):
        movers = doc["movers"][key]
        if movers:
            out += table(title, [("tier_before", "tier now", "text"), ("tier_after", "proposed", "text"),
                                 ("points_awarded_difference", "points", "num"),
                                 ("rebate_cents_difference", "rebate cents", "num"),
                                 ("value_cents_difference", "value cents", "num")],
                         [{**m, "_label": m["partner_id"]} for m in movers], first="partner")
    a = doc["alerts"]
    out += [f"Alerts: {a['before']:,} now, {a['after']:,} proposed; {len(a['appear']):,} appear, "
            f"{len(a['disappear']):,} disappear"]
    for verb, alerts in (("+", a["appear"]), ("-", a["disappear"])):
        out += [f"  {verb} {al['alert_id']} ({al['severity']})" for al in alerts[:10]]
        if len(alerts) > 10:
            out += [f"  {verb} ... and {len(alerts) - 10:,} more (--json lists them all)"]
    out.append("")
    diffs = doc["differences"]
    shown = sorted(diffs.items(), key=lambda kv: (-abs(kv[1]["value_cents"]["difference"]), kv[0]))[:PARTNER_ROWS]
    if shown:
        out += table(f"Partners with a difference ({len(diffs):,}; the {len(shown)} largest by value)",
                     [("tier", "tier", "text"), ("awarded", "points awarded", "text"),
                      ("available", "available", "text"), ("rebate", "rebates", "text")],
                     [{"_label": pid, "tier": f"{d['tier']['before']} -> {d['tier']['after']}"
                       if d["tier"]["direction"] != "unchanged" else d["tier"]["before"],
                       "awarded": f"{d['points_awarded']['before']:,} {_signed(d['points_awarded']['difference'])}",
                       "available": f"{d['points_available']['before']:,} "
                                    f"{_signed(d['points_available']['difference'])}",
                       "rebate": f"{d['rebate_cents_earned']['before']:,} "
                                 f"{_signed(d['rebate_cents_earned']['difference'])}"}
                      for pid, d in shown], first="partner")
    else:
        out += ["No partner's figures change.", ""]
    return "\n".join(out)


@click.command("whatif")
@click.option("--program", "new_program", required=True, metavar="NEW.yaml",
              help="The proposed program file (validated like the default one; its version must differ).")
@click.option("--source", default="kafka", show_default=True, metavar="FILE.jsonl|kafka",
              help="A JSON-lines file (- for stdin), or 'kafka' for the recorded partner-events log.")
@click.option("--until", metavar="TIMESTAMP", default=None,
              help="Only events with occurred_at <= TIMESTAMP (ISO-8601 UTC).")
@click.option("--current", "current_program", default=None, metavar="PROGRAM.yaml",
              help="The program to compare with [default: $INCENTIVES_PROGRAM, the one the worker runs].")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON document: partners (before/after replay objects), totals, tiers, movers, alerts.")
def whatif(new_program: str, source: str, until: str | None, current_program: str | None, as_json: bool) -> None:
    """Replay the log under the current program and under NEW.yaml; show who gains, who loses, what it costs.

    Both folds are the auditor's replay with the same events (a file: both stages in file order, no
    services; kafka: the recorded log, recorded AnomalyDetected honoured), so every difference is
    exactly the rule change's.

    \b
    Examples:
      incentives whatif --program richer-software.yaml --source events.jsonl
      incentives whatif --program q1-2027.yaml --until 2026-12-31T23:59:59Z --json > whatif.json
    """
    from processor import whatif as w

    settings = load_settings()
    try:
        current = load_program(current_program or str(settings.program))
        proposed = load_program(new_program)
        w.check_programs(current, proposed)
        until_ms = parse_iso(until) if until else None
    except ProgramError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except ValueError:
        click.echo(f"error: --until: not an ISO-8601 timestamp: {until}", err=True)
        sys.exit(2)
    tty = sys.stderr.isatty()
    if source == "kafka":
        from processor import kafka_replay
        log = kafka_replay.read_log(settings.kafka_bootstrap_servers)
        click.echo(f"read {sum(len(v) for v in log.values()):,} records from partner-events; folding twice",
                   err=True)
        before, after = w.fold_log(log, current, until_ms), w.fold_log(log, proposed, until_ms)
    else:
        try:
            stream = sys.stdin if source == "-" else open(source, encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            click.echo(f"error: --source {source}: {exc.strerror}", err=True)
            sys.exit(2)
        with stream:
            lines = stream.readlines()
        docs = []
        for label, program in (("current", current), ("proposed", proposed)):
            if tty:
                with click.progressbar(length=len(lines), label=f"folding under the {label} program",
                                       file=sys.stderr) as bar:
                    docs.append(w.fold_lines(lines, program, until_ms, progress=bar.update))
            else:
                docs.append(w.fold_lines(lines, program, until_ms))
        before, after = docs
    doc = w.compare(before, after, current, proposed)
    click.echo(json.dumps(doc, sort_keys=True) if as_json else render(doc))
