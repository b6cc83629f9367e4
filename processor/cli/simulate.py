"""``incentives simulate``: a simulated program on the live stack, its ground truth, and its score.

Each run continues the program already in the log (`processor/simulation.py`): a cohort of its own
under a fresh run id, and a clock that starts after the latest event in the log, so a second run
never repeats an order or closes a month twice. With `--truth FILE` every planted anomaly is
written down as its trigger is sent; `--score` reads what the live system raised (ClickHouse
`alerts FINAL`, this run's partners and events only) once the worker has caught up, and compares
(`processor/scoring.py`).
"""
from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from processor import scoring
from processor.config import Settings, load_settings
from processor.domain.timeutil import iso_seconds
from processor.simulation import Simulation, log_position, new_run_id, start_after

DEFAULT_EVENTS = 20_000
#: Scoring waits until the run's alert count has not moved for this long (and nothing is behind).
STABLE_SECONDS = 5.0
#: Seconds of sending between an order and another partner's claim of it (see `Simulation`).
CLAIM_GAP_SECONDS = 10.0


class _RunView:
    """What ClickHouse holds of one run (ids starting with its prefix)."""

    def __init__(self, settings: Settings, prefix: str) -> None:
        from projections.migrate import client
        self.client, self.db, self.like = client(settings), settings.clickhouse_database, prefix + "-%"

    def _rows(self, sql: str) -> list[Any]:
        return self.client.execute(sql.format(db=self.db), {"p": self.like})  # type: ignore[no-any-return]

    def events(self) -> int:
        return int(self._rows("SELECT uniqExact(event_id) FROM {db}.events WHERE event_id LIKE %(p)s")[0][0])

    def alerts(self) -> list[tuple[str, str]]:
        """(alert_id, alert_type) raised on this run's partners by this run's events."""
        return [tuple(r) for r in self._rows(
            "SELECT alert_id, alert_type FROM {db}.alerts FINAL "
            "WHERE partner_id LIKE %(p)s AND trigger_event_id LIKE %(p)s ORDER BY alert_id")]


def _figures(settings: Settings, view: _RunView | None) -> str:
    from projections.migrate import client

    db = settings.clickhouse_database
    try:
        ch = client(settings)
        events = ch.execute(f"SELECT count() FROM {db}.events FINAL")[0][0]
        points, held, rebate = ch.execute(
            f"SELECT sumIf(delta_available, account = 'points'), sumIf(delta_held, account = 'points'), "
            f"sumIf(delta_available + delta_held, account = 'rebate') FROM {db}.ledger FINAL")[0]
        rejections = ch.execute(f"SELECT count() FROM {db}.rejections FINAL")[0][0]
        counts: dict[str, int] = {}
        for _, alert_type in view.alerts() if view else []:
            counts[alert_type] = counts.get(alert_type, 0) + 1
    except Exception as exc:  # noqa: BLE001 - the figures are a view; keep simulating
        return f"(ClickHouse not answering: {exc.__class__.__name__})"
    alert_text = ", ".join(f"{t} {n}" for t, n in sorted(counts.items())) or "none"
    return (f"events {events:>8} | points available {points:>11} held {held:>8} | rebates {rebate / 100:>12,.2f} "
            f"USD | rejections {rejections:>5} | this run's alerts: {alert_text}")


def _view(settings: Settings, prefix: str) -> _RunView | None:
    try:
        return _RunView(settings, prefix)
    except Exception:  # noqa: BLE001 - no ClickHouse: simulate without figures
        return None


def run(settings: Settings, *, count: int | None, rate: float, partners: int, seed: int, run_id: str,
        minutes_per_event: float, anomaly_rate: float, truth: Path | None, every: float,
        echo: Callable[[str], None]) -> int:
    """Send one run (`count` events, or until Ctrl-C); write its truth file; return events sent."""
    from processor.producer import EventProducer

    position = log_position(settings)
    start = start_after(position)
    prefix = f"SIM-{run_id}"
    min_age = max(200, int(CLAIM_GAP_SECONDS * rate))
    sim = Simulation(seed, partners, start, minutes_per_event, prefix, anomaly_rate=anomaly_rate,
                     min_age_events=min_age, closed_periods=position.closed_periods)
    stream = sim.events() if count is None else itertools.islice(sim.events(), count)
    echo(f"run {run_id}: seed {seed}, {partners} partners (ids {prefix}-...), clock from {iso_seconds(start)}, "
         f"{rate:g} events/s -> {settings.kafka_bootstrap}")
    out = truth.open("w", encoding="utf-8") if truth else None

    def write(record: dict[str, Any]) -> None:
        if out:
            out.write(json.dumps(record, separators=(",", ":")) + "\n")

    write({"kind": "run", "run_id": run_id, "prefix": prefix, "seed": seed, "partners": partners,
           "start": iso_seconds(start), "minutes_per_event": minutes_per_event, "anomaly_rate": anomaly_rate,
           "min_age_events": min_age})
    view = _view(settings, prefix)
    sent = 0
    started = last = time.monotonic()
    try:
        with EventProducer(settings.kafka_bootstrap_servers) as producer:
            for event in stream:
                producer.send(event)
                sent += 1
                for record in sim.truth:
                    write(record)
                sim.truth.clear()
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
                if time.monotonic() - last >= every:
                    producer.flush()
                    if out:
                        out.flush()
                    last = time.monotonic()
                    echo(f"sent {sent:>8} | {_figures(settings, view)}")
    except KeyboardInterrupt:
        echo("interrupted")
    finally:
        write({"kind": "run_end", "events": sent, "last_occurred_at": iso_seconds(sim.t)})
        if out:
            out.close()
    echo(f"sent {sent:>8} | {_figures(settings, view)}")
    return sent


def wait_for_live(settings: Settings, view: _RunView, sent: int | None, timeout: float,
                  echo: Callable[[str], None]) -> bool:
    """Until ClickHouse holds every event of the run, the worker's consumer groups have committed
    everything, and the run's alerts have not changed for STABLE_SECONDS. False on timeout."""
    from processor.bench import KafkaLag

    try:
        lag: KafkaLag | None = KafkaLag(settings)
    except Exception:  # noqa: BLE001 - judge by ClickHouse alone
        lag = None
    started = since = time.monotonic()
    last_state: tuple[int, int] | None = None
    last_echo = started
    try:
        while True:
            state = (view.events(), len(view.alerts()))
            behind = lag() if lag else 0
            now = time.monotonic()
            if state != last_state or behind:
                last_state, since = state, now
            if (sent is None or state[0] >= sent) and not behind and now - since >= STABLE_SECONDS:
                return True
            if now - started > timeout:
                return False
            if now - last_echo >= 10:
                echo(f"waiting for the live system: {state[0]:,} of {sent if sent is not None else '?'} events "
                     f"recorded, {state[1]:,} alerts, {behind:,} records not committed")
                last_echo = now
            time.sleep(1.0)
    finally:
        if lag:
            lag.close()


def score_run(settings: Settings, truth: Path, *, timeout: float, as_json: bool,
              echo: Callable[[str], None]) -> None:
    records = scoring.read_truth(truth.read_text(encoding="utf-8").splitlines())
    header = next((r for r in records if r.get("kind") == "run"), None)
    if header is None:
        raise click.UsageError(f"{truth} has no run record: write it with `incentives simulate --truth {truth}`")
    footer = next((r for r in records if r.get("kind") == "run_end"), None)
    sent = footer["events"] if footer else None
    view = _RunView(settings, header["prefix"])
    caught_up = wait_for_live(settings, view, sent, timeout, echo)
    if not caught_up:
        echo(f"WARNING: the live system had not caught up after {timeout:.0f} s; scoring what it holds")
    events = sent if sent is not None else view.events()
    rows = scoring.score(records, [alert_id for alert_id, _ in view.alerts()], events)
    if as_json:
        click.echo(json.dumps(scoring.document(rows, run_id=header["run_id"], events=events, caught_up=caught_up,
                                               truth=str(truth)), separators=(",", ":")))
    else:
        click.echo(f"run {header['run_id']}: {events:,} events from {header['start']}; alerts raised live on "
                   f"its partners ({header['prefix']}-...) vs {truth}")
        click.echo(scoring.format_table(rows))


def _check_run_id(value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", value):
        raise click.BadParameter("letters, digits and dashes only", param_hint="--run-id")
    return value


@click.command("simulate")
@click.option("--events", "count", type=click.IntRange(min=1), default=None,
              help=f"How many events to send [default: {DEFAULT_EVENTS:,}; none with --score alone].")
@click.option("--follow", is_flag=True, help="Keep sending until interrupted (Ctrl-C).")
@click.option("--rate", type=click.FloatRange(min=0.1), default=500.0, show_default=True, help="Events per second.")
@click.option("--partners", type=click.IntRange(min=2), default=60, show_default=True, help="Partners of this run.")
@click.option("--seed", type=int, default=None, help="Random seed (default: from the clock, so runs differ).")
@click.option("--run-id", default=None, callback=lambda _c, _p, v: _check_run_id(v),
              help="Run id in every id of the run: letters, digits, dashes (default: 8 random hex digits).")
@click.option("--minutes-per-event", type=click.FloatRange(min=0.01), default=12.0, show_default=True,
              help="Mean simulated minutes between events (20,000 events at 12 span about 5.5 months).")
@click.option("--anomaly-rate", type=click.FloatRange(0, 0.1), default=0.01, show_default=True,
              help="Share of events that plant an anomaly (besides month-end stuffing and return spikes).")
@click.option("--truth", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the ground truth (JSON lines) here; with --score, the run to score.")
@click.option("--score", is_flag=True, help="Score the run of --truth FILE against what the live system raised.")
@click.option("--json", "as_json", is_flag=True, help="(--score) Print the score as one JSON line.")
@click.option("--wait", type=float, default=300.0, show_default=True,
              help="(--score) Seconds to wait for the worker and the sink to catch up.")
@click.option("--every", type=float, default=2.0, show_default=True, help="Seconds between figure lines.")
def simulate(count: int | None, follow: bool, rate: float, partners: int, seed: int | None, run_id: str | None,
             minutes_per_event: float, anomaly_rate: float, truth: Path | None, score: bool, as_json: bool,
             wait: float, every: float) -> None:
    """Send a simulated partner program with planted anomalies, and score the detectors on it.

    Each run enrols its own partners (ids SIM-RUNID-...) and starts its clock after the latest
    event in the log, so runs on one stack never collide. Planted: cross-partner duplicate orders,
    resent orders, near-duplicates, self-dealing, velocity bursts, large adjustments, and at month
    ends channel stuffing and return spikes. With --truth FILE each plant is written as JSON lines
    (kind, partner, trigger_event_id, alert_ids). --score waits for the worker and prints, per
    alert type: injected, raised live, true positives, precision, recall, alerts per 1,000 events.

    \b
    Examples:
      incentives simulate --events 5000
      incentives simulate --follow --rate 200
      incentives simulate --events 20000 --truth run.jsonl --score
      incentives simulate --score --truth run.jsonl --json
    """
    if score and truth is None:
        raise click.UsageError("--score needs --truth FILE (the run to score)")
    settings = load_settings()

    def echo(line: str) -> None:
        click.echo(line, err=as_json)

    if follow or count is not None or not score:
        run(settings, count=None if follow else count or DEFAULT_EVENTS, rate=rate, partners=partners,
            seed=seed if seed is not None else int(time.time()), run_id=run_id or new_run_id(),
            minutes_per_event=minutes_per_event, anomaly_rate=anomaly_rate, truth=truth, every=every, echo=echo)
    if score and truth is not None:
        score_run(settings, truth, timeout=wait, as_json=as_json, echo=echo)
