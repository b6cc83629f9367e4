"""The analysts' console in a real headless Chromium (Debian's chromium + chromium-driver, through
Selenium), against the session's broker, worker and ClickHouse, the console started as
`incentives dev up` starts it (its own process, by pid).

An analyst signs in, watches the queue, a self-dealing sale is emitted and its alert appears
without a reload (timed against the record's arrival on `anomaly-alerts`), opens it, confirms it,
and sees its status change; the decision is an `AlertResolved` whose analyst is the signed-in user.
A screenshot of the queue is kept under `.incentives/artifacts/`. Requests without a session or
without the CSRF token are refused.

Named to run after test_devstack.py, whose first test expects no worker yet (this module starts the
session's worker).
"""
from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from processor import topics
from processor.codec import from_json_line
from processor.config import REPO_ROOT, Settings
from processor.console import users
from processor.devstack import console as console_proc
from processor.producer import EventProducer

from .conftest import free_ports
from .helpers import wait_for, worker_partners

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ANALYST, PASSWORD = "tess", "tess-password-1"
ARTIFACTS = REPO_ROOT / ".incentives" / "artifacts"
#: SPEC 5: analysts see an alert within a second of it arriving on the topic
LIVE_LATENCY_S = 1.0
RUN = uuid.uuid4().hex[:6]
pytestmark = pytest.mark.e2e
SELLER, BUYER = f"CON{RUN}-A", f"CON{RUN}-B"


def event(**fields: object) -> dict:
    return from_json_line(json.dumps(fields))


@pytest.fixture(scope="module")
def console(worker: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    home = tmp_path_factory.mktemp("console")
    users_path = home / "console-users.yaml"
    users.add_user(users_path, ANALYST, PASSWORD)
    settings = worker.replace(console_port=free_ports(1)[0], console_users=users_path)
    console_proc.start(settings)
    try:
        yield settings
    finally:
        console_proc.stop(settings)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail(f"{CHROMIUM} / {CHROMEDRIVER} missing: run scripts/bootstrap.sh (apt-get install chromium "
                    "chromium-driver)", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1400,900",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _post(url: str, data: bytes, headers: dict[str, str]) -> int:
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def test_an_unauthenticated_post_is_refused(console: Settings):
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    assert _post(f"{console.console_url}/resolve", b"alert_id=x&decision=confirmed", form) == 401
    assert _post(f"{console.console_url}/api/resolve", b'{"alert_id":"x","decision":"confirmed"}',
                 {"Content-Type": "application/json"}) == 401
    with urllib.request.urlopen(f"{console.console_url}/healthz", timeout=10) as resp:
        assert resp.status == 200


def _alert_arrival_ms(consumer: KafkaConsumer, alert_id: str, status: str, timeout: float = 90.0) -> int:
    """When the alert record (in that status) was written to `anomaly-alerts` (its timestamp)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            for record in records:
                value = json.loads(record.value)
                if value.get("alert_id") == alert_id and value.get("status") == status:
                    return int(record.timestamp)
    raise AssertionError(f"{alert_id} ({status}) never reached {topics.ANOMALY_ALERTS}")


def test_an_analyst_sees_an_alert_arrive_live_opens_it_and_confirms_it(console: Settings, browser):
    try:
        _analyst_flow(console, browser)
    except BaseException:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "console-failure.png"))
        (ARTIFACTS / "console-failure.html").write_text(browser.page_source)
        log = console_proc.log_file(console)
        print(f"\nfailure page: {ARTIFACTS / 'console-failure.html'}; console log {log}:\n"
              + "\n".join(log.read_text(errors="replace").splitlines()[-40:]))
        raise


def _analyst_flow(console: Settings, driver) -> None:  # type: ignore[no-untyped-def]
    from selenium.common.exceptions import NoSuchElementException
    from selenium.common.exceptions import StaleElementReferenceException as StaleReferenceError
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with EventProducer(console.kafka_bootstrap_servers) as producer:
        for pid in (SELLER, BUYER):
            producer.send(event(event_id=f"enrol-{pid}", event_type="PartnerEnrolled", partner_id=pid,
                                occurred_at="2026-01-05T09:00:00Z", name=f"Partner {pid}", segment="long_tail",
                                region="emea"))
    assert wait_for(lambda: {SELLER, BUYER} <= set(worker_partners(console)), True, timeout=120)

    # sign in: a page asked for before signing in comes back after it
    driver.get(f"{console.console_url}/alerts")
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "signin-form"))
    driver.find_element(By.ID, "name").send_keys(ANALYST)
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.ID, "signin-button").click()
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "queue"))
    assert driver.find_element(By.ID, "signed-in-user").text == ANALYST
    WebDriverWait(driver, 30, ignored_exceptions=(NoSuchElementException, StaleReferenceError)).until(
        lambda d: d.find_element(By.ID, "live-state").text == "live")
    # a marker that a reload would wipe, and the time each row is added to the table
    driver.execute_script("""
        window.__notReloaded = true; window.__rowSeen = {};
        new MutationObserver((changes) => changes.forEach((c) => c.addedNodes.forEach((n) => {
          if (n.dataset && n.dataset.alertId && !(n.dataset.alertId in window.__rowSeen))
            window.__rowSeen[n.dataset.alertId] = Date.now();
        }))).observe(document.getElementById('queue-body'), {childList: true});""")

    consumer = KafkaConsumer(bootstrap_servers=console.kafka_bootstrap_servers, enable_auto_commit=False)
    parts = [TopicPartition(topics.ANOMALY_ALERTS, p) for p in consumer.partitions_for_topic(topics.ANOMALY_ALERTS)]
    consumer.assign(parts)
    consumer.seek_to_end(*parts)                   # may land early on this broker: records are matched by id
    [consumer.position(tp) for tp in parts]

    sale_id = f"sale-{SELLER}-1"
    alert_id = f"self_dealing:{SELLER}:{sale_id}"
    with EventProducer(console.kafka_bootstrap_servers) as producer:
        producer.send(event(event_id=sale_id, event_type="SaleRecorded", partner_id=SELLER,
                            occurred_at="2026-09-02T10:00:00Z", order_id=f"order-{SELLER}-1", customer_id=BUYER,
                            sku="SKU-1", category="software", quantity=1, amount_cents=250_000))
    arrived_ms = _alert_arrival_ms(consumer, alert_id, "open")
    WebDriverWait(driver, 30, poll_frequency=0.1).until(
        lambda d: d.execute_script("return arguments[0] in window.__rowSeen", alert_id))
    seen_ms = driver.execute_script("return window.__rowSeen[arguments[0]]", alert_id)
    latency_s = (seen_ms - arrived_ms) / 1000
    print(f"\nalert {alert_id}: on the topic -> in the browser's queue in {latency_s * 1000:.0f} ms")
    assert driver.execute_script("return window.__notReloaded === true"), "the queue page was reloaded"
    assert latency_s < LIVE_LATENCY_S, f"the alert took {latency_s:.2f} s to reach the queue"
    row = driver.find_element(By.CSS_SELECTOR, f'#queue-body tr[data-alert-id="{alert_id}"]')
    assert "self_dealing" in row.text and SELLER in row.text and "open" in row.text

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "console-queue.png"
    assert driver.save_screenshot(str(shot))
    shutil.copy(shot, ARTIFACTS / f"console-queue-{RUN}.png")
    print(f"screenshot of the queue: {shot}")

    # open it: evidence, the triggering event, the points held
    row.find_element(By.CSS_SELECTOR, "a.open-alert").click()
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "alert"))
    assert driver.find_element(By.ID, "alert-status").text == "open"
    assert BUYER in driver.find_element(By.ID, "evidence").text
    assert sale_id in driver.page_source                           # the triggering event's id
    assert driver.find_element(By.ID, "held-points").text == "5,000"  # 2,500 USD software x200%

    driver.find_element(By.ID, "note").send_keys("buyer is the seller's own partner account")
    driver.find_element(By.ID, "confirm-button").click()
    # the page is replaced after the decision (and updated live): an element found a moment before
    # may be gone when its text is read (a stale reference is a reason to look again, not a failure)
    WebDriverWait(driver, 60, poll_frequency=0.2, ignored_exceptions=(NoSuchElementException, StaleReferenceError)
                  ).until(lambda d: d.find_element(By.ID, "alert-status").text == "confirmed")
    assert f"by {ANALYST}" in driver.find_element(By.ID, "alert-resolved-by").text
    assert not driver.find_element(By.ID, "resolve-form").is_displayed()
    driver.save_screenshot(str(ARTIFACTS / "console-alert-confirmed.png"))

    # the decision is an event in the log, by the signed-in user, and its forfeit is in the ledger
    from processor.desk import queries

    resolved = wait_for(lambda: (queries.get_alert(console, alert_id) or {}).get("resolved_by"), ANALYST)
    assert resolved == ANALYST
    ledger = wait_for(lambda: [e["kind"] for e in (queries.partner_view(console, SELLER) or {"ledger": []})["ledger"]
                               if e["source_event_id"] == f"resolution:{alert_id}"], ["forfeit"])
    assert ledger == ["forfeit"]

    # the partner page: tier, balances, progress, the ledger with its explanations, the past alert
    driver.find_element(By.CSS_SELECTOR, "h1 a").click()
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "partner"))
    page = driver.find_element(By.ID, "partner").text
    assert driver.find_element(By.ID, "tier").text == "registered"
    assert "To reach silver" in page
    assert f"forfeit 5000 held of order order-{SELLER}-1: alert {alert_id} confirmed" in page
    past = driver.find_elements(By.CSS_SELECTOR, f'tr[data-alert-id="{alert_id}"]')
    assert len(past) == 1 and "confirmed" in past[0].text
    driver.save_screenshot(str(ARTIFACTS / "console-partner.png"))

    # filters: all statuses of this partner's self-dealing alerts
    driver.get(f"{console.console_url}/alerts?status=all&type=self_dealing&partner={SELLER}")
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "queue"))
    rows = driver.find_elements(By.CSS_SELECTOR, "#queue-body tr[data-alert-id]")
    assert [r.get_attribute("data-alert-id") for r in rows] == [alert_id]

    # back on the queue, the confirmed alert has left the open alerts
    driver.get(f"{console.console_url}/alerts")
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.ID, "queue"))
    assert not driver.find_elements(By.CSS_SELECTOR, f'#queue-body tr[data-alert-id="{alert_id}"]')

    # with the session cookie but without the CSRF token: refused; with it, a second decision is refused
    cookie = f"incentives_console={driver.get_cookie('incentives_console')['value']}"
    body = json.dumps({"alert_id": alert_id, "decision": "dismissed"}).encode()
    assert _post(f"{console.console_url}/api/resolve", body, {"Content-Type": "application/json",
                                                              "Cookie": cookie}) == 403
    token = driver.execute_script("return fetch('/api/me').then((r) => r.json()).then((m) => m.csrf_token)")
    assert _post(f"{console.console_url}/api/resolve", body, {"Content-Type": "application/json", "Cookie": cookie,
                                                              "X-CSRF-Token": token}) == 409
