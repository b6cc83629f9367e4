"""`incentives whatif`: worked rule changes with the differences computed by hand, an identical
program that changes nothing, a tier threshold that moves exactly the partners near it, and the
command's errors and JSON document."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from processor.cli.main import main
from processor.domain.program import ProgramError
from processor.programs import DEFAULT_PROGRAM, load_program
from processor.replay import replay_lines
from processor.whatif import check_programs, compare, fold_lines
from tests.kpi_worked import WORKED, e, sale

DEFAULT_TEXT = DEFAULT_PROGRAM.read_text(encoding="utf-8")


def program_file(tmp_path: Path, version: str, *changes: tuple[str, str]) -> Path:
    text = re.sub(r'^version: "[^"]*"', f'version: "{version}"', DEFAULT_TEXT, count=1, flags=re.M)
    for old, new in changes:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / f"{version}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def run(lines: list[str], proposed_path: Path) -> dict:
    current, proposed = load_program(), load_program(proposed_path)
    return compare(fold_lines(lines, current), fold_lines(lines, proposed), current, proposed)


def test_software_multiplier_200_to_250_by_hand(tmp_path):
    doc = run(WORKED, program_file(tmp_path, "sw-250", ("software: 200", "software: 250")))
    # only P1 sold software: O2 $2,000 earned 2,000 x 200% = 4,000, now 5,000 (+1,000); its $500
    # return clawed back 4,000 x 1/4 = 1,000, now 1,250: available +1,000 - 250 = +750
    assert set(doc["differences"]) == {"P1"}
    p1 = doc["differences"]["P1"]
    assert p1["points_awarded"] == {"before": 35_000, "after": 36_000, "difference": 1_000}
    assert p1["points_available"]["difference"] == 750
    assert p1["rebate_cents_earned"]["difference"] == 0 and p1["tier"]["direction"] == "unchanged"
    assert doc["totals"]["points_awarded"]["difference"] == 1_000
    assert doc["totals"]["value_cents"]["difference"] == 1_000          # a point is worth a cent
    assert [m["partner_id"] for m in doc["movers"]["gainers"]] == ["P1"] and doc["movers"]["losers"] == []
    assert doc["alerts"]["appear"] == [] and doc["alerts"]["disappear"] == []
    assert doc["rules_version"] == {"before": "default-2026.12.1", "after": "sw-250"}


def test_a_higher_cap_pays_p2_in_full_and_its_cap_alert_disappears(tmp_path):
    doc = run(WORKED, program_file(tmp_path, "cap-200k", ("monthly_cap_points: 50000", "monthly_cap_points: 200000")))
    # P2's $100,000 sale earned 49,500 under the 50,000 cap (500 held for self-dealing used the rest):
    # without the cap it earns 100,000
    assert set(doc["differences"]) == {"P2"}
    assert doc["differences"]["P2"]["points_awarded"]["difference"] == 50_500
    assert [a["alert_id"] for a in doc["alerts"]["disappear"]] == ["earning_cap_reached:P2:p2-s6"]
    assert doc["alerts"]["appear"] == []


def test_an_identical_program_changes_nothing(tmp_path):
    doc = run(WORKED, program_file(tmp_path, "same-rules"))
    assert doc["differences"] == {}
    assert all(t["difference"] == 0 for name, t in doc["totals"].items() if isinstance(t, dict) and
               "difference" in t)
    assert doc["tiers"]["up"] == doc["tiers"]["down"] == 0 and doc["tiers"]["moves"] == []
    assert doc["movers"] == {"gainers": [], "losers": []}
    assert doc["alerts"]["appear"] == doc["alerts"]["disappear"] == []
    for pid, p in doc["partners"].items():
        # every entry carries its rules_version, so only the hash chain's head differs
        strip = [{k: v for k, v in side.items() if k != "ledger_head"} for side in (p["before"], p["after"])]
        assert strip[0] == strip[1], pid


def test_a_lower_silver_threshold_moves_exactly_the_partners_near_it(tmp_path):
    lines = []
    # trailing net sales $19,000 / $21,000 / $24,000 / $26,000; silver needs $25,000 now, $20,000 proposed
    for pid, dollars in (("N19", 19_000), ("N21", 21_000), ("N24", 24_000), ("N26", 26_000)):
        lines.append(e(f"{pid}-enrol", "PartnerEnrolled", pid, "2026-01-01T00:00:00Z", name=pid,
                       segment="long_tail", region="emea"))
        lines.append(sale(f"{pid}-s", pid, "2026-01-10T00:00:00Z", f"{pid}-O", dollars * 100))
    doc = run(lines, program_file(tmp_path, "silver-20k", ("silver: {net_sales_cents: 2500000",
                                                           "silver: {net_sales_cents: 2000000")))
    assert {pid: d["tier"] for pid, d in doc["differences"].items()} == {
        "N21": {"before": "registered", "after": "silver", "direction": "up"},
        "N24": {"before": "registered", "after": "silver", "direction": "up"}}
    assert (doc["tiers"]["up"], doc["tiers"]["down"], doc["tiers"]["unchanged"]) == (2, 0, 2)
    assert doc["tiers"]["moves"] == [{"from": "registered", "to": "silver", "partners": 2}]
    # the upgrade follows the sale, so no point changes: only tiers moved
    assert doc["totals"]["points_awarded"]["difference"] == 0


def test_the_proposed_program_must_be_a_new_version():
    with pytest.raises(ProgramError, match="version"):
        check_programs(load_program(), load_program())


def test_command_json_document_has_the_replay_objects(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(WORKED) + "\n", encoding="utf-8")
    proposed = program_file(tmp_path, "sw-250", ("software: 200", "software: 250"))
    result = CliRunner().invoke(main, ["whatif", "--program", str(proposed), "--source", str(log), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert set(doc) >= {"partners", "totals", "tiers", "movers", "alerts"}
    before = replay_lines(WORKED)["partners"]
    after = replay_lines(WORKED, program=load_program(proposed))["partners"]
    assert doc["partners"] == {pid: {"before": before[pid], "after": after[pid]} for pid in before}

    text = CliRunner().invoke(main, ["whatif", "--program", str(proposed), "--source", str(log)])
    assert text.exit_code == 0 and "Top gainers" in text.output and "P1" in text.output


def test_command_refuses_a_bad_program_naming_the_key(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(WORKED) + "\n", encoding="utf-8")
    bad = program_file(tmp_path, "bad", ("monthly_cap_points: 50000", "monthly_cap_points: lots"))
    result = CliRunner().invoke(main, ["whatif", "--program", str(bad), "--source", str(log)])
    assert result.exit_code == 2 and "monthly_cap_points" in result.output
    same = program_file(tmp_path, "default-2026.12.1")
    result = CliRunner().invoke(main, ["whatif", "--program", str(same), "--source", str(log)])
    assert result.exit_code == 2 and "version" in result.output


def test_the_recorded_log_path_folds_avro_records_per_partition(tmp_path):
    """`--source kafka` folds what `read_log` returns ({partition: [(offset, bytes)]}) with the Kafka
    replay's code; the same rule change gives the same difference as the file."""
    from processor.codec import encode, from_json_line
    from processor.whatif import fold_log

    log: dict[int, list[tuple[int, bytes]]] = {0: [], 1: []}
    for line in WORKED:
        event = from_json_line(line)
        partitions = [0, 1] if event["partner_id"] == "*" else [0 if event["partner_id"] in ("P1", "P3") else 1]
        for p in partitions:                       # a PeriodClosed is written into every partition
            log[p].append((len(log[p]), encode(event)))
    log[1].append((len(log[1]), b"\x00not avro"))  # a poison record is a rejection, in both folds
    current, proposed = load_program(), load_program(program_file(tmp_path, "sw-250", ("software: 200",
                                                                                     "software: 250")))
    before, after = fold_log(log, current), fold_log(log, proposed)
    assert len(before["rejections"]) == len(after["rejections"]) >= 1
    doc = compare(before, after, current, proposed)
    assert set(doc["differences"]) == {"P1"}
    assert doc["differences"]["P1"]["points_awarded"]["difference"] == 1_000
