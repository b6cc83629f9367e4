"""`incentives bench --what latency`: from emitting a triggering event to its alert on the live
feed the console shows (`processor.desk.follow`, the `anomaly-alerts` topic), on an idle stack and
under a steady background of simulated traffic. Figures only (SPEC 5 asks for under one second).

Two kinds of trigger, because they take different paths: a partner claiming its own order twice
(`duplicate_order`, stage 1 alone) and a sale to another enrolled partner (`self_dealing`, stage 1,
the repartition topic, stage 2, back to `partner-events`, stage 1 again).
"""
from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from processor.bench import Report, tag_ids
from processor.codec import from_json_line
from processor.config import Settings
from processor.producer import EventProducer
from processor.simulation import simulate

DEFAULT_RATE = 1_000          # background events per second
DEFAULT_PROBES = 40           # triggering events per kind


def _event(**fields: Any) -> dict[str, Any]:
    return from_json_line(json.dumps(fields))


def percentile(values: list[float], pct: float) -> float:
    """The value at `pct` (0-100) of the sorted values, nearest rank."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


class _Background(threading.Thread):
    """Simulated events at a steady rate, in 50 ms slices, until stopped."""

    def __init__(self, settings: Settings, rate: int, run: str) -> None:
        super().__init__(daemon=True)
        self.settings, self.rate, self.run_id = settings, rate, run
        self.stopping = threading.Event()
        self.sent = 0

    def run(self) -> None:  # noqa: D102
        events = (tag_ids(e, f"lat{self.run_id}-") for e in simulate(seed=3, partners=200))
        per_slice = max(1, self.rate // 20)
        with EventProducer(self.settings.kafka_bootstrap_servers) as producer:
            next_at = time.monotonic()
            while not self.stopping.is_set():
                producer.send_many([next(events) for _ in range(per_slice)])
                self.sent += per_slice
                next_at += 0.05
                time.sleep(max(0.0, next_at - time.monotonic()))


async def _measure(settings: Settings, probes: int, run: str, echo: Callable[[str], None]) -> dict[str, list[float]]:
    from processor.desk.follow import follow

    a, b = f"LAT-{run}-A", f"LAT-{run}-B"
    enrol = {"event_type": "PartnerEnrolled", "occurred_at": "2026-01-01T00:00:00Z", "segment": "long_tail",
             "region": "emea"}
    sale = {"event_type": "SaleRecorded", "sku": "SKU-L", "category": "hardware", "quantity": 1,
            "amount_cents": 10_000, "occurred_at": "2026-01-02T00:00:00Z"}
    producer = EventProducer(settings.kafka_bootstrap_servers)
    producer.send_many([_event(event_id=f"{a}-e", partner_id=a, name="A", **enrol),
                        _event(event_id=f"{b}-e", partner_id=b, name="B", **enrol)])
    producer.flush()
    await asyncio.sleep(3)                                  # both enrolled before the probes
    sent_at: dict[str, tuple[str, float]] = {}
    latencies: dict[str, list[float]] = {"duplicate_order": [], "self_dealing": []}

    async def listen() -> None:
        async for alert in follow(settings.kafka_bootstrap_servers):
            probe = sent_at.pop(alert["trigger_event_id"], None)
            if probe is not None and alert.get("version") == 1:
                latencies[probe[0]].append(time.monotonic() - probe[1])

    listener = asyncio.create_task(listen())
    await asyncio.sleep(1.0)
    for i in range(probes):
        order = f"{a}-O{i}"
        producer.send(_event(event_id=f"{a}-s{i}", partner_id=a, order_id=order, customer_id="C", **sale))
        producer.flush()
        await asyncio.sleep(0.2)
        trigger = f"{a}-r{i}"                                 # the same order again: duplicate_order
        sent_at[trigger] = ("duplicate_order", time.monotonic())
        producer.send(_event(event_id=trigger, partner_id=a, order_id=order, customer_id="C", **sale))
        producer.flush()
        trigger = f"{a}-d{i}"                                 # a sale to partner B: self_dealing
        sent_at[trigger] = ("self_dealing", time.monotonic())
        producer.send(_event(event_id=trigger, partner_id=a, order_id=f"{a}-SD{i}", customer_id=b, **sale))
        producer.flush()
        await asyncio.sleep(0.3)
    deadline = time.monotonic() + 30
    while sent_at and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    listener.cancel()
    producer.close()
    if sent_at:
        echo(f"latency: {len(sent_at)} probes got no alert within 30 s")
    return latencies


def run_latency(settings: Settings, *, rate: int = DEFAULT_RATE, probes: int = DEFAULT_PROBES,
                echo: Callable[[str], None] = print) -> Report:
    """Two phases in one run: an idle stack (`idle_*` figures), then under `rate` events/s of
    background traffic (`loaded_*`)."""
    report = Report("latency")
    for phase, background_rate in (("idle", 0), ("loaded", rate)):
        run = uuid.uuid4().hex[:8]
        background = _Background(settings, background_rate, run) if background_rate else None
        echo(f"latency ({phase}): " + (f"background traffic at {background_rate:,} events/s"
                                       if background else "no background traffic")
             + f", {probes} probes per kind ...")
        if background is not None:
            background.start()
        try:
            if background is not None:
                time.sleep(3)                               # the background reaches its rate first
            latencies = asyncio.run(_measure(settings, probes, run, echo))
        finally:
            if background is not None:
                background.stopping.set()
                background.join()
        for kind, values in latencies.items():
            if values:
                report.facts[f"{phase}_{kind}_p50_s"] = round(percentile(values, 50), 3)
                report.facts[f"{phase}_{kind}_p99_s"] = round(percentile(values, 99), 3)
                report.facts[f"{phase}_{kind}_max_s"] = round(max(values), 3)
            report.facts[f"{phase}_{kind}_probes"] = f"{len(values)} of {probes}"
    report.facts["background_events_per_s"] = rate
    report.facts["batch_linger_ms"] = settings.batch_linger_ms
    report.facts["batch_wait_ms"] = settings.batch_wait_ms
    return report
