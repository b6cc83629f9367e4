"""The console's Program page against the real local ClickHouse (18.16) of the test session.

Its own database, filled with a realistic simulated log through `processor.projection_load` (the
sink's mappings and the KPI rollup), and a second one left empty; the console runs on a real port
in a thread of this process. Checks: sign-in is required; the page has the four inline SVG
charts, one tier bar group per month of `kpi_tier_distribution`, alerts per month as the alerts
table counts them, headline figures equal to what SQL computes here; an empty database says "no
data yet". A headless Chromium screenshot of the page lands in `.incentives/artifacts/`.
"""
from __future__ import annotations

import asyncio
import dataclasses
import html
import itertools
import re
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from processor import projection_load, simulation
from processor.codec import to_json_line
from processor.config import REPO_ROOT, Settings
from processor.console import users
from processor.console.app import make_app
from projections.migrate import client, migrate

from .conftest import free_ports

pytestmark = pytest.mark.integration

ANALYST, PASSWORD = "paula", "paula-password-1"
SVG = "{http://www.w3.org/2000/svg}"
ARTIFACTS = REPO_ROOT / ".incentives" / "artifacts"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _database(clickhouse_settings: Settings, prefix: str) -> Settings:
    settings = dataclasses.replace(clickhouse_settings, clickhouse_database=f"{prefix}_{uuid.uuid4().hex[:8]}")
    migrate(settings)
    return settings


def _drop(settings: Settings) -> None:
    conn = client(settings, database="default")
    conn.execute(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")
    conn.disconnect()


@pytest.fixture(scope="module")
def filled(clickhouse_settings: Settings) -> Iterator[Settings]:
    settings = _database(clickhouse_settings, "console_program")
    try:
        lines = [to_json_line(e) for e in itertools.islice(
            simulation.simulate(seed=3, partners=30, minutes_per_event=60), 6000)]
        projection_load.load(settings, projection_load.project_lines(lines))
        yield settings
    finally:
        _drop(settings)


@pytest.fixture(scope="module")
def empty(clickhouse_settings: Settings) -> Iterator[Settings]:
    settings = _database(clickhouse_settings, "console_program_empty")
    try:
        yield settings
    finally:
        _drop(settings)


async def _no_source():  # pragma: no cover - never iterated: these pages do not use the live feed
    await asyncio.sleep(3600)
    yield {}


def _serve(settings: Settings, users_path: Path) -> Iterator[str]:
    """The console app on a free port, its event loop in a thread; yields its URL."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(make_app(settings, users_path=users_path, source=_no_source))
    port = free_ports(1)[0]
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, name="console", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="module")
def users_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("console") / "console-users.yaml"
    users.add_user(path, ANALYST, PASSWORD)
    return path


@pytest.fixture(scope="module")
def console(filled: Settings, users_path: Path) -> Iterator[str]:
    yield from _serve(filled, users_path)


@pytest.fixture(scope="module")
def empty_console(empty: Settings, users_path: Path) -> Iterator[str]:
    yield from _serve(empty, users_path)


async def _get(url: str, path: str, *, sign_in: bool = True) -> tuple[int, str, str]:
    """GET ``path`` (signed in first, through the form, unless told not to): status, Location, body."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        if sign_in:
            async with session.get(f"{url}/signin") as page:
                assert page.status == 200
            token = session.cookie_jar.filter_cookies(URL(url))["incentives_signin"].value
            async with session.post(f"{url}/signin", data={"csrf_token": token, "name": ANALYST,
                                                           "password": PASSWORD, "next": path},
                                    allow_redirects=False) as signed_in:
                assert signed_in.status == 303 and signed_in.headers["Location"] == path
        async with session.get(f"{url}{path}", allow_redirects=False) as response:
            return response.status, response.headers.get("Location", ""), await response.text()


def get(url: str, path: str, *, sign_in: bool = True) -> tuple[int, str, str]:
    return asyncio.run(_get(url, path, sign_in=sign_in))


def svgs(page: str) -> list[ET.Element]:
    return [ET.fromstring(s) for s in re.findall(r"<svg\b.*?</svg>", page, flags=re.S)]


def bar_groups(chart: ET.Element) -> list[ET.Element]:
    return [g for g in chart.iter(f"{SVG}g") if g.get("class") == "bar-group"]


def cell(page: str, element_id: str) -> str:
    found = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', page)
    assert found, element_id
    return html.unescape(found.group(1)).strip()


def query(settings: Settings, sql: str) -> list[tuple]:
    conn = client(settings)
    try:
        return list(conn.execute(sql.replace("{db}", settings.clickhouse_database)))
    finally:
        conn.disconnect()


def test_the_program_page_needs_a_session(console: str):
    status, location, _ = get(console, "/program", sign_in=False)
    assert status == 303
    target = urlsplit(location)
    assert target.path == "/signin" and parse_qs(target.query)["next"] == ["/program"]


def test_the_program_page_charts_the_kpis_of_the_log(console: str, filled: Settings):
    started = time.monotonic()
    status, _, page = get(console, "/program")
    print(f"\n/program signed in and rendered in {time.monotonic() - started:.2f} s")
    assert status == 200, page
    assert 'href="/program" aria-current="page"' in page                  # the nav link, current
    charts = svgs(page)
    assert [c.get("id") for c in charts] == ["chart-partners-by-tier", "chart-points-awarded-redeemed-and-expired",
                                             "chart-net-sales", "chart-alerts-raised-by-type"]
    tiers, points, sales, alerts = charts
    assert all(c.get("role") == "img" and c.find(f"{SVG}title") is not None for c in charts)

    # one bar group per month of kpi_tier_distribution (at most the last 24), with its partners
    by_month = query(filled, "SELECT period, sum(partners) FROM {db}.kpi_tier_distribution "
                             "WHERE period_type = 'month' GROUP BY period ORDER BY period")[-24:]
    assert len(by_month) >= 6
    assert [(g.get("data-label"), int(g.get("data-total") or -1)) for g in bar_groups(tiers)] == \
           [(period, int(n)) for period, n in by_month]
    months = [period for period, _ in by_month]

    # one point per month and series; alerts per month as the alerts table itself counts them
    assert len([c for c in points.iter(f"{SVG}circle")]) == 3 * len(months)
    assert len([c for c in sales.iter(f"{SVG}circle")]) == len(months)   # under a year of data: no year-ago line
    raised = dict(query(filled, "SELECT substring(toString(toStartOfMonth(raised_at)), 1, 7) AS m, count() "
                                "FROM {db}.alerts FINAL GROUP BY m"))
    assert sum(raised.values()) > 0
    assert {g.get("data-label"): int(g.get("data-total") or 0) for g in bar_groups(alerts)} == \
           {m: raised.get(m, 0) for m in months}

    # the headline figures of the latest month, from the rollup directly
    latest = months[-1]
    assert f"Latest month: {latest}" in page
    (net,) = query(filled, "SELECT sum(gross_sales_cents - returns_cents) FROM {db}.kpi_partner_month FINAL "
                           f"WHERE month = toDate('{latest}-01')")[0]
    assert net > 0
    assert cell(page, "headline-net-sales") == f"${net / 100:,.2f}"
    enrolled, active = query(filled, "SELECT sum(enrolled_partners), sum(active_partners) FROM {db}.kpi_participation "
                                     f"WHERE period_type = 'month' AND period = '{latest}'")[0]
    assert cell(page, "headline-participation") == f"{100 * active / enrolled:.1f}%"
    awarded, redeemed = query(filled, "SELECT sum(points_awarded), sum(points_redeemed) FROM {db}.kpi_redemption "
                                      f"WHERE period_type = 'month' AND period = '{latest}'")[0]
    assert cell(page, "headline-redemption") == (f"{100 * redeemed / awarded:.1f}%" if awarded else "—")
    assert cell(page, "headline-program-cost").startswith("$")


def test_an_empty_database_says_no_data_yet(empty_console: str):
    status, _, page = get(empty_console, "/program")
    assert status == 200
    assert 'id="no-data"' in page and "No data yet" in page
    assert "<svg" not in page


def test_a_browser_shows_the_four_charts(console: str):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip(f"{CHROMIUM} / {CHROMEDRIVER} missing (scripts/bootstrap.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1400,1800"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.set_page_load_timeout(60)
        driver.get(f"{console}/program")
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "signin-form"))
        driver.find_element(By.ID, "name").send_keys(ANALYST)
        driver.find_element(By.ID, "password").send_keys(PASSWORD)
        driver.find_element(By.ID, "signin-button").click()
        WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "program"))
        charts = driver.find_elements(By.CSS_SELECTOR, "svg.chart")
        assert len(charts) == 4
        assert all(c.is_displayed() and c.size["width"] > 300 and c.size["height"] > 100 for c in charts)
        # the style sheet applies (nothing refused by the Content-Security-Policy): two charts side by side
        assert charts[0].location["y"] == charts[1].location["y"]
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert not errors, errors
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(ARTIFACTS / "console-program.png"))
        print(f"\nscreenshot of the Program page: {ARTIFACTS / 'console-program.png'}")
    finally:
        driver.quit()
