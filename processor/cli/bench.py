"""``incentives bench``: measure the domain core and the live pipeline; print the figures."""
from __future__ import annotations

import sys
from collections.abc import Callable

import click
from clickhouse_driver import errors as ch_errors

from processor import bench as b
from processor import bench_ceiling as bc
from processor import bench_queries as bq
from processor import bench_state as bs
from processor.config import ConfigError, Settings, load_settings


@click.command("bench")
@click.option("--what", type=click.Choice(["core", "pipeline", "latency", "queries", "ceiling", "replays", "state",
                                           "all"]), default="all",
              show_default=True,
              help="core: the domain fold without services; pipeline: the running local stack; "
                   "latency: event to alert on the live feed, idle and under 1,000 events/s of background; "
                   "queries: the dashboards' queries on a large synthetic history in a scratch database; "
                   "ceiling: stage 1's work in a plain aiokafka loop (a) against a light-work loop (b), on a "
                   "broker; replays: replay --source FILE and --source kafka; state: stored state bytes per "
                   "partner and written per event, without services; "
                   "all: core, the pipeline if a worker answers, ceiling and replays if a broker answers, "
                   "then state.")
@click.option("--events", "events", type=click.IntRange(min=1), default=None,
              help=f"Simulated events per part [default: {b.DEFAULT_CORE_EVENTS:,} core, "
                   f"{b.DEFAULT_PIPELINE_EVENTS:,} pipeline, {bc.DEFAULT_CEILING_EVENTS:,} ceiling and replays]; "
                   f"(queries) rows of the events table [default: {bq.DEFAULT_EVENT_ROWS:,}].")
@click.option("--state-events", type=click.IntRange(min=10), default=bs.DEFAULT_STATE_EVENTS, show_default=True,
              help="(state) Events of the same partners folded; the state is measured after a tenth of them "
                   "and after all.")
@click.option("--partners", type=click.IntRange(min=2), default=None,
              help=f"Simulated partners [default: {b.DEFAULT_PARTNERS:,}; {bq.DEFAULT_PARTNERS:,} for queries; "
                   f"{bs.DEFAULT_STATE_PARTNERS:,} for state].")
@click.option("--ledger-rows", type=click.IntRange(min=1), default=bq.DEFAULT_LEDGER_ROWS, show_default=True,
              help="(queries) Rows of the synthetic ledger.")
@click.option("--months", type=click.IntRange(min=1, max=bq.MAX_MONTHS), default=bq.DEFAULT_MONTHS,
              show_default=True, help="(queries) Months of synthetic history, up to the current month.")
@click.option("--runs", type=click.IntRange(min=1), default=bq.DEFAULT_RUNS, show_default=True,
              help="(queries) Runs of each query (the median is reported).")
@click.option("--keep", is_flag=True, help="(queries) Keep the scratch database bench_queries_<hex> afterwards.")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the simulation.")
@click.option("--batch", type=click.IntRange(min=1), default=b.DEFAULT_BATCH, show_default=True,
              help="(core) Messages per fold_partition batch, per partition, like the agent's batches.")
@click.option("--timeout", type=float, default=None,
              help=f"(pipeline) Seconds to wait for stage 1 [default: {b.PIPELINE_TIMEOUT_BASE:.0f} + "
                   f"events / {b.PIPELINE_TIMEOUT_MIN_RATE:.0f}].")
@click.option("--json", "as_json", is_flag=True, help="Print only the JSON document (one line).")
def bench(what: str, events: int | None, state_events: int, partners: int | None, ledger_rows: int, months: int,
          runs: int, keep: bool, seed: int, batch: int, timeout: float | None, as_json: bool) -> None:
    """Measure throughput and print it (a table, then one JSON line); nothing is asserted.

    \b
    core      simulate N events, Avro-encode them, then time (a) Avro decode, (b) the file
              replay fold (Replayer), (c) stage 1's fold_partition over the bytes in batches
              per partition with a dict as the state store, and the batch's stage-2 forwards
              bundled (forwarding.py), (d) the same plus building each
              batch's state records (the table writes); events/s, CPU and GC seconds, peak RSS.
              No services needed.
    pipeline  on the stack of the current INCENTIVES_* settings (run `incentives dev up` first):
              wait until the worker is idle, produce N simulated events (all encoded first;
              the producer rate is reported on its own), wait until the worker's /metrics
              stage-1 counter has grown by every message, then until ClickHouse `ledger FINAL`
              stops growing and the worker's consumer group has committed every input
              (stage 2 and the sink done). Every id carries a fresh run id and the simulated
              months follow the latest recorded event, so runs never collide.
    queries   on the ClickHouse of the current settings: a scratch database bench_queries_<hex>
              (migrated), a synthetic history generated by the server (--ledger-rows ledger
              rows, --events events, --partners, --months; ~1% of rows delivered twice), the
              KPI rollup built for every partner-month (timed, and one typical sink rebuild),
              then every KPI period view (month, quarter), every Grafana panel query of
              deploy/grafana/dashboards and the full ledger FINAL scan, --runs times each:
              median seconds, rows and bytes read; a dashboard query over 1 s is flagged.
              The scratch database is dropped unless --keep.
    ceiling   on the broker of the current settings (only the broker is needed): a scratch
              topic bench-<hex>-partner-events filled with N simulated Avro events, then
              (a) a plain aiokafka consumer loop doing stage 1's own work (fold_partition
              with a stage-1 core over a dict-backed PartitionState per partition, every
              output record produced with aiokafka's producer, the batch's state records
              written and committed) and (b) a light-work loop on the same topic (decode, a
              count and sum per partner, 1.5 small JSON records an event); events/s of each
              and the ratio (a)/(b). Scratch topics are deleted afterwards.
    replays   replay --source FILE (replay_lines over N simulated events as JSON lines) and,
              on a broker, replay --source kafka (read_log + replay_log over a scratch topic
              of the same events; with ceiling in the same run, its topic); events/s.
    state     no services: the same --partners (500) folded with fold_partition over dict
              stores in 4 partitions, batches of 1,000 events; after a tenth of
              --state-events and after all: bytes per partner (mean, p99) and state bytes
              written per input event.
    all       core, pipeline (if a worker answers), ceiling and replays (if a broker
              answers), state; with the pipeline and ceiling both run, their ratio.

    Progress goes to stderr; the table and the JSON line to stdout.

    \b
    Examples:
      incentives bench --what core --events 50000
      incentives dev up && incentives bench --what pipeline --events 100000
      incentives dev up && incentives bench --what latency
      incentives dev up && incentives bench --what queries --ledger-rows 1000000 --events 500000
      incentives dev up && incentives bench --what ceiling --events 100000
      incentives dev up && incentives bench --what replays --events 100000
      incentives bench --what state --state-events 1000000
      incentives bench --json > bench.json
    """
    echo = (lambda _line: None) if as_json else (lambda line: click.echo(line, err=True))
    try:
        settings = load_settings()
    except ConfigError as e:
        raise click.UsageError(str(e)) from None

    reports: list[b.Report] = []
    skipped: dict[str, str] = {}
    failed = False

    if what in ("core", "all"):
        report = b.run_core(events or b.DEFAULT_CORE_EVENTS, seed=seed, partners=partners or b.DEFAULT_PARTNERS,
                            partitions=settings.partitions, batch=batch, program_path=str(settings.program),
                            echo=echo)
        reports.append(report)
        if not as_json:
            click.echo(b.format_table(report))

    if what in ("pipeline", "all"):
        n = events or b.DEFAULT_PIPELINE_EVENTS
        if what == "all" and b.worker_ready(settings) != 200:
            skipped["pipeline"] = (f"no ready worker at {settings.web_url}/ready "
                                   "(start the stack with `incentives dev up`)")
            echo(f"pipeline: skipped: {skipped['pipeline']}")
        else:
            try:
                report = b.run_pipeline(settings, n, seed=seed, partners=partners or b.DEFAULT_PARTNERS,
                                        timeout=timeout, echo=echo)
            except b.StackNotReady as e:
                skipped["pipeline"] = str(e)
                failed = True
                click.echo(f"error: {e}", err=True)
            else:
                reports.append(report)
                if not as_json:
                    click.echo(b.format_table(report))

    if what in ("ceiling", "replays", "all"):
        failed = _ceiling_and_replays(settings, what, events or bc.DEFAULT_CEILING_EVENTS, seed,
                                      partners or b.DEFAULT_PARTNERS, reports, skipped, echo, as_json) or failed

    if what in ("state", "all"):
        report = bs.run_state(state_events, seed=seed, partners=partners or bs.DEFAULT_STATE_PARTNERS,
                              partitions=settings.partitions, program_path=str(settings.program), echo=echo)
        reports.append(report)
        if not as_json:
            click.echo(b.format_table(report))

    if what == "latency":
        from processor.bench_latency import run_latency
        if b.worker_ready(settings) != 200:
            click.echo(f"error: no ready worker at {settings.web_url}/ready (start the stack with "
                       "`incentives dev up`)", err=True)
            sys.exit(2)
        report = run_latency(settings, echo=echo)
        reports.append(report)
        if not as_json:
            click.echo(b.format_table(report))

    if what == "queries":
        try:
            queries = bq.run_queries(settings, ledger_rows=ledger_rows, event_rows=events or bq.DEFAULT_EVENT_ROWS,
                                     partners=partners or bq.DEFAULT_PARTNERS, months=months, runs=runs,
                                     keep=keep, echo=echo)
        except ValueError as e:
            raise click.UsageError(str(e)) from None
        except (ch_errors.Error, OSError) as e:
            click.echo(f"error: ClickHouse at {settings.clickhouse_host}:{settings.clickhouse_port}: "
                       f"{str(e).strip().splitlines()[0] if str(e).strip() else repr(e)} "
                       "(start it with `incentives dev up`)", err=True)
            sys.exit(2)
        reports.append(queries)
        if not as_json:
            click.echo(bq.format_report(queries))

    click.echo(b.to_json(b.summary(reports, skipped)))
    if failed:
        sys.exit(2)


def _ceiling_and_replays(settings: Settings, what: str, n: int, seed: int, partners: int,
                         reports: list[b.Report], skipped: dict[str, str], echo: Callable[[str], None],
                         as_json: bool) -> bool:
    """The ceiling (a)/(b) and the replays over one scratch topic of `n` events on the broker of
    `settings`; True when a part that was asked for could not run."""
    from aiokafka.errors import KafkaError as AioKafkaError
    from kafka.errors import KafkaError

    from processor import bench_replay as br

    parts = ["ceiling", "replays"] if what == "all" else [what]
    if not bc.broker_answers(settings):
        reason = f"no broker answers at {settings.kafka_bootstrap} (start one with `incentives dev up`)"
        for part in parts:
            skipped[part] = reason
        if what == "all":
            echo(f"ceiling, replays: skipped: {reason}")
            return False
        click.echo(f"error: {reason}", err=True)
        return True
    program = str(settings.program)
    log: bc.ScratchLog | None = None
    try:
        log = bc.prepare(settings, n, seed=seed, partners=partners, echo=echo)
        if "ceiling" in parts:
            report = bc.run_ceiling(settings, log, program_path=program, echo=echo)
            pipeline = next((r for r in reports if r.part == "pipeline"), None)
            if pipeline is not None:
                _pipeline_ratio(pipeline, report)
            reports.append(report)
            if not as_json:
                click.echo(b.format_table(report))
        if "replays" in parts:
            report = br.run_replays(n, seed=seed, partners=partners, program_path=program, log=log, echo=echo)
            reports.append(report)
            if not as_json:
                click.echo(b.format_table(report))
    except (KafkaError, AioKafkaError, OSError) as e:
        for part in parts:
            if not any(r.part == part for r in reports):
                skipped[part] = f"the broker at {settings.kafka_bootstrap} failed: {e!r:.300}"
        click.echo(f"error: the broker at {settings.kafka_bootstrap}: {e!r:.300}", err=True)
        return True
    finally:
        if log is not None:
            bc.drop(log, echo)
    return False


def _pipeline_ratio(pipeline: b.Report, ceiling: b.Report) -> None:
    """The live pipeline's stage-1 rate over the same-work ceiling (a), both measured in this run."""
    live = next((f for f in pipeline.figures if f.name.startswith("end to end: sent -> stage 1")), None)
    same = next((f for f in ceiling.figures if f.name.startswith("(a)")), None)
    if live is not None and same is not None and live.seconds > 0 and same.seconds > 0:
        ceiling.facts["ratio_pipeline_stage1_over_a"] = round(live.rate / same.rate, 3)
