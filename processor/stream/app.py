"""The Faust application: topics, tables, web pages, and the agents that use them.

Run with `faust -A processor.stream.app worker` (the local stack does it for you). Agents live in
`stage1.py`, `stage2.py` and `sink.py`; this module only wires them, so the object graph of the
worker can be read in one place.
"""
from __future__ import annotations

import asyncio
import gc
import logging

import faust
from faust.stores import STORES
from faust.transport.producer import ProducerBuffer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from processor import topics
from processor.codec.faust_codec import register_faust_codec
from processor.config import load_settings
from processor.programs import load_program
from processor.stream import faust_patches, quiet_logs

settings = load_settings()
program = load_program(str(settings.program))

# How a stage gathers a batch (batching.take_batches): up to BATCH_MAX events; it goes once a
# linger brings fewer than BATCH_BACKLOG new events (a quiet stream), and a backed-up stream keeps
# filling it for up to BATCH_WITHIN seconds.
BATCH_MAX = 10_000
BATCH_LINGER = settings.batch_linger_ms / 1000
BATCH_WITHIN = settings.batch_wait_ms / 1000
BATCH_BACKLOG = 100

settings.worker_dir.mkdir(parents=True, exist_ok=True)     # INCENTIVES_WORKER_DIR: one per worker process
app = faust.App(
    settings.app_id,
    broker=settings.kafka_broker_url,
    store="rocksdb://",
    datadir=str(settings.worker_dir / "data"),
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
log = logging.getLogger(__name__)
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


@app.page("/metrics")
async def metrics_page(web, request):  # type: ignore[no-untyped-def]
    return web.bytes(generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])


broker_reachable = True      # kept by `watch_broker`


@app.timer(interval=2.0)
async def watch_broker() -> None:
    """Whether a bootstrap server accepts a connection (for /ready); logged once per change."""
    global broker_reachable
    reachable = False
    for server in settings.kafka_bootstrap_servers:
        host, _, port = server.rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host or "127.0.0.1", int(port)), 2.0)
            writer.close()
            reachable = True
            break
        except (TimeoutError, OSError, ValueError):
            continue
    if reachable != broker_reachable:
        (log.info if reachable else log.error)("broker %s %s", settings.kafka_bootstrap,
                                               "reachable again" if reachable else "unreachable")
    broker_reachable = reachable


@app.page("/ready")
async def ready_page(web, request):  # type: ignore[no-untyped-def]
    assigned = bool(app.consumer.assignment()) if app.consumer else False
    ready = assigned and not app.rebalancing and broker_reachable
    return web.json({"ready": ready, "assigned": assigned, "rebalancing": bool(app.rebalancing),
                     "broker_reachable": broker_reachable, "generation": app.consumer_generation_id},
                    status=200 if ready else 503)


@app.page("/partners")
async def partners_page(web, request):  # type: ignore[no-untyped-def]
    """This worker's committed partner state, for `incentives replay --source kafka --verify`: the
    partitions of `partner-events` it holds and every enrolled partner in them."""
    from processor.stream.partition_state import PartitionState
    topic = partner_events.get_topic_name()
    held = sorted(tp.partition for tp in app.consumer.assignment() if tp.topic == topic)
    out = {}
    for partition in held:
        part = PartitionState(partition, stage1.records(partition))
        for pid in part.member_ids:
            st = part.load(pid)
            if st is None or not st.enrolled:
                continue
            p, r = st.balances["points"], st.balances["rebate"]
            out[pid] = {"tier": st.tier, "points": {"available": p[0], "held": p[1]},
                        "rebate_cents": {"available": r[0], "held": r[1]},
                        "ledger_entries": st.seq, "ledger_head": st.head}
    return web.json({"partitions": held, "partners": out})


from processor.stream import sink, stage1, stage2  # noqa: E402,F401  (registers the agents)

quiet_logs.install()      # after every client module has created its loggers
