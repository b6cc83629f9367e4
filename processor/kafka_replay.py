"""Replay of the recorded `partner-events` log, and `--verify` against the live system.

Each partition is read from its first offset and folded in offset order with the same code as the
live stage-1 agent; recorded `AnomalyDetected` events are honoured and stage 2 is not re-run, so the
result equals what the live system computed. `verify` then lists every difference between that
result and the live system (ClickHouse `ledger` and the worker's partner state).
"""
from __future__ import annotations

import json
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from processor import topics
from processor.codec import InvalidEvent, decode
from processor.domain.ledger import verify_chain
from processor.domain.program import Program
from processor.replay import Replayer


def partitions_of(bootstrap: list[str], topic: str = topics.PARTNER_EVENTS) -> list[int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or [])
    finally:
        consumer.close()
    if not parts:
        raise RuntimeError(f"topic {topic} does not exist on {bootstrap}")
    return parts


def read_log(bootstrap: list[str], topic: str = topics.PARTNER_EVENTS, idle_polls: int = 3,
             on_progress: Callable[[int], None] | None = None,
             partitions: list[int] | None = None) -> dict[int, list[tuple[int, bytes]]]:
    """Every record of `topic` (or of its `partitions`), per partition in offset order. Stops after
    `idle_polls` empty polls with every partition at its high watermark (the broker's end_offsets()
    cannot be trusted)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None,
                             max_poll_records=10_000, fetch_max_bytes=64 * 1024 * 1024)
    try:
        parts = partitions if partitions is not None else sorted(consumer.partitions_for_topic(topic) or [])
        if not parts:
            raise RuntimeError(f"topic {topic} does not exist on {bootstrap}")
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
        idle = 0
        while idle < idle_polls:
            batch = consumer.poll(timeout_ms=500, max_records=10_000)
            count = 0
            for tp, msgs in batch.items():
                records[tp.partition] += [(m.offset, m.value) for m in msgs]
                count += len(msgs)
            if on_progress and count:
                on_progress(count)
            at_end = all((consumer.highwater(tp) or 0) <= consumer.position(tp) for tp in tps)
            idle = idle + 1 if count == 0 and at_end else 0
        return dict(records)
    finally:
        consumer.close()


def replay_log(log: dict[int, list[tuple[int, bytes]]], program: Program, until_ms: int | None = None,
               topic: str = topics.PARTNER_EVENTS) -> Replayer:
    replayer = Replayer(program, run_stage2=False, global_deal_ids=False)
    for partition in sorted(log):
        for offset, value in log[partition]:
            where = f"{topic}:{partition}:{offset}"
            try:
                event = decode(value)
            except InvalidEvent as exc:
                replayer.feed_invalid(exc, where, part=partition)
                continue
            if until_ms is not None and event["occurred_at"] > until_ms:
                continue
            replayer.feed(event, part=partition)
    return replayer


def _replay_partition(job: tuple[list[str], int, Program, int | None, bool]) -> tuple[dict[str, Any], set[str]]:
    """One task of `replay_parallel`, in a process of its pool: read one partition, fold it, and
    return its document and the `PeriodClosed` ids it counted."""
    bootstrap, partition, program, until_ms, include_ledger = job
    replayer = replay_log(read_log(bootstrap, partitions=[partition]), program, until_ms)
    return replayer.document(include_ledger), set(replayer.closes_counted)


def replay_parallel(bootstrap: list[str], program: Program, until_ms: int | None = None, *, jobs: int,
                    include_ledger: bool = False) -> tuple[dict[str, Any], int]:
    """The Kafka replay in `jobs` processes, one partition at a time each (partitions are
    independent in a Kafka replay: stage 2 is not re-run, and each partner's events are in one
    partition); the documents merged in partition order, as one process builds it
    (`merge_documents`). Returns the document and the number of partitions."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    parts = partitions_of(bootstrap)
    tasks = [(bootstrap, p, program, until_ms, include_ledger) for p in parts]
    # fork: each process inherits the loaded modules and program instead of importing them again
    with ProcessPoolExecutor(min(jobs, len(parts)), mp_context=multiprocessing.get_context("fork")) as pool:
        return merge_documents(list(pool.map(_replay_partition, tasks))), len(parts)


def merge_documents(parts: list[tuple[dict[str, Any], set[str]]]) -> dict[str, Any]:
    """The replay documents of disjoint partition sets, merged into the document of all of them.

    Partners, alerts and ledger entries are per partner, so per partition: their union. What one
    process counts across partitions is redone here: a `PeriodClosed` (one copy per partition)
    counts once, and a refusal whose `event_id` another part already lists is a duplicate (as
    `Replayer._collect` counts it)."""
    merged: dict[str, Any] = {"partners": {}, "alerts": [], "rejections": [], "events_applied": 0,
                              "events_ignored_duplicate": 0}
    closes: set[str] = set()
    listed: set[str] = set()
    for doc, counted_closes in parts:
        merged["partners"].update(doc["partners"])
        merged["alerts"] += doc["alerts"]
        for rejection in doc["rejections"]:
            if rejection["event_id"] in listed:
                merged["events_ignored_duplicate"] += 1
            else:
                listed.add(rejection["event_id"])
                merged["rejections"].append(rejection)
        merged["events_applied"] += doc["events_applied"] - len(counted_closes)
        merged["events_ignored_duplicate"] += doc["events_ignored_duplicate"]
        closes |= counted_closes
        if "ledger" in doc:
            merged.setdefault("ledger", []).extend(doc["ledger"])
        for key, value in doc.items():
            merged.setdefault(key, value)            # rules_version and any key added later
    merged["events_applied"] += len(closes)
    merged["partners"] = dict(sorted(merged["partners"].items()))
    order = list(parts[0][0]) if parts else []            # the keys in the order a document has them
    return {k: merged[k] for k in [*order, *(k for k in merged if k not in order)]}


def clickhouse_view(settings: Any) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Per partner from ClickHouse `ledger FINAL`: balances, entry count, head; and chain problems."""
    from projections.migrate import client

    ch = client(settings)
    db = settings.clickhouse_database
    rows = ch.execute(
        f"SELECT entry_id, partner_id, seq, account, kind, delta_available, delta_held, balance_available, "
        f"balance_held, rule_id, rules_version, source_event_id, occurred_at, explanation, prev_hash, hash "
        f"FROM {db}.ledger FINAL ORDER BY partner_id, seq")
    names = ("entry_id", "partner_id", "seq", "account", "kind", "delta_available", "delta_held",
             "balance_available", "balance_held", "rule_id", "rules_version", "source_event_id",
             "occurred_at", "explanation", "prev_hash", "hash")
    by_partner: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        entry = dict(zip(names, row, strict=True))
        entry["occurred_at"] = entry["occurred_at"].strftime("%Y-%m-%dT%H:%M:%SZ")
        by_partner[entry["partner_id"]].append(entry)
    view, problems = {}, []
    for pid, entries in by_partner.items():
        problems += verify_chain(entries)
        sums = {"points": [0, 0], "rebate": [0, 0]}
        for e in entries:
            sums[e["account"]][0] += e["delta_available"]
            sums[e["account"]][1] += e["delta_held"]
        view[pid] = {"points": {"available": sums["points"][0], "held": sums["points"][1]},
                     "rebate_cents": {"available": sums["rebate"][0], "held": sums["rebate"][1]},
                     "ledger_entries": len(entries), "ledger_head": entries[-1]["hash"]}
    return view, problems


def worker_view(web_urls: list[str], partitions: int) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The partner state of every worker of the group, merged: each worker's `/partners` says which
    partitions it holds. Returns the partners and the problems: a partition that no worker (or two)
    reports, a worker that cannot be read."""
    partners: dict[str, dict[str, Any]] = {}
    held: dict[int, str] = {}
    problems: list[str] = []
    for url in web_urls:
        try:
            with urllib.request.urlopen(f"{url}/partners", timeout=60) as resp:
                view = json.loads(resp.read())
        except OSError as exc:
            problems.append(f"worker: cannot read its state at {url}/partners: {exc}")
            continue
        for partition in view["partitions"]:
            if partition in held:
                problems.append(f"worker: partition {partition} reported by both {held[partition]} and {url}")
            held[partition] = url
        partners.update(view["partners"])
    missing = sorted(set(range(partitions)) - set(held))
    if missing:
        problems.append(f"worker: partitions {missing} of {topics.PARTNER_EVENTS} are held by none of the workers "
                        f"queried ({', '.join(web_urls)}); pass every worker with --worker-url")
    return partners, problems


def compare(replayed: dict[str, Any], live: dict[str, dict[str, Any]], where: str,
            keys: tuple[str, ...]) -> Iterator[str]:
    for pid in sorted(set(replayed) | set(live)):
        mine, theirs = replayed.get(pid), live.get(pid)
        if theirs is None:
            if mine and mine["ledger_entries"]:
                yield f"{pid}: in the replay, missing in {where}"
            continue
        if mine is None:
            yield f"{pid}: in {where}, missing in the replay"
            continue
        for key in keys:
            if mine.get(key) != theirs.get(key):
                yield f"{pid}: {key} replay={mine.get(key)} {where}={theirs.get(key)}"
