"""The console's aiohttp application: routes, templates, the live feed's lifetime, and `run`.

Ids go in paths percent-encoded and are matched with ``.+`` (alert ids are
``TYPE:PARTNER:TRIGGER_EVENT`` and event ids are free text). The live feed is a task of the app:
started with it, cancelled when it stops, after every open live stream has been told to end (so a
browser holding a feed open never delays a shutdown).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from aiohttp import web

from processor.config import Settings
from processor.console import api, live, pages
from processor.console.keys import FEED, FEED_TASK, SESSIONS, SETTINGS, TEMPLATES, THROTTLE, USERS_PATH
from processor.console.security import SessionStore, SignInThrottle, security_middleware

HERE = Path(__file__).resolve().parent
log = logging.getLogger(__name__)


def kafka_source(settings: Settings) -> live.Source:
    def source() -> AsyncIterator[dict[str, Any]]:
        from processor.desk.follow import follow

        return follow(settings.kafka_bootstrap_servers)
    return source


def templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=jinja2.select_autoescape(default=True), undefined=jinja2.StrictUndefined)
    env.filters["urlpart"] = lambda value: quote(str(value), safe="")
    env.filters["points"] = lambda value: f"{int(value or 0):,}"
    env.filters["dollars"] = lambda cents: f"${int(cents or 0) / 100:,.2f}"
    env.filters["when"] = _when
    return env


def _when(iso: str | None) -> str:
    """``2026-09-03T10:00:00Z`` -> ``2026-09-03 10:00 UTC`` (the page's scripts add the age)."""
    if not iso:
        return ""
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return iso


def make_app(settings: Settings, *, users_path: Path | None = None,
             source: live.Source | None = None) -> web.Application:
    """The application; ``users_path`` defaults to ``settings.console_users``, ``source`` (the
    alert records) to a consumer of `anomaly-alerts` on the settings' broker."""
    app = web.Application(middlewares=[security_middleware], client_max_size=64 * 1024)
    app[SETTINGS] = settings
    app[USERS_PATH] = users_path or settings.console_users
    app[SESSIONS] = SessionStore()
    app[THROTTLE] = SignInThrottle()
    app[TEMPLATES] = templates()
    app[FEED] = live.LiveFeed(source or kafka_source(settings))

    app.router.add_get("/", pages.index)
    app.router.add_get("/signin", pages.signin_form)
    app.router.add_post("/signin", pages.signin)
    app.router.add_post("/signout", pages.signout)
    app.router.add_get("/alerts", pages.queue)
    app.router.add_get("/alerts/{alert_id:.+}", pages.alert_page)
    app.router.add_post("/resolve", pages.resolve_form)
    app.router.add_get("/partners", pages.partner_jump)
    app.router.add_get("/partners/{partner_id:.+}", pages.partner_page)
    app.router.add_get("/program", pages.program_page)
    app.router.add_get("/api/alerts", api.list_alerts)
    app.router.add_get("/api/alerts/{alert_id:.+}", api.get_alert)
    app.router.add_get("/api/counts", api.counts)
    app.router.add_get("/api/partners/{partner_id:.+}", api.get_partner)
    app.router.add_get("/api/me", api.me)
    app.router.add_post("/api/resolve", api.resolve_json)
    app.router.add_get("/api/live", api.live_feed)
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/favicon.ico", _no_icon)
    app.router.add_static("/static/", HERE / "static", follow_symlinks=False)

    app.on_startup.append(_start_feed)
    app.on_shutdown.append(_end_streams)
    app.on_cleanup.append(_stop_feed)
    return app


async def _no_icon(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def _start_feed(app: web.Application) -> None:
    app[FEED_TASK] = asyncio.get_running_loop().create_task(app[FEED].run(), name="live-alert-feed")


async def _end_streams(app: web.Application) -> None:
    app[FEED].close()


async def _stop_feed(app: web.Application) -> None:
    task = app[FEED_TASK]
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def run(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM on ``settings.console_host:console_port``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    users_path = settings.console_users
    if not users_path.exists():
        log.warning("no users file at %s: nobody can sign in (incentives console add-user NAME)", users_path)
    print(f"incentives console on {settings.console_url} (users: {users_path})", flush=True)
    web.run_app(make_app(settings), host=settings.console_host, port=settings.console_port, print=None,
                shutdown_timeout=5.0)
