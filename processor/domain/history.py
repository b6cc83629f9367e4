"""A partner's history, as collections the domain only looks up by key and never iterates.

What grows with a partner's history (event ids seen, orders, deals, alerts, months, sales by hour)
must not live in one record that is rewritten on every change: a busy partner outgrows any message
size and every batch would rewrite megabytes (docs/decisions.md, "How state is stored"). So the
domain reads and writes these collections only by key, through `Entries`. A replay keeps them in
plain dictionaries; the live worker gives them a `load` function that reads one entry from its
state store on a miss, and turns on `touched`, the set of keys read or written since it last
persisted them (a value read may be changed in place, so a read counts as a change).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

_MISSING: Any = object()


class Entries(Generic[K, V]):
    """A keyed collection with lazy loading and change tracking; also a set (`add`, `in`)."""

    __slots__ = ("_absent", "_data", "load", "touched")

    def __init__(self, load: Callable[[K], V | None] | None = None) -> None:
        self._data: dict[K, V] = {}
        self._absent: set[K] | None = None   # keys `load` did not find (asked again and again: months)
        self.load = load
        self.touched: set[K] | None = None

    def _miss(self, key: K) -> V | None:
        """A key that is not in memory: loaded (a replay has no `load`: absent), remembered either way."""
        if self.load is None or (self._absent is not None and key in self._absent):
            return None
        value = self.load(key)
        if value is None:
            if self._absent is None:
                self._absent = set()
            self._absent.add(key)
            return None
        self._data[key] = value
        return value

    # The two accessors below are the hottest code of the fold (~20 calls an event): each does its
    # dictionary lookup itself and calls `_miss` only for a key that is not in memory.
    def __contains__(self, key: K) -> bool:
        value = self._data.get(key, _MISSING)
        if value is _MISSING:
            value = self._miss(key)
        return value is not None

    def get(self, key: K, default: V | None = None) -> V | None:
        value = self._data.get(key, _MISSING)
        if value is _MISSING:
            value = self._miss(key)
        if value is None:
            return default
        if self.touched is not None:
            self.touched.add(key)
        return value  # type: ignore[no-any-return]

    def __getitem__(self, key: K) -> V:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: K, value: V) -> None:
        self._data[key] = value
        if self._absent:
            self._absent.discard(key)
        if self.touched is not None:
            self.touched.add(key)

    def add(self, key: K) -> None:
        """Set semantics: remember `key` (stored as the value True)."""
        self[key] = True  # type: ignore[assignment]

    # ------------------------------------------------------------ for the adapters, not the rules
    def cached(self, key: K) -> V | None:
        """The value in memory, without loading (what a store persists for a touched key)."""
        return self._data.get(key)

    def forget(self) -> None:
        """Drop what is held in memory (it is in the store); keeps memory bounded between batches."""
        self._data.clear()
        self._absent = None

    def loaded(self) -> dict[K, V]:
        """What is in memory: everything, in a replay (no `load`)."""
        return self._data
