"""``incentives emit`` and ``incentives close-period``: send partner events to Kafka."""
from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from kafka.errors import KafkaError

from processor.codec import from_json_line
from processor.config import Settings, load_settings
from processor.domain.timeutil import iso_seconds, month_start_ms, period_to_month
from processor.producer import EventProducer, InvalidLine, parse_lines


@click.command("emit")
# A byte that is not UTF-8 is read as a lone surrogate (not a UnicodeDecodeError out of the file
# iterator, a traceback): the codec refuses that line `undecodable` and the error names it.
@click.argument("source", type=click.File("r", encoding="utf-8", errors="surrogateescape"))
def emit(source) -> None:  # type: ignore[no-untyped-def]
    """Validate JSON-lines events from SOURCE (a file or -) and produce them to partner-events.

    Every line is checked against the Avro schemas first; if one is invalid (or not UTF-8), nothing
    is sent, the error names the first bad line, the reason and the field, and the exit status is 2.
    Events are keyed by partner_id; a PeriodClosed is written once into every partition.

    \b
    Example:
      incentives emit events.jsonl
      echo '{"event_id":"e1","event_type":"PartnerEnrolled","partner_id":"P1",
             "occurred_at":"2026-10-01T00:00:00Z","name":"Acme","segment":"strategic",
             "region":"emea"}' | incentives emit -
    """
    try:
        events = parse_lines(source)
    except InvalidLine as exc:
        click.echo(f"error: {exc} (nothing was sent)", err=True)
        sys.exit(2)
    settings = load_settings()
    with _broker(settings), EventProducer(settings.kafka_bootstrap_servers) as producer:
        sent = producer.send_many(events)
    click.echo(f"sent {len(events)} events ({sent} messages) to partner-events at {settings.kafka_bootstrap}")


@contextmanager
def _broker(settings: Settings) -> Iterator[None]:
    """A broker that does not answer is a clear error (exit 1), not a traceback. Some events may have
    been sent before it failed: sending the same lines again is harmless (their event ids)."""
    try:
        yield
    except (KafkaError, RuntimeError) as exc:
        click.echo(f"error: the Kafka broker at {settings.kafka_bootstrap} did not take the events "
                   f"({exc}). Is it running? (`incentives dev up` starts the local "
                   f"stack.) Sending the same events again is harmless: their event ids count once.", err=True)
        sys.exit(1)


@click.command("close-period")
@click.argument("period")
@click.option("--event-id", default=None, help="Event id (default: period-close:PERIOD).")
def close_period(period: str, event_id: str | None) -> None:
    """Close month PERIOD (YYYY-MM): rebates, period checks, tier review and expiry for every partner.

    Writes one PeriodClosed event into every partition of partner-events. Its occurred_at is the
    first instant of the next month. The default event id is deterministic, so running the command
    twice closes the period once.

    \b
    Example:
      incentives close-period 2026-10
    """
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", period):
        raise click.BadParameter("must be YYYY-MM, e.g. 2026-10", param_hint="PERIOD")
    event = {
        "event_id": event_id or f"period-close:{period}",
        "event_type": "PeriodClosed",
        "partner_id": "*",
        "occurred_at": iso_seconds(month_start_ms(period_to_month(period) + 1)),
        "source": "incentives-cli",
        "period": period,
    }
    settings = load_settings()
    with _broker(settings), EventProducer(settings.kafka_bootstrap_servers) as producer:
        sent = producer.send(from_json_line(json.dumps(event)))
    click.echo(f"closed {period}: PeriodClosed {event['event_id']} written to {sent} partitions")

