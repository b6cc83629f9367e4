"""`replay --source kafka --jobs N` (processor/kafka_replay.py): the documents of single partitions,
merged, equal the document of one process folding them all, to the byte: partners, alerts and
rejections in the same order, the ledger, and the counts (a `PeriodClosed` copied into every
partition counts once; a refusal another partition already listed is a duplicate).

The merge is tested on logs built here, without a broker; `replay_parallel` reads each partition
with its own consumer: tests/integration/test_worker_crash.py runs it against the live log.
"""
from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from processor.bench import generate, wire_messages
from processor.codec import encode, from_json_line
from processor.kafka_replay import merge_documents, replay_log
from processor.programs import load_program

PROGRAM = load_program()


def _log(n: int, seed: int, partitions: int, extras: list[tuple[int, bytes]]) -> dict[int, list[tuple[int, bytes]]]:
    events = generate(n, seed, 12, start="2026-01-01T00:00:00Z")
    log: dict[int, list[tuple[int, bytes]]] = {p: [] for p in range(partitions)}
    for _key, value, p in wire_messages(((e, encode(e)) for e in events), partitions):
        log[p].append((len(log[p]), value))
    for p, value in extras:                               # bytes the codec refuses, anywhere
        log[p].append((len(log[p]), value))
    return log


def _refused_without_partner(event_id: str) -> bytes:
    """JSON where Avro is expected: refused `undecodable`, listed by where it is."""
    return json.dumps({"event_id": event_id}).encode()


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), partitions=st.integers(1, 5), n=st.integers(50, 600),
       extras=st.lists(st.tuples(st.integers(0, 4), st.sampled_from([b"", b"\xc3\x01junk", b"{}"])), max_size=4))
def test_merged_partitions_equal_one_process(seed, partitions, n, extras):
    log = _log(n, seed, partitions, [(p % partitions, v) for p, v in extras])
    whole = replay_log(log, PROGRAM).document(include_ledger=True)
    parts = []
    for p in sorted(log):
        replayer = replay_log({p: log[p]}, PROGRAM)
        parts.append((replayer.document(include_ledger=True), set(replayer.closes_counted)))
    assert json.dumps(merge_documents(parts)) == json.dumps(whole)


def test_a_period_close_in_every_partition_counts_once():
    log = _log(400, 3, 4, [])
    close = encode(from_json_line(json.dumps({"event_id": "close-2026-01", "event_type": "PeriodClosed",
                                              "partner_id": "*", "occurred_at": "2026-02-01T00:00:00Z",
                                              "period": "2026-01"})))
    for p in log:                                         # one copy into every partition, as emit writes it
        log[p].append((len(log[p]), close))
    whole = replay_log(log, PROGRAM).document()
    replayers = [replay_log({p: log[p]}, PROGRAM) for p in sorted(log)]
    parts = [(r.document(), set(r.closes_counted)) for r in replayers]
    assert all(closes == {"close-2026-01"} for _, closes in parts)
    assert sum(d["events_applied"] for d, _ in parts) == whole["events_applied"] + 3    # summed naively
    assert merge_documents(parts)["events_applied"] == whole["events_applied"]
