"""Stored state survives a release that adds or removes a field (issue 14, item 7): a record pickled
by one form of a class reads back with another, by field name, the missing fields at their defaults;
a record of the partition state written by an earlier form of the meta and the partner core loads."""
from __future__ import annotations

import pickle
import sys
import types
from dataclasses import dataclass, field

import pytest

from processor.domain.evolvable import Evolvable
from processor.domain.state import MonthStats, Order
from processor.stream.partition_state import PartitionMeta, PartitionState, core_key, meta_key

MODULE = "tests_evolvable_forms"


def _as_release(cls: type) -> None:
    """Make `cls` the class that module MODULE holds under its name (as a new release would)."""
    module = sys.modules.setdefault(MODULE, types.ModuleType(MODULE))
    cls.__module__, cls.__qualname__ = MODULE, cls.__name__
    setattr(module, cls.__name__, cls)


def _old_and_new():  # type: ignore[no-untyped-def]
    @dataclass
    class Thing(Evolvable):
        a: int
        dropped: str = "x"

    old = Thing

    @dataclass
    class Thing(Evolvable):  # type: ignore[no-redef]
        a: int
        tags: set[str] = field(default_factory=set)      # added, with a factory: no class attribute
        count: int = 7                                   # added, a plain default

    return old, Thing


def test_a_record_of_an_earlier_form_reads_with_the_new_fields_defaulted_and_the_removed_dropped() -> None:
    old, new = _old_and_new()
    _as_release(old)
    raw = pickle.dumps(old(1, "y"))
    _as_release(new)
    thing = pickle.loads(raw)
    assert type(thing) is new and thing == new(1)
    assert thing.tags == set() and thing.count == 7 and not hasattr(thing, "dropped")
    thing.tags.add("t")                                  # its own set, not a shared default
    assert pickle.loads(raw).tags == set()


def test_a_record_of_the_current_form_reads_back_equal() -> None:
    order = Order("O1", "e1", "C1", 500, points=12, holders=["A1"])
    assert pickle.loads(pickle.dumps(order)) == order
    month = MonthStats(sale_points=3, certified={"c"})
    assert pickle.loads(pickle.dumps(month)) == month


def test_a_field_without_a_default_that_the_record_lacks_is_a_clear_error() -> None:
    @dataclass
    class Other(Evolvable):
        a: int = 0

    _as_release(Other)
    raw = pickle.dumps(Other(1))

    @dataclass
    class Other(Evolvable):  # type: ignore[no-redef]
        a: int
        b: int

    _as_release(Other)
    with pytest.raises(ValueError, match="lacks b"):
        pickle.loads(raw)


def test_partition_state_reads_a_meta_and_a_core_of_an_earlier_form() -> None:
    """The meta as an earlier release pickled it (without `digest`, with a field since removed) and a
    core with a removed field and without `spiff_bonus_paid`: both load, the new fields defaulted."""
    earlier = PartitionMeta.__new__(PartitionMeta)          # pickled as its __dict__, as ever
    earlier.__dict__.update({k: v for k, v in PartitionMeta(3, watermark=41).__dict__.items() if k != "digest"},
                            retired=1)
    meta_raw = pickle.dumps(earlier)
    core = {"partner_id": "P1", "enrolled": True, "active": True, "seq": 2, "retired_field": 5}
    store = {meta_key(3): meta_raw, core_key("P1"): pickle.dumps((41, core))}
    part = PartitionState(3, store)
    assert part.meta.watermark == 41 and part.meta.digest is None and not hasattr(part.meta, "retired")
    partner = part.load("P1")
    assert partner is not None and partner.seq == 2 and partner.spiff_bonus_paid == set()
