"""Partner state: everything the program needs to remember about one partner.

A partner's state depends only on that partner's events (and the stage-2 findings appended to its
log), so partners can be folded in any interleaving, on any worker. The state remembers every
`event_id` it has seen, which makes applying an event twice a no-op: the guard that keeps state and
Kafka offsets consistent however often the framework redelivers.

The state is two parts: a small core (standing, balances, tier, ledger head) and the history, the
`Entries` collections of `HISTORY_FIELDS`, which grow with every event and are only looked up by key
(see `history.py`), so that the live worker can store each entry as its own record.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .evolvable import Evolvable
from .history import Entries
from .ledger import ZERO_HASH


@dataclass
class Order(Evolvable):
    order_id: str
    event_id: str
    customer_id: str
    amount_cents: int
    points: int = 0            # awarded for the order after the cap: sale + deal bonus + SPIFF units
    returned_cents: int = 0    # capped at amount_cents
    clawed_back: int = 0       # points taken back by returns so far
    held: int = 0              # points of this order currently in `held`
    holders: list[str] = field(default_factory=list)   # open alerts holding it
    forfeited: bool = False

    @property
    def remaining(self) -> int:
        return self.points - self.clawed_back


@dataclass
class RebateRecord(Evolvable):
    period: str
    amount_cents: int
    held: int = 0
    holders: list[str] = field(default_factory=list)
    forfeited: bool = False


@dataclass
class Deal(Evolvable):
    deal_id: str
    customer_id: str
    event_id: str
    registered_ms: int
    status: str = "open"       # open, won, lost
    conflicted: bool = False


@dataclass
class Alert(Evolvable):
    alert_id: str
    alert_type: str
    severity: str
    trigger_event_id: str
    hold_order_id: str | None
    evidence: str
    occurred_ms: int
    status: str = "open"       # open, dismissed, confirmed
    holds: list[tuple[str, str]] = field(default_factory=list)   # ("order", order_id) / ("rebate", period)
    held_points: int = 0


@dataclass
class MonthStats(Evolvable):
    sale_points: int = 0       # cap usage: awarded sale points incl. deal bonus (held ones too)
    gross_cents: int = 0
    net_cents: int = 0
    returns_cents: int = 0
    last_days_gross_cents: int = 0
    cap_alerted: bool = False
    active: bool = False       # a sale, training or marketing event happened in this month
    certified: set[str] = field(default_factory=set)   # courses certified in this month


@dataclass
class SaleMark(Evolvable):
    """What the per-partner detectors need of an earlier sale."""
    occurred_ms: int
    order_id: str
    customer_id: str
    sku: str
    amount_cents: int
    sale_points: int           # SPEC 4 formula, before deal bonus and cap


#: The collections of `PartnerState` that grow with history; each entry is stored on its own live.
HISTORY_FIELDS = ("seen", "orders", "months", "courses", "activities", "deals", "deal_of_event",
                  "redemptions", "adjustments", "alerts", "closed_periods", "rebates", "sales",
                  "velocity_hours")


@dataclass
class PartnerState:
    partner_id: str
    enrolled: bool = False     # ever enrolled
    active: bool = False       # enrolled and not offboarded
    enrolled_ms: int = 0
    name: str = ""
    segment: str = ""
    region: str = ""
    seq: int = 0
    head: str = ZERO_HASH
    balances: dict[str, list[int]] = field(default_factory=lambda: {"points": [0, 0], "rebate": [0, 0]})
    tier: str = "registered"
    missed_reviews: int = 0
    spiff_units: dict[str, int] = field(default_factory=dict)           # bounded by the program's SPIFFs
    spiff_bonus_paid: set[str] = field(default_factory=set)
    # --- history (HISTORY_FIELDS): looked up by key only, never iterated
    seen: Entries[str, bool] = field(default_factory=Entries)           # event ids, applied or refused
    orders: Entries[str, Order] = field(default_factory=Entries)
    months: Entries[int, MonthStats] = field(default_factory=Entries)   # month number -> stats
    courses: Entries[str, bool] = field(default_factory=Entries)
    activities: Entries[str, bool] = field(default_factory=Entries)
    deals: Entries[str, Deal] = field(default_factory=Entries)
    deal_of_event: Entries[str, str] = field(default_factory=Entries)   # registering event id -> deal id
    redemptions: Entries[str, str] = field(default_factory=Entries)     # id -> decision
    adjustments: Entries[str, bool] = field(default_factory=Entries)
    alerts: Entries[str, Alert] = field(default_factory=Entries)
    closed_periods: Entries[str, bool] = field(default_factory=Entries)
    rebates: Entries[str, RebateRecord] = field(default_factory=Entries)
    sales: Entries[int, list[SaleMark]] = field(default_factory=Entries)   # UTC hour -> sales, by time
    velocity_hours: Entries[int, bool] = field(default_factory=Entries)

    def month(self, month: int) -> MonthStats:
        stats = self.months.get(month)
        if stats is None:
            stats = self.months[month] = MonthStats()
        return stats

    def available(self, account: str = "points") -> int:
        return self.balances[account][0]
