"""Property-based tests of the domain core, the file replay and the live stage-1 fold (hypothesis).

The strategies build random but valid event streams for a few partners that never interact (each
partner has its own order, customer, deal, activity, redemption and adjustment ids), over a few
consecutive months: enrolments first, then sales (all categories, devices inside the q4-devices SPIFF
window, same-partner duplicate orders, near duplicates, late sales, sales naming own and unknown
deals, self-dealing sales to the seller's own id), returns (partial, whole, over-returns, unknown
orders), deals registered and closed (twice, unknown), trainings with and without certification
(repeats), marketing (repeats), redemptions (repeated ids, too large, non-positive), adjustments (0,
repeats, large), offboarding and re-enrolment, redeliveries of an earlier event_id, guessed
`AlertResolved`s, and `PeriodClosed` at each month boundary (sometimes skipped, caught up later,
redelivered or sent twice under a new id). A last segment resolves, dismissed or confirmed, alerts
that a first replay of the stream raised, mixed with more events (returns of held orders, ...).

Properties:
1. ledger invariants of every partner (sums, count, head, the recomputed sha256 chain, verify_chain);
2. a replay is deterministic;
3. the interleaving of partners does not matter (period closes stay barriers);
4. the live path (Avro + fold_partition in random batches, over 1-3 partitions, state stored as the
   worker's records between batches, crashes that write only part of a batch's records and restart
   from the records) equals the file replay; redeliveries (same offsets, or new offsets) change
   nothing; a batch followed by stale later offsets applies only its contiguous part; and the
   Kafka replay of those partition logs gives the file replay's result too;
5. every ledger number is an int.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor import topics
from processor.codec import encode, from_json_line
from processor.domain.engine import Stage1
from processor.domain.ledger import verify_chain
from processor.kafka_replay import replay_log
from processor.programs import load_program
from processor.replay import Replayer, replay_lines
from processor.stream.folding import Message, PartitionState, fold_partition
from tests.unit.builders import check_result

PROGRAM = load_program()
LIVE_STAGE1 = Stage1(PROGRAM)        # as the agent: no global deal registry, otherwise stateless

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

ZERO_HASH = "0" * 64
MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
FIRST_MONTH = 2026 * 12 + 5          # 2026-06 (month index = year * 12 + month - 1)
PARTNERS = ("P1", "P2", "P3")
CATEGORIES = ("hardware", "software", "services", "devices", "devices", "consulting")
ACTIVITY_TYPES = ("webinar", "co_marketing", "customer_reference", "case_study")
REWARDS = ("rebate_credit", "mdf", "travel", "merchandise")
ALERT_TYPES = ("duplicate_order", "near_duplicate_order", "channel_stuffing", "return_spike", "self_dealing",
               "velocity_spike", "earning_cap_reached", "large_adjustment")
KINDS = ("sale", "sale", "sale", "sale", "sale", "return", "return", "deal", "deal_close", "training",
         "marketing", "redemption", "adjustment", "redelivery", "offboard", "guess_resolve")
ACCOUNTS = ("points", "rebate")


# ---------------------------------------------------------------------------------------------- time

def month_start(month: int) -> int:
    return calendar.timegm((month // 12, month % 12 + 1, 1, 0, 0, 0)) * 1000


def period_of(month: int) -> str:
    return f"{month // 12:04d}-{month % 12 + 1:02d}"


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def month_times(draw: Any, month: int, count: int) -> list[int]:
    """`count` non-decreasing times in the month: bursts of minutes and gaps of days, sometimes at month end."""
    start, end = month_start(month), month_start(month + 1) - 1000
    days = (month_start(month + 1) - start) // DAY
    t = start + draw(st.sampled_from([0, DAY, 10 * DAY, (days - 3) * DAY])) + draw(st.integers(0, 23)) * HOUR
    times = []
    for _ in range(count):
        times.append(min(t, end))
        t += draw(GAPS)
    return times


# ---------------------------------------------------------------------------------------------- generation

AMOUNTS = st.one_of(st.integers(0, 200_000), st.integers(0, 3_000_000), st.integers(0, 60_000_000),
                    st.sampled_from([0, 99, 100, 500_000, 1_000_000, 2_000_000, 2_500_000]),
                    st.integers(10_000_000, 150_000_000))
QUANTITIES = st.one_of(st.integers(0, 5), st.integers(0, 150))
REDEEM_POINTS = st.one_of(st.integers(1, 3_000), st.integers(1, 2_000_000), st.integers(-10, 0))
ADJUST_POINTS = st.one_of(st.integers(-5_000, 5_000), st.sampled_from([100_000, 100_001, -100_001, 250_000, -250_000]))
GAPS = st.sampled_from([MIN, 4 * MIN, 7 * MIN, 30 * MIN, 5 * HOUR, 2 * DAY, 6 * DAY])


class PartnerGen:
    """Generates one partner's events; its ids never collide with another partner's."""

    def __init__(self, pid: str, self_dealing: bool) -> None:
        self.pid = pid
        self.self_dealing = self_dealing
        self.n = 0
        self.events: list[dict[str, Any]] = []
        self.orders: list[tuple[str, int, str, str]] = []      # order_id, amount, customer, sku
        self.deals: list[str] = []
        self.active = True

    def ev(self, event_type: str, ms: int, **fields: Any) -> dict[str, Any]:
        self.n += 1
        event = {"event_id": f"{self.pid}-e{self.n:03d}", "event_type": event_type, "partner_id": self.pid,
                 "occurred_at": iso(ms), "source": "prop", **fields}
        self.events.append(event)
        return event

    def enrol(self, ms: int) -> dict[str, Any]:
        self.active = True
        return self.ev("PartnerEnrolled", ms, name=f"Partner {self.pid}", segment="strategic", region="emea")

    def month(self, draw: Any, month: int, max_events: int = 9) -> list[dict[str, Any]]:
        count = draw(st.integers(0, max_events))
        out = []
        for ms in month_times(draw, month, count):
            event = self.one(draw, draw(st.sampled_from(KINDS)), ms, month)
            if event is not None:
                out.append(event)
        return out

    def one(self, draw: Any, kind: str, ms: int, month: int) -> dict[str, Any] | None:
        pid = self.pid
        if not self.active and kind != "redelivery" and not draw(st.integers(0, 2)):
            return self.enrol(ms)                           # an offboarded partner comes back
        if kind == "sale":
            return self.sale(draw, ms, month)
        if kind == "return":
            if self.orders and draw(st.integers(0, 9)):
                order_id, amount, _, _ = self.orders[draw(st.integers(0, len(self.orders) - 1))]
                returned = draw(st.one_of(st.integers(1, max(1, amount)), st.just(max(1, amount)),
                                          st.integers(amount + 1, amount + 2_000_000)))
            else:
                order_id, returned = f"{pid}-O-unknown", draw(st.integers(0, 10_000))
            return self.ev("SaleReturned", ms, order_id=order_id, amount_cents=returned, reason="customer return")
        if kind == "deal":
            if self.deals and not draw(st.integers(0, 5)):
                deal_id = self.deals[draw(st.integers(0, len(self.deals) - 1))]     # duplicate_deal
            else:
                deal_id = f"{pid}-D{len(self.deals)}"
                self.deals.append(deal_id)
            return self.ev("DealRegistered", ms, deal_id=deal_id, customer_id=f"{pid}-C{draw(st.integers(0, 2))}",
                           expected_amount_cents=draw(st.integers(0, 5_000_000)))
        if kind == "deal_close":
            if self.deals and draw(st.integers(0, 5)):
                deal_id = self.deals[draw(st.integers(0, len(self.deals) - 1))]
            else:
                deal_id = f"{pid}-D-unknown"
            return self.ev("DealClosed", ms, deal_id=deal_id, outcome=draw(st.sampled_from(["won", "lost"])))
        if kind == "training":
            return self.ev("TrainingCompleted", ms, course_id=draw(st.sampled_from(["K1", "K2", "K3"])),
                           certification=draw(st.booleans()))
        if kind == "marketing":
            return self.ev("MarketingActivityCompleted", ms, activity_id=f"{pid}-A{draw(st.integers(0, 3))}",
                           activity_type=draw(st.sampled_from(ACTIVITY_TYPES)))
        if kind == "redemption":
            points = draw(REDEEM_POINTS)
            return self.ev("RedemptionRequested", ms, redemption_id=f"{pid}-R{draw(st.integers(0, 4))}",
                           reward=draw(st.sampled_from(REWARDS)), points=points)
        if kind == "adjustment":
            points = draw(ADJUST_POINTS)
            return self.ev("PointsAdjusted", ms, adjustment_id=f"{pid}-J{draw(st.integers(0, 5))}", points=points,
                           reason="goodwill", approved_by="manager-1")
        if kind == "redelivery":
            if not self.events:
                return None
            return dict(self.events[draw(st.integers(0, len(self.events) - 1))])     # same event_id
        if kind == "offboard":
            if self.active:
                self.active = False
                return self.ev("PartnerOffboarded", ms, reason="contract ended")
            return self.enrol(ms)                                                     # re-enrolment
        if kind == "guess_resolve":
            trigger = self.events[draw(st.integers(0, len(self.events) - 1))]["event_id"]
            return self.resolve(draw, ms, f"{draw(st.sampled_from(ALERT_TYPES))}:{pid}:{trigger}")
        raise AssertionError(kind)

    def sale(self, draw: Any, ms: int, month: int) -> dict[str, Any]:
        pid = self.pid
        mode = draw(st.sampled_from(["new", "new", "new", "near_duplicate", "duplicate_order", "late"]))
        if mode == "late":
            ms = month_start(month) - draw(st.integers(1, 40)) * DAY
        amount = draw(AMOUNTS)
        customer = f"{pid}-C{draw(st.integers(0, 2))}"
        if self.self_dealing and not draw(st.integers(0, 9)):
            customer = pid                                  # self_dealing: the seller's own partner id
        sku = draw(st.sampled_from(["S1", "S2"]))
        order_id = f"{pid}-O{len(self.orders)}"
        if mode == "near_duplicate" and self.orders:
            _, amount, customer, sku = self.orders[-1]      # new order, same customer, sku and amount
        if mode == "duplicate_order" and self.orders:
            order_id, amount, customer, sku = self.orders[draw(st.integers(0, len(self.orders) - 1))]
        else:
            self.orders.append((order_id, amount, customer, sku))
        fields: dict[str, Any] = {
            "order_id": order_id, "customer_id": customer, "sku": sku,
            "category": draw(st.sampled_from(CATEGORIES)),
            "quantity": draw(QUANTITIES),
            "amount_cents": amount, "currency": "USD",
        }
        deal = draw(st.integers(0, 3))
        if deal == 1 and self.deals:
            fields["deal_id"] = self.deals[draw(st.integers(0, len(self.deals) - 1))]
        elif deal == 2:
            fields["deal_id"] = f"{pid}-D-unknown"
        return self.ev("SaleRecorded", ms, **fields)

    def resolve(self, draw: Any, ms: int, alert_id: str) -> dict[str, Any]:
        return self.ev("AlertResolved", ms, alert_id=alert_id,
                       decision=draw(st.sampled_from(["dismissed", "confirmed"])), analyst="analyst-1")


def close_event(month: int, n: int) -> dict[str, Any]:
    return {"event_id": f"close-{period_of(month)}-{n}", "event_type": "PeriodClosed", "partner_id": "*",
            "occurred_at": iso(month_start(month + 1)), "source": "prop", "period": period_of(month)}


@dataclass
class Scenario:
    """Per-partner event lists per segment; after each segment, the global events (period closes)."""
    pids: list[str]
    segments: list[dict[str, list[dict[str, Any]]]]
    barriers: list[list[dict[str, Any]]]

    def events(self, rnd: random.Random) -> list[dict[str, Any]]:
        """One interleaving: each partner's order kept, each barrier between its segments."""
        out: list[dict[str, Any]] = []
        for segment, barrier in zip(self.segments, self.barriers, strict=True):
            queues = {pid: list(evs) for pid, evs in segment.items() if evs}
            while queues:
                pid = rnd.choices(sorted(queues), weights=[len(queues[p]) for p in sorted(queues)])[0]
                out.append(queues[pid].pop(0))
                if not queues[pid]:
                    del queues[pid]
            out += barrier
        return out


def lines_of(events: list[dict[str, Any]]) -> list[str]:
    return [json.dumps(e) for e in events]


@st.composite
def scenarios(draw: Any, self_dealing: bool = True) -> Scenario:
    pids = list(PARTNERS[: draw(st.integers(1, len(PARTNERS)))])
    first = FIRST_MONTH + draw(st.integers(0, 5))               # 2026-06 .. 2026-11: the SPIFF is Oct-Dec
    months = list(range(first, first + draw(st.integers(1, 5))))
    gens = {pid: PartnerGen(pid, self_dealing) for pid in pids}
    segments: list[dict[str, list[dict[str, Any]]]] = []
    barriers: list[list[dict[str, Any]]] = []
    unclosed: list[int] = []
    for i, month in enumerate(months):
        segment: dict[str, list[dict[str, Any]]] = {}
        for pid, gen in gens.items():
            evs = []
            if i == 0:       # enrolment first; sometimes months before (channel-stuffing history, velocity)
                before = draw(st.sampled_from([0, 3 * DAY, 40 * DAY, 100 * DAY, 200 * DAY]))
                evs.append(gen.enrol(month_start(month) - before))
            segment[pid] = evs + gen.month(draw, month)
        segments.append(segment)
        barrier: list[dict[str, Any]] = []
        unclosed.append(month)
        mode = draw(st.sampled_from(["close", "close", "close", "none", "redelivered", "again"]))
        if mode != "none":
            for m in unclosed:                    # a skipped month is closed late, before this one
                barrier.append(close_event(m, 1))
            unclosed = []
            if mode == "redelivered":
                barrier.append(dict(barrier[-1]))                  # same event_id: ignored duplicate
            if mode == "again":
                barrier.append(close_event(month, 2))              # new id: period_already_closed
        barriers.append(barrier)

    # A last segment: resolve alerts that a first replay raised, among more random events.
    doc = replay_lines(lines_of(Scenario(pids, segments, barriers).events(random.Random(0))))
    tail_month = months[-1] + 1
    tail: dict[str, list[dict[str, Any]]] = {}
    for pid, gen in gens.items():
        evs = gen.month(draw, tail_month, max_events=5)
        for alert in doc["alerts"]:
            if alert["partner_id"] != pid or alert["status"] != "open" or not draw(st.booleans()):
                continue
            ms = month_start(tail_month) + draw(st.integers(0, 20)) * DAY
            at = draw(st.integers(0, len(evs)))
            evs.insert(at, gen.resolve(draw, ms, alert["alert_id"]))
            if not draw(st.integers(0, 4)):
                evs.insert(draw(st.integers(at + 1, len(evs))), gen.resolve(draw, ms, alert["alert_id"]))
        evs += gen.month(draw, tail_month, max_events=3)
        tail[pid] = evs
    segments.append(tail)
    barriers.append([])
    return Scenario(pids, segments, barriers)


def file_scenarios(**kw: Any) -> st.SearchStrategy[tuple[Scenario, list[str]]]:
    return st.tuples(scenarios(**kw), st.randoms(use_true_random=False)).map(
        lambda sr: (sr[0], lines_of(sr[0].events(sr[1]))))


# ---------------------------------------------------------------------------------------------- reading

def sha256_of(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "hash"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                     ensure_ascii=False).encode("utf-8")).hexdigest()


def by_partner(entries: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in entries:
        out[e["partner_id"]].append(e)
    return out


def summary(doc_partner: dict[str, Any]) -> dict[str, Any]:
    return {k: doc_partner[k] for k in ("tier", "points", "rebate_cents", "ledger_entries", "ledger_head")}


def state_summary(st_: Any) -> dict[str, Any]:
    """The replay document's view of a live PartnerState."""
    p, r = st_.balances["points"], st_.balances["rebate"]
    return {"tier": st_.tier, "points": {"available": p[0], "held": p[1]},
            "rebate_cents": {"available": r[0], "held": r[1]}, "ledger_entries": st_.seq, "ledger_head": st_.head}


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------- 1 and 5

@SETTINGS
@given(file_scenarios())
def test_balances_are_the_sum_of_a_verifiable_hash_chain(case):
    scenario, lines = case
    doc = replay_lines(lines, include_ledger=True)
    check_result(doc, n_lines=len(lines))            # builders' own black-box invariants too
    ledgers = by_partner(doc["ledger"])
    assert set(doc["partners"]) == set(scenario.pids)
    assert set(ledgers) <= set(doc["partners"])
    for pid, partner in doc["partners"].items():
        entries = ledgers.get(pid, [])
        sums = {a: [0, 0] for a in ACCOUNTS}
        prev = ZERO_HASH
        for n, e in enumerate(entries, 1):
            assert e["seq"] == n and e["entry_id"] == f"{pid}:{n}"
            assert e["prev_hash"] == prev
            assert e["hash"] == sha256_of(e), f"{pid}#{n}: hash is not sha256 of the canonical form"
            prev = e["hash"]
            sums[e["account"]][0] += e["delta_available"]
            sums[e["account"]][1] += e["delta_held"]
            assert [e["balance_available"], e["balance_held"]] == sums[e["account"]]
        assert partner["points"] == {"available": sums["points"][0], "held": sums["points"][1]}, pid
        assert partner["rebate_cents"] == {"available": sums["rebate"][0], "held": sums["rebate"][1]}, pid
        assert partner["ledger_entries"] == len(entries), pid
        assert partner["ledger_head"] == (entries[-1]["hash"] if entries else ZERO_HASH), pid
        assert verify_chain(entries) == [], pid


@SETTINGS
@given(file_scenarios())
def test_every_ledger_number_is_an_int(case):
    _, lines = case
    doc = replay_lines(lines, include_ledger=True)
    for e in doc["ledger"]:
        for key in ("seq", "delta_available", "delta_held", "balance_available", "balance_held"):
            assert is_int(e[key]), f"{key} of {e['entry_id']} is {type(e[key]).__name__} {e[key]!r}"
    for pid, partner in doc["partners"].items():
        for account in ("points", "rebate_cents"):
            for side in ("available", "held"):
                value = partner[account][side]
                assert is_int(value), f"{pid} {account}.{side} is {type(value).__name__} {value!r}"
        assert is_int(partner["ledger_entries"])


# ---------------------------------------------------------------------------------------------- 2

@SETTINGS
@given(file_scenarios())
def test_replaying_the_same_log_twice_gives_the_same_document(case):
    _, lines = case
    first = replay_lines(lines, include_ledger=True)
    second = replay_lines(list(lines), include_ledger=True)
    assert canonical_json(first) == canonical_json(second)


# ---------------------------------------------------------------------------------------------- 3

@SETTINGS
@given(scenarios(), st.randoms(use_true_random=False), st.randoms(use_true_random=False))
def test_the_interleaving_of_partners_does_not_matter(scenario, rnd_a, rnd_b):
    events_a, events_b = scenario.events(rnd_a), scenario.events(rnd_b)
    doc_a = replay_lines(lines_of(events_a), include_ledger=True)
    doc_b = replay_lines(lines_of(events_b), include_ledger=True)
    assert set(doc_a["partners"]) == set(doc_b["partners"]) == set(scenario.pids)
    ledger_a, ledger_b = by_partner(doc_a["ledger"]), by_partner(doc_b["ledger"])
    for pid in scenario.pids:
        assert summary(doc_a["partners"][pid]) == summary(doc_b["partners"][pid]), pid
        assert ledger_a.get(pid, []) == ledger_b.get(pid, []), pid
        alerts_a = sorted((a["alert_id"], a["status"]) for a in doc_a["alerts"] if a["partner_id"] == pid)
        alerts_b = sorted((a["alert_id"], a["status"]) for a in doc_b["alerts"] if a["partner_id"] == pid)
        assert alerts_a == alerts_b, pid
    assert (sorted((r["event_id"], r["reason"]) for r in doc_a["rejections"])
            == sorted((r["event_id"], r["reason"]) for r in doc_b["rejections"]))
    assert doc_a["events_applied"] == doc_b["events_applied"]
    assert doc_a["events_ignored_duplicate"] == doc_b["events_ignored_duplicate"]


# ---------------------------------------------------------------------------------------------- 4

def recorded_log(lines: list[str]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The file replay, recording every event stage 1 applied, stage-2 findings included, in order:
    the log a live system with an instant stage 2 would have recorded."""
    replayer = Replayer(PROGRAM)
    applied: list[dict[str, Any]] = []
    inner = replayer.stage1.apply

    def recording_apply(store, scope, event):  # type: ignore[no-untyped-def]
        applied.append(event)
        return inner(store, scope, event)

    replayer.stage1.apply = recording_apply  # type: ignore[method-assign]
    for line in lines:
        replayer.feed(from_json_line(line))
    return applied, replayer.document(include_ledger=True)


class LivePartition:
    """One partition of the live stage 1 over the real record layout (`partition_state.py`): the
    records live in a dict, as in the changelog and RocksDB. A simulated crash writes only a random
    prefix of a batch's records (what reached the changelog before the worker died, which a
    recovery copies into the store), and the worker restarts from the records alone."""

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.store: dict[bytes, bytes] = {}
        self.part = PartitionState(partition, self.store)
        self.log: list[bytes] = []
        self.folded = 0                         # messages handed to the fold so far
        self.batches: list[list[Message]] = []
        self.records: list[Any] = []

    def message(self, offset: int) -> Message:
        return Message(topics.PARTNER_EVENTS, self.partition, offset, self.log[offset])

    @property
    def meta(self) -> Any:
        return self.part.meta

    def fold(self, messages: list[Message], crash: random.Random | None = None) -> Any:
        result = fold_partition(LIVE_STAGE1, self.part, messages)
        records = self.part.batch_records(result.dirty)
        if crash is None:
            self.store.update(records)
            self.part.committed(result.dirty)
        else:
            self.store.update(records[:crash.randint(0, len(records))])
            self.part = PartitionState(self.partition, self.store)      # the restarted worker
            self.part.check()
        return result

    def states(self) -> dict[str, Any]:
        fresh = PartitionState(self.partition, self.store)
        return {pid: state_summary(fresh.load(pid)) for pid in fresh.member_ids}


def fold_live(log: list[dict[str, Any]], pids: list[str], n_partitions: int,
              rnd: random.Random) -> dict[int, LivePartition]:
    """Encode the log with Avro into partitions (partners by index, PeriodClosed into every one) and
    fold each partition in random batches. Now and then a batch crashes after its outputs were
    delivered, with only part of its state records written, and is folded again by the restarted
    worker: outputs repeat (with the same ids and content) and nothing is lost."""
    parts = {p: LivePartition(p) for p in range(n_partitions)}
    part_of = {pid: i % n_partitions for i, pid in enumerate(pids)}
    for event in log:
        data = encode(event)
        targets = list(parts) if event["event_type"] == "PeriodClosed" else [part_of[event["partner_id"]]]
        for p in targets:
            parts[p].log.append(data)
    pending = [p for p in parts.values() if p.log]
    while pending:
        part = rnd.choice(pending)
        size = rnd.choice([1, 2, 3, 5, 8, 40, 1000])
        batch = [part.message(o) for o in range(part.folded, min(len(part.log), part.folded + size))]
        beyond = part.folded + len(batch) + 1          # leaves out at least one offset
        if rnd.random() < 0.15 and beyond < len(part.log):
            # stale messages from a later fetch (delivered after a seek back) follow the batch: the
            # fold must apply the contiguous part only and say where it jumped
            jump = rnd.randint(beyond, len(part.log) - 1)
            result = part.fold(batch + [part.message(o) for o in range(jump, min(len(part.log), jump + 3))])
            assert result.jumped_to == jump, "the fold did not stop at the first offset beyond watermark + 1"
            assert part.meta.watermark == part.folded + len(batch) - 1
        elif rnd.random() < 0.2:
            # a crash after the outputs were delivered, with some of the batch's state records
            # written: the restarted worker folds the batch again from what was committed
            crashed = part.fold(batch, crash=rnd)
            part.records += crashed.records           # outputs are delivered before any state
            batch = batch[:rnd.randint(1, len(batch))]   # the next batches end elsewhere
            result = part.fold(batch)
        else:
            result = part.fold(batch)
        part.records += result.records
        part.batches.append(batch)
        part.folded = part.meta.watermark + 1      # after a crash it may be ahead of the batch
        pending = [p for p in parts.values() if p.folded < len(p.log)]
    return parts


def assert_live_equals_file(parts: dict[int, LivePartition], doc: dict[str, Any], pids: list[str]) -> None:
    states: dict[str, Any] = {}
    for part in parts.values():
        states.update(part.states())
    records = [r for part in parts.values() for r in part.records]
    assert sorted(states) == sorted(doc["partners"]) == sorted(pids)
    for pid in pids:
        assert states[pid] == summary(doc["partners"][pid]), pid
    entries: dict[str, Any] = {}
    for r in records:
        if r.topic == topics.POINTS_LEDGER:
            entry = json.loads(r.value)
            # a batch repeated after a crash repeats outputs: the same id, the same entry
            assert entries.setdefault(entry["entry_id"], entry) == entry, entry["entry_id"]
    live_ledger = by_partner(sorted(entries.values(), key=lambda e: (e["partner_id"], e["seq"])))
    file_ledger = by_partner(doc["ledger"])
    for pid in pids:
        assert live_ledger.get(pid, []) == file_ledger.get(pid, []), pid
    live_alerts: dict[str, str] = {}
    for r in records:
        if r.topic == topics.ANOMALY_ALERTS:
            alert = json.loads(r.value)
            live_alerts[alert["alert_id"]] = alert["status"]
    assert live_alerts == {a["alert_id"]: a["status"] for a in doc["alerts"]}
    live_rejections = {(json.loads(dict(r.headers)["rejection"])["event_id"], dict(r.headers)["reason"].decode())
                       for r in records if r.topic == topics.DLQ}
    assert live_rejections == {(r["event_id"], r["reason"]) for r in doc["rejections"]}


def assert_redeliveries_change_nothing(parts: dict[int, LivePartition], rnd: random.Random) -> None:
    before = {p: (part.states(), len(part.records)) for p, part in parts.items()}
    for part in parts.values():
        if not part.batches:
            continue
        # 1. a batch delivered again at the offsets already applied (restart before the commit)
        batch = rnd.choice(part.batches)
        result = part.fold(batch)
        assert result.skipped == len(batch)
        assert result.records == [] and result.outcomes == []
        # 2. a producer retry: the same events again, at new offsets, in random batches
        start = rnd.randrange(len(part.log))
        values = part.log[start: start + rnd.choice([1, 3, 10, len(part.log)])]
        while values:
            size = rnd.choice([1, 4, 1000])
            chunk, values = values[:size], values[size:]
            offsets = range(len(part.log), len(part.log) + len(chunk))
            part.log += chunk
            result = part.fold([part.message(o) for o in offsets])
            assert result.skipped == 0
            assert result.records == [], [vars(r) for r in result.records]
            assert [out.status for _, out in result.outcomes] == ["duplicate"] * len(chunk)
    after = {p: (part.states(), len(part.records)) for p, part in parts.items()}
    assert after == before


def assert_kafka_replay_equals_file(parts: dict[int, LivePartition], doc: dict[str, Any], pids: list[str]) -> None:
    """`replay --source kafka` of the partitions' logs (producer retries included) gives the file's result."""
    kafka_doc = replay_log({p: list(enumerate(part.log)) for p, part in parts.items()}, PROGRAM).document(
        include_ledger=True)
    assert sorted(kafka_doc["partners"]) == sorted(pids)
    kafka_ledger, file_ledger = by_partner(kafka_doc["ledger"]), by_partner(doc["ledger"])
    for pid in pids:
        assert summary(kafka_doc["partners"][pid]) == summary(doc["partners"][pid]), pid
        assert kafka_ledger.get(pid, []) == file_ledger.get(pid, []), pid
    assert ({a["alert_id"]: a["status"] for a in kafka_doc["alerts"]}
            == {a["alert_id"]: a["status"] for a in doc["alerts"]})
    assert ({(r["event_id"], r["reason"]) for r in kafka_doc["rejections"]}
            == {(r["event_id"], r["reason"]) for r in doc["rejections"]})


@SETTINGS
@given(file_scenarios(self_dealing=False), st.integers(1, 3), st.randoms(use_true_random=False))
def test_the_live_fold_equals_the_file_replay(case, n_partitions, rnd):
    scenario, lines = case
    events = [from_json_line(line) for line in lines]
    log, doc = recorded_log(lines)
    assert len(log) == len(events), "stage 2 found something in a stream without cross-partner interaction"
    assert canonical_json(doc) == canonical_json(replay_lines(lines, include_ledger=True))
    parts = fold_live(events, scenario.pids, n_partitions, rnd)
    assert_live_equals_file(parts, doc, scenario.pids)
    assert_redeliveries_change_nothing(parts, rnd)
    assert_kafka_replay_equals_file(parts, doc, scenario.pids)


@SETTINGS
@given(file_scenarios(self_dealing=True), st.integers(1, 3), st.randoms(use_true_random=False))
def test_the_live_fold_of_the_recorded_log_equals_the_file_replay(case, n_partitions, rnd):
    """With self-dealing sales (stage 2 finds them): the live fold of the log that a live system
    records (its stage-2 `AnomalyDetected` right after the trigger) equals the file replay."""
    scenario, lines = case
    log, doc = recorded_log(lines)
    assert canonical_json(doc) == canonical_json(replay_lines(lines, include_ledger=True))
    parts = fold_live(log, scenario.pids, n_partitions, rnd)
    assert_live_equals_file(parts, doc, scenario.pids)
    assert_redeliveries_change_nothing(parts, rnd)
    assert_kafka_replay_equals_file(parts, doc, scenario.pids)
