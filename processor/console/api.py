"""The JSON endpoints behind the pages, and the live feed (Server-Sent Events).

Every read and the resolution go through `processor.desk`, the core the `incentives alerts`
command uses too, so the browser and the terminal can never disagree. The desk is synchronous
(clickhouse-driver, a Kafka producer): it runs in a thread so the event loop keeps serving the
live feed meanwhile.
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from processor.config import Settings
from processor.console import live
from processor.console.keys import FEED, SETTINGS
from processor.console.security import SESSION, Session

log = logging.getLogger(__name__)
T = TypeVar("T")

SEVERITIES = ("low", "medium", "high")
STATUSES = ("open", "dismissed", "confirmed", "all")
DECISIONS = ("dismissed", "confirmed")
MAX_NOTE_CHARS = 2000
#: how long a resolution waits for the worker to apply it before answering "written, not yet applied"
RESOLVE_WAIT_S = 5.0


def settings_of(request: web.Request) -> Settings:
    return request.app[SETTINGS]


def session_of(request: web.Request) -> Session:
    return request[SESSION]


async def desk(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a `processor.desk` call in a thread; ClickHouse or Kafka trouble is a 503."""
    try:
        return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))
    except web.HTTPException:
        raise
    except ValueError as e:                          # the desk refused an argument
        raise web.HTTPBadRequest(text=str(e)) from None
    except Exception as e:  # noqa: BLE001 - clickhouse-driver/kafka errors share no base class
        from processor.desk.resolve import ResolveRefused

        if isinstance(e, ResolveRefused):            # an answer for the analyst, not an outage
            raise
        log.warning("desk call %s failed: %s: %s", getattr(fn, "__name__", fn), type(e).__name__, e)
        raise web.HTTPServiceUnavailable(text=f"the projections or the broker did not answer ({type(e).__name__}); "
                                              "try again in a moment") from None


def alert_filters(query: Any) -> dict[str, Any]:
    """Filters from a query string: ``status``, ``type``, ``severity``, ``partner``, ``limit``;
    unknown values are a 400 (never passed on to SQL, which binds them as parameters anyway)."""
    status = query.get("status") or "open"
    severity = query.get("severity") or None
    if status not in STATUSES:
        raise web.HTTPBadRequest(text=f"status must be one of {', '.join(STATUSES)}")
    if severity is not None and severity not in SEVERITIES:
        raise web.HTTPBadRequest(text=f"severity must be one of {', '.join(SEVERITIES)}")
    try:
        limit = max(1, min(1000, int(query.get("limit") or 200)))
    except ValueError:
        raise web.HTTPBadRequest(text="limit must be a number") from None
    return {"status": status, "alert_type": query.get("type") or None, "severity": severity,
            "partner_id": (query.get("partner") or "").strip() or None, "limit": limit}


async def list_alerts(request: web.Request) -> web.Response:
    from processor.desk import queries

    filters = alert_filters(request.query)
    alerts = await desk(queries.list_alerts, settings_of(request), **filters)
    counts = await desk(queries.alert_counts, settings_of(request))
    return _json({"alerts": alerts, "counts": counts, "live_seq": request.app[FEED].seq})


async def counts(request: web.Request) -> web.Response:
    from processor.desk import queries

    return _json(await desk(queries.alert_counts, settings_of(request)))


async def get_alert(request: web.Request) -> web.Response:
    from processor.desk import queries

    alert = await desk(queries.get_alert, settings_of(request), request.match_info["alert_id"])
    return _json(alert) if alert is not None else web.json_response({"error": "no such alert"}, status=404)


async def get_partner(request: web.Request) -> web.Response:
    from processor.desk import queries

    partner = await desk(queries.partner_view, settings_of(request), request.match_info["partner_id"])
    return _json(partner) if partner is not None else web.json_response({"error": "no such partner"}, status=404)


async def me(request: web.Request) -> web.Response:
    session = session_of(request)
    return _json({"user": session.user, "csrf_token": session.csrf})


def check_decision(alert_id: Any, decision: Any, note: Any) -> tuple[str, str, str | None]:
    if not isinstance(alert_id, str) or not alert_id:
        raise web.HTTPBadRequest(text="alert_id is required")
    if decision not in DECISIONS:
        raise web.HTTPBadRequest(text="decision must be dismissed or confirmed")
    if note is not None and not isinstance(note, str):
        raise web.HTTPBadRequest(text="note must be text")
    note = (note or "").strip() or None
    if note is not None and len(note) > MAX_NOTE_CHARS:
        raise web.HTTPBadRequest(text=f"the note is limited to {MAX_NOTE_CHARS} characters")
    return alert_id, decision, note


async def resolve_as_signed_in(request: web.Request, alert_id: str, decision: str,
                               note: str | None) -> dict[str, Any]:
    """Resolve with the signed-in analyst as `analyst` (raises `ResolveRefused`)."""
    from processor.desk.resolve import resolve

    analyst = session_of(request).user
    result = await desk(resolve, settings_of(request), alert_id, decision, analyst, note=note, wait_s=RESOLVE_WAIT_S)
    log.info("alert %s %s by %s (applied: %s)", alert_id, decision, analyst, result.get("applied"))
    return result


async def resolve_json(request: web.Request) -> web.Response:
    """``POST /api/resolve`` with ``{"alert_id", "decision", "note"}`` (and the CSRF header); a
    refusal is a 409 naming the reason (``unknown_alert``, ``alert_already_resolved``)."""
    from processor.desk.resolve import ResolveRefused

    try:
        body = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="the body must be JSON") from None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="the body must be a JSON object")
    alert_id, decision, note = check_decision(body.get("alert_id"), body.get("decision"), body.get("note"))
    try:
        return _json(await resolve_as_signed_in(request, alert_id, decision, note))
    except ResolveRefused as e:
        return web.json_response({"error": str(e), "reason": e.reason}, status=409)


async def live_feed(request: web.Request) -> web.StreamResponse:
    """``GET /api/live?after=SEQ``: alert records as Server-Sent Events (``event: alert``), a
    comment every 15 s to keep proxies and the browser from timing out."""
    feed = request.app[FEED]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    await response.prepare(request)
    queue = feed.subscribe(live.parse_after(request.query.get("after"), request.headers.get("Last-Event-ID")))
    try:
        await response.write(b"retry: 2000\n\n")
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), timeout=15)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            if item is None:
                break
            await response.write(live.sse_message(*item))
    except (ConnectionResetError, ConnectionError):
        pass
    finally:
        feed.unsubscribe(queue)
    return response


async def healthz(request: web.Request) -> web.Response:
    """Public: the process answers (the dev stack's readiness check); no data."""
    feed = request.app[FEED]
    return web.json_response({"ok": True, "live_feed": feed.connected})


def _json(data: Any) -> web.Response:
    return web.json_response(data, dumps=lambda d: json.dumps(d, default=str))
