"""A Faust table whose values are Python objects pickled to bytes by us, not by Faust.

Faust picks a table's store serializer from `value_type` (bytes -> raw, else json), so the
domain's dataclasses are pickled here explicitly: one `pickle.dumps` per changed key per batch.
"""
from __future__ import annotations

import pickle
from collections.abc import Iterator
from typing import Any


class PickledTable:
    def __init__(self, table: Any) -> None:
        self.table = table

    def get(self, key: str, default: Any = None) -> Any:
        raw = self.table.get(key)
        return default if raw is None else pickle.loads(raw)

    def __setitem__(self, key: str, value: Any) -> None:
        self.table[key] = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def items(self) -> Iterator[tuple[str, Any]]:
        for key, raw in self.table.items():
            yield key, pickle.loads(raw)
