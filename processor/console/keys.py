"""Typed keys of what the console's application holds (aiohttp's `AppKey`), in one place so the
pages, the API and the middleware share them without importing the app module."""
from __future__ import annotations

import asyncio
from pathlib import Path

import jinja2
from aiohttp import web

from processor.config import Settings
from processor.console.live import LiveFeed
from processor.console.security import SessionStore, SignInThrottle

SETTINGS = web.AppKey("settings", Settings)
USERS_PATH = web.AppKey("users_path", Path)
SESSIONS = web.AppKey("sessions", SessionStore)
THROTTLE = web.AppKey("throttle", SignInThrottle)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
FEED = web.AppKey("feed", LiveFeed)
FEED_TASK = web.AppKey("feed_task", asyncio.Task)
