"""Stage-2 agent: cross-partner detectors over the repartition topic (keyed by order / customer).

Findings are appended to `partner-events` as Avro `AnomalyDetected` events keyed by the partner,
so stage 1 applies them (holds, alerts) and a replay of the log sees exactly what happened live.
"""
from __future__ import annotations

import json

from processor import topics
from processor.codec import encode
from processor.domain import crosspartner
from processor.stream.app import app, crosspartner_table, program, repartition
from processor.stream.batching import by_held_partition, run_batches
from processor.stream.delivery import deliver
from processor.stream.folding import Contiguous, OutRecord, meta_key
from processor.stream.partition_context import on_partition_of
from processor.stream.rewind import Rewinder, resume_from_state

rewinder = Rewinder(app)


resume_from_state(repartition.get_topic_name(), crosspartner_table,
                  lambda watermark: -1 if watermark is None else watermark)


@app.agent(repartition)
async def stage2(stream):  # type: ignore[no-untyped-def]
    await run_batches(stream, process_batch, "stage 2")


async def process_batch(stream, events) -> None:  # type: ignore[no-untyped-def]
    by_partition = by_held_partition(events)
    records, writes = [], []
    for partition, evs in by_partition.items():
        cache: dict[str, dict] = {}
        with on_partition_of(stream, evs[-1]):
            run = Contiguous(evs, crosspartner_table.get(meta_key(partition), -1), lambda ev: ev.message.offset)
            for ev in run:
                key = ev.message.key.decode()
                record = json.loads(ev.message.value)
                state = cache[key] if key in cache else crosspartner_table.get(key)
                cache[key], findings = crosspartner.apply(program, state, record)
                for finding in findings:
                    records.append(OutRecord(topics.PARTNER_EVENTS, finding["partner_id"].encode(),
                                             encode(finding)))
        writes.append((evs[-1], run.watermark, cache, run.jumped_to))
    await deliver(app, records)
    for last_event, watermark, cache, jumped_to in writes:
        if jumped_to is not None:        # read the skipped offsets again, in order
            watermark = await rewinder.rewind(last_event.message.tp, watermark, jumped_to)
        with on_partition_of(stream, last_event):
            for key, state in cache.items():
                crosspartner_table[key] = state
            crosspartner_table[meta_key(last_event.message.partition)] = watermark
