"""``incentives replay``: the auditor's replay of a file or of the recorded Kafka log."""
from __future__ import annotations

import io
import json
import sys

import click

from processor.config import load_settings
from processor.domain.timeutil import parse_iso
from processor.programs import load_program


@click.command("replay")
@click.option("--source", required=True, metavar="FILE.jsonl|kafka",
              help="A JSON-lines file (or - for stdin), or 'kafka' for the recorded partner-events log.")
@click.option("--json", "as_json", is_flag=True, help="Print the SPEC section 6 document as JSON.")
@click.option("--until", metavar="TIMESTAMP", default=None,
              help="Only events with occurred_at <= TIMESTAMP (ISO-8601 UTC, e.g. 2026-10-31T23:59:59Z).")
@click.option("--verify", is_flag=True,
              help="(kafka) Compare every partner with ClickHouse's ledger and the worker's state; "
                   "exit 1 on any difference.")
@click.option("--worker-url", "worker_urls", multiple=True, metavar="URL",
              help="(--verify) A worker's web address; repeat for every worker of the group "
                   "(default: the local worker, http://127.0.0.1:$INCENTIVES_WEB_PORT).")
@click.option("--ledger", "include_ledger", is_flag=True, help="Include every ledger entry in the output.")
@click.option("--program", "program_path", default=None, help="Program file (default: $INCENTIVES_PROGRAM).")
@click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --source kafka: processes that read and fold the partitions in parallel "
                   "(the result is the same as with one).")
def replay(source: str, as_json: bool, until: str | None, verify: bool, worker_urls: tuple[str, ...],
           include_ledger: bool, program_path: str | None, jobs: int) -> None:
    """Fold the event log through the same domain core as the live agents; print the balances.

    With a file, no services are needed: both stages run in file order. With --source kafka,
    each partition of partner-events is replayed from its first offset, honouring the recorded
    AnomalyDetected events.

    \b
    Examples:
      incentives replay --source events.jsonl --json
      incentives replay --source events.jsonl --json --until 2026-10-31T23:59:59Z
      incentives replay --source kafka --verify
      incentives replay --source kafka --json --jobs 4
      incentives replay --source kafka --verify --worker-url http://10.0.0.5:6066 --worker-url http://10.0.0.6:6066
    """
    settings = load_settings()
    program = load_program(program_path or str(settings.program))
    try:
        until_ms = parse_iso(until) if until else None
    except ValueError:
        raise click.BadParameter(f"not an ISO-8601 timestamp: {until}", param_hint="--until") from None
    if source != "kafka":
        if verify:
            raise click.UsageError("--verify compares with the live system: use it with --source kafka")
        from processor.replay import replay_lines
        try:
            # a byte that is not UTF-8 reaches the codec as a lone surrogate and its line is refused
            # `undecodable` (listed in rejections), instead of a UnicodeDecodeError ending the replay
            stream = (io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8", errors="surrogateescape")
                      if source == "-" else open(source, encoding="utf-8", errors="surrogateescape"))  # noqa: SIM115
        except OSError as exc:
            raise click.BadParameter(f"{source}: {exc.strerror}", param_hint="--source") from None
        with stream:
            doc = replay_lines(stream, until=until_ms, program=program, include_ledger=include_ledger)
        _print(doc, as_json)
        return

    from processor import kafka_replay
    servers = settings.kafka_bootstrap_servers
    if jobs > 1:
        if sys.stderr.isatty():
            click.echo(f"reading and folding partner-events in {jobs} processes ...", err=True)
        doc, partitions = kafka_replay.replay_parallel(servers, program, until_ms, jobs=jobs,
                                                       include_ledger=include_ledger)
    else:
        if sys.stderr.isatty():
            with click.progressbar(length=0, label="reading partner-events", file=sys.stderr) as bar:
                log = kafka_replay.read_log(servers, on_progress=bar.update)
        else:
            log = kafka_replay.read_log(servers)
        doc, partitions = kafka_replay.replay_log(log, program, until_ms).document(include_ledger), len(log)
    if not verify:
        _print(doc, as_json)
        return
    problems = _verify(settings, doc, list(worker_urls) or [settings.web_url], partitions=partitions)
    report = {"verified": not problems, "differences": problems,
              "partners": len(doc["partners"]), "events_applied": doc["events_applied"]}
    if as_json:
        click.echo(json.dumps(report, indent=2, sort_keys=True))
    else:
        for p in problems:
            click.echo(p)
        click.echo(f"{'OK' if not problems else 'DIFFERENCES'}: {len(doc['partners'])} partners, "
                   f"{len(problems)} differences")
    sys.exit(1 if problems else 0)


def _verify(settings, doc, worker_urls: list[str], partitions: int) -> list[str]:  # type: ignore[no-untyped-def]
    from processor import kafka_replay
    problems: list[str] = []
    try:
        ch_view, chain_problems = kafka_replay.clickhouse_view(settings)
        problems += [f"clickhouse chain: {p}" for p in chain_problems]
        problems += kafka_replay.compare(doc["partners"], ch_view, "clickhouse",
                                         ("points", "rebate_cents", "ledger_entries", "ledger_head"))
    except Exception as exc:  # noqa: BLE001 - report, don't hide
        problems.append(f"clickhouse: cannot read the ledger: {exc}")
    live, worker_problems = kafka_replay.worker_view(worker_urls, max(partitions, settings.partitions))
    problems += worker_problems
    if not worker_problems:
        problems += kafka_replay.compare(doc["partners"], live, "worker",
                                         ("tier", "points", "rebate_cents", "ledger_entries", "ledger_head"))
    return list(problems)


def _print(doc, as_json: bool) -> None:  # type: ignore[no-untyped-def]
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
        return
    for pid, p in doc["partners"].items():
        click.echo(f"{pid:<16} {p['tier']:<10} points {p['points']['available']:>10} "
                   f"(held {p['points']['held']})  rebate {p['rebate_cents']['available']:>10} cents "
                   f"(held {p['rebate_cents']['held']})  entries {p['ledger_entries']}")
    click.echo(f"{len(doc['alerts'])} alerts, {len(doc['rejections'])} rejections, "
               f"{doc['events_applied']} events applied, {doc['events_ignored_duplicate']} duplicates ignored")
