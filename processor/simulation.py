"""A simulated partner program with planted anomalies and their ground truth, to judge the detectors by.

`Simulation(...).events()` yields JSON-ready event dicts in event-time order: a cohort of partners
enrols, then sells (mostly to its own customers, sometimes to shared accounts), registers deals
that close weeks later, trains, markets, redeems, returns and gets small goodwill adjustments;
each month is closed when the clock passes it. Now and then it plants an anomaly on purpose and,
at the moment the triggering event is yielded, appends a ground-truth record to `truth` naming the
alert ids SPEC 5 says it must raise (`ALERT_TYPE:PARTNER_ID:TRIGGER_EVENT_ID`). Only what the rule
really requires is planted: a velocity burst goes to a partner enrolled 7+ days, quiet for an hour,
sized above 20,000 points and 10x any baseline it can have; stuffing goes to a partner enrolled for
the 3 previous months, sized from its own books so both signals hold; a plant whose trigger never
comes (the run ended first) is not in the truth. Normal traffic never copies an order id or sells
to a partner, so every duplicate_order and self_dealing alert is a planted one; what the other
detectors raise beyond the truth is what they raise on ordinary traffic (docs/simulator.md).

Runs do not collide (the CLI and `incentives bench` on a stack that already holds a program): every
id (partners, customers, events, orders, deals, ...) carries the run's prefix, so a run enrols its
own cohort and never re-enrols, copies or closes anything of another; and the clock starts after
the latest event in the log (`log_position`, `start_after`), so no month is closed twice. The same
seed gives the same stream (up to the prefix and the start).
"""
from __future__ import annotations

import calendar
import heapq
import itertools
import json
import math
import random
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from processor.domain.timeutil import (
    MS_DAY,
    MS_HOUR,
    MS_MINUTE,
    days_in_month,
    iso_seconds,
    month_index,
    month_start_ms,
    month_to_period,
    parse_iso,
    period_to_month,
)

DEFAULT_START = "2026-01-01T00:00:00Z"
CATEGORIES = ["hardware", "software", "services", "devices", "accessories"]
SEGMENTS = ["strategic", "long_tail", "experimental"]
REGIONS = ["emea", "amer", "apac"]
ACTIVITIES = ["webinar", "co_marketing", "customer_reference", "case_study"]
REWARDS = ["rebate_credit", "mdf", "travel", "merchandise"]
#: Planted kinds of the event stream and their weights (channel stuffing and return spikes are
#: planted at month ends instead, `PER_MONTH` of each).
PLANTS = {"duplicate_order": 2, "duplicate_resend": 1, "near_duplicate": 2, "self_dealing": 2,
          "velocity_burst": 2, "large_adjustment": 1}
PER_MONTH = 2
#: The plants are sized against the default program (deploy/programs/default.yaml): sale points per
#: dollar are at most 3 (software 200% x platinum 150%) and at least 2 for software.
MAX_POINTS_PER_DOLLAR = 3
STUFFING_MAX_CENTS = 12_000_000        # a partner that would need more to stuff is not chosen
SHARED_CUSTOMERS = 150                 # accounts every partner may sell to (where deals conflict)

Event = dict[str, Any]


@dataclass(eq=False)
class _Order:
    order_id: str
    owner: str
    customer_id: str
    sku: str
    category: str
    amount_cents: int
    index: int                        # number of the event that claimed it (how long ago it was sent)
    returned_cents: int = 0
    protected: bool = False           # copied, planted or resent: normal traffic leaves it alone

    @property
    def remaining(self) -> int:
        return self.amount_cents - self.returned_cents


@dataclass(eq=False)
class _Partner:
    pid: str
    number: int
    size: int
    enrolled_ms: int
    orders: deque[_Order] = field(default_factory=lambda: deque(maxlen=200))
    sales: deque[tuple[int, int]] = field(default_factory=deque)  # (ms, most points it can earn), 31 days
    last_sale_ms: int = -(10 ** 15)   # latest sale sent or scheduled
    no_sales_until: int = 0           # a burst is under way
    deals: dict[str, str] = field(default_factory=dict)          # open deal -> customer
    months: dict[int, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0]))  # gross, net, returns


class Simulation:
    """One run: `events()` is the stream, `truth` the ground-truth records of what was yielded."""

    def __init__(self, seed: int = 7, partners: int = 50, start: str | int = DEFAULT_START,
                 minutes_per_event: float = 4.0, prefix: str = "SIM", *, anomaly_rate: float = 0.01,
                 min_age_events: int = 2_000, closed_periods: Iterable[str] = ()) -> None:
        """`min_age_events`: a planted cross-partner claim copies an order sent at least this many
        events earlier (and self-dealing waits as long after the enrolments): two partners' events
        are on different partitions, and the live worker orders them only when they are in
        different batches. `closed_periods` are never closed again."""
        self.rnd = random.Random(seed)
        self.seed, self.prefix, self.minutes = seed, prefix, minutes_per_event
        self.anomaly_rate, self.min_age = anomaly_rate, min_age_events
        self.closed = set(closed_periods)
        self.t = parse_iso(start) if isinstance(start, str) else start
        self.month = month_index(self.t)
        self.n = 0
        self.truth: list[dict[str, Any]] = []
        self.partners = [_Partner(f"{prefix}-P{i:03d}", i, self.rnd.choice([1, 1, 2, 3, 8]), self.t)
                         for i in range(partners)]
        self._weights = [p.size for p in self.partners]
        self._recent: deque[_Order] = deque(maxlen=max(10_000, 2 * min_age_events))
        self._queue: list[tuple[int, int, Callable[[], Iterator[Event]]]] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self._planned_month: int | None = None
        self._month_end_plants: dict[int, list[tuple[str, _Partner]]] = defaultdict(list)
        self._no_returns: dict[str, int] = {}  # partner -> month whose close lifts it

    # ----------------------------------------------------------------------------------- the stream
    def events(self) -> Iterator[Event]:
        for p in self.partners:
            yield self._ev("PartnerEnrolled", p.pid, name=f"Partner {p.number:03d}",
                           segment=self.rnd.choice(SEGMENTS), region=self.rnd.choice(REGIONS))
        while True:
            nxt = self.t + int(self.rnd.expovariate(1 / self.minutes) * MS_MINUTE) + 1000
            while self._queue and self._queue[0][0] <= nxt:
                at, _, emit = heapq.heappop(self._queue)
                yield from self._advance(at)
                yield from emit()
            yield from self._advance(nxt)
            yield from self._normal()

    def _ev(self, event_type: str, pid: str, **fields: Any) -> Event:
        self.n += 1
        return {"event_id": f"{self.prefix}-{self.seed}-{self.n}", "event_type": event_type, "partner_id": pid,
                "occurred_at": iso_seconds(self.t), "source": "simulator", **fields}

    def _id(self, kind: str) -> str:
        return f"{self.prefix}-{kind}-{next(self._ids)}"

    def _later(self, at: int, emit: Callable[[], Iterator[Event]]) -> None:
        heapq.heappush(self._queue, (at, next(self._seq), emit))

    def _record(self, kind: str, partner: str, trigger: Event, alert_ids: list[str], detail: str) -> None:
        """Ground truth, appended before its trigger is yielded (so it exists iff the trigger does)."""
        self.truth.append({"kind": kind, "partner": partner, "trigger_event_id": trigger["event_id"],
                           "alert_ids": alert_ids, "occurred_at": trigger["occurred_at"], "detail": detail})

    def _advance(self, at: int) -> Iterator[Event]:
        self.t = max(self.t, at)
        while month_index(self.t) > self.month:
            yield from self._close(self.month)
            self.month += 1
        last_days = month_start_ms(self.month) + (days_in_month(self.month) - 3) * MS_DAY
        if self._planned_month != self.month and self.t >= last_days:
            self._planned_month = self.month
            self._plan_month_end()

    def _close(self, month: int) -> Iterator[Event]:
        period = month_to_period(month)
        plants = self._month_end_plants.pop(month, [])
        self._no_returns = {pid: m for pid, m in self._no_returns.items() if m != month}
        if period in self.closed:
            return
        self.closed.add(period)
        close = self._ev("PeriodClosed", "*", period=period)
        for alert_type, p in plants:
            self._record(alert_type, p.pid, close, [f"{alert_type}:{p.pid}:{close['event_id']}"],
                         f"planted in the last days of {period}")
        yield close

    # ------------------------------------------------------------------------------- normal traffic
    def _customer(self, p: _Partner) -> str:
        if self.rnd.random() < 0.15:
            return f"{self.prefix}-CS-{self.rnd.randrange(SHARED_CUSTOMERS)}"
        return f"{self.prefix}-C{p.number:03d}-{self.rnd.randrange(10 + 10 * p.size)}"

    def _sale(self, p: _Partner, customer: str, amount: int, *, category: str | None = None,
              order_id: str | None = None, sku: str | None = None, deal_id: str | None = None,
              keep: bool = True, protected: bool = False) -> Event:
        """A sale of `p` now, counted in its books as the domain counts it; `keep`: a new order of
        `p` (not a copy of another's) that later traffic may return or copy."""
        category = category or self.rnd.choice(CATEGORIES)
        order_id = order_id or self._id("SO")
        sku = sku or f"SKU-{self.rnd.randrange(40)}"
        event = self._ev("SaleRecorded", p.pid, order_id=order_id, customer_id=customer, sku=sku,
                         category=category, quantity=self.rnd.randint(1, 20), amount_cents=amount,
                         currency="USD", deal_id=deal_id)
        books = p.months[month_index(self.t)]
        books[0] += amount
        books[1] += amount
        p.sales.append((self.t, amount // 100 * MAX_POINTS_PER_DOLLAR))
        p.last_sale_ms = max(p.last_sale_ms, self.t)
        if keep:
            order = _Order(order_id, p.pid, customer, sku, category, amount, self.n, protected=protected)
            p.orders.append(order)
            if not protected:
                self._recent.append(order)
        return event

    def _return(self, order: _Order, owner: _Partner, amount: int) -> Event:
        counted = min(amount, order.remaining)
        order.returned_cents += counted
        books = owner.months[month_index(self.t)]
        books[1] -= counted
        books[2] += counted
        return self._ev("SaleReturned", owner.pid, order_id=order.order_id, amount_cents=amount,
                        reason="customer return")

    def _normal(self) -> Iterator[Event]:
        rnd = self.rnd
        p = rnd.choices(self.partners, weights=self._weights)[0]
        roll = rnd.random()
        if roll < 0.60 or roll >= 0.86 + self.anomaly_rate:
            if self.t >= p.no_sales_until:
                deal = rnd.choice(list(p.deals)) if p.deals and rnd.random() < 0.3 else None
                customer = p.deals[deal] if deal else self._customer(p)
                amount = max(100, int(rnd.lognormvariate(11.2, 0.9)) // 100 * 100)
                yield self._sale(p, customer, amount, deal_id=deal)
        elif roll < 0.66:
            deal, customer = self._id("DEAL"), self._customer(p)
            p.deals[deal] = customer
            yield self._ev("DealRegistered", p.pid, deal_id=deal, customer_id=customer,
                           expected_amount_cents=rnd.randrange(100_000, 5_000_000))
            self._later(self.t + rnd.randrange(14, 120) * MS_DAY, partial(self._deal_closed, p, deal))
        elif roll < 0.71:
            yield self._ev("TrainingCompleted", p.pid, course_id=f"COURSE-{rnd.randrange(12)}",
                           certification=rnd.random() < 0.4)
        elif roll < 0.76:
            yield self._ev("MarketingActivityCompleted", p.pid, activity_id=self._id("ACT"),
                           activity_type=rnd.choice(ACTIVITIES))
        elif roll < 0.81:
            yield self._ev("RedemptionRequested", p.pid, redemption_id=self._id("RED"), reward=rnd.choice(REWARDS),
                           points=rnd.choice([500, 1000, 2500, 10000]))
        elif roll < 0.85:
            open_orders = [o for o in p.orders if o.remaining > 0 and not o.protected]
            if open_orders and p.pid not in self._no_returns:
                order = rnd.choice(open_orders)
                yield self._return(order, p, max(1, order.remaining // rnd.choice([1, 2, 4])))
        elif roll < 0.86:
            yield self._ev("PointsAdjusted", p.pid, adjustment_id=self._id("ADJ"),
                           points=rnd.choice([250, 500, 1000, 2500, 5000]), reason="goodwill",
                           approved_by="channel-ops")
        else:
            kind = rnd.choices(list(PLANTS), weights=list(PLANTS.values()))[0]
            yield from getattr(self, f"_plant_{kind}")(p)

    def _deal_closed(self, p: _Partner, deal: str) -> Iterator[Event]:
        p.deals.pop(deal, None)
        yield self._ev("DealClosed", p.pid, deal_id=deal, outcome=self.rnd.choice(["won", "won", "lost"]))

    # ---------------------------------------------------------------------- plants in the stream
    def _plant_duplicate_order(self, p: _Partner) -> Iterator[Event]:
        """`p` claims another partner's order, sent at least `min_age` events ago."""
        oldest = self.n - self.min_age
        candidates = [o for o in self._recent if o.index <= oldest and not o.protected and o.owner != p.pid]
        if not candidates or self.t < p.no_sales_until:
            return
        order = self.rnd.choice(candidates)
        order.protected = True
        event = self._sale(p, order.customer_id, order.amount_cents, category=order.category,
                           order_id=order.order_id, sku=order.sku, keep=False)
        e = event["event_id"]
        self._record("duplicate_order", p.pid, event,
                     [f"duplicate_order:{p.pid}:{e}", f"duplicate_order:{order.owner}:{e}"],
                     f"claims order {order.order_id} of {order.owner}")
        yield event

    def _plant_duplicate_resend(self, p: _Partner) -> Iterator[Event]:
        """`p` records one of its own orders again under a new event id (earns nothing)."""
        candidates = [o for o in p.orders if not o.protected]
        if not candidates:
            return
        order = self.rnd.choice(candidates)
        order.protected = True
        event = self._ev("SaleRecorded", p.pid, order_id=order.order_id, customer_id=order.customer_id,
                         sku=order.sku, category=order.category, quantity=1, amount_cents=order.amount_cents,
                         currency="USD", deal_id=None)
        self._record("duplicate_resend", p.pid, event, [f"duplicate_order:{p.pid}:{event['event_id']}"],
                     f"order {order.order_id} recorded again")
        yield event

    def _plant_near_duplicate(self, p: _Partner) -> Iterator[Event]:
        """Two orders of one customer, sku and amount a few minutes apart. The amount has odd cents,
        which no other sale has, and is small (two of them stay far below a velocity spike)."""
        if self.t < p.no_sales_until:
            return
        customer = self._customer(p)
        amount = self.rnd.randrange(1_000, 2_000) * 100 + self.rnd.randrange(1, 100)
        first = self._sale(p, customer, amount, category="hardware", protected=True)
        second_at = self.t + self.rnd.randrange(1, 10) * MS_MINUTE
        p.last_sale_ms = max(p.last_sale_ms, second_at)

        def second() -> Iterator[Event]:
            event = self._sale(p, customer, amount, category="hardware", sku=first["sku"], protected=True)
            self._record("near_duplicate", p.pid, event, [f"near_duplicate_order:{p.pid}:{event['event_id']}"],
                         f"repeats order {first['order_id']}")
            yield event

        yield first
        self._later(second_at, second)

    def _plant_self_dealing(self, p: _Partner) -> Iterator[Event]:
        """`p` sells to another enrolled partner of the cohort (long after the enrolments)."""
        if self.n < self.min_age or self.t < p.no_sales_until or len(self.partners) < 2:
            return
        buyer = self.rnd.choice([q for q in self.partners if q is not p])
        event = self._sale(p, buyer.pid, self.rnd.randrange(10, 20) * 10_000, category="services", protected=True)
        self._record("self_dealing", p.pid, event, [f"self_dealing:{p.pid}:{event['event_id']}"],
                     f"sold to partner {buyer.pid}")
        yield event

    def _plant_velocity_burst(self, _p: _Partner) -> Iterator[Event]:
        """Three large software sales within minutes by a partner enrolled 8+ days with no sale in
        the hour before: the third is the first that can meet the rule, and does (module doc)."""
        now = self.t
        quiet = [q for q in self.partners if q.enrolled_ms <= now - 8 * MS_DAY
                 and q.last_sale_ms <= now - 61 * MS_MINUTE and q.no_sales_until <= now]
        if not quiet:
            return
        p = self.rnd.choice(quiet)
        while p.sales and p.sales[0][0] < now - 31 * MS_DAY:
            p.sales.popleft()
        baseline_max = sum(points for _, points in p.sales)
        # 3 sales x 2 points per dollar must beat 20,000 and 10 x baseline / 720 hours
        dollars = max(5_000, math.ceil(baseline_max / 432 / 100) * 100 + 100)
        times = [now + MS_MINUTE]
        for _ in range(2):
            times.append(times[-1] + self.rnd.randrange(1, 6) * MS_MINUTE)
        p.no_sales_until = times[-1] + 1
        p.last_sale_ms = times[-1]
        for i, at in enumerate(times):
            # amounts differ, so that two of them are never a near-duplicate
            self._later(at, partial(self._burst_sale, p, (dollars + 100 * i) * 100, i == 2))
        yield from ()

    def _burst_sale(self, p: _Partner, amount: int, last: bool) -> Iterator[Event]:
        event = self._sale(p, self._customer(p), amount, category="software")
        if last:
            self._record("velocity_burst", p.pid, event, [f"velocity_spike:{p.pid}:{event['event_id']}"],
                         "3 large software sales within minutes")
        yield event

    def _plant_large_adjustment(self, p: _Partner) -> Iterator[Event]:
        event = self._ev("PointsAdjusted", p.pid, adjustment_id=self._id("ADJ"),
                         points=self.rnd.choice([150_000, 250_000, -120_000]), reason="manual correction",
                         approved_by="channel-ops")
        self._record("large_adjustment", p.pid, event, [f"large_adjustment:{p.pid}:{event['event_id']}"],
                     f"{event['points']:+d} points")
        yield event

    # --------------------------------------------------------------- plants at the month's end
    def _plan_month_end(self) -> None:
        """On entering the last 3 days of the month: schedule its stuffing and its return spikes,
        alerted at its close (`_close`)."""
        start, end = self.t + MS_HOUR, month_start_ms(self.month + 1) - MS_HOUR
        if end - start < 24 * MS_HOUR:
            return                        # the run began inside the window
        for _ in range(PER_MONTH):
            self._plant_stuffing(start, end)
        for _ in range(PER_MONTH):
            self._plant_return_spike(start, end)

    def _plant_stuffing(self, start: int, end: int) -> None:
        """Large hardware orders, at least 61 minutes apart (never a velocity spike by themselves),
        so that the month's net is >= $20,000, > the 3 previous months together and < twice what
        the last 3 days sell; the partner's returns wait until the close."""
        m = self.month
        options = []
        for p in self.partners:
            if p.enrolled_ms > month_start_ms(m - 3) or p.pid in self._no_returns:
                continue
            net = p.months[m][1]
            history = sum(p.months[k][1] for k in range(m - 3, m))
            need = max(2_000_000 - net, history - net, net, 0) * 11 // 10 + 100_000
            if need <= STUFFING_MAX_CENTS:
                options.append((p, need))
        if not options:
            return
        p, need = self.rnd.choice(options)
        count = math.ceil(need / 900_000)
        amount = math.ceil(need / count / 100) * 100
        slot = (end - start) // count
        for i in range(count):
            at = start + i * slot + self.rnd.randrange(max(1, slot - 61 * MS_MINUTE))
            self._later(at, partial(self._stuffing_sale, p, amount))
            p.last_sale_ms = max(p.last_sale_ms, at)
        self._no_returns[p.pid] = m
        self._month_end_plants[m].append(("channel_stuffing", p))

    def _stuffing_sale(self, p: _Partner, amount: int) -> Iterator[Event]:
        yield self._sale(p, self._customer(p), amount, category="hardware", protected=True)

    def _plant_return_spike(self, start: int, end: int) -> None:
        """Returns of a partner's largest open orders worth > 35% of last month's gross sales
        (>= $11,000), from a partner whose returns of this month are below 20% so far."""
        m = self.month
        options = []
        for p in self.partners:
            gross, returns = p.months[m - 1][0], p.months[m][2]
            if p.pid in self._no_returns or gross < 1_100_000 or returns * 100 > 20 * gross:
                continue
            need = gross * 35 // 100 + 50_000 - returns
            picked: list[_Order] = []
            for order in sorted((o for o in p.orders if o.remaining > 0), key=lambda o: -o.remaining):
                if need <= 0:
                    break
                picked.append(order)
                need -= order.remaining
            if need <= 0:
                options.append((p, picked))
        if not options:
            return
        p, picked = self.rnd.choice(options)
        for order in picked:
            self._later(self.rnd.randrange(start, end), partial(self._planted_return, order, p, order.remaining))
        self._no_returns[p.pid] = m
        self._month_end_plants[m].append(("return_spike", p))

    def _planted_return(self, order: _Order, owner: _Partner, amount: int) -> Iterator[Event]:
        yield self._return(order, owner, amount)


def simulate(seed: int = 7, partners: int = 50, start: str | int = DEFAULT_START, minutes_per_event: float = 4.0,
             prefix: str = "SIM", **options: Any) -> Iterator[Event]:
    """The event stream of `Simulation(...)` (endless: take what you need)."""
    return Simulation(seed, partners, start, minutes_per_event, prefix, **options).events()


# ------------------------------------------------------------------------------ where the log ends

def new_run_id() -> str:
    """A fresh run id: 8 hex digits, in every id a run writes."""
    return uuid.uuid4().hex[:8]


@dataclass(frozen=True)
class LogPosition:
    """The latest `occurred_at` in the log (epoch ms; None for an empty log) and the closed periods."""
    latest_ms: int | None = None
    closed_periods: frozenset[str] = frozenset()

    def merge(self, other: LogPosition) -> LogPosition:
        latest = max((t for t in (self.latest_ms, other.latest_ms) if t is not None), default=None)
        return LogPosition(latest, self.closed_periods | other.closed_periods)


def start_after(position: LogPosition, default: str = DEFAULT_START) -> int:
    """Where a new run's clock starts: a minute after the latest event, and never in a closed month."""
    start = parse_iso(default) if position.latest_ms is None else position.latest_ms + MS_MINUTE
    closed = [period_to_month(p) for p in position.closed_periods]
    if closed and month_index(start) <= max(closed):
        start = month_start_ms(max(closed) + 1)
    return start


def _seen(events: Iterable[Event]) -> LogPosition:
    """The position of decoded events (`occurred_at` in epoch ms)."""
    latest, closed = None, set()
    for e in events:
        latest = e["occurred_at"] if latest is None else max(latest, e["occurred_at"])
        if e["event_type"] == "PeriodClosed":
            closed.add(e["period"])
    return LogPosition(latest, frozenset(closed))


def log_position(settings: Any, tail: int = 2_000) -> LogPosition:
    """Where the log ends: the last `tail` records of every `partner-events` partition (current up
    to the last message sent), merged with ClickHouse `events` (all of history, as far as the sink
    has come; skipped if ClickHouse does not answer)."""
    return _kafka_tail(settings.kafka_bootstrap_servers, tail).merge(_clickhouse_position(settings))


def _kafka_tail(bootstrap: list[str], tail: int, idle_polls: int = 2) -> LogPosition:
    from kafka import KafkaConsumer, TopicPartition

    from processor import topics
    from processor.codec import InvalidEvent, decode

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    try:
        parts = sorted(consumer.partitions_for_topic(topics.PARTNER_EVENTS) or [])
        tps = [TopicPartition(topics.PARTNER_EVENTS, p) for p in parts]
        if not tps:
            return LogPosition()
        consumer.assign(tps)
        for tp, end in consumer.end_offsets(tps).items():   # may be short (STACK.md): read on to highwater
            consumer.seek(tp, max(0, end - tail))
        events, idle = [], 0
        while idle < idle_polls:
            batch = consumer.poll(timeout_ms=500)
            for records in batch.values():
                for record in records:
                    try:
                        events.append(decode(record.value))
                    except (InvalidEvent, TypeError):
                        continue
            at_end = all((consumer.highwater(tp) or 0) <= consumer.position(tp) for tp in tps)
            idle = idle + 1 if not batch and at_end else 0
        return _seen(events)
    finally:
        consumer.close()


def _clickhouse_position(settings: Any) -> LogPosition:
    try:
        from projections.migrate import client

        ch, db = client(settings), settings.clickhouse_database
        count, latest = ch.execute(f"SELECT count(), max(occurred_at) FROM {db}.events")[0]
        payloads = ch.execute(f"SELECT DISTINCT payload FROM {db}.events WHERE event_type = 'PeriodClosed'")
    except Exception:  # noqa: BLE001 - no sink, no history: the Kafka tail alone decides
        return LogPosition()
    closed = frozenset(str(json.loads(p).get("period")) for (p,) in payloads)
    return LogPosition(calendar.timegm(latest.utctimetuple()) * 1000 if count else None, closed)
