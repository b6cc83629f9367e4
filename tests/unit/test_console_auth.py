"""The console's pure parts, without services: password hashes, the users file, sessions, CSRF,
the sign-in throttle, the live feed's fan-out, and the HTTP rules (sign-in required, CSRF on
every POST, the analyst is the session's user) through aiohttp's test client."""
from __future__ import annotations

import asyncio
import os
import stat
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from aiohttp.test_utils import TestClient, TestServer

from processor.config import load_settings
from processor.console import live, users
from processor.console.app import make_app
from processor.console.security import SessionStore, SignInThrottle, safe_next, tokens_match

FAST = {"n": 2**4, "r": 8, "p": 1}          # tiny scrypt cost: the tests check logic, not strength


# ------------------------------------------------------------------------------ passwords
def test_a_hash_verifies_its_password_only():
    record = users.hash_password("correct horse battery", **FAST)
    assert set(record) == {"n", "r", "p", "salt", "hash"}
    assert users.verify_password("correct horse battery", record)
    assert not users.verify_password("correct horse batterY", record)
    assert not users.verify_password("", record)


def test_each_hash_has_its_own_salt():
    a, b = users.hash_password("same password", **FAST), users.hash_password("same password", **FAST)
    assert a["salt"] != b["salt"] and a["hash"] != b["hash"]


def test_the_stored_parameters_are_used():
    record = users.hash_password("pw-1234567", n=2**5, r=4, p=2)
    assert (record["n"], record["r"], record["p"]) == (32, 4, 2)
    assert users.verify_password("pw-1234567", record)
    assert not users.verify_password("pw-1234567", {**record, "n": 64})


@pytest.mark.parametrize("record", [None, {}, {"n": 16}, {"n": "x", "r": 8, "p": 1, "salt": "00", "hash": "00"},
                                    {"n": 2**30, "r": 8, "p": 1, "salt": "00", "hash": "00" * 32},
                                    {"n": 16, "r": 8, "p": 1, "salt": "zz", "hash": "00" * 32}])
def test_a_missing_or_broken_record_never_verifies(record):
    assert users.verify_password("not a password", record) is False


def test_the_dummy_hash_password_does_not_sign_in_an_unknown_name(tmp_path):
    path = tmp_path / "users.yaml"
    users.add_user(path, "alice", "alice-password")
    assert not users.authenticate(path, "nobody", "not a password")
    assert not users.authenticate(path, "nobody", "alice-password")


# ------------------------------------------------------------------------------ users file
def test_add_user_writes_hashes_only_owner_readable(tmp_path):
    path = tmp_path / "deploy" / "console-users.yaml"
    users.add_user(path, "alice", "alice-password")
    text = path.read_text()
    assert "alice-password" not in text and "scrypt" in text
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert users.authenticate(path, "alice", "alice-password")
    assert not users.authenticate(path, "alice", "wrong-password")
    entry = users.load_users(path)["alice"]["scrypt"]
    assert (entry["n"], entry["r"], entry["p"]) == (users.SCRYPT_N, users.SCRYPT_R, users.SCRYPT_P)


def test_add_user_refuses_a_taken_name_unless_replace(tmp_path):
    path = tmp_path / "u.yaml"
    users.add_user(path, "alice", "first-password")
    with pytest.raises(users.UsersError, match="already exists"):
        users.add_user(path, "alice", "second-password")
    users.add_user(path, "alice", "second-password", replace=True)
    assert users.authenticate(path, "alice", "second-password")
    assert not users.authenticate(path, "alice", "first-password")


@pytest.mark.parametrize("name,password,match", [
    ("", "long-enough-pw", "user name"), ("a b", "long-enough-pw", "user name"), ("-x", "long-enough-pw", "user name"),
    ("alice", "short", "at least"),
])
def test_add_user_validates(tmp_path, name, password, match):
    with pytest.raises(users.UsersError, match=match):
        users.add_user(tmp_path / "u.yaml", name, password)
    assert not (tmp_path / "u.yaml").exists()


def test_a_missing_users_file_is_nobody_and_a_broken_one_an_error(tmp_path):
    assert users.load_users(tmp_path / "none.yaml") == {}
    assert not users.authenticate(tmp_path / "none.yaml", "alice", "whatever-pw")
    bad = tmp_path / "bad.yaml"
    bad.write_text("users: [1, 2]\n")
    with pytest.raises(users.UsersError):
        users.load_users(bad)


# ------------------------------------------------------------------------------ sessions, CSRF, throttle
def test_tokens_match_in_constant_time_and_never_when_empty():
    assert tokens_match("abc", "abc")
    assert not tokens_match("abc", "abd")
    assert not tokens_match("", "")
    assert not tokens_match(None, "abc")


def test_sessions_expire_when_idle_and_at_the_maximum_age():
    now = [1000.0]
    store = SessionStore(clock=lambda: now[0])
    s = store.create("alice")
    assert s.sid != s.csrf and len(s.sid) >= 40
    assert store.get(s.sid) is s
    now[0] += 7 * 3600
    assert store.get(s.sid) is s                     # used again: idle time restarts
    now[0] += 7 * 3600
    assert store.get(s.sid) is s
    now[0] += 11 * 3600                              # 25 h after creation: over the maximum age
    assert store.get(s.sid) is None
    idle = store.create("bob")
    now[0] += 9 * 3600
    assert store.get(idle.sid) is None
    assert store.get(None) is None and store.get("forged") is None


def test_the_throttle_blocks_a_name_after_repeated_failures_for_a_while():
    now = [0.0]
    t = SignInThrottle(limit=3, window_s=60, clock=lambda: now[0])
    for _ in range(3):
        assert not t.blocked("alice")
        t.failed("alice")
    assert t.blocked("alice") and not t.blocked("bob")
    now[0] += 61
    assert not t.blocked("alice")
    t.failed("alice")
    t.succeeded("alice")
    assert "alice" not in t.failures


@pytest.mark.parametrize("target,expected", [
    ("/alerts?type=x", "/alerts?type=x"), (None, "/"), ("", "/"), ("https://evil.example/", "/"),
    ("//evil.example/x", "/"), ("/\\evil.example", "/"), ("alerts", "/"),
])
def test_safe_next_only_allows_local_paths(target, expected):
    assert safe_next(target) == expected


# ------------------------------------------------------------------------------ the live feed
def test_the_feed_fans_out_and_replays_what_a_page_missed():
    async def scenario() -> None:
        feed = live.LiveFeed(source=_no_source, buffer=3, queue_max=10)
        feed.publish({"alert_id": "a1"})
        rendered_at = feed.seq                        # a page rendered now...
        feed.publish({"alert_id": "a2"})              # ...and an alert before its browser connects
        first = feed.subscribe(after=rendered_at)
        second = feed.subscribe()
        feed.publish({"alert_id": "a3"})
        assert [first.get_nowait()[1]["alert_id"] for _ in range(2)] == ["a2", "a3"]
        assert second.get_nowait() == (3, {"alert_id": "a3"})
        stale = feed.subscribe(after=99)              # a sequence from before a restart: everything buffered
        assert stale.qsize() == 3
        feed.close()
        assert first.get_nowait() is None and second.get_nowait() is None
    asyncio.run(scenario())


def test_a_slow_subscriber_is_cut_off_not_waited_for():
    async def scenario() -> None:
        feed = live.LiveFeed(source=_no_source, queue_max=2)
        slow = feed.subscribe()
        for i in range(5):
            feed.publish({"alert_id": f"a{i}"})
        assert feed.subscribers == 0
        items = [slow.get_nowait() for _ in range(slow.qsize())]
        assert items[-1] is None
    asyncio.run(scenario())


def test_sse_messages_and_resume_points():
    assert live.sse_message(7, {"a": "x\ny"}) == b'id: 7\nevent: alert\ndata: {"a":"x\\ny"}\n\n'
    assert live.parse_after("5", None) == 5
    assert live.parse_after("5", "9") == 9
    assert live.parse_after("x", "") is None


async def _no_source():  # pragma: no cover - never iterated in these tests
    await asyncio.sleep(3600)
    yield {}


# ------------------------------------------------------------------------------ HTTP rules
class FakeDesk:
    """Stands in for processor.desk: records resolutions, serves one alert."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from processor.desk import queries, resolve

        self.resolved: list[tuple[str, str, str, Any]] = []
        alert = {"alert_id": "self_dealing:P1:s1", "alert_type": "self_dealing", "severity": "high",
                 "partner_id": "P1", "trigger_event_id": "s1", "hold_order_id": None, "status": "open",
                 "held_points": 500, "evidence": "customer <b>P2</b> is a partner",
                 "occurred_at": "2026-09-01T10:00:00Z", "resolved_by": ""}
        monkeypatch.setattr(queries, "list_alerts", lambda _s, **_kw: [alert])
        monkeypatch.setattr(queries, "alert_counts", lambda _s: {"open_by_type": {"self_dealing": 1}, "open": 1,
                                                                 "oldest_open_at": "2026-09-01T10:00:00Z"})
        monkeypatch.setattr(queries, "get_alert", lambda _s, a: {**alert, "trigger_event": None, "related": []}
                            if a == alert["alert_id"] else None)

        def fake_resolve(_s, alert_id, decision, analyst, note=None, wait_s=5.0):
            if alert_id != alert["alert_id"]:
                raise resolve.ResolveRefused("unknown_alert", "no such alert")
            self.resolved.append((alert_id, decision, analyst, note))
            return {"event_id": f"resolution:{alert_id}", "alert_id": alert_id, "decision": decision,
                    "applied": True, "entries": []}
        monkeypatch.setattr(resolve, "resolve", fake_resolve)


def _run_client(tmp_path, check) -> None:
    path = tmp_path / "users.yaml"
    users.add_user(path, "alice", "alice-password")
    app = make_app(load_settings({"INCENTIVES_HOME": str(tmp_path)}), users_path=path, source=_no_source)

    async def scenario() -> None:
        async with TestClient(TestServer(app)) as client:
            await check(client)
    asyncio.run(scenario())


async def _sign_in(client: TestClient, name: str = "alice", password: str = "alice-password") -> str:
    """Signs in through the form; returns the session's CSRF token (from /api/me)."""
    page = await client.get("/signin")
    token = client.session.cookie_jar.filter_cookies(client.make_url("/"))["incentives_signin"].value
    assert token in await page.text()
    response = await client.post("/signin", data={"csrf_token": token, "name": name, "password": password,
                                                  "next": "/alerts"}, allow_redirects=False)
    assert response.status == 303, await response.text()
    assert response.headers["Location"] == "/alerts"
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    me = await client.get("/api/me")
    return str((await me.json())["csrf_token"])


def test_unauthenticated_pages_redirect_and_api_and_posts_are_refused(tmp_path):
    async def check(client: TestClient) -> None:
        page = await client.get("/alerts?type=self_dealing", allow_redirects=False)
        assert page.status == 303
        location = urlsplit(page.headers["Location"])
        assert location.path == "/signin" and parse_qs(location.query)["next"] == ["/alerts?type=self_dealing"]
        assert (await client.get("/api/alerts")).status == 401
        assert (await client.get("/api/live")).status == 401
        post = await client.post("/resolve", data={"alert_id": "self_dealing:P1:s1", "decision": "confirmed"})
        assert post.status == 401
        assert (await client.post("/api/resolve", json={"alert_id": "x", "decision": "confirmed"})).status == 401
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/static/console.js")).status == 200
    _run_client(tmp_path, check)


def test_sign_in_needs_the_form_token_and_the_right_password(tmp_path):
    async def check(client: TestClient) -> None:
        await client.get("/signin")
        no_token = await client.post("/signin", data={"name": "alice", "password": "alice-password"})
        assert no_token.status == 403
        token = client.session.cookie_jar.filter_cookies(client.make_url("/"))["incentives_signin"].value
        wrong = await client.post("/signin", data={"csrf_token": token, "name": "alice", "password": "nope-nope-nope"})
        assert wrong.status == 401 and "Wrong name or password" in await wrong.text()
        assert (await client.get("/api/me")).status == 401
        await _sign_in(client)
    _run_client(tmp_path, check)


def test_a_second_sign_in_page_keeps_the_first_forms_token(tmp_path):
    """A browser asks for the favicon (redirected to sign-in) or opens a second tab: the form
    already shown must still work."""
    async def check(client: TestClient) -> None:
        jar = client.session.cookie_jar
        await client.get("/signin")
        first = jar.filter_cookies(client.make_url("/"))["incentives_signin"].value
        second_page = await (await client.get("/signin?next=/favicon.ico")).text()
        assert jar.filter_cookies(client.make_url("/"))["incentives_signin"].value == first
        assert first in second_page
        assert (await client.get("/favicon.ico")).status == 204
        await _sign_in(client)
    _run_client(tmp_path, check)


def test_dev_up_creates_a_first_user_once_and_prints_it_while_valid(tmp_path):
    from processor.devstack import console as console_proc

    s = load_settings({"INCENTIVES_HOME": str(tmp_path / "home"),
                       "INCENTIVES_CONSOLE_USERS": str(tmp_path / "deploy" / "console-users.yaml")})
    name, password = console_proc.ensure_first_user(s)
    assert name == "analyst" and users.authenticate(s.console_users, name, password)
    assert stat.S_IMODE(os.stat(console_proc.first_user_file(s)).st_mode) == 0o600
    assert console_proc.ensure_first_user(s) == (name, password)          # a later dev up: same line
    assert f"as analyst / password {password}" in console_proc.credentials_line(s, (name, password))
    users.add_user(s.console_users, "analyst", "changed-password", replace=True)
    assert console_proc.ensure_first_user(s) is None                        # changed: never printed again
    assert "add-user" in console_proc.credentials_line(s, None)
    argv = console_proc.argv(s)
    assert console_proc.MARKER in " ".join(argv)
    assert load_settings(console_proc.environment(s)).console_users == s.console_users


def test_every_post_needs_the_session_csrf_token_and_the_analyst_is_the_session_user(tmp_path, monkeypatch):
    desk = FakeDesk(monkeypatch)

    async def check(client: TestClient) -> None:
        csrf = await _sign_in(client)
        form = {"alert_id": "self_dealing:P1:s1", "decision": "confirmed", "note": "seen before", "analyst": "mallory"}
        assert (await client.post("/resolve", data=form)).status == 403
        assert (await client.post("/resolve", data={**form, "csrf_token": "forged"})).status == 403
        cross = await client.post("/resolve", data={**form, "csrf_token": csrf}, headers={"Origin": "http://evil.example"})
        assert cross.status == 403
        assert desk.resolved == []
        done = await client.post("/resolve", data={**form, "csrf_token": csrf}, allow_redirects=False)
        assert done.status == 303
        assert unquote(done.headers["Location"]) == "/alerts/self_dealing:P1:s1?written=confirmed&applied=1"
        assert desk.resolved == [("self_dealing:P1:s1", "confirmed", "alice", "seen before")]
        api = await client.post("/api/resolve", json={"alert_id": "nope", "decision": "dismissed"},
                                headers={"X-CSRF-Token": csrf})
        assert api.status == 409 and (await api.json())["reason"] == "unknown_alert"
        bad = await client.post("/api/resolve", json={"alert_id": "x", "decision": "maybe"},
                                headers={"X-CSRF-Token": csrf})
        assert bad.status == 400
    _run_client(tmp_path, check)


def test_pages_escape_what_alerts_contain_and_forbid_inline_script(tmp_path, monkeypatch):
    FakeDesk(monkeypatch)

    async def check(client: TestClient) -> None:
        await _sign_in(client)
        page = await client.get("/alerts")
        text = await page.text()
        assert page.status == 200 and "self_dealing:P1:s1" in text
        assert "<b>P2</b>" not in text and "&lt;b&gt;P2&lt;/b&gt;" in text
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        alert = await client.get("/alerts/self_dealing%3AP1%3As1?written=confirmed&applied=1")
        assert alert.status == 200 and "the worker has applied your decision" in await alert.text()
        assert (await client.get("/alerts/unknown")).status == 404
        signed_out = await client.post("/signout", data={"csrf_token": (await (await client.get("/api/me")).json())
                                                         ["csrf_token"]}, allow_redirects=False)
        assert signed_out.status == 303
        assert (await client.get("/api/me")).status == 401
    _run_client(tmp_path, check)
