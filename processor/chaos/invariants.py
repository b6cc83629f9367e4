"""Invariants of what ClickHouse holds, true at every moment of a run, not only at the end.

The sink writes each partner's ledger entries in seq order, one INSERT per batch, so at any moment
ClickHouse holds a prefix of every partner's chain (copies of a redelivered batch are identical):
- seq has no gaps: a partner's entries are 1..max(seq);
- balances: every account's latest balances after equal the sum of its deltas;
- no redemption was accepted against points the partner did not have: every `redeem` entry leaves
  available points at 0 or more;
- every hash chain verifies (`processor.verify`; the slowest check, so it can be skipped).
`check` returns the violations found now; `Watch` runs it every few seconds in a thread. (One
INSERT that spans several month partitions becomes several parts, so a reader can, for a moment,
see a partner's later entries before its earlier ones: `Watch` counts a violation only when it
lasts.)
"""
from __future__ import annotations

import threading
from typing import Any

from processor.verify import verify_clickhouse
from projections.migrate import check_identifier, client

SEQ_GAPS = """
SELECT partner_id, count() AS entries, max(seq) AS last
FROM {db}.ledger FINAL GROUP BY partner_id HAVING entries != last LIMIT 20"""

BALANCES = """
SELECT partner_id, account, sum(delta_available) AS avail, sum(delta_held) AS held,
       argMax(balance_available, seq) AS last_avail, argMax(balance_held, seq) AS last_held
FROM {db}.ledger FINAL GROUP BY partner_id, account
HAVING avail != last_avail OR held != last_held LIMIT 20"""

OVERDRAWN = """
SELECT partner_id, seq, balance_available FROM {db}.ledger FINAL
WHERE account = 'points' AND kind = 'redeem' AND balance_available < 0 LIMIT 20"""


def check(settings: Any, *, chains: bool = True) -> list[str]:
    """The invariants that do not hold right now (empty: all hold)."""
    db = check_identifier(settings.clickhouse_database)
    conn = client(settings)
    try:
        problems = [f"{p}: {n} entries but seq up to {last} (a gap)"
                    for p, n, last in conn.execute(SEQ_GAPS.format(db=db))]
        problems += [f"{p} {acct}: deltas sum to {a}/{h}, latest balances say {la}/{lh}"
                     for p, acct, a, h, la, lh in conn.execute(BALANCES.format(db=db))]
        problems += [f"{p}#{seq}: a redemption left available points at {bal}"
                     for p, seq, bal in conn.execute(OVERDRAWN.format(db=db))]
    finally:
        conn.disconnect()
    if chains:
        problems += [f"{b.partner_id}#{b.seq}: {b.problem}" for b in verify_clickhouse(settings).breaks[:20]]
    return problems


class Watch:
    """Check the invariants every `interval` seconds until stopped. A violation counts when it is
    seen by `persist` checks in a row: a sink killed half way through an INSERT that spans several
    month partitions leaves a gap until its batch is delivered again, which is how the design heals.
    A check that fails because ClickHouse is down is not a violation: it is counted apart."""

    def __init__(self, settings: Any, interval: float = 5.0, chains: bool = True, persist: int = 3) -> None:
        self.settings, self.interval, self.chains, self.persist = settings, interval, chains, persist
        self.violations: list[str] = []
        self.transient = 0
        self.checks = 0
        self.unreachable = 0
        self._streak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-invariants", daemon=True)

    def start(self) -> Watch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                found = check(self.settings, chains=self.chains)
            except Exception:  # noqa: BLE001 - ClickHouse down (a fault) or busy: try again later
                self.unreachable += 1
                continue
            self.checks += 1
            healed = set(self._streak) - set(found)
            self.transient += len(healed)
            self._streak = {v: self._streak.get(v, 0) + 1 for v in found}
            self.violations += [v for v, n in self._streak.items() if n >= self.persist and v not in self.violations]
