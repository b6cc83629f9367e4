"""A realistic simulated partner program with injected anomalies, for demos and benchmarks.

`simulate(seed)` yields JSON-ready event dicts in event-time order: enrolments, sales across
categories, deal registrations and closes, trainings, marketing, redemptions, returns, period
closes at each month end, and now and then an anomaly on purpose (a cross-partner duplicate order,
a near-duplicate, self-dealing, a burst of sales, month-end stuffing, a large adjustment). The same
seed gives the same stream.
"""
from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from processor.domain.timeutil import MS_MINUTE, iso_seconds, month_index, month_to_period, parse_iso

CATEGORIES = ["hardware", "software", "services", "devices", "accessories"]
SEGMENTS = ["strategic", "long_tail", "experimental"]
REGIONS = ["emea", "amer", "apac"]
ACTIVITIES = ["webinar", "co_marketing", "customer_reference", "case_study"]
REWARDS = ["rebate_credit", "mdf", "travel", "merchandise"]


def simulate(seed: int = 7, partners: int = 50, start: str = "2026-01-01T00:00:00Z",
             minutes_per_event: float = 4.0, prefix: str = "SIM") -> Iterator[dict[str, Any]]:
    rnd = random.Random(seed)
    t = parse_iso(start)
    n = 0
    ids = [f"{prefix}-P{i:03d}" for i in range(partners)]
    size = {p: rnd.choice([1, 1, 2, 3, 8]) for p in ids}      # a few big partners

    def ev(event_type: str, pid: str, **fields: Any) -> dict[str, Any]:
        nonlocal n
        n += 1
        return {"event_id": f"{prefix}-{seed}-{n}", "event_type": event_type, "partner_id": pid,
                "occurred_at": iso_seconds(t), "source": "simulator", **fields}

    for pid in ids:
        yield ev("PartnerEnrolled", pid, name=f"Partner {pid[-3:]}", segment=rnd.choice(SEGMENTS),
                 region=rnd.choice(REGIONS))
    month = month_index(t)
    orders: list[tuple[str, str, int]] = []
    deals: dict[str, str] = {}
    while True:
        t += int(rnd.expovariate(1 / minutes_per_event) * MS_MINUTE) + 1000
        if month_index(t) != month:
            yield ev("PeriodClosed", "*", period=month_to_period(month))
            month = month_index(t)
        pid = rnd.choices(ids, weights=[size[p] for p in ids])[0]
        roll = rnd.random()
        if roll < 0.62:
            order = f"{prefix}-SO-{n}"
            amount = int(rnd.lognormvariate(11.2, 0.9)) // 100 * 100
            category = rnd.choice(CATEGORIES)
            deal = rnd.choice([d for d, owner in deals.items() if owner == pid] or [None]) \
                if rnd.random() < 0.3 else None
            orders.append((pid, order, amount))
            yield ev("SaleRecorded", pid, order_id=order, customer_id=f"{prefix}-CUST-{rnd.randrange(400)}",
                     sku=f"SKU-{rnd.randrange(40)}", category=category, quantity=rnd.randint(1, 20),
                     amount_cents=amount, currency="USD", deal_id=deal)
        elif roll < 0.70:
            deal = f"{prefix}-DEAL-{n}"
            deals[deal] = pid
            yield ev("DealRegistered", pid, deal_id=deal, customer_id=f"{prefix}-CUST-{rnd.randrange(400)}",
                     expected_amount_cents=rnd.randrange(100_000, 5_000_000))
        elif roll < 0.74 and deals:
            deal = rnd.choice(list(deals))
            yield ev("DealClosed", deals.pop(deal), deal_id=deal, outcome=rnd.choice(["won", "won", "lost"]))
        elif roll < 0.80:
            yield ev("TrainingCompleted", pid, course_id=f"COURSE-{rnd.randrange(12)}",
                     certification=rnd.random() < 0.4)
        elif roll < 0.85:
            yield ev("MarketingActivityCompleted", pid, activity_id=f"{prefix}-ACT-{n}",
                     activity_type=rnd.choice(ACTIVITIES))
        elif roll < 0.90:
            yield ev("RedemptionRequested", pid, redemption_id=f"{prefix}-RED-{n}", reward=rnd.choice(REWARDS),
                     points=rnd.choice([500, 1000, 2500, 10000]))
        elif roll < 0.94 and orders:
            owner, order, amount = rnd.choice(orders[-500:])
            yield ev("SaleReturned", owner, order_id=order, amount_cents=max(100, amount // rnd.choice([1, 2, 4])),
                     reason="customer return")
        else:
            yield from _anomaly(rnd, ev, ids, orders, pid, t, prefix)


def _anomaly(rnd: random.Random, ev, ids: list[str], orders, pid: str, t: int, prefix: str):  # type: ignore[no-untyped-def]
    kind = rnd.choice(["duplicate", "near_duplicate", "self_dealing", "burst", "adjustment"])
    if kind == "duplicate" and orders:
        owner, order, amount = rnd.choice(orders[-200:])
        other = rnd.choice([p for p in ids if p != owner])
        yield ev("SaleRecorded", other, order_id=order, customer_id=f"{prefix}-CUST-DUP", sku="SKU-1",
                 category="hardware", quantity=1, amount_cents=amount, currency="USD", deal_id=None)
    elif kind == "near_duplicate":
        for i in range(2):
            yield ev("SaleRecorded", pid, order_id=f"{prefix}-ND-{t}-{i}", customer_id=f"{prefix}-CUST-ND", sku="SKU-9",
                     category="software", quantity=1, amount_cents=450_000, currency="USD", deal_id=None)
    elif kind == "self_dealing":
        yield ev("SaleRecorded", pid, order_id=f"{prefix}-SD-{t}", customer_id=rnd.choice(ids), sku="SKU-2",
                 category="services", quantity=2, amount_cents=900_000, currency="USD", deal_id=None)
    elif kind == "burst":
        for i in range(4):
            yield ev("SaleRecorded", pid, order_id=f"{prefix}-BURST-{t}-{i}", customer_id=f"{prefix}-CUST-B{i}",
                     sku=f"SKU-B{i}", category="software", quantity=1, amount_cents=1_500_000, currency="USD",
                     deal_id=None)
    else:
        yield ev("PointsAdjusted", pid, adjustment_id=f"{prefix}-ADJ-{t}", points=rnd.choice([5_000, 150_000]),
                 reason="goodwill", approved_by="channel-ops")


