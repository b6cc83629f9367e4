"""Load a JSON-lines log into a ClickHouse database the way the live pipeline would, without Kafka.

The log is folded by the file replay's code (both stages, file order); every input event, every
stage-2 finding (live, `AnomalyDetected` is appended to `partner-events`) and every output record
(ledger entries, tier changes, alert states, redemption decisions, rejections) is written through
the sink's own mappings, and then the KPI rollup is rebuilt for what was written. The tests use it
to fill a scratch database with the figures a replay implies. `copies` writes everything that
many times: a redelivery, which must change no figure.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from processor.codec import InvalidEvent, from_json_line
from processor.codec.timestamps import format_iso_millis
from processor.domain import crosspartner
from processor.domain.outcome import Outcome
from processor.domain.program import Program
from processor.programs import load_program
from processor.replay import Replayer
from projections import kpi
from projections import sink as projection

FILE_TOPIC = "file"


def _json_line(event: dict[str, Any]) -> str:
    import json

    return json.dumps({**event, "occurred_at": format_iso_millis(event["occurred_at"])}, ensure_ascii=False,
                      separators=(",", ":"))


def project_lines(lines: Iterable[str], program: Program | None = None) -> dict[str, list[projection.Row]]:
    """Rows per table for a log, as the sink would write them (one copy)."""
    replayer = Replayer(program or load_program())
    rows: dict[str, list[projection.Row]] = defaultdict(list)

    def collect(out: Outcome) -> None:
        for table, records in (("ledger", out.ledger), ("tier_changes", out.tier_changes),
                               ("alerts", out.alerts), ("redemptions", out.redemptions)):
            rows[table] += [projection.map_record(table, r) for r in records]
        rows["rejections"] += [projection.rejection_row(r, source=r["event_id"], raw="") for r in out.rejections]

    offset = 0
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            event = from_json_line(line)
        except InvalidEvent as exc:
            store, _ = replayer._store(0)
            collect(replayer.stage1.reject(store, exc.event_id, exc.partner_id, exc.event_type, exc.reason, None,
                                           f"line:{n}"))
            continue
        rows["events"].append(projection.event_row(event, _json_line(event), FILE_TOPIC, 0, offset))
        offset += 1
        store, scope = replayer._store(0)
        out = replayer.stage1.apply(store, scope, event)
        collect(out)
        for key, record in out.forwards:
            state, findings = crosspartner.apply(replayer.program, replayer.stage2_state.get(key), record)
            replayer.stage2_state[key] = state
            for finding in findings:
                rows["events"].append(projection.event_row(finding, _json_line(finding), FILE_TOPIC, 0, offset))
                offset += 1
                collect(replayer.stage1.apply(store, scope, finding))
    return dict(rows)


def load(settings: Any, rows: dict[str, list[projection.Row]], *, copies: int = 1,
         program: Program | None = None) -> kpi.Dirty:
    """Write `rows` (from `project_lines`) `copies` times into `settings.clickhouse_database`, then
    rebuild the KPI rollup rows they touch; returns those partner-months."""
    program = program or load_program()
    sink = projection.ClickHouseSink(settings, max_wait=30.0)
    try:
        sink.write_program_settings(program.version, program.point_value_cents)
        for _ in range(copies):
            for table, table_rows in rows.items():
                sink.write(table, table_rows, mapped=True)
        dirty = kpi.touched(rows)
        sink.rebuild_kpis(dirty)
        return dirty
    finally:
        sink.close()
