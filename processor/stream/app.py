"""The Faust application: topics, tables, web pages, and the agents that use them.

Run with `faust -A processor.stream.app worker` (the local stack does it for you). Agents live in
`stage1.py`, `stage2.py` and `sink.py`; this module only wires them, so the object graph of the
worker can be read in one place.
"""
from __future__ import annotations

import gc
import logging

import faust
from faust.transport.producer import ProducerBuffer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from processor import topics
from processor.codec.faust_codec import register_faust_codec
from processor.config import load_settings
from processor.programs import load_program
from processor.stream import faust_patches
from processor.stream.pickled_table import PickledTable

settings = load_settings()
program = load_program(str(settings.program))

BATCH_MAX = 10_000          # events taken per agent batch
BATCH_WITHIN = settings.batch_wait_ms / 1000   # seconds to wait for a batch to fill (config.py)

(settings.home / "worker").mkdir(parents=True, exist_ok=True)
app = faust.App(
    settings.app_id,
    broker=settings.kafka_broker_url,
    store="rocksdb://",
    datadir=str(settings.home / "worker" / "data"),
    web_host=settings.web_host,
    web_port=settings.web_port,
    topic_replication_factor=1,
    topic_partitions=settings.partitions,
    broker_session_timeout=10,
    broker_heartbeat_interval=2,
    table_standby_replicas=0,
    stream_buffer_maxsize=65536,
    broker_max_poll_records=BATCH_MAX,
    cython_optimizations=True,
    consumer_auto_offset_reset="earliest",
    processing_guarantee="at_least_once",
    producer_acks=-1,
    logging_config=None,
    # Tansu's end offsets are short by the rest of the last record batch (STACK.md), so a correct
    # local RocksDB offset can look "ahead" of the changelog and Faust would refuse to start. Our
    # state checks itself instead (PartitionMeta watermark, event-id dedup).
    recovery_consistency_check=False,
)
for noisy in ("faust", "aiokafka", "kafka", "mode"):      # aiokafka builds DEBUG records per send otherwise
    logging.getLogger(noisy).setLevel(logging.WARNING)

# Throughput settings measured on these machines (STACK.md): Faust's producer buffer holds 100
# messages by default (a class attribute, not a setting), so a batch's changelog writes would
# trickle out; and the fold allocates many short-lived objects, for which gen-0 collections every
# 700 allocations cost a third of the CPU.
ProducerBuffer.max_messages = 100_000
gc.set_threshold(100_000, 50, 100)
faust_patches.install()


def raw_topic(*names: str) -> faust.TopicT:
    return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", partitions=settings.partitions)


# The agents read raw bytes and decode whole batches themselves (the hot path); the Avro codec is
# also registered with Faust as "avro-events" for any agent or tool that wants decoded values.
register_faust_codec()

partner_events = raw_topic(topics.PARTNER_EVENTS)
repartition = raw_topic(topics.REPARTITION)

# Table values are the domain's own dataclasses, pickled by `PickledTable` (state is rebuildable
# from the log, so its encoding is an internal detail; only this worker writes the changelogs).
# Partner state and one PartitionMeta per partition, co-partitioned with partner-events:
partner_table = PickledTable(app.Table("partner-state", partitions=settings.partitions, key_type=str,
                                       value_type=bytes))
# Stage-2 state per order / customer key, co-partitioned with the repartition topic:
crosspartner_table = PickledTable(app.Table("crosspartner-state", partitions=settings.partitions,
                                            key_type=str, value_type=bytes))


@app.page("/metrics")
async def metrics_page(web, request):  # type: ignore[no-untyped-def]
    return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


@app.page("/ready")
async def ready_page(web, request):  # type: ignore[no-untyped-def]
    assigned = bool(app.consumer.assignment()) if app.consumer else False
    ready = assigned and not app.rebalancing
    return web.json({"ready": ready}, status=200 if ready else 503)



@app.page("/partners")
async def partners_page(web, request):  # type: ignore[no-untyped-def]
    """This worker's partner state, for `incentives replay --source kafka --verify`."""
    from processor.stream.folding import META_PREFIX
    out = {}
    for key, st in partner_table.items():
        if key.startswith(META_PREFIX) or not st.enrolled:
            continue
        p, r = st.balances["points"], st.balances["rebate"]
        out[key] = {"tier": st.tier, "points": {"available": p[0], "held": p[1]},
                    "rebate_cents": {"available": r[0], "held": r[1]},
                    "ledger_entries": st.seq, "ledger_head": st.head}
    return web.json(out)


from processor.stream import sink, stage1, stage2  # noqa: E402,F401  (registers the agents)
