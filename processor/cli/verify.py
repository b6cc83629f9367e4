"""``incentives verify``: the auditor's check of the ledger hash chains, with no worker needed."""
from __future__ import annotations

import json
import sys

import click

from processor.config import load_settings


@click.command("verify")
@click.option("--source", type=click.Choice(["clickhouse", "kafka"]), default="clickhouse", show_default=True,
              help="Where to read the ledger: ClickHouse's ledger table, or the points-ledger topic.")
@click.option("--partner", default=None, metavar="ID", help="Check only this partner.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document: verified, counts and every break.")
def verify(source: str, partner: str | None, as_json: bool) -> None:
    """Recompute every ledger entry's hash and prev_hash link, seq contiguity and balance arithmetic.

    Exit 0 when every chain holds, 1 when anything is broken (each break is printed with its partner
    and seq), 2 when the source cannot be read.

    \b
    Examples:
      incentives verify
      incentives verify --source kafka --partner P-17
      incentives verify --json > audit.json
    """
    from processor import verify as v

    settings = load_settings()
    try:
        if source == "clickhouse":
            if sys.stderr.isatty() and not as_json:
                with click.progressbar(length=0, label="checking ledger entries", file=sys.stderr) as bar:
                    report = v.verify_clickhouse(settings, partner, progress=bar.update)
            else:
                report = v.verify_clickhouse(settings, partner)
        else:
            from processor import topics
            from processor.kafka_replay import read_log
            report = v.verify_topic(read_log(settings.kafka_bootstrap_servers, topic=topics.POINTS_LEDGER), partner)
    except Exception as exc:  # noqa: BLE001 - an unreadable source is exit 2 with the reason
        where = (f"ClickHouse at {settings.clickhouse_host}:{settings.clickhouse_port}" if source == "clickhouse"
                 else f"Kafka at {settings.kafka_bootstrap}")
        click.echo(f"error: cannot read the ledger from {where}: {type(exc).__name__}: "
                   f"{str(exc).splitlines()[0] if str(exc) else ''}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(json.dumps(report.document(), sort_keys=True))
    else:
        for b in report.breaks:
            click.echo(f"BREAK  partner {b.partner_id or '?'}  seq {b.seq}: {b.problem}")
        verdict = "every chain holds" if report.verified else f"{len(report.breaks)} breaks"
        scope = f"partner {partner}" if partner else f"{report.partners:,} partners"
        click.echo(f"{source}: {scope}, {report.entries:,} ledger entries checked: {verdict}")
    sys.exit(0 if report.verified else 1)
