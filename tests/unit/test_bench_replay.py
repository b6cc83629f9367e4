"""`incentives bench --what replays`, its file path without services: the file holds the simulated
events, and the figure is the replay the CLI runs (`replay_lines`) over that file. No timing is
asserted."""
from __future__ import annotations

import itertools
import json

from click.testing import CliRunner

from processor.bench import Report
from processor.bench_replay import file_replay, run_replays, write_jsonl
from processor.cli.bench import bench
from processor.codec import to_json_line
from processor.replay import replay_lines
from processor.simulation import simulate


def test_the_file_holds_the_simulated_events(tmp_path) -> None:
    path = tmp_path / "events.jsonl"
    assert write_jsonl(path, 300, seed=3, partners=10) == 300
    expected = [to_json_line(e) for e in itertools.islice(simulate(3, 10), 300)]
    assert path.read_text(encoding="utf-8").splitlines() == expected


def test_the_file_replay_is_the_cli_path(tmp_path) -> None:
    path = tmp_path / "events.jsonl"
    write_jsonl(path, 2_000, partners=20)
    report = Report("replays")
    doc = file_replay(report, path, 2_000)
    with path.open(encoding="utf-8") as f:
        assert doc == replay_lines(f)
    (figure,) = report.figures
    assert figure.events == 2_000 and figure.seconds > 0 and figure.rate > 0
    assert doc["events_applied"] > 0


def test_run_replays_without_a_broker_has_the_file_figure() -> None:
    report = run_replays(2_000, partners=20)
    names = [f.name for f in report.figures]
    assert names == ["write the JSONL file (setup)", "replay --source FILE (replay_lines)"]
    assert all(f.events == 2_000 and f.seconds > 0 for f in report.figures)
    assert report.facts["file_events_applied"] > 0
    assert "kafka_events" not in report.facts


def test_help_shows_an_example_per_new_part() -> None:
    out = CliRunner().invoke(bench, ["--help"]).output
    for part in ("ceiling", "replays", "state"):
        assert f"incentives bench --what {part}" in out, part
    assert "--state-events" in out


def test_the_state_part_runs_from_the_cli() -> None:
    result = CliRunner().invoke(bench, ["--what", "state", "--state-events", "300", "--partners", "5", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output.strip().splitlines()[-1])
    assert doc["state"]["after_300_bytes_per_partner_mean"] > 0
