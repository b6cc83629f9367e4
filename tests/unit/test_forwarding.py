"""Stage-2 forwards in bundles (processor/stream/forwarding.py): every forward arrives once, in order,
in the partition its key hashes to; bundles stay under their size; anything else is refused."""
from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor import topics
from processor.codec.compact_json import reference
from processor.stream import forwarding
from processor.stream.forwarding import NotStage2Input, bundles, read
from processor.topics import partition_of

KEYS = st.one_of(st.text(min_size=1, max_size=30).map(lambda s: f"order:{s}"),
                 st.text(min_size=1, max_size=30).map(lambda s: f"customer:{s}"))
RECORDS = st.fixed_dictionaries({"kind": st.sampled_from(["order_claim", "customer_sale"]),
                                 "order_id": st.text(max_size=20), "occurred_at": st.integers(0, 2**53),
                                 "partner_id": st.text(max_size=12)})


@settings(max_examples=200, deadline=None)
@given(forwards=st.lists(st.tuples(KEYS, RECORDS), max_size=60), partitions=st.integers(1, 8),
       limit=st.integers(200, 4_000))
def test_every_forward_arrives_once_in_order_in_its_keys_partition(forwards, partitions, limit):
    out = bundles(forwards, partitions, 3, limit)
    got: dict[int, list] = {}
    for record in out:
        assert record.topic == topics.REPARTITION and record.key == b"stage1:3"
        bundled, items = read(record.key, record.value)
        assert bundled and items
        # cut at the limit, unless one record alone is larger
        assert len(record.value) <= limit or len(items) == 1
        got.setdefault(record.partition, []).extend(items)
    for p, items in got.items():
        expected = [(k, json.loads(reference(r))) for k, r in forwards if partition_of(k.encode(), partitions) == p]
        assert items == expected
        assert all(partition_of(k.encode(), partitions) == p for k, _ in items)
    assert sum(len(v) for v in got.values()) == len(forwards)
    assert {r.partition for r in out} <= set(range(partitions))


def test_the_partition_is_the_kafka_default_partitioners():
    from aiokafka.partitioner import DefaultPartitioner  # what Faust's producer uses for a keyed record

    for key in (b"order:O-1", b"customer:C-77", "customer:Zoë".encode(), b"x" * 300):
        for n in (1, 4, 7):
            assert partition_of(key, n) == DefaultPartitioner()(key, list(range(n)), list(range(n)))


def test_a_batch_without_forwards_sends_nothing():
    assert bundles([], 4, 0) == []


def test_the_single_record_form_is_still_read():
    assert read(b"order:O1", b'{"kind":"order_claim","order_id":"O1"}') == (
        False, [("order:O1", {"kind": "order_claim", "order_id": "O1"})])


@pytest.mark.parametrize("key, value", [
    (b"k", None), (b"k", b""), (b"k", b"\xff"), (b"k", b"null"), (b"k", b"1"), (b"k", b"[]"),
    (b"k", b'{"bundle":[]}'), (b"k", b'{"bundle":{}}'), (None, b'{"kind":"order_claim"}'),
    (b"\xff", b'{"kind":"order_claim"}'), (b"k", b'{"other":1}'),
])
def test_anything_else_is_refused_with_a_reason(key, value):
    with pytest.raises(NotStage2Input) as info:
        read(key, value)
    assert str(info.value)


def test_a_malformed_bundled_record_is_singled_out():
    bundled, items = read(b"stage1:0", b'{"bundle":[["order:O1",{"kind":"order_claim"}],"junk",["",{}]]}')
    assert bundled and [k for k, _ in items] == ["order:O1", None, None]


def test_bundles_are_cut_below_the_message_limit():
    big = [(f"order:{i}", {"kind": "order_claim", "pad": "x" * 1_000}) for i in range(2_000)]
    out = bundles(big, 1, 0, limit=10_000_000)
    assert len(out) > 1 and all(len(r.value) <= forwarding.BUNDLE_BYTES for r in out)
