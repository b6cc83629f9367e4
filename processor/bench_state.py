"""`incentives bench --what state`: how large stage 1's stored state is, per partner, and how many
state bytes each input event writes, as the history of the same partners grows.

Why: the live worker keeps its state as records in RocksDB and in the table's changelog topic
(`processor/stream/partition_state.py`). What it stores per partner decides disk, recovery time and
the changelog's volume; what each batch writes per input event decides the changelog's write load.
Both depend on how long the partners have been around, so they are measured at two lengths of the
SAME partners' history (issue 14 item 1): after a tenth of `--state-events` and after all of them
(by default 100,000 and 1,000,000 events of 500 partners, i.e. ~200 and ~2,000 events a partner).

How: the events of `simulate(seed, partners)`, Avro-encoded, keyed by partner and partitioned as
the producer does (murmur2 of the partner id; a `PeriodClosed` into every partition:
`bench.wire_messages`), folded without services in batches of ~1,000 input events: each batch
split by partition, each partition folded by `folding.fold_partition` with a stage-1 core into a
`PartitionState` over a dict standing for its store, then its batch records
(`PartitionState.batch_records`) written into the dict and `committed()`, as the agent does. At
each checkpoint:

- bytes per partner: over every partner, the sum of key + value bytes of its records in the store
  (its core `["v2","p",partner]` and its history entries `["v2","e",partner,...]`, each entry
  holding its value and the value it replaced); mean and p99 (nearest rank) over partners. The
  partition records (meta, member lists) are reported apart.
- state bytes written per input event: the key + value bytes of every batch record written so far
  (what goes to the changelog), over the input events so far; and the same for the stretch between
  the two checkpoints alone.
- the largest record (brokers refuse records over ~1 MiB), and the collections (history fields of
  `PartnerState`, or its core) holding the most bytes and writing the most.

The time of the fold is reported too, but it is not what this part is for (`--what core`).
"""
from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from processor import topics
from processor.bench import Report, Timer, _load, peak_rss_mb, wire_messages
from processor.bench_latency import percentile
from processor.codec import encode
from processor.simulation import simulate

Echo = Callable[[str], None]

DEFAULT_STATE_EVENTS = 1_000_000
DEFAULT_STATE_PARTNERS = 500
DEFAULT_STATE_BATCH = 1_000
PARTITIONS = 4

_PARTNER_PREFIXES = (b'["v2","p",', b'["v2","e",')
_DECODER = json.JSONDecoder()


def _quiet(_line: str) -> None:
    pass


@dataclass
class StateAt:
    """The stored state after `events` input events."""
    events: int
    partners: int                       # partners with records in the store
    bytes_per_partner_mean: float
    bytes_per_partner_p99: int
    bytes_per_partner_max: int
    records_per_partner_mean: float
    partition_bytes: int                # meta and member records of every partition
    store_bytes: int                    # everything in the stores
    store_records: int
    written_bytes: int                  # every batch record written so far, key + value
    written_records: int
    largest_record: int
    by_collection: dict[str, int] = field(default_factory=dict)   # history field (or "core") -> bytes
    written_by_collection: dict[str, int] = field(default_factory=dict)   # the same, of the bytes written
    fold_seconds: float = 0.0           # time of the fold so far (fold, batch records, writes)

    @property
    def written_per_event(self) -> float:
        return self.written_bytes / self.events if self.events else 0.0


def partner_of(key: bytes) -> tuple[str, str] | None:
    """(partner id, collection) of a partner's record key (`"core"` for its core), None for a
    partition record (meta, members)."""
    if not key.startswith(_PARTNER_PREFIXES):
        return None
    text = key.decode()
    partner, end = _DECODER.raw_decode(text, 10)
    if key[7:8] == b"p":
        return partner, "core"
    name, _ = _DECODER.raw_decode(text, end + 1)
    return partner, name


def measure(stores: Iterable[dict[bytes, bytes]], events: int, written_bytes: int, written_records: int,
            fold_seconds: float = 0.0, written_by_collection: dict[str, int] | None = None) -> StateAt:
    """The figures of the stores after `events` input events (see the module docstring)."""
    per_partner: dict[str, int] = defaultdict(int)
    records: dict[str, int] = defaultdict(int)
    by_collection: dict[str, int] = defaultdict(int)
    partition_bytes = store_bytes = store_records = largest = 0
    for store in stores:
        for key, value in store.items():
            size = len(key) + len(value)
            store_bytes += size
            store_records += 1
            largest = max(largest, size)
            owner = partner_of(key)
            if owner is None:
                partition_bytes += size
                continue
            per_partner[owner[0]] += size
            records[owner[0]] += 1
            by_collection[owner[1]] += size
    sizes = [float(v) for v in per_partner.values()]
    return StateAt(
        events=events, partners=len(sizes),
        bytes_per_partner_mean=sum(sizes) / len(sizes) if sizes else 0.0,
        bytes_per_partner_p99=int(percentile(sizes, 99)) if sizes else 0,
        bytes_per_partner_max=int(max(sizes, default=0)),
        records_per_partner_mean=sum(records.values()) / len(records) if records else 0.0,
        partition_bytes=partition_bytes, store_bytes=store_bytes, store_records=store_records,
        written_bytes=written_bytes, written_records=written_records, largest_record=largest,
        by_collection=_largest_first(by_collection), fold_seconds=fold_seconds,
        written_by_collection=_largest_first(written_by_collection or {}))


def _largest_first(sizes: dict[str, int]) -> dict[str, int]:
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))


def checkpoints_for(total: int) -> tuple[int, ...]:
    """A tenth of the events, then all of them (100,000 and 1,000,000 by default)."""
    return tuple(sorted({max(1, total // 10), total}))


def fold_state(checkpoints: Sequence[int], *, seed: int = 7, partners: int = DEFAULT_STATE_PARTNERS,
               partitions: int = PARTITIONS, batch: int = DEFAULT_STATE_BATCH, program_path: str | None = None,
               echo: Echo = _quiet) -> list[StateAt]:
    """Fold the first `max(checkpoints)` events of `simulate(seed, partners)` in batches of `batch`
    input events over dict stores, one per partition; the state after each checkpoint."""
    from processor.domain.engine import Stage1
    from processor.programs import load_program
    from processor.stream.folding import Message, PartitionState, fold_partition

    stage1 = Stage1(load_program(program_path))
    stores: list[dict[bytes, bytes]] = [{} for _ in range(partitions)]
    parts = [PartitionState(p, stores[p]) for p in range(partitions)]
    offsets = [0] * partitions
    events = simulate(seed, partners)
    timer = Timer()
    done = written_bytes = written_records = 0
    written_by: dict[str, int] = defaultdict(int)       # collection -> bytes written
    out: list[StateAt] = []
    for checkpoint in sorted(set(checkpoints)):
        while done < checkpoint:
            chunk = list(itertools.islice(events, min(batch, checkpoint - done)))
            done += len(chunk)
            per_partition: dict[int, list[Message]] = defaultdict(list)
            for key, value, p in wire_messages(((e, encode(e)) for e in chunk), partitions):
                per_partition[p].append(Message(topics.PARTNER_EVENTS, p, offsets[p], value, None, key))
                offsets[p] += 1
            batch_records: list[tuple[bytes, bytes]] = []
            with timer:
                for p, messages in per_partition.items():
                    part = parts[p]
                    result = fold_partition(stage1, part, messages)
                    records = part.batch_records(result.dirty)
                    stores[p].update(records)
                    part.committed(result.dirty)
                    batch_records += records
            written_records += len(batch_records)
            for key, value in batch_records:
                owner = partner_of(key)
                written_by[owner[1] if owner else "partition"] += len(key) + len(value)
                written_bytes += len(key) + len(value)
            if done % 100_000 < batch and done < checkpoint:
                echo(f"state:   {done:,} events folded ({timer.wall:.0f} s)")
        out.append(measure(stores, done, written_bytes, written_records, timer.wall, written_by))
    return out


def _bytes(n: float) -> str:
    if n < 10_000:
        return f"{n:,.0f} B"
    return f"{n / 1024:,.1f} KiB" if n < 10 * 1024 ** 2 else f"{n / 1024 ** 2:,.1f} MiB"


def _shares(sizes: dict[str, int], total: int, top: int = 5) -> str:
    return ", ".join(f"{name} {100 * size / max(1, total):.0f}%" for name, size in list(sizes.items())[:top])


def run_state(total: int = DEFAULT_STATE_EVENTS, *, seed: int = 7, partners: int = DEFAULT_STATE_PARTNERS,
              partitions: int = PARTITIONS, batch: int = DEFAULT_STATE_BATCH, program_path: str | None = None,
              echo: Echo = _quiet) -> Report:
    """The state figures after a tenth of `total` events and after all of them (module docstring)."""
    report = Report("state")
    points = checkpoints_for(total)
    echo(f"state: folding {total:,} events of {partners} partners ({partitions} partitions, batches of "
         f"{batch:,}), measuring after {' and '.join(f'{c:,}' for c in points)} ...")
    states = fold_state(points, seed=seed, partners=partners, partitions=partitions, batch=batch,
                        program_path=program_path, echo=echo)
    report.facts.update({"partners_simulated": partners, "partitions": partitions, "batch_events": batch})
    previous: StateAt | None = None
    for s in states:
        since = previous.events if previous else 0
        report.add(f"fold {since:,} -> {s.events:,} events", s.events - since,
                   s.fold_seconds - (previous.fold_seconds if previous else 0.0),
                   "fold_partition + batch records into dicts (not this part's point)")
        at = f"after_{s.events}"
        report.facts.update({
            f"{at}_partners": s.partners,
            f"{at}_bytes_per_partner_mean": round(s.bytes_per_partner_mean),
            f"{at}_bytes_per_partner_p99": s.bytes_per_partner_p99,
            f"{at}_bytes_per_partner_max": s.bytes_per_partner_max,
            f"{at}_records_per_partner_mean": round(s.records_per_partner_mean, 1),
            f"{at}_state_bytes_written_per_event": round(s.written_per_event, 1),
            f"{at}_store": f"{_bytes(s.store_bytes)} in {s.store_records:,} records "
                           f"({_bytes(s.partition_bytes)} partition meta and members)",
            f"{at}_largest_record_bytes": s.largest_record,
            f"{at}_stored_by_collection": _shares(s.by_collection, s.store_bytes - s.partition_bytes),
            f"{at}_written_by_collection": _shares(s.written_by_collection, s.written_bytes),
        })
        if previous is not None:
            span = s.events - previous.events
            report.facts[f"written_per_event_{previous.events}_to_{s.events}"] = round(
                (s.written_bytes - previous.written_bytes) / max(1, span), 1)
            report.facts[f"bytes_per_partner_growth_{previous.events}_to_{s.events}"] = (
                f"{s.bytes_per_partner_mean / max(1.0, previous.bytes_per_partner_mean):.2f}x mean for "
                f"{s.events / max(1, previous.events):.0f}x the events")
        previous = s
    report.facts.update({"peak_rss_mb": round(peak_rss_mb(), 1), "load_average": _load()})
    return report
