"""The worker, assembled in one place. Run with `faust -A processor.stream.app worker` (the local
stack does it for you).

From settings (`wiring.py`: the Faust app, its topics and tables) it registers the agents (stage 1,
stage 2, and the ClickHouse sink when `INCENTIVES_SINK_IN_WORKER` is true), the web pages and the
watchdog that stops a worker whose fetcher or agent crashed, and tunes this process for them. The
modules it imports only define things; every change to the process is made here, once, in the
order below. Nothing imports this module but Faust (and the tests that start a worker's app), so
there is no import cycle between the app and its agents.
"""
from __future__ import annotations

import gc
import logging

from faust.transport.producer import ProducerBuffer

from processor.codec.faust_codec import register_faust_codec
from processor.stream import faust_patches, pages, quiet_logs, sink, stage1, stage2, watchdog
from processor.stream.rewind import resume_from_state
from processor.stream.wiring import (
    app,
    crosspartner_table,
    partner_events,
    partner_table,
    program,
    repartition,
    settings,
)

__all__ = ["app", "crosspartner_table", "pages", "partner_events", "partner_table", "program", "repartition",
           "settings", "sink", "stage1", "stage2", "watchdog"]

settings.worker_dir.mkdir(parents=True, exist_ok=True)     # INCENTIVES_WORKER_DIR: one per worker process
for noisy in ("faust", "aiokafka", "kafka", "mode"):      # aiokafka builds DEBUG records per send otherwise
    logging.getLogger(noisy).setLevel(logging.WARNING)

# Throughput settings measured on these machines (STACK.md): Faust's producer buffer holds 100
# messages by default (a class attribute, not a setting), so a batch's changelog writes would
# trickle out; and the fold allocates many short-lived objects, for which gen-0 collections every
# 700 allocations cost a third of the CPU.
ProducerBuffer.max_messages = 100_000
gc.set_threshold(100_000, 50, 100)
faust_patches.install()

# Each stage resumes a partition from its state's own watermark, whatever offset was committed
# (rewind.py): registered here, for the after-seek hook the patches above installed.
resume_from_state(partner_events.get_topic_name(), stage1.stored_watermark)
resume_from_state(repartition.get_topic_name(), stage2.stored_watermark)

# The Avro codec, registered with Faust as "avro-events" for any agent or tool that wants decoded
# values (the agents read raw bytes and decode whole batches themselves).
register_faust_codec()

quiet_logs.install()      # after every client module has created its loggers
