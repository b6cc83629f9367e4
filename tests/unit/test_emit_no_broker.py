"""`incentives emit` with no broker answering: a clear error and exit 1, not a traceback."""
from __future__ import annotations

import socket

from click.testing import CliRunner

from processor.cli.main import main

LINE = ('{"event_id":"e1","event_type":"PartnerEnrolled","partner_id":"P1","occurred_at":"2026-10-01T00:00:00Z",'
        '"name":"Acme","segment":"strategic","region":"emea"}\n')


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_emit_says_the_broker_does_not_answer(monkeypatch):
    monkeypatch.setenv("INCENTIVES_KAFKA_PORT", str(_closed_port()))
    result = CliRunner().invoke(main, ["emit", "-"], input=LINE)
    assert result.exit_code == 1, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exc_info
    assert "did not take the events" in result.output and "incentives dev up" in result.output
