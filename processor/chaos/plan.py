"""A chaos run's plan, from its seed alone: the messages to send and the faults to inject when.

Pure: the same seed, event count and faults always give the same plan, so a failing seed
reproduces. The stream is the simulator's (processor/simulation.py) with, on top, about 1% of its
events re-sent upstream later (the same bytes at a new offset: the processor must count each once)
and, with the `poison` fault, 0.1% poison messages of every kind (processor/chaos/poison.py).
With `schema-mix`, from a seeded moment between 40% and 60% of the stream, half of the
`SaleRecorded` events are written by a newer upstream writer, v2 (processor/chaos/schema_mix.py),
half of those with a `campaign_id`; its draws come from a generator of their own, so adding the
fault changes nothing else of the plan.
Faults are placed at seeded positions of the stream (a fraction of the messages sent).
"""
from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field

from processor import simulation
from processor.chaos import schema_mix
from processor.chaos.poison import KINDS, poison
from processor.codec import encode

FAULTS = ("worker-kill", "sink-kill", "clickhouse-down", "rebalance", "pause", "poison", "schema-mix",
          "broker-restart")
DEFAULT_FAULTS = ("worker-kill", "sink-kill", "clickhouse-down", "rebalance", "pause", "poison", "schema-mix")

# How many times each fault strikes: (short run, --full). A rebalance is one stop-and-start of the
# second worker; broker-restart always happens once, at the end (it empties the log).
STRIKES = {"worker-kill": (3, 20), "sink-kill": (2, 6), "clickhouse-down": (1, 1), "rebalance": (2, 10),
           "pause": (1, 2), "broker-restart": (1, 1)}
#: About how long one strike of each fault takes here (a worker's restart and recovery, a clean
#: stop and start, ClickHouse's 30 s outage...), measured by `--full --seed 42`: what `--full`
#: spreads its stream over, so that every strike happens while messages flow.
FAULT_SECONDS = {"worker-kill": 16, "sink-kill": 1, "clickhouse-down": 33, "rebalance": 20, "pause": 16,
                 "schema-mix": 0, "broker-restart": 0}
DUPLICATE_SHARE = 0.01
POISON_SHARE = 0.001
# schema-mix: the v2 writer starts at a seeded share of the stream's events in this range; from
# there it writes this share of the SaleRecorded events (the first one always), and this share of
# its messages name a campaign
SCHEMA_MIX_FROM = (0.4, 0.6)
SCHEMA_MIX_SHARE = 0.5
CAMPAIGN_SHARE = 0.5


@dataclass(frozen=True)
class Message:
    key: bytes
    value: bytes
    all_partitions: bool = False          # a PeriodClosed: one copy per partition
    poison_kind: str | None = None
    resent: bool = False
    v2_writer: bool = False               # a SaleRecorded written by the newer writer (schema-mix)


@dataclass(frozen=True)
class Strike:
    at: float                             # fraction of the messages sent when it strikes
    fault: str
    number: int                           # 1.. within its fault
    message: int | None = None            # a fault in the stream itself: the 1-based number of its first message


@dataclass
class Plan:
    seed: int
    messages: list[Message] = field(default_factory=list)
    strikes: list[Strike] = field(default_factory=list)
    v2_campaigns: int = 0                 # v2 messages with a campaign_id (re-sends not counted)
    full: bool = False                    # the long run's strikes (`--full`): ClickHouse down 30 s, not 10

    @property
    def poison_count(self) -> int:
        return sum(m.poison_kind is not None for m in self.messages)

    @property
    def v2_count(self) -> int:
        """Messages written by the newer SaleRecorded writer, upstream re-sends included."""
        return sum(m.v2_writer for m in self.messages)

    @property
    def resent_count(self) -> int:
        return sum(m.resent for m in self.messages)

    @property
    def fault_seconds(self) -> int:
        """About how long injecting every strike takes (`FAULT_SECONDS`), one after the other."""
        return sum(FAULT_SECONDS[s.fault] for s in self.strikes)

    def full_rate(self) -> float:
        """The `--full` send rate: the stream lasts as long as its faults take, from the first
        strike's moment to the last's (strikes fall between 10% and 85% of it), so each one hits a
        flowing stream; within 50 to 1,500 messages a second."""
        seconds = max(60.0, self.fault_seconds / 0.75)
        return min(1_500.0, max(50.0, len(self.messages) / seconds))


def parse_faults(text: str) -> tuple[str, ...]:
    """`worker-kill,poison` -> the faults, checked; `all` -> every fault."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if names == ("all",):
        return FAULTS
    unknown = [n for n in names if n not in FAULTS]
    if unknown:
        raise ValueError(f"unknown fault {', '.join(unknown)}; the faults are {', '.join(FAULTS)}")
    return names


def make_plan(seed: int, events: int, faults: tuple[str, ...], full: bool = False, partners: int = 60) -> Plan:
    rng = random.Random(seed)
    plan = Plan(seed, full=full)
    stream = list(itertools.islice(simulation.simulate(seed=seed, partners=partners, prefix=f"CHAOS{seed}"), events))
    sales = [e for e in stream if e["event_type"] == "SaleRecorded"]
    poison_at: set[int] = set()
    if "poison" in faults and sales:
        # 0.1%, and at least one of each kind
        poison_at = set(rng.sample(range(len(stream)), min(len(stream), max(len(KINDS), round(events * POISON_SHARE)))))
    mix = random.Random(f"schema-mix:{seed}")       # its own draws: the rest of the plan stays as it is
    mix_from = int(len(stream) * mix.uniform(*SCHEMA_MIX_FROM)) if "schema-mix" in faults else None
    first_v2: int | None = None                      # index in plan.messages
    pending: list[tuple[int, int, Message]] = []     # (due position, tie-break, re-send) as a heap
    for n, event in enumerate(stream):
        v2 = (mix_from is not None and n >= mix_from and event["event_type"] == "SaleRecorded"
              and (first_v2 is None or mix.random() < SCHEMA_MIX_SHARE))
        if v2:
            campaign = f"CAMP-{seed}-{mix.randrange(1, 10)}" if mix.random() < CAMPAIGN_SHARE else None
            plan.v2_campaigns += campaign is not None
            value = schema_mix.encode_v2(event, campaign)
            first_v2 = len(plan.messages) if first_v2 is None else first_v2
        else:
            value = encode(event)
        is_close = event["event_type"] == "PeriodClosed"
        message = Message(event["partner_id"].encode(), value, all_partitions=is_close, v2_writer=v2)
        plan.messages.append(message)
        if not is_close and rng.random() < DUPLICATE_SHARE:
            heapq.heappush(pending, (n + rng.randrange(20, 400), n,
                                     Message(message.key, value, resent=True, v2_writer=v2)))
        if n in poison_at:
            base = rng.choice(sales)
            kind = KINDS[plan.poison_count % len(KINDS)]
            bad = poison(kind, rng, {**base, "event_id": f"chaos-{seed}-poison-{n}"})
            plan.messages.append(Message(base["partner_id"].encode(), bad, poison_kind=kind))
        while pending and pending[0][0] <= n:
            plan.messages.append(heapq.heappop(pending)[2])
    plan.messages += [m for _, _, m in sorted(pending)]
    for fault in faults:
        if fault == "poison":
            continue
        if fault == "schema-mix" and mix_from is not None:
            # part of the stream: reported at its first v2 message (at the moment, if no sale came after it)
            at = first_v2 / len(plan.messages) if first_v2 is not None else mix_from / len(stream)
            plan.strikes.append(Strike(round(at, 4), fault, 1, message=None if first_v2 is None else first_v2 + 1))
            continue
        if fault == "broker-restart":
            plan.strikes.append(Strike(1.0, fault, 1))
            continue
        count = STRIKES[fault][1 if full else 0]
        for i, at in enumerate(sorted(rng.uniform(0.1, 0.85) for _ in range(count)), 1):
            plan.strikes.append(Strike(round(at, 4), fault, i))
    plan.strikes.sort(key=lambda s: (s.at, s.fault, s.number))
    return plan
