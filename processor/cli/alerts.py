"""``incentives alerts``: the fraud analyst's desk in the terminal (list, follow, resolve)."""
from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from processor.config import load_settings
from processor.domain.timeutil import parse_iso

ALERT_KEYS = ("alert_id", "alert_type", "severity", "partner_id", "trigger_event_id", "status", "held_points",
              "evidence", "occurred_at", "hold_order_id", "resolved_by")


def _row(alert: dict[str, Any]) -> str:
    evidence = alert.get("evidence") or ""
    if len(evidence) > 70:
        evidence = evidence[:67] + "..."
    return (f"{alert['occurred_at']:<20}  {alert['severity']:<6}  {alert['alert_type']:<20}  "
            f"{alert['partner_id']:<14}  {alert.get('held_points') or 0:>9}  {alert['status']:<9}  {evidence}")


HEADER = (f"{'time':<20}  {'sev':<6}  {'type':<20}  {'partner':<14}  {'held pts':>9}  {'status':<9}  evidence")


def _emit(alert: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({k: alert.get(k) for k in ALERT_KEYS}, sort_keys=True, ensure_ascii=False))
    else:
        click.echo(_row(alert))


@click.group("alerts", invoke_without_command=True)
@click.option("--status", type=click.Choice(["open", "dismissed", "confirmed", "all"]), default="open",
              show_default=True, help="Which alerts to list.")
@click.option("--type", "alert_type", default=None, help="Only this alert type, e.g. duplicate_order.")
@click.option("--severity", type=click.Choice(["high", "medium", "low"]), default=None, help="Only this severity.")
@click.option("--partner", default=None, help="Only this partner id.")
@click.option("--since", default=None, metavar="TIMESTAMP", help="Only alerts at or after this ISO-8601 UTC time.")
@click.option("--limit", type=click.IntRange(1, 100_000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--follow", is_flag=True,
              help="After the list, print new alerts and status changes as they happen (from the "
                   "anomaly-alerts topic; --type, --severity and --partner apply) until Ctrl-C.")
@click.pass_context
def alerts(ctx: click.Context, status: str, alert_type: str | None, severity: str | None, partner: str | None,
           since: str | None, limit: int, as_json: bool, follow: bool) -> None:
    """List anomaly alerts, newest first (default: the open ones), or follow them live.

    \b
    Examples:
      incentives alerts
      incentives alerts --status all --type duplicate_order --partner P-17 --json
      incentives alerts --follow
      incentives alerts resolve duplicate_order:P-17:E-991 --decision dismissed --analyst ana --note "known reorder"
    """
    if ctx.invoked_subcommand is not None:
        return
    from processor.desk import queries
    settings = load_settings()
    try:
        since_ms = parse_iso(since) if since else None
    except ValueError:
        raise click.BadParameter(f"not an ISO-8601 timestamp: {since}", param_hint="--since") from None
    found = queries.list_alerts(settings, status=status, alert_type=alert_type, severity=severity,
                                partner_id=partner, since_ms=since_ms, limit=limit)
    if not as_json:
        click.echo(HEADER)
    for alert in found:
        _emit(alert, as_json)
    if not as_json and not follow:
        click.echo(f"{len(found)} alert(s)" + (f" (limit {limit})" if len(found) == limit else ""))
    if follow:
        try:
            asyncio.run(_follow(settings.kafka_bootstrap_servers, alert_type, severity, partner, as_json))
        except KeyboardInterrupt:
            pass


async def _follow(servers: list[str], alert_type: str | None, severity: str | None, partner: str | None,
                  as_json: bool) -> None:
    from processor.desk.follow import follow
    async for alert in follow(servers):
        if ((alert_type and alert["alert_type"] != alert_type) or (severity and alert["severity"] != severity)
                or (partner and alert["partner_id"] != partner)):
            continue
        _emit(alert, as_json)
        sys.stdout.flush()


@alerts.command("resolve")
@click.argument("alert_id")
@click.option("--decision", type=click.Choice(["dismissed", "confirmed"]), required=True,
              help="dismissed releases what the alert holds, confirmed forfeits it.")
@click.option("--analyst", required=True, help="Who decides (recorded in the AlertResolved event).")
@click.option("--note", default=None, help="Why (recorded in the event).")
@click.option("--wait", "wait_s", type=float, default=5.0, show_default=True,
              help="Seconds to wait for the worker to apply the decision.")
def resolve_command(alert_id: str, decision: str, analyst: str, note: str | None, wait_s: float) -> None:
    """Resolve an open alert: writes one AlertResolved event (a retry writes nothing new).

    Exit 2, with the reason and nothing written, when the alert does not exist or is not open.

    \b
    Example:
      incentives alerts resolve self_dealing:P-3:E-12 --decision confirmed --analyst ana --note "owner's firm"
    """
    from processor.desk.resolve import ResolveRefused, resolve
    settings = load_settings()
    try:
        result = resolve(settings, alert_id, decision, analyst, note, wait_s=wait_s)
    except ResolveRefused as exc:
        click.echo(f"error: {exc} ({exc.reason})", err=True)
        sys.exit(2)
    except ValueError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"{alert_id}: {decision} by {analyst} (event {result['event_id']})")
    if not result["applied"]:
        click.echo(f"written; the worker has not applied it within {wait_s:.0f} s (see `incentives alerts "
                   f"--status all --partner {result['partner_id']}`)")
        return
    if not result["entries"]:
        click.echo("applied; it held nothing, so no ledger entry was written")
    for e in result["entries"]:
        click.echo(f"  #{e['seq']} {e['account']} {e['kind']}: available {e['delta_available']:+}, held "
                   f"{e['delta_held']:+} - {e['explanation']}")
