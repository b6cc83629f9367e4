"""The batch commit order both stages share (processor/stream/commit.py): outputs delivered before
any state is written; a partition whose fold met a gap is rewound and commits the rewound
watermark; one rebalanced away writes nothing; a partition with nothing to write is not written;
the store's answer reaches the partition.

The app, its producer and the stores here are stand-ins recording what happens in which order: what
is tested is the order, not Kafka (the live tests commit through the real broker:
tests/integration/test_worker_crash.py, test_two_workers.py, test_chaos.py).
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from processor.stream.commit import PartitionCommit, commit_batch
from processor.stream.folding import OutRecord

from .test_delivery import Producer


class App:
    def __init__(self, held: set[str], journal: list[Any]) -> None:
        self.journal = journal
        self.producer = SimpleNamespace(_ensure_producer=lambda: self._producer)
        self._producer = Producer(1 << 20)
        self.consumer = SimpleNamespace(assignment=lambda: held)
        original = self._producer.send_batch

        async def send_batch(builder, topic, *, partition):  # type: ignore[no-untyped-def]
            journal.append(("deliver", topic, len(builder.taken)))
            return await original(builder, topic, partition=partition)
        self._producer.send_batch = send_batch  # type: ignore[method-assign]


class Rewinder:
    def __init__(self, journal: list[Any]) -> None:
        self.journal = journal

    async def rewind(self, tp: str, watermark: int, jumped_to: int) -> int:
        self.journal.append(("rewind", tp, watermark, jumped_to))
        return watermark


@dataclass
class Store:
    journal: list[Any]
    answer: bool = True

    async def write(self, records: list[tuple[bytes, bytes]], epoch: int) -> bool:
        self.journal.append(("write", [k for k, _ in records], epoch))
        return self.answer


@dataclass
class Part(PartitionCommit):
    changed: bool = True
    told: list[Any] = field(default_factory=list)

    def state_records(self, watermark: int) -> list[tuple[bytes, bytes]]:
        self.told.append(("records at", watermark))
        return [(f"{self.tp}:state".encode(), b"s"), (f"{self.tp}:meta".encode(), b"m")] if self.changed else []

    def written(self, ok: bool) -> None:
        self.told.append(("written", ok))

    def lost(self) -> None:
        self.told.append(("lost",))


def _commit(parts: list[Part], held: set[str], journal: list[Any]) -> None:
    outputs = [OutRecord("a", b"k1", b"v1"), OutRecord("b", b"k2", b"v2")]
    asyncio.run(commit_batch(App(held, journal), Rewinder(journal), outputs, parts, limit=1 << 20))


def test_outputs_go_before_any_state_and_each_partition_writes_its_records_meta_last() -> None:
    journal: list[Any] = []
    p0, p1 = Part("t0", 3, Store(journal), 10, None), Part("t1", 3, Store(journal), 20, None)
    _commit([p0, p1], {"t0", "t1"}, journal)
    assert [j[0] for j in journal] == ["deliver", "deliver", "write", "write"]
    assert journal[2] == ("write", [b"t0:state", b"t0:meta"], 3)
    assert p0.told == [("records at", 10), ("written", True)] and p1.told == [("records at", 20), ("written", True)]


def test_a_gap_is_rewound_before_the_state_is_written_at_the_rewound_watermark() -> None:
    journal: list[Any] = []
    part = Part("t0", 3, Store(journal), 10, 14)
    _commit([part], {"t0"}, journal)
    assert [j[0] for j in journal] == ["deliver", "deliver", "rewind", "write"]
    assert journal[2] == ("rewind", "t0", 10, 14)


def test_a_partition_rebalanced_away_writes_nothing_and_is_told() -> None:
    journal: list[Any] = []
    gone, kept = Part("t0", 3, Store(journal), 10, None), Part("t1", 3, Store(journal), 20, None)
    _commit([gone, kept], {"t1"}, journal)
    assert gone.told == [("lost",)]
    assert [j for j in journal if j[0] == "write"] == [("write", [b"t1:state", b"t1:meta"], 3)]


def test_nothing_to_write_is_not_written_and_a_refused_write_is_reported() -> None:
    journal: list[Any] = []
    idle = Part("t0", 3, Store(journal), 10, None, changed=False)
    refused = Part("t1", 3, Store(journal, answer=False), 20, None)
    _commit([idle, refused], {"t0", "t1"}, journal)
    assert idle.told == [("records at", 10)]
    assert refused.told == [("records at", 20), ("written", False)]
