"""`incentives bench --what replays`: the two offline replays of `incentives replay`, timed on the
same N simulated events.

Why: the replays are how an auditor (and `--verify`) recomputes every balance from the log, so how
long they take for a log of a given length is a figure of its own (issue 14 item 1). Each is timed
through the code the CLI runs, not a copy of it:

- `replay --source FILE`: the first N events of `simulate(seed, partners)` written as JSON lines
  (`processor.codec.to_json_line`, as `incentives simulate` writes them) to a temporary file, then
  `processor.replay.replay_lines` over the open file (both stages, in file order), which returns
  the SPEC section 6 document. Reading the file and parsing each line are part of the figure;
  writing it, loading the program and printing the document are not.
- `replay --source kafka`: `processor.kafka_replay.read_log` over the scratch input topic that the
  ceiling (`bench_ceiling.py`) filled with the same events (Avro, keyed by partner, a
  `PeriodClosed` in every partition), then `replay_log` (stage 1 per partition in offset order,
  stage 2 not re-run) and the document. `read_log` stops after three empty polls of 500 ms at the
  end of the log (the broker's end offsets cannot be trusted, STACK.md), so up to ~1.5 s of its
  figure is that wait: it is reported as a step of its own, and the fold as another.

Figures only, nothing asserted.
"""
from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from processor.bench import Report, Timer, _load, generate, peak_rss_mb
from processor.bench_ceiling import ScratchLog
from processor.codec import to_json_line

Echo = Callable[[str], None]

DEFAULT_REPLAY_EVENTS = 100_000


def _quiet(_line: str) -> None:
    pass


def write_jsonl(path: Path, n: int, *, seed: int = 7, partners: int = 500) -> int:
    """The first `n` simulated events as JSON lines in `path`; the number written."""
    events = generate(n, seed, partners)
    with path.open("w", encoding="utf-8") as f:
        for event in events:
            f.write(to_json_line(event))
            f.write("\n")
    return len(events)


def file_replay(report: Report, path: Path, events: int, program_path: str | None = None) -> dict[str, Any]:
    """Time `replay_lines` over the file at `path` (`events` lines) as `incentives replay --source
    FILE` runs it; adds the figure to `report` and returns the document."""
    from processor.programs import load_program
    from processor.replay import replay_lines

    program = load_program(program_path)
    with Timer() as t, path.open(encoding="utf-8") as stream:
        doc = replay_lines(stream, program=program)
    report.timed("replay --source FILE (replay_lines)", events, t,
                 f"both stages, {doc['events_applied']:,} applied, {len(doc['partners']):,} partners")
    return doc


def kafka_replay(report: Report, log: ScratchLog, program_path: str | None = None) -> dict[str, Any]:
    """Time `incentives replay --source kafka`'s functions over the scratch input topic of `log`;
    adds the figures to `report` and returns the document."""
    from processor import kafka_replay as kr
    from processor.programs import load_program

    program = load_program(program_path)
    with Timer() as read:
        records = kr.read_log(log.bootstrap, topic=log.input_topic)
    messages = sum(len(v) for v in records.values())
    with Timer() as fold:
        doc = kr.replay_log(records, program, topic=log.input_topic).document()
    total = Timer()
    total.wall, total.cpu, total.gc = read.wall + fold.wall, read.cpu + fold.cpu, read.gc + fold.gc
    report.timed("replay --source kafka: read_log", log.events, read,
                 f"{messages:,} msgs; ends with ~1.5 s of empty polls")
    report.timed("replay --source kafka: replay_log + document", log.events, fold,
                 f"stage 1 per partition, {doc['events_applied']:,} applied")
    report.timed("replay --source kafka (both)", log.events, total, "what the CLI runs")
    report.facts["kafka_messages_read"] = messages
    return doc


def run_replays(n: int = DEFAULT_REPLAY_EVENTS, *, seed: int = 7, partners: int = 500,
                program_path: str | None = None, log: ScratchLog | None = None,
                echo: Echo = _quiet) -> Report:
    """The file replay of the first `n` events of `simulate(seed, partners)`, and, given the
    scratch log the ceiling filled with the same events, the Kafka replay of it."""
    report = Report("replays")
    with tempfile.TemporaryDirectory(prefix="incentives-bench-") as tmp:
        path = Path(tmp) / "events.jsonl"
        echo(f"replays: writing {n:,} simulated events as JSON lines ...")
        with Timer() as t:
            n = write_jsonl(path, n, seed=seed, partners=partners)
        report.timed("write the JSONL file (setup)", n, t, f"{path.stat().st_size / 1e6:,.1f} MB; not a figure")
        echo("replays: replay --source FILE ...")
        doc = file_replay(report, path, n, program_path)
    report.facts.update({"events": n, "file_events_applied": doc["events_applied"],
                         "file_alerts": len(doc["alerts"])})
    if log is not None:
        echo(f"replays: replay --source kafka over {log.input_topic} ...")
        kdoc = kafka_replay(report, log, program_path)
        report.facts.update({"kafka_events": log.events, "kafka_events_applied": kdoc["events_applied"]})
    report.facts.update({"peak_rss_mb": round(peak_rss_mb(), 1), "load_average": _load()})
    return report
