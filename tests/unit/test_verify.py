"""`incentives verify`'s check on real ledger entries (the worked program folded by the replay):
a clean ledger verifies; one amount changed, one entry deleted and two entries swapped are each
found at their partner and seq, and nothing else is reported."""
from __future__ import annotations

import copy
import json

from processor.domain.ledger import chain_breaks, verify_chain
from processor.replay import replay_lines
from processor.verify import check, topic_entries, verify_topic
from tests.kpi_worked import WORKED


def ledger() -> list[dict]:
    entries = replay_lines(WORKED, include_ledger=True)["ledger"]
    return sorted(entries, key=lambda e: (e["partner_id"], e["seq"]))


def chain(entries: list[dict], partner: str) -> list[dict]:
    return [e for e in entries if e["partner_id"] == partner]


def test_a_clean_ledger_verifies():
    entries = ledger()
    report = check(entries, "test")
    assert report.verified and report.breaks == []
    assert report.partners == 4 and report.entries == len(entries) > 10


def test_three_tamperings_three_found_at_their_partner_and_seq():
    entries = copy.deepcopy(ledger())
    p1, p2 = chain(entries, "P1"), chain(entries, "P2")
    assert len(p1) >= 4 and len(p2) >= 3
    p1[2]["delta_available"] += 1                      # one amount changed: P1 seq 3
    entries.remove(p2[1])                              # one entry deleted: P2 seq 2
    i = entries.index(p1[3])                           # two entries swapped: P1 seq 4 and 5
    entries[i], entries[i + 1] = entries[i + 1], entries[i]
    found = {(b.partner_id, b.seq) for b in check(entries, "test").breaks}
    assert ("P1", 3) in found and ("P2", 2) in found and {("P1", 4), ("P1", 5)} & found
    assert {partner for partner, _ in found} == {"P1", "P2"}
    assert found <= {("P1", 3), ("P2", 2), ("P1", 4), ("P1", 5)}


def test_one_changed_amount_is_one_place():
    p3 = copy.deepcopy(chain(ledger(), "P3"))
    p3[0]["delta_available"] -= 5
    assert [seq for seq, _ in chain_breaks(p3)] == [1, 1]        # its hash, and its balance arithmetic
    assert all(text.startswith("P3#1: ") for text in verify_chain(p3))


def test_a_missing_entry_is_reported_once():
    p1 = chain(ledger(), "P1")
    breaks = chain_breaks(p1[:1] + p1[2:])
    assert breaks == [(2, "seq 2 missing (the next entry is seq 3)")]


def test_the_topic_form_counts_identical_copies_once_and_flags_a_different_one():
    entries = ledger()
    records = [json.dumps(e).encode() for e in entries]
    log = {0: list(enumerate(records + records[:3]))}                # redelivered copies
    assert verify_topic(log).verified
    forged = dict(entries[0], explanation="forged")
    log[0].append((len(log[0]), json.dumps(forged).encode()))
    log[0].append((len(log[0]), b"not json"))
    report = verify_topic(log)
    problems = [(b.partner_id, b.seq) for b in report.breaks]
    assert (entries[0]["partner_id"], entries[0]["seq"]) in problems and ("", 0) in problems
    assert len(topic_entries(log, partner="P2")) == len(chain(entries, "P2"))
