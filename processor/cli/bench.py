"""``incentives bench``: measure the domain core and the live pipeline; print the figures."""
from __future__ import annotations

import sys

import click

from processor import bench as b
from processor.config import ConfigError, load_settings


@click.command("bench")
@click.option("--what", type=click.Choice(["core", "pipeline", "latency", "all"]), default="all",
              show_default=True,
              help="core: the domain fold without services; pipeline: the running local stack; "
                   "latency: event to alert on the live feed under 1,000 events/s of background; "
                   "all: core, then the pipeline if a worker answers.")
@click.option("--events", "events", type=click.IntRange(min=1), default=None,
              help=f"Simulated events per part [default: {b.DEFAULT_CORE_EVENTS:,} core, "
                   f"{b.DEFAULT_PIPELINE_EVENTS:,} pipeline].")
@click.option("--partners", type=click.IntRange(min=2), default=b.DEFAULT_PARTNERS, show_default=True,
              help="Simulated partners.")
@click.option("--seed", type=int, default=7, show_default=True, help="Seed of the simulation.")
@click.option("--batch", type=click.IntRange(min=1), default=b.DEFAULT_BATCH, show_default=True,
              help="(core) Messages per fold_partition batch, per partition, like the agent's batches.")
@click.option("--timeout", type=float, default=None,
              help=f"(pipeline) Seconds to wait for stage 1 [default: {b.PIPELINE_TIMEOUT_BASE:.0f} + "
                   f"events / {b.PIPELINE_TIMEOUT_MIN_RATE:.0f}].")
@click.option("--json", "as_json", is_flag=True, help="Print only the JSON document (one line).")
def bench(what: str, events: int | None, partners: int, seed: int, batch: int, timeout: float | None,
          as_json: bool) -> None:
    """Measure throughput and print it (a table, then one JSON line); nothing is asserted.

    \b
    core      simulate N events, Avro-encode them, then time (a) Avro decode, (b) the file
              replay fold (Replayer), (c) stage 1's fold_partition over the bytes in batches
              per partition with a dict as the state store, (d) the same plus building each
              batch's state records (the table writes); events/s, CPU and GC seconds, peak RSS.
              No services needed.
    pipeline  on the stack of the current INCENTIVES_* settings (run `incentives dev up` first):
              wait until the worker is idle, produce N simulated events (all encoded first;
              the producer rate is reported on its own), wait until the worker's /metrics
              stage-1 counter has grown by every message, then until ClickHouse `ledger FINAL`
              stops growing and the worker's consumer group has committed every input
              (stage 2 and the sink done). Every id carries a fresh run id and the simulated
              months follow the latest recorded event, so runs never collide.

    Progress goes to stderr; the table and the JSON line to stdout.

    \b
    Examples:
      incentives bench --what core --events 50000
      incentives dev up && incentives bench --what pipeline --events 100000
      incentives dev up && incentives bench --what latency
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
        report = b.run_core(events or b.DEFAULT_CORE_EVENTS, seed=seed, partners=partners,
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
                report = b.run_pipeline(settings, n, seed=seed, partners=partners, timeout=timeout, echo=echo)
            except b.StackNotReady as e:
                skipped["pipeline"] = str(e)
                failed = True
                click.echo(f"error: {e}", err=True)
            else:
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

    click.echo(b.to_json(b.summary(reports, skipped)))
    if failed:
        sys.exit(2)
