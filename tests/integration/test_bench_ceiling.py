"""`incentives bench --what ceiling` and the Kafka replay of `--what replays` at a tiny size on the
real local broker: (a) the same-work loop, (b) the light-work loop and the Kafka replay give their
figures, and every output record of (a) and (b) reached the broker (counted there, and for (a)
against an offline fold of the same events). Never a speed."""
from __future__ import annotations

import json
from collections import defaultdict

import pytest

from processor import bench_ceiling as bc
from processor import topics
from processor.bench import generate, wire_messages
from processor.bench_replay import run_replays
from processor.codec import encode
from processor.domain.engine import Stage1
from processor.kafka_replay import read_log
from processor.programs import load_program
from processor.stream import forwarding
from processor.stream.folding import Message, PartitionState, fold_partition

from .helpers import incentives

pytestmark = pytest.mark.integration

EVENTS, PARTNERS, SEED = 2_000, 20, 7


def _on_broker(bootstrap: list[str], topic: str) -> tuple[int, int]:
    """(messages on the topic, the records they carry: on a repartition topic, the stage-2 forwards
    of its bundles)."""
    log = read_log(bootstrap, topic=topic, idle_polls=2)
    messages = sum(len(records) for records in log.values())
    if topic.endswith(topics.REPARTITION):
        return messages, sum(len(forwarding.read(None, value)[1]) for records in log.values() for _, value in records)
    return messages, messages


def _offline_outputs(settings) -> dict[str, int]:
    """The output records of the same events folded without Kafka, per topic."""
    events = generate(EVENTS, SEED, PARTNERS)
    per_partition: dict[int, list[Message]] = defaultdict(list)
    for key, value, p in wire_messages(((e, encode(e)) for e in events), settings.partitions):
        per_partition[p].append(Message(topics.PARTNER_EVENTS, p, len(per_partition[p]), value, None, key))
    stage1 = Stage1(load_program(str(settings.program)))
    counts: dict[str, int] = defaultdict(int)
    for p, messages in per_partition.items():
        result = fold_partition(stage1, PartitionState(p, {}), messages)
        for r in result.records:
            counts[r.topic] += 1
        counts[topics.REPARTITION] += len(result.forwards)
    return dict(counts)


@pytest.fixture(scope="module")
def ceiling(local_stack):
    log = bc.prepare(local_stack, EVENTS, seed=SEED, partners=PARTNERS)
    try:
        report = bc.run_ceiling(local_stack, log, program_path=str(local_stack.program))
        replays = run_replays(EVENTS, seed=SEED, partners=PARTNERS, program_path=str(local_stack.program), log=log)
        produced = {topic: _on_broker(log.bootstrap, log.out_topic(topic))
                    for topic in (*topics.OUTPUT_TOPICS, topics.REPARTITION)}
        light = _on_broker(log.bootstrap, log.light_topic)
        yield log, report, replays, produced, light
    finally:
        bc.drop(log)


def test_both_loops_give_positive_figures(ceiling):
    log, report, _, _, _ = ceiling
    assert log.events == EVENTS and log.messages >= EVENTS
    by_name = {f.name: f for f in report.figures}
    a = by_name["(a) same work: aiokafka + fold_partition"]
    b = by_name["(b) light work: aiokafka + dict fold"]
    for figure in (a, b):
        assert figure.events == EVENTS and figure.seconds > 0 and figure.rate > 0
    assert report.facts["ratio_a_over_b"] > 0
    assert report.facts["a_state_records"] > 0 and report.facts["a_undecodable"] == 0


def test_every_output_record_was_produced(local_stack, ceiling):
    _, report, _, produced, light = ceiling
    expected = _offline_outputs(local_stack)
    assert sum(expected.values()) > EVENTS                 # ledger entries, stage-2 forwards, ...
    assert {t: c for t, (_, c) in produced.items() if c} == expected
    # every forward in a bundle: fewer messages than forwards, at most one per partition a batch
    bundles, forwards = produced[topics.REPARTITION]
    assert 0 < bundles < forwards
    assert report.facts["a_outputs_produced"] == sum(m for m, _ in produced.values())
    # (b): a running total for every event, a note for every second one
    assert light == (report.facts["b_outputs_produced"],) * 2 == (EVENTS * 3 // 2,) * 2


def test_the_kafka_replay_reads_the_whole_topic(ceiling):
    log, _, replays, _, _ = ceiling
    by_name = {f.name: f for f in replays.figures}
    for name in ("replay --source FILE (replay_lines)", "replay --source kafka: read_log",
                 "replay --source kafka: replay_log + document", "replay --source kafka (both)"):
        assert by_name[name].events == EVENTS and by_name[name].seconds > 0, name
    assert replays.facts["kafka_messages_read"] == log.messages
    assert replays.facts["kafka_events_applied"] > 0 and replays.facts["file_events_applied"] > 0


def test_the_cli_runs_replays_on_its_own_scratch_topic(local_stack):
    result = incentives(local_stack, "bench", "--what", "replays", "--events", "500", "--partners", "10", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    figures = doc["replays"]["figures"]
    assert figures["replay --source kafka (both)"]["events"] == 500
    assert figures["replay --source FILE (replay_lines)"]["events_per_s"] > 0
