"""`incentives bench --what state` at a tiny size: the figures are there, positive and consistent
with each other. Only what must hold is asserted; never a timing, never a size target."""
from __future__ import annotations

import pytest

from processor.bench import format_table
from processor.bench_state import checkpoints_for, fold_state, partner_of, run_state
from processor.stream.partition_state import core_key, entry_key, members_key, meta_key

PARTNERS = 20


@pytest.fixture(scope="module")
def states():
    return fold_state([2_000, 8_000], seed=7, partners=PARTNERS, partitions=4, batch=1_000)


def test_record_keys_name_their_partner_and_collection() -> None:
    assert partner_of(core_key("SIM-P0001")) == ("SIM-P0001", "core")
    assert partner_of(entry_key("SIM-P0001", "seen", "evt-1")) == ("SIM-P0001", "seen")
    assert partner_of(entry_key('odd "id", [x]', "months", 24_310)) == ('odd "id", [x]', "months")
    assert partner_of(meta_key(3)) is None
    assert partner_of(members_key(3, 0)) is None


def test_the_checkpoints_are_a_tenth_and_all() -> None:
    assert checkpoints_for(1_000_000) == (100_000, 1_000_000)
    assert checkpoints_for(2_000) == (200, 2_000)


def test_state_figures_of_the_same_partners(states) -> None:
    early, late = states
    assert (early.events, late.events) == (2_000, 8_000)
    for s in states:
        assert s.partners == PARTNERS                       # every partner has stored state
        assert s.bytes_per_partner_mean > 0 and s.bytes_per_partner_p99 > 0
        assert s.bytes_per_partner_max >= s.bytes_per_partner_p99
        assert s.written_per_event > 0 and s.records_per_partner_mean > 0
        assert s.partition_bytes > 0                        # the meta and member records
        # the store is the partners' records plus the partitions' own
        assert round(s.bytes_per_partner_mean * s.partners) + s.partition_bytes == s.store_bytes
        assert sum(s.by_collection.values()) + s.partition_bytes == s.store_bytes
        assert s.written_bytes >= s.store_bytes             # everything stored was written by a batch
        assert sum(s.written_by_collection.values()) == s.written_bytes
        assert 0 < s.largest_record < 1024 * 1024           # a broker takes every record
    # the history of the same partners only adds records (event ids seen, orders, months ...)
    assert late.store_records > early.store_records
    assert late.bytes_per_partner_mean > early.bytes_per_partner_mean
    assert late.written_bytes > early.written_bytes


def test_the_report_prints_both_checkpoints() -> None:
    report = run_state(1_000, partners=10)
    for at in ("after_100", "after_1000"):
        assert report.facts[f"{at}_bytes_per_partner_mean"] > 0
        assert report.facts[f"{at}_bytes_per_partner_p99"] > 0
        assert report.facts[f"{at}_state_bytes_written_per_event"] > 0
    assert [f.events for f in report.figures] == [100, 900]
    assert "after_1000_bytes_per_partner_p99" in format_table(report)
