"""``incentives simulate``: a live simulated program on the local stack, with its figures."""
from __future__ import annotations

import itertools
import time

import click

from processor.config import load_settings
from processor.simulation import simulate as simulated_events


def _figures(settings) -> str:  # type: ignore[no-untyped-def]
    from projections.migrate import client

    db = settings.clickhouse_database
    try:
        ch = client(settings)
        events = ch.execute(f"SELECT count() FROM {db}.events FINAL")[0][0]
        points, held, rebate = ch.execute(
            f"SELECT sumIf(delta_available, account = 'points'), sumIf(delta_held, account = 'points'), "
            f"sumIf(delta_available + delta_held, account = 'rebate') FROM {db}.ledger FINAL")[0]
        alerts = ch.execute(f"SELECT alert_type, count() FROM {db}.alerts FINAL GROUP BY alert_type "
                            f"ORDER BY alert_type")
        rejections = ch.execute(f"SELECT count() FROM {db}.rejections FINAL")[0][0]
    except Exception as exc:  # noqa: BLE001 - the figures are a view; keep simulating
        return f"(ClickHouse not answering: {exc.__class__.__name__})"
    alert_text = ", ".join(f"{t} {n}" for t, n in alerts) or "none"
    return (f"events {events:>8} | points available {points:>11} held {held:>8} | rebates {rebate / 100:>12,.2f} "
            f"USD | rejections {rejections:>5} | alerts: {alert_text}")


@click.command("simulate")
@click.option("--events", "count", type=int, default=20_000, show_default=True,
              help="How many events to send (ignored with --follow).")
@click.option("--follow", is_flag=True, help="Keep sending until interrupted (Ctrl-C).")
@click.option("--rate", type=float, default=500.0, show_default=True, help="Events per second.")
@click.option("--partners", type=int, default=60, show_default=True)
@click.option("--seed", type=int, default=None, help="Random seed (default: from the clock, so runs differ).")
@click.option("--every", type=float, default=2.0, show_default=True, help="Seconds between figure lines.")
def simulate(count: int, follow: bool, rate: float, partners: int, seed: int | None, every: float) -> None:
    """Send a realistic simulated program (with injected anomalies) and show live figures.

    Sales, deals, trainings, marketing, redemptions, returns and month closes for PARTNERS
    partners, with duplicate orders, near-duplicates, self-dealing, bursts and large adjustments
    injected now and then. Every few seconds it prints what ClickHouse shows: events, points,
    rebates, rejections and alerts by type.

    \b
    Examples:
      incentives simulate --events 5000
      incentives simulate --follow --rate 200
    """
    from processor.producer import EventProducer

    settings = load_settings()
    seed = seed if seed is not None else int(time.time())
    stream = simulated_events(seed=seed, partners=partners)
    if not follow:
        stream = itertools.islice(stream, count)
    click.echo(f"simulating seed {seed}, {partners} partners, {rate:g} events/s -> {settings.kafka_bootstrap}")
    sent = 0
    started = last = time.monotonic()
    try:
        with EventProducer(settings.kafka_bootstrap_servers) as producer:
            for event in stream:
                producer.send(event)
                sent += 1
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
                if time.monotonic() - last >= every:
                    producer.flush()
                    last = time.monotonic()
                    click.echo(f"sent {sent:>8} | {_figures(settings)}")
    except KeyboardInterrupt:
        click.echo("interrupted")
    time.sleep(every)
    click.echo(f"sent {sent:>8} | {_figures(settings)}")
