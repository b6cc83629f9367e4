"""Sessions, CSRF and the sign-in throttle, and the middleware that applies them to every request.

- Sessions live in this process's memory, keyed by a random 256-bit id in an HttpOnly,
  SameSite=Strict cookie: nothing to sign or rotate, and a restart signs everyone out, which is
  acceptable for a console of a few analysts (docs/console.md). The id is replaced at sign-in, so
  a planted cookie is never promoted to a signed-in session.
- Every unsafe request (POST, ...) must carry the session's CSRF token (hidden form field
  ``csrf_token`` or header ``X-CSRF-Token``), compared in constant time, and an ``Origin``, when
  the browser sends one, naming this host. The sign-in form, which has no session yet, uses a
  double-submit token (cookie + field) instead.
- Who resolves an alert is always ``request["session"].user``, never a form field.
"""
from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import quote

from aiohttp import web

SESSION_COOKIE = "incentives_console"
SIGNIN_COOKIE = "incentives_signin"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
#: a session ends after this long without a request, and in any case after MAX_AGE_S
IDLE_TIMEOUT_S = 8 * 3600
MAX_AGE_S = 24 * 3600
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PATHS = frozenset({"/signin", "/healthz", "/favicon.ico"})
PUBLIC_PREFIXES = ("/static/",)

Clock = Callable[[], float]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def new_token() -> str:
    return secrets.token_urlsafe(32)


def tokens_match(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; a missing or empty token never matches."""
    if not given or not expected:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


@dataclass
class Session:
    sid: str
    user: str
    csrf: str
    created: float
    last_seen: float


#: the signed-in session of a request (set by the middleware)
SESSION = web.RequestKey("session", Session)


@dataclass
class SessionStore:
    """In-memory sessions; expired ones are dropped when met and on every new sign-in."""

    clock: Clock = time.time
    sessions: dict[str, Session] = field(default_factory=dict)

    def create(self, user: str) -> Session:
        self._purge()
        now = self.clock()
        session = Session(new_token(), user, new_token(), now, now)
        self.sessions[session.sid] = session
        return session

    def get(self, sid: str | None) -> Session | None:
        session = self.sessions.get(sid) if sid else None
        if session is None:
            return None
        now = self.clock()
        if now - session.last_seen > IDLE_TIMEOUT_S or now - session.created > MAX_AGE_S:
            del self.sessions[session.sid]
            return None
        session.last_seen = now
        return session

    def drop(self, sid: str | None) -> None:
        if sid:
            self.sessions.pop(sid, None)

    def _purge(self) -> None:
        now = self.clock()
        for sid in [s.sid for s in self.sessions.values()
                    if now - s.last_seen > IDLE_TIMEOUT_S or now - s.created > MAX_AGE_S]:
            del self.sessions[sid]


@dataclass
class SignInThrottle:
    """At most ``limit`` failed sign-ins per user name in ``window_s``; then that name is refused
    until the window has passed (slows password guessing without locking anyone out for long)."""

    limit: int = 5
    window_s: float = 300.0
    clock: Clock = time.monotonic
    failures: dict[str, list[float]] = field(default_factory=dict)

    def blocked(self, name: str) -> bool:
        recent = [t for t in self.failures.get(name, []) if self.clock() - t < self.window_s]
        self.failures[name] = recent
        if not recent:
            self.failures.pop(name, None)
        return len(recent) >= self.limit

    def failed(self, name: str) -> None:
        self.failures.setdefault(name, []).append(self.clock())

    def succeeded(self, name: str) -> None:
        self.failures.pop(name, None)


def safe_next(target: str | None) -> str:
    """A local path to go to after sign-in; anything else (another site, ``//host``) is ``/``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def set_cookie(response: web.StreamResponse, name: str, value: str, max_age: int | None = None) -> None:
    response.set_cookie(name, value, httponly=True, samesite="Strict", path="/", max_age=max_age)


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def wants_json(request: web.Request) -> bool:
    return request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")


def origin_ok(request: web.Request) -> bool:
    """No Origin header (non-browser clients, old browsers) or one naming this very host."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    return origin in (f"{request.scheme}://{request.host}", f"http://{request.host}", f"https://{request.host}")


def refuse(request: web.Request, status: int, message: str) -> web.Response:
    if wants_json(request) or request.method not in SAFE_METHODS:
        return web.json_response({"error": message}, status=status)
    return web.Response(status=status, text=message)


async def csrf_token_of(request: web.Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()          # cached: the handler reads the same form
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else None
    return None


@web.middleware
async def security_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Sign-in required outside the public paths (pages redirect, API and POSTs get 401), CSRF and
    Origin checked on every unsafe request, security headers on every response."""
    from processor.console.keys import SESSIONS  # keys imports this module

    store = request.app[SESSIONS]
    if request.method not in SAFE_METHODS and not origin_ok(request):
        return _headers(refuse(request, 403, "cross-origin request refused"))
    if is_public(request.path):
        return _headers(await handler(request))
    session = store.get(request.cookies.get(SESSION_COOKIE))
    if session is None:
        if request.method in SAFE_METHODS and not wants_json(request):
            raise web.HTTPSeeOther(f"/signin?next={quote(request.path_qs, safe='')}")
        return _headers(refuse(request, 401, "sign-in required"))
    if request.method not in SAFE_METHODS and not tokens_match(await csrf_token_of(request), session.csrf):
        return _headers(refuse(request, 403, "missing or wrong CSRF token"))
    request[SESSION] = session
    return _headers(await handler(request))


#: scripts and styles only from this origin (no inline script: data reaches the scripts through
#: data- attributes), no framing, no referrer to other sites
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def _headers(response: web.StreamResponse) -> web.StreamResponse:
    if not response.prepared:             # a live feed has sent its headers already
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Cache-Control", "no-store")
    return response
