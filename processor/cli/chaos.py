"""``incentives chaos``: the seeded fault suite with an exact oracle."""
from __future__ import annotations

import sys
from pathlib import Path

import click

from processor.chaos.plan import DEFAULT_FAULTS, FAULTS, make_plan, parse_faults


@click.command("chaos")
@click.option("--seed", type=int, default=1, show_default=True,
              help="The seed: the stream, the poison and the moments of the faults. A failing seed "
                   "reproduces from the seed alone.")
@click.option("--faults", "faults_text", default=",".join(DEFAULT_FAULTS), show_default=True, metavar="LIST",
              help=f"Comma-separated faults, or 'all': {', '.join(FAULTS)}.")
@click.option("--events", type=click.IntRange(min=100), default=None,
              help="Simulated events [default: 5,000; 300,000 with --full].")
@click.option("--full", is_flag=True, help="The long run: 300,000 events, 20 worker kills, 10 rebalances, "
                                           "6 sink kills, 2 pauses, ClickHouse down 30 s.")
@click.option("--rate", type=click.FloatRange(min=10), default=None,
              help="Messages sent per second [default: spread over about a minute, at least 50; with "
                   "--full, spread over the time the faults take (about 13 minutes), so each one hits a "
                   "flowing stream].")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the whole report (every fault, every check, the figures) as JSON here.")
@click.option("--keep", is_flag=True, help="Leave the run's stack running (its home is printed).")
def chaos(seed: int, faults_text: str, events: int | None, full: bool, rate: float | None,
          report_path: Path | None, keep: bool) -> None:
    """Run the processor on a local stack of its own under seeded faults, then check that the money
    is right: ClickHouse and every worker equal the replay of the recorded log, no point lost or
    double-counted, every poison message dead-lettered, every message of a newer upstream writer
    (schema-mix) applied, every hash chain intact.

    Exit 0 only when every check holds; 1 otherwise (the failing checks are printed).

    \b
    Examples:
      incentives chaos
      incentives chaos --seed 42 --faults worker-kill,poison --events 3000
      incentives chaos --full --faults all --report chaos-42.json --seed 42
    """
    from processor.chaos.run import run_chaos, write_report

    try:
        faults = parse_faults(faults_text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from None
    events = events or (300_000 if full else 5_000)
    plan = make_plan(seed, events, faults, full=full)
    rate = rate or (plan.full_rate() if full else max(50.0, len(plan.messages) / 60))
    report = run_chaos(plan, rate=rate, keep=keep, echo=click.echo)
    figures = report.get("figures", {})
    click.echo("")
    for check in report.get("checks", []):
        click.echo(f"{'ok  ' if check['ok'] else 'FAIL'}  {check['name']}: {check['detail']}")
    click.echo("")
    click.echo(f"faults survived: {sum(1 for f in report['faults'] if 'FAILED' not in str(f.get('what')))} of "
               f"{len(report['faults'])}; points lost {figures.get('points_lost', '?'):,}, "
               f"double-counted {figures.get('points_double_counted', '?'):,}; dead-lettered "
               f"{figures.get('dlq_refusals', '?')} of {report['poison']} poison injected")
    for label, mixed in figures.get("mixed_writers", {}).items():
        click.echo(f"{label}: {mixed['sent']:,} sent, {mixed['applied']:,} applied, {mixed['duplicates']:,} "
                   f"duplicates, {mixed['rejected']:,} rejected by the rules, {mixed['refused_by_codec']:,} "
                   f"refused by the codec, {mixed['dead_lettered']:,} dead-lettered")
    click.echo(f"verdict: {'PASS' if report.get('ok') else 'FAIL'} (seed {seed}; rerun with --seed {seed})")
    if report_path is not None:
        write_report(report, report_path)
    sys.exit(0 if report.get("ok") else 1)
