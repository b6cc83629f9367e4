"""The stages' state records in a Faust table: read from the local RocksDB, written changelog first.

The table (`partner-state`, `crosspartner-state`) is still Faust's: Faust creates its changelog
topic, recovers a partition's RocksDB from the changelog when it is assigned, and keeps the offset
up to which the local store holds the changelog. But the stages write it themselves, for one
guarantee Faust's own table writes cannot give (STACK.md: they are sent in the background, a failed
send kills the producer while RocksDB already holds the value): a batch's records are sent to the
changelog and *awaited*; only when all are delivered are they written to RocksDB, in one atomic
write batch. A record that cannot be delivered stops the worker before the local store, the
partition's watermark or the input offsets move, so the store, the changelog and the committed
offsets never disagree silently (`partition_state.py` says how a partial batch in the changelog is
read back).
"""
from __future__ import annotations

from typing import Any

import rocksdict
from faust.types import TP

from processor.stream.delivery import deliver
from processor.stream.folding import OutRecord


class TableRecords:
    """The records of one partition of a Faust table (store `rocksdb://`)."""

    def __init__(self, app: Any, table: Any, partition: int, limit: int) -> None:
        self._app, self._table, self.partition, self._limit = app, table, partition, limit
        self._topic = table.changelog_topic.get_topic_name()

    def _db(self) -> Any:
        return self._table.data._db_for_partition(self.partition)

    def get(self, key: bytes) -> bytes | None:
        value = self._db().get(key)
        return None if value is None else bytes(value)

    async def write(self, records: list[tuple[bytes, bytes]]) -> None:
        """Changelog first (all delivered), then the local store in one write, then the offset of
        the changelog the local store now holds (Faust's recovery resumes after it)."""
        if not records:
            return
        sent = await deliver(self._app, [OutRecord(self._topic, k, v) for k, v in records],
                             partition=self.partition, limit=self._limit, what="state")
        batch = rocksdict.WriteBatch(raw_mode=True)
        for key, value in records:
            batch.put(key, value)
        self._db().write(batch)
        self._table.data.set_persisted_offset(TP(self._topic, self.partition), max(m.offset for m in sent))
