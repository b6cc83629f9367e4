"""`incentives chaos`'s plan and poison: a seed alone reproduces the run; every poison kind is
refused by the codec; the stream carries upstream re-sends and the faults asked for."""
from __future__ import annotations

import random
from collections import Counter

import pytest

from processor import simulation
from processor.chaos.plan import FAULTS, make_plan, parse_faults
from processor.chaos.poison import KINDS, poison
from processor.codec import InvalidEvent, decode


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
