"""The oracle of `incentives chaos`: after a run, what the live system holds must equal the replay of
the recorded log, to the point.

The replay (`processor.kafka_replay.replay_log`, the auditor's own code) is the truth. Against it:
- ClickHouse's ledger (`FINAL`) and every worker's partner state: balances, entry counts, hash
  chain heads; points lost (live below the replay) and double-counted (live above) are summed;
- the alerts ClickHouse holds, by id and status;
- the rejections ClickHouse holds, by event id and reason;
- the dead-letter topic: every message the codec refuses is there (copies counted apart: a worker
  killed after producing them re-produces them), and there are as many as the poison injected;
- every ledger entry names a source event that is in the log;
- with `schema-mix`, the messages of the newer `SaleRecorded` writer: as many in the log as were
  sent, none refused by the replay's codec, none a refusal in the dead-letter topic, and the
  replay applied them (their fates are a figure);
- every partner's hash chain verifies (`processor.verify`).
Each input record's fate in the replay (applied, duplicate, rejected by the rules, refused by the
codec) is reported as a figure; the live system is held to it by the checks above.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from processor import topics
from processor.codec import MAGIC, InvalidEvent, SchemaRegistry, decode
from processor.codec import registry as default_registry
from processor.domain.outcome import APPLIED, DUPLICATE
from processor.domain.program import Program
from processor.kafka_replay import clickhouse_view, compare, worker_view
from processor.replay import Replayer
from processor.verify import verify_clickhouse

Log = dict[int, list[tuple[int, bytes]]]
KEYS = ("points", "rebate_cents", "ledger_entries", "ledger_head")


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Verdict:
    checks: list[Check] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def add(self, name: str, problems: Iterable[str], summary: str = "") -> None:
        problems = list(problems)
        detail = summary if not problems else f"{len(problems)} problems, e.g. " + "; ".join(problems[:5])
        self.checks.append(Check(name, not problems, detail))

    def document(self) -> dict[str, Any]:
        return {"ok": self.ok, "figures": self.figures,
                "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks]}


@dataclass
class Classified:
    """The replay of a log, and how each of its records was taken."""
    replayer: Replayer
    counts: Counter[str]
    invalid_sources: set[str]          # <topic>:<partition>:<offset> of every record the codec refused
    event_ids: set[str]
    #: fingerprint -> fates of the records written by a known writer other than the current schema
    #: of its record (an older one, or a newer upstream one), counted apart as well
    other_writers: dict[bytes, Counter[str]] = field(default_factory=dict)


def classify(log: Log, program: Program, topic: str = topics.PARTNER_EVENTS,
             registry: SchemaRegistry | None = None) -> Classified:
    """Replay `log` as `replay --source kafka` does, counting each record's fate once. `registry`:
    the one the live processes decode with (default: this process's, `processor.codec.registry`)."""
    reg = registry or default_registry
    replayer = Replayer(program, run_stage2=False, global_deal_ids=False)
    counts: Counter[str] = Counter()
    others: defaultdict[bytes, Counter[str]] = defaultdict(Counter)
    invalid: set[str] = set()
    ids: set[str] = set()
    for partition in sorted(log):
        for offset, value in log[partition]:
            where = f"{topic}:{partition}:{offset}"
            counts["records"] += 1
            try:
                event = decode(value, reg)
            except InvalidEvent as exc:
                replayer.feed_invalid(exc, where, part=partition)
                fate = "refused_by_codec"
                invalid.add(where)
            else:
                ids.add(event["event_id"])
                status = replayer.feed(event, part=partition).status
                fate = "applied" if status == APPLIED else "duplicate" if status == DUPLICATE else "rejected"
            counts[fate] += 1
            writer = reg.writer(_fingerprint(value)) if value else None
            if writer is not None and writer.reader is not None:
                others[writer.fingerprint][fate] += 1
    return Classified(replayer, counts, invalid, ids, dict(others))


def _fingerprint(value: bytes) -> bytes:
    """The writer fingerprint a single-object message names (b"" when it is not one)."""
    return bytes(value[2:10]) if value[:2] == MAGIC and len(value) >= 10 else b""


def judge(classified: Classified, settings: Any, worker_urls: list[str], partitions: int,
          dlq_records: list[tuple[dict[str, bytes], bytes | None]], injected_poison: int,
          mixed_writers: Mapping[str, tuple[bytes, int]] | None = None) -> Verdict:
    """Every check of the module docstring. `dlq_records`: (headers, value) of every record of the
    dead-letter topic. `mixed_writers`: a name -> (fingerprint, messages sent) of each writer other
    than the current schema of its record that the run mixed in (schema-mix: "SaleRecorded v2")."""
    verdict = Verdict()
    doc = classified.replayer.document()
    replayed = doc["partners"]
    c = classified.counts
    verdict.figures.update(records=c["records"], applied=c["applied"], duplicates=c["duplicate"],
                           rejected=c["rejected"], refused_by_codec=c["refused_by_codec"],
                           injected_poison=injected_poison, partners=len(replayed))
    # how the replay took each record (a figure, not a check: the classes add up by construction;
    # the checks below hold the live system to them)
    verdict.figures["records_taken"] = (f"{c['records']:,} records: {c['applied']:,} applied, "
                                        f"{c['duplicate']:,} duplicates, {c['rejected']:,} rejected, "
                                        f"{c['refused_by_codec']:,} refused by the codec")

    live, chain_problems = clickhouse_view(settings)
    verdict.add("ClickHouse ledger equals the replay", compare(replayed, live, "ClickHouse", KEYS),
                f"{len(live):,} partners")
    lost = doubled = 0
    for pid in set(replayed) | set(live):
        mine = replayed.get(pid, {}).get("points", {"available": 0, "held": 0})
        theirs = live.get(pid, {}).get("points", {"available": 0, "held": 0})
        diff = (theirs["available"] + theirs["held"]) - (mine["available"] + mine["held"])
        doubled += max(diff, 0)
        lost += max(-diff, 0)
    verdict.figures.update(points_lost=lost, points_double_counted=doubled)
    verdict.add("no point lost or double-counted", [f"{lost:,} points lost"] * bool(lost)
                + [f"{doubled:,} points double-counted"] * bool(doubled),
                f"{sum(p['points']['available'] + p['points']['held'] for p in replayed.values()):,} points "
                f"in the replay, the same in ClickHouse")
    if worker_urls:
        state, problems = worker_view(worker_urls, partitions)
        verdict.add("every worker's state equals the replay",
                    problems + list(compare(replayed, state, "worker", (*KEYS, "tier"))), f"{len(state):,} partners")

    from projections.migrate import client
    conn = client(settings)
    db = settings.clickhouse_database
    try:
        alerts = dict(conn.execute(f"SELECT alert_id, status FROM {db}.alerts FINAL"))
        rejections = set(conn.execute(f"SELECT event_id, reason FROM {db}.rejections FINAL"))
        sources = {row[0] for row in conn.execute(f"SELECT DISTINCT source_event_id FROM {db}.ledger FINAL")}
    finally:
        conn.disconnect()
    want_alerts = {a["alert_id"]: a["status"] for a in doc["alerts"]}
    verdict.add("ClickHouse alerts equal the replay's (ids and status)",
                [f"{i}: replay={want_alerts.get(i)} ClickHouse={alerts.get(i)}"
                 for i in sorted(set(want_alerts) | set(alerts)) if want_alerts.get(i) != alerts.get(i)],
                f"{len(want_alerts):,} alerts")
    want_rejections = {(r["event_id"], r["reason"]) for r in doc["rejections"]}
    verdict.add("ClickHouse rejections equal the replay's",
                [f"missing {r}" for r in sorted(want_rejections - rejections)[:50]]
                + [f"extra {r}" for r in sorted(rejections - want_rejections)[:50]],
                f"{len(want_rejections):,} rejections")
    verdict.add("every ledger entry has its source event in the log",
                [f"{s}" for s in sorted(sources - classified.event_ids)], f"{len(sources):,} source events")

    refusals: Counter[str] = Counter()
    for headers, _value in dlq_records:
        if _is_refusal(headers):
            refusals[headers.get("source", b"").decode(errors="replace")] += 1
    verdict.figures.update(dlq_refusals=len(refusals), dlq_copies=sum(refusals.values()) - len(refusals))
    problems = [f"{s}: refused by the codec, not in the dead-letter topic"
                for s in sorted(classified.invalid_sources - set(refusals))]
    problems += [f"{s}: in the dead-letter topic as a refusal, but the codec takes it"
                 for s in sorted(set(refusals) - classified.invalid_sources)]
    if len(refusals) != injected_poison:
        problems.append(f"{len(refusals)} refusals in the dead-letter topic, {injected_poison} poison injected")
    verdict.add("the dead-letter topic holds every poison message", problems,
                f"{len(refusals):,} refusals for {injected_poison:,} injected ({verdict.figures['dlq_copies']} copies)")

    for label, (fp, sent) in (mixed_writers or {}).items():
        figure, problems = mixed_writer_findings(classified, dlq_records, fp, sent)
        verdict.figures.setdefault("mixed_writers", {})[label] = figure
        verdict.add(f"every {label} message decodes and is applied, none dead-lettered", problems,
                    f"{sent:,} sent ({fp.hex()}): {figure['applied']:,} applied, {figure['duplicates']:,} duplicates "
                    f"(re-sends), {figure['rejected']:,} rejected by the rules, none refused or dead-lettered")

    chains = verify_clickhouse(settings)
    verdict.add("every hash chain verifies",
                [f"{b.partner_id}#{b.seq}: {b.problem}" for b in chains.breaks] + chain_problems,
                f"{chains.entries:,} entries of {chains.partners:,} partners")
    return verdict


def mixed_writer_findings(classified: Classified, dlq_records: list[tuple[dict[str, bytes], bytes | None]],
                          fp: bytes, sent: int) -> tuple[dict[str, Any], list[str]]:
    """The fates of the `sent` messages written by writer `fp` (not the current schema of its
    record), and what is wrong with them: not all in the log, any refused by the replay's codec or
    dead-lettered as a refusal by the live system, or none applied."""
    fates = classified.other_writers.get(fp, Counter())
    in_log, applied, refused = sum(fates.values()), fates["applied"], fates["refused_by_codec"]
    dead = sum(1 for headers, value in dlq_records if _is_refusal(headers) and _fingerprint(value or b"") == fp)
    figure = {"fingerprint": fp.hex(), "sent": sent, "in_log": in_log, "applied": applied,
              "duplicates": fates["duplicate"], "rejected": fates["rejected"], "refused_by_codec": refused,
              "dead_lettered": dead}
    problems = [f"{sent:,} sent, {in_log:,} in the log"] * (in_log != sent)
    problems += [f"{refused:,} refused by the replay's codec"] * bool(refused)
    problems += [f"{dead:,} in the dead-letter topic as refusals"] * bool(dead)
    problems += ["the replay applied none of them"] * (sent > 0 and not applied)
    return figure, problems


def _is_refusal(headers: dict[str, bytes]) -> bool:
    """A dead letter of a message refused as input (not a valid event the rules rejected)."""
    return headers.get("error.class", b"").decode(errors="replace") != "RuleRejection"


def headers_of(raw: Iterable[tuple[str, bytes]] | None) -> dict[str, bytes]:
    return {k: v for k, v in (raw or ())}

