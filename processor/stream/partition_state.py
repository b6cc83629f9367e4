"""How one stage-1 partition's state is stored: small records that never grow with history, and a
commit order that keeps them consistent after any crash or any short changelog recovery.

Records (keys are JSON arrays, so no partner id can collide with another key):

- `["v2","meta",partition]`: the `PartitionMeta`: the offset of the last message applied (the
  watermark), the `PeriodClosed` scope, the number of members, and a probe of the last cores written.
  Written last in every batch: it is the partition's commit point.
- `["v2","members",partition,chunk]`: the partition's partner ids, 1,000 per record, in order of
  first appearance (a `PeriodClosed` reaches every one).
- `["v2","p",partner]`: a partner's core (`PartnerState` without its history) and its *version*, the
  offset of the last message applied to it. Written after the partner's entries: the partner's
  commit point.
- `["v2","e",partner,field,key]`: one history entry (an event id seen, an order, a month, the sales
  of one hour...), as `(stamp, value, previous)`: `stamp` is the version of the partner when it was
  written, `previous` the value it replaced.

A batch's records reach the changelog in that order before any of them is written to the local
store (in one atomic write). A crash can leave a prefix of a batch in the changelog, which a recovery
copies into the local store; the stamps undo it on reading: an entry whose stamp is beyond its
partner's committed version was written by a batch that did not commit for that partner, so its
`previous` value is the committed one. Such an entry can never become valid later by accident: the
fold is deterministic, so re-applying the same messages from the committed state touches (and
rewrites) the same entries before the partner's version can pass the stale stamp. Member chunks work
the same way against the meta's watermark.

A batch writes only the entries whose value changed. The domain marks every entry it reads as
touched (a value read may be changed in place), and most reads change nothing (`tiers.tier_met`
reads twelve months on every sale: rewriting them was most of the bytes written). So the loader
remembers, for a *clean* record (stamp within the committed version: its value is the committed
one), the committed value's pickled bytes; a touched entry whose new pickle equals them is not
written: the stored record already reads as that value at any later version. A *stale* record
(stamp beyond the committed version) is never remembered and always rewritten, even when its new
value equals the committed one: left in place, it would read as its uncommitted value once the
partner commits a version past its stamp without touching it again (a redo that changes an entry
P -> X -> P would leave `(v1, X, P)`, read as X from version v1 on), and the rewrite is what the
argument above relies on. Equal bytes are equal values; unequal bytes of an equal value (a set
pickled in another order) only cost a write. What is remembered is dropped at each commit, as the
entries are.

Versions. The key layout has a version (`FORMAT`, the first element of every key). The values are
pickles of `Evolvable` dataclasses (the meta, history entries) and a core's fields by name, so a
record written before a field was added (or after one was removed) reads back, the field taking its
default: a release that adds a field recovers the state an earlier one wrote to the changelog.

This module is pure (records in, records out); `state_store.py` puts the records into the Faust
table's RocksDB and changelog, and the unit tests into a dict.
"""
from __future__ import annotations

import json
import pickle
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from json.encoder import encode_basestring as _encode_str
from typing import Any, Protocol

from processor.collector import collector_paused
from processor.domain.engine import Scope
from processor.domain.evolvable import Evolvable
from processor.domain.state import HISTORY_FIELDS, PartnerState

FORMAT = "v2"
MEMBERS_PER_RECORD = 1_000
PROBE_SIZE = 8
_CORE_FIELDS = tuple(f.name for f in fields(PartnerState) if f.name not in HISTORY_FIELDS)
_CORE_NAMES = frozenset(_CORE_FIELDS)
_PICKLE = pickle.HIGHEST_PROTOCOL


def _key(*parts: Any) -> bytes:
    return json.dumps([FORMAT, *parts], separators=(",", ":"), ensure_ascii=False).encode()


def meta_key(partition: int) -> bytes:
    return _key("meta", partition)


def members_key(partition: int, chunk: int) -> bytes:
    return _key("members", partition, chunk)


def core_key(partner_id: str) -> bytes:
    return _key("p", partner_id)


def entry_key(partner_id: str, name: str, key: Any) -> bytes:
    return _key("e", partner_id, name, key)


class _EntryKeys:
    """`entry_key(partner_id, name, key)` for many keys (the hot path): the same bytes, faster. The
    prefix is built on first use (a partner wired for 14 collections may never read most)."""

    __slots__ = ("_name", "_partner_id", "_prefix")

    def __init__(self, partner_id: str, name: str) -> None:
        self._partner_id, self._name = partner_id, name
        self._prefix: bytes | None = None

    def __call__(self, key: Any) -> bytes:
        if self._prefix is None:
            self._prefix = _key("e", self._partner_id, self._name)[:-1] + b","
        if type(key) is int:
            return self._prefix + str(key).encode() + b"]"
        if type(key) is str:
            return self._prefix + _encode_str(key).encode() + b"]"
        return entry_key(self._partner_id, self._name, key)


class StateCorrupt(RuntimeError):
    """The stored state contradicts itself (its watermark covers state that is not there)."""


class RecordReader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...


@dataclass
class PartitionMeta(Evolvable):
    partition: int
    watermark: int = -1                     # offset of the last applied message
    scope: Scope = field(default_factory=Scope)
    members: int = 0                        # partner ids stored in the member records
    #: (partner, version) of the last cores written before this meta: checked at start-up
    probe: list[tuple[str, int]] = field(default_factory=list)
    #: digest of the message at `watermark` (log_check: the log must still hold that message)
    digest: str | None = None


#: The pickle of `True`, the value of every entry of a set-like collection (event ids seen,
#: courses, activities, closed periods...): about half of the entries a batch writes.
_PICKLED_TRUE = pickle.dumps(True, _PICKLE)


def _pickled(value: Any) -> bytes:
    return _PICKLED_TRUE if value is True else pickle.dumps(value, _PICKLE)


def _versioned(stamp: int, value: Any, previous: bytes | None) -> bytes:
    return pickle.dumps((stamp, _pickled(value), previous), _PICKLE)


def _committed_bytes(raw: bytes | None, committed: int) -> bytes | None:
    """The committed value's bytes of a versioned record, given its owner's committed version."""
    if raw is None:
        return None
    stamp, value, previous = pickle.loads(raw)
    return value if stamp <= committed else previous  # type: ignore[no-any-return]


class PartitionState:
    """One partition's stage-1 state over a record reader: the live objects of a worker between
    batches, and the records a batch has to write."""

    def __init__(self, partition: int, records: RecordReader) -> None:
        self.records = records
        raw = records.get(meta_key(partition))
        self.meta: PartitionMeta = pickle.loads(raw) if raw is not None else PartitionMeta(partition)
        self.committed_watermark = self.meta.watermark
        self.member_ids: list[str] = []
        for chunk in range((self.meta.members + MEMBERS_PER_RECORD - 1) // MEMBERS_PER_RECORD):
            value = _committed_bytes(records.get(members_key(partition, chunk)), self.committed_watermark)
            self.member_ids += pickle.loads(value) if value is not None else []
        del self.member_ids[self.meta.members:]
        self.members = set(self.member_ids)
        self.committed_members = len(self.member_ids)
        self.partners: dict[str, PartnerState] = {}
        self.versions: dict[str, int] = {}          # partner -> committed version (-1: none)
        #: entry key -> the pickled value of its clean record, as loaded in this batch (see the
        #: module docstring): a touched entry still equal to it needs no write
        self._clean: dict[bytes, bytes] = {}
        self.epoch = -1                             # the writer epoch it is held with (state_store.py)

    # ------------------------------------------------------------------ reading
    def check(self) -> None:
        """Refuse state whose watermark covers partner state that is not stored (a changelog that
        lost records, a store restored from another copy): every probed core must be there."""
        for partner_id, version in self.meta.probe:
            raw = self.records.get(core_key(partner_id))
            stored = -1 if raw is None else pickle.loads(raw)[0]
            if stored < version:
                raise StateCorrupt(
                    f"partition {self.meta.partition}: the stored watermark {self.meta.watermark} covers "
                    f"partner {partner_id!r} at version {version}, but its stored state is "
                    + ("missing" if raw is None else f"at version {stored}")
                    + ": the state store is behind its own watermark (lost changelog records?). Refusing "
                      "to run on it; rebuild the state from the log (docs/decisions.md).")

    def load(self, partner_id: str) -> PartnerState | None:
        state = self.partners.get(partner_id)
        if state is not None:
            return state
        raw = self.records.get(core_key(partner_id))
        self.versions.setdefault(partner_id, -1)
        if raw is None:
            return None
        version, core = pickle.loads(raw)
        self.versions[partner_id] = version
        if core.keys() != _CORE_NAMES:          # written by a release with other core fields
            core = {k: v for k, v in core.items() if k in _CORE_NAMES}   # (missing: their defaults)
        state = PartnerState(**core)
        self._wire(state)
        self.partners[partner_id] = state
        return state

    def _wire(self, state: PartnerState) -> None:
        pid = state.partner_id
        for name in HISTORY_FIELDS:
            entries = getattr(state, name)
            entries.touched = set(entries.loaded())     # a new partner's first entries
            entries.load = self._loader(pid, name)

    def _loader(self, partner_id: str, name: str):  # type: ignore[no-untyped-def]
        key_of = _EntryKeys(partner_id, name)
        versions, read, clean = self.versions, self.records.get, self._clean

        def load(key: Any) -> Any:
            committed = versions.get(partner_id, -1)
            if committed < 0:
                # never committed (its core, written after its entries, is its commit point): what a
                # crashed batch left of it reads as the value it replaced, absent all the way down
                # (an entry of a new partner replaces nothing), so there is nothing to read (most of
                # the reads of a partner's first batch)
                return None
            k = key_of(key)
            raw = read(k)
            if raw is None:
                return None
            stamp, value, previous = pickle.loads(raw)
            if stamp <= committed:
                clean[k] = value                # the committed value, as stored
            else:
                value = previous                # stale: never clean, so always rewritten
            return None if value is None else pickle.loads(value)
        return load

    # ------------------------------------------------------------------ a batch
    def store(self) -> BatchStore:
        return BatchStore(self)

    def batch_records(self, dirty: dict[str, int]) -> list[tuple[bytes, bytes]]:
        """The records of a batch, in commit order: entries, cores, member chunks, meta. `dirty`:
        partner -> its new version (offset of the last message applied to it in the batch)."""
        with collector_paused():
            return self._batch_records(dirty)

    def _batch_records(self, dirty: dict[str, int]) -> list[tuple[bytes, bytes]]:
        records: list[tuple[bytes, bytes]] = []
        read, clean = self.records.get, self._clean
        for pid, version in dirty.items():
            state = self.partners[pid]
            committed = self.versions.get(pid, -1)
            for name in HISTORY_FIELDS:
                entries = getattr(state, name)
                if not entries.touched:
                    continue
                key_of = _EntryKeys(pid, name)
                cached = entries.loaded()
                for key in sorted(entries.touched, key=repr):
                    k = key_of(key)
                    value = _pickled(cached.get(key))
                    previous = clean.get(k)
                    if previous is None:
                        # not loaded from a clean record: read what it replaces (a partner never
                        # committed replaces nothing, see `_loader`: no need to read)
                        previous = _committed_bytes(read(k), committed) if committed >= 0 else None
                    elif previous == value:
                        continue                # the stored record already reads as this value
                    records.append((k, pickle.dumps((version, value, previous), _PICKLE)))
        for pid, version in dirty.items():
            state = self.partners[pid]
            core = {name: getattr(state, name) for name in _CORE_FIELDS}
            records.append((core_key(pid), pickle.dumps((version, core), _PICKLE)))
        partition, watermark = self.meta.partition, self.meta.watermark
        first = self.committed_members // MEMBERS_PER_RECORD
        for chunk in range(first, (len(self.member_ids) + MEMBERS_PER_RECORD - 1) // MEMBERS_PER_RECORD):
            k = members_key(partition, chunk)
            ids = self.member_ids[chunk * MEMBERS_PER_RECORD:(chunk + 1) * MEMBERS_PER_RECORD]
            records.append((k, _versioned(watermark, ids,
                                          _committed_bytes(self.records.get(k), self.committed_watermark))))
        self.meta.members = len(self.member_ids)
        self.meta.probe = [(pid, v) for pid, v in list(dirty.items())[-PROBE_SIZE:]]
        records.append((meta_key(partition), pickle.dumps(self.meta, _PICKLE)))
        return records

    def committed(self, dirty: dict[str, int]) -> None:
        """The batch's records are durable: they are now the committed state. What the entries
        hold in memory is dropped (it is in the store), so memory does not grow with history; so
        are the clean values remembered (of every partner: simpler, and a partner read without
        being changed is rare; its entries are then only written again, not wrong)."""
        self._clean.clear()
        for pid, version in dirty.items():
            self.versions[pid] = version
            state = self.partners[pid]
            for name in HISTORY_FIELDS:
                entries = getattr(state, name)
                entries.forget()
                entries.touched = set()
        self.committed_watermark = self.meta.watermark
        self.committed_members = len(self.member_ids)


class BatchStore:
    """The domain's `PartnerStore` over a `PartitionState` for one batch: it records which partners
    a message changed (with the message's offset as their new version) and keeps the member list."""

    def __init__(self, part: PartitionState) -> None:
        self.part = part
        self.offset = -1                       # of the message being applied
        self.dirty: dict[str, int] = {}

    def get(self, partner_id: str) -> PartnerState | None:
        state = self.part.load(partner_id)
        if state is not None:
            self._member(partner_id)           # repairs a membership lost with an uncommitted meta
        return state

    def put(self, state: PartnerState) -> None:
        pid = state.partner_id
        if pid not in self.part.partners:      # a new partner
            self.part._wire(state)
            self.part.partners[pid] = state
        # a partner's version never goes back: a PeriodClosed re-read after a crash reaches partners
        # that committed beyond it (it is a no-op for them, SPEC: each partner closes a period once)
        self.dirty[pid] = max(self.offset, self.part.versions.get(pid, -1))
        self._member(pid)

    def _member(self, partner_id: str) -> None:
        if partner_id not in self.part.members:
            self.part.members.add(partner_id)
            self.part.member_ids.append(partner_id)

    def partner_ids(self) -> Iterable[str]:
        return sorted(self.part.member_ids)

