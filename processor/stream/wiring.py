"""The worker's Faust objects, from settings: the app, its topics and its tables.

The agents (`stage1.py`, `stage2.py`, `sink.py`) and the web pages (`pages.py`) register on these;
`app.py` assembles the worker from all of them and is the only module that changes the process
(collector, producer buffer, Faust patches, logging). Importing this module creates objects and
nothing else, so a tool or a test can import an agent's module without tuning its own process.
"""
from __future__ import annotations

import faust
from faust.stores import STORES

from processor import topics
from processor.config import load_settings
from processor.programs import load_program

settings = load_settings()
program = load_program(str(settings.program))

# How a stage gathers a batch (batching.take_batches): up to BATCH_MAX events; it goes once a
# linger brings fewer than BATCH_BACKLOG new events (a quiet stream), and a backed-up stream keeps
# filling it for up to BATCH_WITHIN seconds.
BATCH_MAX = 10_000
BATCH_LINGER = settings.batch_linger_ms / 1000
BATCH_WITHIN = settings.batch_wait_ms / 1000
BATCH_BACKLOG = 100

app = faust.App(
    settings.app_id,
    broker=settings.kafka_broker_url,
    store="rocksdb://",
    datadir=str(settings.worker_dir / "data"),     # INCENTIVES_WORKER_DIR: one per worker process
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
    producer_max_request_size=settings.max_message_bytes,
    # record batches of up to 512 KB instead of 16 KB: the producer sends one batch per partition
    # per request, so a batch's changelog writes (megabytes to one partition) took a hundred round
    # trips or more (delivery.py sends whole record batches)
    producer_max_batch_size=min(512 * 1024, settings.max_message_bytes),
    logging_config=None,
    # Tansu's end offsets are short by the rest of the last record batch (STACK.md), so a correct
    # local RocksDB offset can look "ahead" of the changelog and Faust would refuse to start. Our
    # state checks itself instead (PartitionMeta watermark, event-id dedup).
    recovery_consistency_check=False,
)


def raw_topic(*names: str) -> faust.TopicT:
    return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw",
                     value_serializer="raw", partitions=settings.partitions)


# The agents read raw bytes and decode whole batches themselves (the hot path).
partner_events = raw_topic(topics.PARTNER_EVENTS)
repartition = raw_topic(topics.REPARTITION)

# The stages' state, co-partitioned with their input topics: Faust creates the changelogs and
# recovers RocksDB from them; the stages read and write the records themselves (state_store.py,
# partition_state.py), so the values are raw bytes.
# Their restore keeps each key's record of the newest writer epoch (state_store.FencedStore).
STORES["fenced"] = "processor.stream.state_store:FencedStore"
# (The URL names the table: a bare "fenced://" is a falsy yarl URL, and Faust would silently use
# the app's default store instead.)
partner_table = app.Table("partner-state", partitions=settings.partitions, key_type=bytes, value_type=bytes,
                          store="fenced:partner-state")
crosspartner_table = app.Table("crosspartner-state", partitions=settings.partitions, key_type=bytes,
                               value_type=bytes, store="fenced:crosspartner-state")
