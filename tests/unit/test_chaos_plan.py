"""`incentives chaos`'s plan and poison: a seed alone reproduces the run; every poison kind is
refused by the codec; the stream carries upstream re-sends and the faults asked for; with
`schema-mix`, SaleRecorded messages of a newer writer from a seeded moment on, which the chaos
stack's registry decodes to the record of their v1 encoding."""
from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import Counter

import pytest

from processor import simulation
from processor.chaos import oracle, schema_mix
from processor.chaos import run as run_module
from processor.chaos.plan import DEFAULT_FAULTS, FAULT_SECONDS, FAULTS, SCHEMA_MIX_FROM, make_plan, parse_faults
from processor.chaos.poison import KINDS, poison
from processor.chaos.run import chaos_settings, stack_registry
from processor.codec import InvalidEvent, SchemaRegistry, decode
from processor.codec.schema_registry import SCHEMA_DIR
from processor.config import load_settings
from processor.programs import load_program


def test_the_seed_alone_reproduces_the_plan():
    a, b = make_plan(4, 2000, FAULTS), make_plan(4, 2000, FAULTS)
    assert a.messages == b.messages and a.strikes == b.strikes
    assert make_plan(5, 2000, FAULTS).messages != a.messages


def test_the_stream_has_resends_poison_of_every_kind_and_the_faults_asked_for():
    plan = make_plan(2, 3000, ("worker-kill", "poison", "broker-restart"))
    assert Counter(m.poison_kind for m in plan.messages if m.poison_kind) == dict.fromkeys(KINDS, 1)
    assert plan.resent_count >= 10
    values = Counter(m.value for m in plan.messages if not m.all_partitions and m.poison_kind is None)
    assert sum(n - 1 for n in values.values()) == plan.resent_count      # a re-send is the same bytes
    assert [s.fault for s in plan.strikes] == ["worker-kill"] * 3 + ["broker-restart"]
    assert plan.strikes[-1].at == 1.0 and all(0.1 <= s.at <= 0.85 for s in plan.strikes[:-1])
    assert len([s for s in make_plan(2, 3000, ("worker-kill",), full=True).strikes]) == 20


@pytest.mark.parametrize("kind", KINDS)
def test_every_poison_kind_is_refused_by_the_codec(kind):
    rng = random.Random(9)
    sale = next(e for e in simulation.simulate(seed=1, partners=5) if e["event_type"] == "SaleRecorded")
    for n in range(200):
        with pytest.raises(InvalidEvent):
            decode(poison(kind, rng, {**sale, "event_id": f"p-{n}"}))


def test_faults_are_checked():
    assert parse_faults("worker-kill, poison") == ("worker-kill", "poison")
    assert parse_faults("all") == FAULTS
    with pytest.raises(ValueError, match="unknown fault nope"):
        parse_faults("poison,nope")


def test_schema_mix_writes_v2_sales_only_after_its_seeded_moment():
    faults = ("worker-kill", "poison", "schema-mix")
    plan = make_plan(6, 3000, faults)
    again = make_plan(6, 3000, faults)
    assert plan.messages == again.messages and plan.strikes == again.strikes and plan.v2_campaigns == again.v2_campaigns
    assert make_plan(7, 3000, faults).messages != plan.messages
    first = next(i for i, m in enumerate(plan.messages) if m.v2_writer)
    (strike,) = [s for s in plan.strikes if s.fault == "schema-mix"]
    assert strike.message == first + 1 and strike.at == round(first / len(plan.messages), 4)
    assert SCHEMA_MIX_FROM[0] - 0.02 <= strike.at <= SCHEMA_MIX_FROM[1] + 0.02
    fp = schema_mix.v2_fingerprint()
    assert all((m.value[2:10] == fp) == m.v2_writer for m in plan.messages)       # v2 only where marked
    assert not any(m.v2_writer for m in plan.messages[:first])
    later = [m for m in plan.messages[first:] if not m.resent and not m.poison_kind]
    sales_after = [m for m in later if decode(m.value, schema_mix.registry())["event_type"] == "SaleRecorded"]
    v2 = [m for m in sales_after if m.v2_writer]
    assert 0.3 < len(v2) / len(sales_after) < 0.7 and 0 < plan.v2_campaigns < len(v2)   # a seeded share
    assert plan.v2_count >= len(v2)                                # re-sends of a v2 message are v2 too


def test_schema_mix_changes_only_the_encoding_of_those_sales():
    """The same plan without the fault has the same messages at the same places (its draws are its
    own), and each v2 message decodes, with the chaos stack's registry, to its v1 counterpart's
    record; the codec's default registry refuses it as an unknown fingerprint."""
    mixed, plain = make_plan(3, 2000, ("poison", "schema-mix")), make_plan(3, 2000, ("poison",))
    assert len(mixed.messages) == len(plain.messages) and mixed.v2_count > 0 and plain.v2_count == 0
    reg = schema_mix.registry()
    for m, p in zip(mixed.messages, plain.messages, strict=True):
        if not m.v2_writer:
            assert m == p
            continue
        assert m.value != p.value and decode(m.value, reg) == decode(p.value)
        with pytest.raises(InvalidEvent, match="unknown schema fingerprint") as refused:
            decode(m.value)
        assert refused.value.reason == "undecodable"


def test_the_v2_writer_is_the_contract_schema_plus_one_optional_field():
    current = json.loads((SCHEMA_DIR / "SaleRecorded.avsc").read_text())
    v2 = json.loads(schema_mix.V2_FILE.read_text())
    added = v2["fields"].pop()
    assert v2 == current                                            # the contract file is untouched
    assert (added["name"], added["type"], added["default"]) == (schema_mix.ADDED_FIELD, ["null", "string"], None)


def test_the_chaos_stack_and_its_oracle_know_the_v2_writer(tmp_path):
    settings = chaos_settings(tmp_path, 1)
    assert settings.writer_schemas == (schema_mix.SCHEMA_DIR,)
    assert settings.as_env()["INCENTIVES_WRITER_SCHEMAS"] == str(schema_mix.SCHEMA_DIR)   # every process it starts
    reg = stack_registry(settings)
    assert reg.writer(schema_mix.v2_fingerprint()) is not None
    assert SchemaRegistry.from_directory().writer(schema_mix.v2_fingerprint()) is None


def test_schema_mix_is_a_default_fault():
    assert "schema-mix" in FAULTS and "schema-mix" in DEFAULT_FAULTS


def test_the_oracle_counts_v2_messages_and_its_check_can_fail():
    """Classified with the stack's registry, every v2 message of the plan is in the log, none is
    refused and some are applied; read with a registry that lacks v2, or with one dead-lettered,
    or with fewer in the log than sent, the check fails."""
    plan = make_plan(3, 1500, ("schema-mix",))
    log = {0: [(offset, m.value) for offset, m in enumerate(plan.messages)]}
    fp, program = schema_mix.v2_fingerprint(), load_program()
    good = oracle.classify(log, program, registry=schema_mix.registry())
    figure, problems = oracle.mixed_writer_findings(good, [], fp, plan.v2_count)
    assert problems == [] and figure["in_log"] == figure["sent"] == plan.v2_count
    assert figure["applied"] > 0 and figure["refused_by_codec"] == figure["dead_lettered"] == 0
    assert good.counts["refused_by_codec"] == 0

    without_v2 = oracle.classify(log, program, registry=SchemaRegistry.from_directory())
    _, problems = oracle.mixed_writer_findings(without_v2, [], fp, plan.v2_count)
    assert any("refused by the replay's codec" for p in problems) and "the replay applied none of them" in problems
    v2_value = next(m.value for m in plan.messages if m.v2_writer)
    dead_letter = ({"error.class": b"InvalidEvent", "source": b"partner-events:0:1"}, v2_value)
    rule_rejection = ({"error.class": b"RuleRejection"}, v2_value)
    _, problems = oracle.mixed_writer_findings(good, [dead_letter, rule_rejection], fp, plan.v2_count)
    assert problems == ["1 in the dead-letter topic as refusals"]
    _, problems = oracle.mixed_writer_findings(good, [], fp, plan.v2_count + 1)
    assert problems == [f"{plan.v2_count + 1:,} sent, {plan.v2_count:,} in the log"]


def test_the_full_run_spreads_its_stream_over_the_time_its_faults_take():
    plan = make_plan(5, 3_000, FAULTS, full=True)
    assert plan.fault_seconds == sum(FAULT_SECONDS[s.fault] for s in plan.strikes) > 500
    # the strikes fall in 10-85% of the stream: the stream lasts the faults' time over 75% of it
    assert plan.full_rate() == pytest.approx(max(50.0, len(plan.messages) / (plan.fault_seconds / 0.75)))
    assert 50 <= make_plan(5, 100, FAULTS, full=True).full_rate() <= plan.full_rate()


class _Producer:
    """Stands in for kafka-python's producer: this test is about pacing, not about Kafka."""

    def __init__(self, **_kwargs):
        pass

    def partitions_for(self, _topic):
        return {0, 1}

    def send(self, *_args, **_kwargs):
        pass

    def flush(self, *_args):
        pass

    def close(self, **_kwargs):
        pass


def test_each_strike_happens_at_its_moment_under_a_flowing_stream_however_long_the_one_before(monkeypatch):
    monkeypatch.setattr(run_module, "KafkaProducer", _Producer)
    plan = make_plan(9, 600, ("worker-kill", "rebalance"), full=False)
    seen: list[tuple[int, int]] = []

    class SlowRun(run_module.Run):
        def _strike(self, strike, rng):
            at = self.sent
            time.sleep(0.3)                    # a long fault: the stream must not run past the next moment
            seen.append((at, self.sent))
            return "done"

    run = SlowRun(plan, load_settings({}), 1, 2_000.0, lambda _line: None)
    sender = threading.Thread(target=run.send_all, daemon=True)
    sender.start()
    run.strike_all(random.Random(1))
    sender.join(timeout=30)
    assert not sender.is_alive() and run.sent == len(plan.messages)
    dues = [math.ceil(s.at * len(plan.messages)) for s in plan.strikes]
    assert [at for at, _ in seen] == dues                     # each exactly at its moment
    assert all(after > at for at, after in seen[:-1] if at < len(plan.messages))   # messages flowed meanwhile
    for (_, after), due_next in zip(seen, dues[1:], strict=False):
        assert after <= due_next                              # never past the next strike's moment
    assert all(line["sent_during"] == after - at for line, (at, after) in zip(run.fault_lines, seen, strict=True))


def test_the_full_run_takes_clickhouse_down_for_30_seconds(monkeypatch):
    slept: list[float] = []
    monkeypatch.setattr(run_module.clickhouse, "stop", lambda _settings: None)
    monkeypatch.setattr(run_module.clickhouse, "start", lambda _settings: None)
    monkeypatch.setattr(run_module.time, "sleep", slept.append)
    for full, down in ((True, 30.0), (False, 10.0)):
        plan = make_plan(3, 500, ("clickhouse-down",), full=full)
        run = run_module.Run(plan, load_settings({}), 1, 50.0, lambda _line: None)
        what = run._strike(plan.strikes[0], random.Random(1))
        assert slept.pop() == down and f"{down:.0f} s" in what
