"""The server-rendered pages: sign-in, the alert queue, an alert, a partner, the program.

Pages are rendered on the server (Jinja2, autoescaped) so they work before any script runs; the
small scripts in `static/` only add the live feed, ages that tick and the counts. Decisions are
plain form POSTs (CSRF field from the session), answered with a redirect to the alert page.
"""
from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from processor.console import api, users
from processor.console.keys import FEED, SESSIONS, TEMPLATES, THROTTLE, USERS_PATH
from processor.console.security import (
    CSRF_FIELD,
    SESSION,
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    new_token,
    safe_next,
    set_cookie,
    tokens_match,
)

#: an alert reaches the live feed before the ClickHouse sink writes it (a second or two): its page
#: waits up to ~3 s for the projection before saying "no such alert"
PROJECTION_WAIT_TRIES = 10
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}")
REFUSALS = {"unknown_alert": "There is no such alert.",
            "alert_already_resolved": "This alert was already resolved; nothing was written."}


def render(request: web.Request, template: str, status: int = 200, **context: Any) -> web.Response:
    env = request.app[TEMPLATES]
    session = request.get(SESSION)
    text = env.get_template(template).render(
        user=session.user if session else None, csrf=session.csrf if session else "", csrf_field=CSRF_FIELD,
        path=request.path, **context)
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


# ------------------------------------------------------------------------------------ sign-in
async def signin_form(request: web.Request, error: str = "", status: int = 200, name: str = "",
                      next_path: str | None = None) -> web.Response:
    next_path = safe_next(next_path or request.query.get("next"))
    if not error and request.app[SESSIONS].get(request.cookies.get(SESSION_COOKIE)) is not None:
        raise web.HTTPSeeOther(next_path)                  # signed in already
    # one token per browser, not per page view: a second sign-in page (another tab, the favicon's
    # redirect) must not invalidate the form already shown
    token = request.cookies.get(SIGNIN_COOKIE) or ""
    if not TOKEN_PATTERN.fullmatch(token):
        token = new_token()
    response = render(request, "signin.html", status=status, error=error, signin_token=token, name=name,
                      next=next_path)
    set_cookie(response, SIGNIN_COOKIE, token, max_age=3600)
    return response


async def signin(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    name = str(form.get("name", "")).strip()
    password = str(form.get("password", ""))
    next_path = safe_next(str(form.get("next", "/")))
    if not tokens_match(str(form.get(CSRF_FIELD, "")), request.cookies.get(SIGNIN_COOKIE)):
        return await signin_form(request, "The sign-in form expired; please try again.", 403, name, next_path)
    throttle = request.app[THROTTLE]
    if throttle.blocked(name):
        return await signin_form(request, "Too many failed sign-ins for this name; wait a few minutes.", 429, name,
                                 next_path)
    ok = await asyncio.to_thread(users.authenticate, request.app[USERS_PATH], name, password)
    if not ok:
        throttle.failed(name)
        return await signin_form(request, "Wrong name or password.", 401, name, next_path)
    throttle.succeeded(name)
    request.app[SESSIONS].drop(request.cookies.get(SESSION_COOKIE))     # never reuse an old id
    session = request.app[SESSIONS].create(name)
    response = web.HTTPSeeOther(next_path)
    set_cookie(response, SESSION_COOKIE, session.sid)
    response.del_cookie(SIGNIN_COOKIE, path="/")
    raise response


async def signout(request: web.Request) -> web.StreamResponse:
    request.app[SESSIONS].drop(request.cookies.get(SESSION_COOKIE))
    response = web.HTTPSeeOther("/signin")
    response.del_cookie(SESSION_COOKIE, path="/")
    raise response


# ------------------------------------------------------------------------------------ pages
async def index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/alerts")


async def queue(request: web.Request) -> web.Response:
    from processor.desk import queries
    from processor.programs import load_program

    settings = api.settings_of(request)
    filters = api.alert_filters(request.query)
    seq = request.app[FEED].seq                  # before the read: the feed fills any gap after it
    alerts = await api.desk(queries.list_alerts, settings, **filters)
    counts = await api.desk(queries.alert_counts, settings)
    types = sorted(load_program(str(settings.program)).severity)
    return render(request, "queue.html", alerts=alerts, counts=counts, filters=filters, types=types,
                  severities=api.SEVERITIES, statuses=api.STATUSES, live_seq=seq)


async def alert_page(request: web.Request) -> web.Response:
    from processor.desk import queries

    alert_id = request.match_info["alert_id"]
    seq = request.app[FEED].seq
    alert = await api.desk(queries.get_alert, api.settings_of(request), alert_id)
    for _ in range(PROJECTION_WAIT_TRIES):     # opened from the live feed before the sink wrote it
        if alert is not None:
            break
        await asyncio.sleep(0.3)
        alert = await api.desk(queries.get_alert, api.settings_of(request), alert_id)
    if alert is None:
        return render(request, "missing.html", status=404, what="alert", name=alert_id)
    notice = _notice(request.query)
    return render(request, "alert.html", alert=alert, notice=notice, live_seq=seq)


async def resolve_form(request: web.Request) -> web.StreamResponse:
    """The dismiss / confirm buttons: ``alert_id``, ``decision``, optional ``note``; the analyst is
    the signed-in user. Back to the alert page with what happened."""
    from processor.desk.resolve import ResolveRefused

    form = await request.post()
    alert_id, decision, note = api.check_decision(form.get("alert_id"), form.get("decision"), form.get("note"))
    try:
        result = await api.resolve_as_signed_in(request, alert_id, decision, note)
        query = {"written": decision, "applied": "1" if result.get("applied") else "0"}
    except ResolveRefused as e:
        query = {"refused": e.reason}
    raise web.HTTPSeeOther(f"/alerts/{quote(alert_id, safe='')}?{urlencode(query)}")


async def partner_jump(request: web.Request) -> web.StreamResponse:
    """The header's "go to partner" box: ``/partners?partner=ID`` -> ``/partners/ID``."""
    partner_id = (request.query.get("partner") or "").strip()
    raise web.HTTPSeeOther(f"/partners/{quote(partner_id, safe='')}" if partner_id else "/alerts")


async def partner_page(request: web.Request) -> web.Response:
    from processor.desk import queries

    partner_id = request.match_info["partner_id"]
    partner = await api.desk(queries.partner_view, api.settings_of(request), partner_id)
    if partner is None:
        return render(request, "missing.html", status=404, what="partner", name=partner_id)
    open_alerts = [a for a in partner["alerts"] if a["status"] == "open"]
    past_alerts = [a for a in partner["alerts"] if a["status"] != "open"]
    return render(request, "partner.html", partner=partner, open_alerts=open_alerts, past_alerts=past_alerts)


async def program_page(request: web.Request) -> web.Response:
    """The program KPIs by month as inline SVG charts, and the latest month's headline figures."""
    from processor.console import program

    data = await api.desk(program.overview, api.settings_of(request))
    return render(request, "program.html", data=data, charts=program.charts(data) if data else [],
                  window=program.WINDOW_MONTHS)


def _notice(query: Any) -> str:
    """The message after a decision, from known values only (never echoes the query)."""
    if query.get("refused") in REFUSALS:
        return REFUSALS[query["refused"]]
    if query.get("written") in api.DECISIONS:
        if query.get("applied") == "1":
            return f"Alert {query['written']}: the worker has applied your decision."
        return (f"Decision ({query['written']}) written to the log; the worker has not applied it yet. "
                "This page updates when it does.")
    return ""
