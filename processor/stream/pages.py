"""The worker's web pages: `/metrics` (Prometheus), `/ready` (assigned, not rebalancing, broker
reachable), `/partners` (the committed partner state `replay --verify` compares), and the timer
that keeps the broker's reachability for `/ready`."""
from __future__ import annotations

import asyncio
import logging

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from processor.stream import stage1
from processor.stream.partition_state import PartitionState
from processor.stream.wiring import app, partner_events, settings

log = logging.getLogger(__name__)


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
