"""`incentives verify --source clickhouse` on the real ClickHouse 18.16: a clean ledger verifies
(exit 0); a copy with one amount changed, one row deleted and two rows swapped gives exit 1 with
each break at its partner and seq, and nothing reported for the untouched partner."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
import uuid

import pytest

from processor import projection_load
from processor.verify import LEDGER_COLUMNS
from projections.migrate import client, migrate
from tests.kpi_worked import WORKED

pytestmark = pytest.mark.integration


def run_verify(settings, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "processor.cli.main", "verify", *args],
                          env={**os.environ, **settings.as_env()}, capture_output=True, text=True, timeout=120)


@pytest.fixture
def ledger_db(clickhouse_settings):
    settings = dataclasses.replace(clickhouse_settings, clickhouse_database=f"verify_{uuid.uuid4().hex[:8]}")
    migrate(settings)
    projection_load.load(settings, projection_load.project_lines(WORKED), copies=2)
    yield settings
    conn = client(clickhouse_settings, database="default")
    conn.execute(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")
    conn.disconnect()


def test_clean_ledger_verifies(ledger_db):
    result = run_verify(ledger_db)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every chain holds" in result.stdout and "4 partners" in result.stdout


def test_changed_deleted_and_swapped_rows_are_found(ledger_db):
    db = ledger_db.clickhouse_database
    conn = client(ledger_db)
    cols = ", ".join(LEDGER_COLUMNS)

    def row(partner: str, seq: int) -> dict:
        values = conn.execute(f"SELECT {cols} FROM {db}.ledger FINAL WHERE partner_id = %(p)s AND seq = %(s)s",
                              {"p": partner, "s": seq})[0]
        return dict(zip(LEDGER_COLUMNS, values, strict=True))

    def write(*rows: dict) -> None:
        conn.execute(f"INSERT INTO {db}.ledger ({cols}) VALUES", [tuple(r.values()) for r in rows])

    try:
        changed = row("P1", 3)
        write({**changed, "delta_available": changed["delta_available"] + 100})       # the last copy wins FINAL
        conn.execute(f"ALTER TABLE {db}.ledger DELETE WHERE partner_id = 'P2' AND seq = 2")
        first, second = row("P3", 1), row("P3", 2)
        write({**second, "seq": 1, "entry_id": "P3:1"}, {**first, "seq": 2, "entry_id": "P3:2"})
        deadline = time.monotonic() + 60
        while conn.execute(f"SELECT count() FROM system.mutations WHERE database = '{db}' AND NOT is_done")[0][0]:
            assert time.monotonic() < deadline, "the DELETE mutation did not finish"
            time.sleep(0.2)
    finally:
        conn.disconnect()

    result = run_verify(ledger_db)
    assert result.returncode == 1, result.stdout + result.stderr
    breaks = [line.split()[2:5] for line in result.stdout.splitlines() if line.startswith("BREAK")]
    found = {(partner, int(seq.rstrip(":"))) for partner, _, seq in breaks}
    assert ("P1", 3) in found and ("P2", 2) in found and ("P3", 1) in found
    assert {partner for partner, _ in found} == {"P1", "P2", "P3"}              # P4 untouched: nothing
    assert found <= {("P1", 3), ("P2", 2), ("P3", 1), ("P3", 2)}
    assert run_verify(ledger_db, "--partner", "P4").returncode == 0
    as_json = run_verify(ledger_db, "--partner", "P1", "--json")
    assert as_json.returncode == 1 and '"verified": false' in as_json.stdout
