"""The Marketing view in a real browser: Debian's Chromium, driven through its chromedriver, against a
real Airflow API server with the Baton plugin and Airflow's simple auth manager.

A marketing-ops user logs in on Airflow's login page, opens the "Marketing" entry of the navigation
and goes through every page — the calendar, a cycle's funnel, a customer found by their email in
another spelling, a campaign with its preview and a test send — and the numbers on each page must
equal the store's.  Screenshots of every page are saved under ``.baton/test-artifacts/screenshots/``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from baton.web import queries
from baton.web.deployment import deployment
from baton_dev.sinks import SmtpSink
from web_data import DAGS, WebStore, build

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / ".baton" / "test-artifacts" / "screenshots"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
USER, PASSWORD = "ops", "ops-" + uuid.uuid4().hex[:12]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def store() -> Iterator[WebStore]:
    from conftest import _fresh_database

    for engine in _fresh_database("baton_browser"):
        yield build(engine)


@pytest.fixture(scope="module")
def smtp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpSink]:
    sink = SmtpSink(maildir=tmp_path_factory.mktemp("maildir"))
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def api_server(
    store: WebStore, smtp: SmtpSink, airflow_db: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real ``airflow api-server`` with this repository's plugin and dags, the store, one user (role User: it may test-send)."""
    home = tmp_path_factory.mktemp("airflow")
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD}))
    port = _free_port()
    env = dict(os.environ)
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_db,
            "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:user",  # may trigger DAGs: test sends
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": f"http://localhost:{port}",
            "AIRFLOW__API_AUTH__JWT_SECRET": uuid.uuid4().hex * 2,
            "AIRFLOW__API__SECRET_KEY": uuid.uuid4().hex,
            "BATON_DATABASE_URL": store.engine.url.render_as_string(hide_password=False),
            "BATON_TEST_SEND_DOMAINS": "example.com",
            "AIRFLOW_CONN_BATON_SMTP": json.dumps(
                {
                    "conn_type": "smtp",
                    "host": "127.0.0.1",
                    "port": smtp.port,
                    "extra": {"from": "shop@example.com"},
                }
            ),
            "PYTHONPATH": os.pathsep.join(
                [str(ROOT / "include"), str(ROOT / "dev"), env.get("PYTHONPATH", "")]
            ),
        }
    )
    log = open(home / "api-server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow", "api-server", "--port", str(port), "--workers", "1"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://localhost:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, (home / "api-server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{base}/api/v2/monitor/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise AssertionError(
                "the API server did not start:\n" + (home / "api-server.log").read_text()[-3000:]
            )
        yield base
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), (
        "the browser tests need Debian's chromium and chromium-driver: `make browser` (or apt-get install"
        " chromium chromium-driver)"
    )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="baton-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1500,1150",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)  # never Selenium Manager
    driver.set_page_load_timeout(60)
    SHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def q(store: WebStore, sql: str, **params: Any) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params).all())


def iso(t: Any) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def wait_for(driver: Any, css: str, timeout: float = 30) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(ec.presence_of_element_located((By.CSS_SELECTOR, css)))


def in_frame(driver: Any, css: str, timeout: float = 30) -> Any:
    """Switch into the Marketing view's frame and wait for *css* inside it."""
    from selenium.webdriver.common.by import By

    driver.switch_to.default_content()
    wait_for(driver, "iframe[title='Marketing']", timeout)
    driver.switch_to.frame(driver.find_element(By.CSS_SELECTOR, "iframe[title='Marketing']"))
    return wait_for(driver, css, timeout)


def shot(driver: Any, name: str) -> Path:
    driver.switch_to.default_content()
    path = SHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def test_marketing_ops_answers_their_questions_in_the_browser(
    api_server: str, browser: Any, store: WebStore, smtp: SmtpSink
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    started = time.monotonic()
    # the view's pages and data refuse anyone not logged in
    anonymous = httpx.get(f"{api_server}/baton/marketing/", headers={"accept": "text/html"}, timeout=10)
    assert (
        anonymous.status_code == 401
        and "log in to Airflow" in anonymous.text
        and "weekly_newsletter" not in anonymous.text
    )
    assert httpx.get(f"{api_server}/baton/marketing/api/calendar", timeout=10).status_code == 401

    # log in through Airflow's own login page
    browser.get(f"{api_server}/")
    wait_for(browser, "input[name='username']").send_keys(USER)
    browser.find_element(By.CSS_SELECTOR, "input[name='password']").send_keys(PASSWORD + Keys.ENTER)
    # the Marketing entry of the navigation opens the view inside the UI
    nav = wait_for(browser, "a[href$='plugin/marketing'], a[href*='/plugin/marketing']", 60)
    nav.click()

    # 1. the calendar: what goes out this week, what went out — the numbers are the store's
    monday = iso(store.monday)
    cell = in_frame(browser, f"tr[data-campaign='weekly_newsletter'] td[data-col='{monday}']")
    selected = q(
        store,
        "select coalesce(sum(n), 0) from cycle_outcomes where campaign_id = 'weekly_newsletter'"
        " and outcome = 'selected' and cycle_at >= :a and cycle_at < :b",
        a=store.monday,
        b=store.monday + timedelta(days=1),
    )[0][0]
    assert selected > 0
    assert int(cell.get_attribute("data-selected")) == selected
    assert cell.find_element(By.CSS_SELECTOR, ".sel").text == f"{selected:,}"
    planned = browser.find_element(By.CSS_SELECTOR, "tr[data-campaign='abandoned_cart'] td.now")
    assert "runs" in planned.text or planned.get_attribute("data-planned") is not None
    daily = browser.find_element(By.CSS_SELECTOR, f"tr[data-cap='daily_total'] td[data-col='{monday}']")
    assert (
        int(daily.get_attribute("data-capped"))
        == q(
            store,
            "select coalesce(sum(n), 0) from cycle_outcomes where reason = 'daily_total' and cycle_at >= :a and cycle_at < :b",
            a=store.monday,
            b=store.monday + timedelta(days=1),
        )[0][0]
    )
    shot(browser, "1-calendar")

    # zoom into the Monday, then open the 14:00 cycle
    in_frame(browser, f"a[data-day='{store.monday:%Y-%m-%d}']").click()
    t = store.cycles[-1]
    in_frame(browser, f"a[data-cycle='{iso(t)}']").click()

    # 2. the cycle's funnel: every outcome, the caps that bit
    summary = in_frame(browser, "#funnel-summary")
    totals = dict(q(store, "select outcome, sum(n) from cycle_outcomes where cycle_at = :t group by 1", t=t))
    shown = {e.get_attribute("data-k"): e.text for e in summary.find_elements(By.CSS_SELECTOR, "[data-k]")}
    assert shown["selected"] == f"{totals['selected']:,}"
    assert shown["alternatives"] == f"{sum(totals.values()):,}"
    for outcome, n in totals.items():
        assert shown[outcome] == f"{n:,}", outcome
    capped = browser.find_element(By.CSS_SELECTOR, "#caps tr[data-cap='daily_total'] td[data-capped]")
    n_capped = q(
        store, "select sum(n) from cycle_outcomes where cycle_at = :t and reason = 'daily_total'", t=t
    )[0][0]
    assert capped.text == f"{n_capped:,}"
    shot(browser, "2-cycle-funnel")

    # 3. "why did she get this?": a customer whose newsletter was capped, found by email in another spelling
    cid, email = q(
        store,
        "select d.customer_id, c.email from decisions d join customers c using (customer_id)"
        " where d.cycle_at = :t and d.campaign_id = 'weekly_newsletter' and d.reason = 'daily_total' order by 1 limit 1",
        t=t,
    )[0]
    search = in_frame(browser, "header input[name='q']")
    search.send_keys(f" {email.upper()} " + Keys.ENTER)
    decision = in_frame(browser, f"li[data-decision='{iso(t)}|weekly_newsletter']")
    why = decision.find_element(By.CSS_SELECTOR, ".why").text
    assert why.startswith("capped by daily_total: 2 of 2 already used by "), why
    items = browser.find_elements(By.CSS_SELECTOR, "#timeline li.decision .alt")
    assert len(items) == q(store, "select count(*) from decisions where customer_id = :c", c=cid)[0][0]
    for msg in browser.find_elements(By.CSS_SELECTOR, "#timeline .msg"):
        status = q(
            store,
            "select status from messages where message_id = :m",
            m=int(msg.get_attribute("data-message")),
        )
        assert msg.get_attribute("data-status") == status[0][0]
    shot(browser, "3-customer-timeline")

    # 4. a campaign: volumes, the audience right now, a preview, and a test send to an internal address
    in_frame(browser, "a[href$='/campaigns/weekly_newsletter']").click()
    count = in_frame(browser, "#audience-count[data-rows]", 60)
    expected = queries.audience_count(store.engine, deployment(DAGS), "weekly_newsletter")
    assert int(count.get_attribute("data-rows")) == expected["rows"]
    bars = browser.find_elements(
        By.CSS_SELECTOR, f"#chart rect[data-day='{store.monday:%Y-%m-%d}'][data-outcome='selected']"
    )
    assert [int(b.get_attribute("data-n")) for b in bars] == [selected]
    subject = browser.find_element(By.CSS_SELECTOR, "[data-preview='email'] [data-k='subject']").text
    assert subject.startswith("This week at the shop: new in ")
    shot(browser, "4-campaign")
    form = in_frame(browser, "#test-send-form")
    form.find_element(By.CSS_SELECTOR, "input[name='addresses']").send_keys("qa@example.com")
    form.find_element(By.CSS_SELECTOR, "button[type='submit']").click()
    result = in_frame(browser, "#sent-result")
    assert "sent" in result.text
    [mail] = smtp.messages()
    assert (
        mail["To"] == "qa@example.com"
        and mail["Subject"] == "[TEST] " + subject
        and mail["X-Baton-Test"] == "1"
    )
    assert q(store, "select requested_by, result from test_sends order by test_send_id desc limit 1")[0] == (
        USER,
        "sent",
    )
    shot(browser, "5-campaign-after-test-send")
    for name in (
        "1-calendar",
        "2-cycle-funnel",
        "3-customer-timeline",
        "4-campaign",
        "5-campaign-after-test-send",
    ):
        assert (SHOTS / f"{name}.png").stat().st_size > 20_000, name
    assert time.monotonic() - started < 90
