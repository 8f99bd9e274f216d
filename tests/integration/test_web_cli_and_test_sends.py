"""``baton why`` and ``baton preview`` on the command line, and test sends of previews: only to
allow-listed internal addresses, marked as tests, recorded in test_sends and never in messages (so
never counted toward caps), never to the customer.  A real SMTP server on loopback receives them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import sqlalchemy as sa
from fastapi import Request
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from baton.delivery.base import ConnectionInfo
from baton.web import preview as pv
from baton.web.app import WebServices, WebUser, create_app
from baton.web.deployment import deployment
from baton_dev.sinks import SmtpSink
from conftest import _fresh_database
from web_data import DAGS, WebStore, build

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store() -> Iterator[WebStore]:
    for engine in _fresh_database("baton_webcli"):
        yield build(engine, customers=600)


@pytest.fixture()
def env(store: WebStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_DATABASE_URL", store.engine.url.render_as_string(hide_password=False))


@pytest.fixture()
def smtp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SmtpSink]:
    sink = SmtpSink(maildir=tmp_path / "maildir")
    sink.start()
    monkeypatch.setenv(
        "AIRFLOW_CONN_BATON_SMTP",
        json.dumps(
            {
                "conn_type": "smtp",
                "host": "127.0.0.1",
                "port": sink.port,
                "extra": {"from": "shop@example.com"},
            }
        ),
    )
    try:
        yield sink
    finally:
        sink.stop()


def run(*args: str) -> tuple[int, str]:
    from baton.cli import app

    result = CliRunner().invoke(app, [*args, *([] if "--dags" in args else ["--dags", str(DAGS)])])
    return result.exit_code, result.output + (result.stderr if result.stderr_bytes is not None else "")


def q(store: WebStore, sql: str, **params: Any) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params).all())


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------------------- baton why


def test_why_explains_every_decision_of_a_person_found_by_email(env: None, store: WebStore) -> None:
    cid, email = q(
        store,
        "select d.customer_id, c.email from decisions d join customers c using (customer_id)"
        " where d.outcome = 'capped' and d.reason = 'daily_total' order by 1 limit 1",
    )[0]
    code, out = run("why", f"  {email.upper()}  ", "--days", "30")
    assert code == 0, out
    assert f"person {cid}" in out
    n = q(store, "select count(*) from decisions where customer_id = :c", c=cid)[0][0]
    lines = [line for line in out.splitlines() if line[:4].isdigit()]
    assert len(lines) == n
    capped = [line for line in lines if " capped " in line]
    assert capped and all("capped by daily_total: 2 of 2 already used by " in line for line in capped), capped
    # one cycle only
    t = store.cycles[-1]
    code, out = run("why", cid, "--cycle", iso(t))
    assert code == 0, out
    lines = [line for line in out.splitlines() if line[:4].isdigit()]
    assert lines and all(line.startswith(f"{t:%Y-%m-%d %H:%M}") for line in lines)
    assert (
        len(lines)
        == q(store, "select count(*) from decisions where customer_id = :c and cycle_at = :t", c=cid, t=t)[0][
            0
        ]
    )


def test_why_lists_candidates_not_decided_yet(env: None, store: WebStore) -> None:
    cid = store.unsubscribed
    stranded = store.cycles[1] + timedelta(minutes=30)  # no cycle ran then; later ones did
    with store.engine.begin() as conn:
        batch = conn.execute(
            sa.text(
                "insert into candidate_batches (campaign_id, cycle_at, data_interval_start, row_count)"
                " values ('abandoned_cart', :t, :t, 1) returning batch_id"
            ),
            {"t": stranded},
        ).scalar_one()
        conn.execute(
            sa.text("insert into candidates (batch_id, seq, customer_id, bucket) values (:b, 0, :c, 1)"),
            {"b": batch, "c": cid},
        )
    try:
        code, out = run("why", cid)
        assert code == 0, out
        line = next(line for line in out.splitlines() if "no decision yet" in line)
        assert (
            "abandoned_cart" in line
            and f"waits for the cycle at {stranded:%Y-%m-%d %H:%M} UTC, which never ran" in line
        )
        # a past cycle's decisions only: nothing pending there
        code, out = run("why", cid, "--cycle", iso(store.cycles[-1]))
        assert code == 0 and "no decision yet" not in out
    finally:
        with store.engine.begin() as conn:
            conn.execute(sa.text("delete from candidates where batch_id = :b"), {"b": batch})
            conn.execute(sa.text("delete from candidate_batches where batch_id = :b"), {"b": batch})


def test_why_on_bad_input_says_what_is_wrong(env: None, store: WebStore) -> None:
    code, out = run("why", "nobody@nowhere.example")
    assert code == 1 and "no profile has the customer id or identifier 'nobody@nowhere.example'" in out
    assert "Traceback" not in out
    code, out = run("why", store.unsubscribed, "--cycle", "2020-01-01T00:00:00Z")
    assert code == 1 and "no cycle was decided at 2020-01-01T00:00:00+00:00" in out
    code, out = run("why", store.unsubscribed, "--cycle", "yesterday")
    assert code == 2 and "--cycle 'yesterday' is not a time" in out and "Traceback" not in out
    code, out = run("why", store.unsubscribed, "--dags", "/nonexistent")
    assert code == 2 and "is no dags folder" in out


# ------------------------------------------------------------------------------------ baton preview


def test_preview_prints_every_channel(env: None, store: WebStore) -> None:
    code, out = run("preview", "weekly_newsletter", "--customer", store.unsubscribed)
    assert code == 0, out
    assert f"for customer {store.unsubscribed}" in out and "audience query's row" in out
    assert "subject: This week at the shop: new in " in out and "text: " in out
    code, out = run("preview", "abandoned_cart")  # someone it proposed lately
    assert code == 0 and "subject: " in out and "push" in out, out


def test_preview_on_bad_input_says_what_is_wrong(env: None, store: WebStore) -> None:
    code, out = run("preview", "no_such_campaign")
    assert code == 2 and "unknown campaign 'no_such_campaign'" in out and "weekly_newsletter" in out
    code, out = run("preview", "weekly_newsletter", "--customer", "nobody-at-all")
    assert code == 2 and "no customer has the id or identifier 'nobody-at-all'" in out
    assert "Traceback" not in out


# --------------------------------------------------------------------------------------- test sends


def _mails(sink: SmtpSink) -> list[Any]:
    return sink.messages()


def test_a_test_send_goes_to_the_internal_address_only_marked_and_never_counted(
    env: None, store: WebStore, smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BATON_TEST_SEND_DOMAINS", "example.com, qa.example.net")
    messages_before = q(store, "select count(*), max(message_id) from messages")[0]
    customer_email = q(store, "select email from customers where customer_id = :c", c=store.unsubscribed)[0][
        0
    ]
    code, out = run(
        "preview",
        "weekly_newsletter",
        "--customer",
        store.unsubscribed,
        "--send-to",
        "qa@example.com",
        "--send-to",
        "Lead@QA.example.net",
    )
    assert code == 0, out
    mails = _mails(smtp)
    assert sorted(m["To"] for m in mails) == ["Lead@qa.example.net", "qa@example.com"]  # domains lower-cased
    for m in mails:
        assert m["Subject"].startswith("[TEST] This week at the shop")
        assert m["X-Baton-Test"] == "1" and m["X-Baton-Message-Id"] is None and m["List-Unsubscribe"] is None
        assert m["Message-ID"].startswith("<baton-test-")
        assert customer_email not in str(m)
    row = q(
        store,
        "select requested_by, campaign_id, channel, addresses, result from test_sends order by test_send_id desc limit 1",
    )[0]
    assert row[0].startswith("cli:") and row[1:] == (
        "weekly_newsletter",
        "email",
        ["qa@example.com", "Lead@QA.example.net"],
        "sent",
    )
    assert q(store, "select count(*), max(message_id) from messages")[0] == messages_before  # not a message


@pytest.mark.parametrize(
    ("allow", "addresses", "why"),
    [
        (
            "example.com",
            ["someone@gmail.com"],
            "not on the test-send allow-list (BATON_TEST_SEND_DOMAINS=example.com): someone@gmail.com",
        ),
        ("example.com", ["qa@example.com.evil.net"], "not on the test-send allow-list"),
        (None, ["qa@example.com"], "test sends on email are off: set BATON_TEST_SEND_DOMAINS"),
        ("example.com", [f"qa{i}@example.com" for i in range(21)], "at most 20 addresses (21 given)"),
    ],
)
def test_test_sends_are_refused_outside_the_allow_list(
    env: None,
    store: WebStore,
    smtp: SmtpSink,
    monkeypatch: pytest.MonkeyPatch,
    allow: str | None,
    addresses: list[str],
    why: str,
) -> None:
    if allow is None:
        monkeypatch.delenv("BATON_TEST_SEND_DOMAINS", raising=False)
    else:
        monkeypatch.setenv("BATON_TEST_SEND_DOMAINS", allow)
    args = [a for address in addresses for a in ("--send-to", address)]
    code, out = run("preview", "weekly_newsletter", "--customer", store.unsubscribed, *args)
    assert code == 2 and why in " ".join(out.split()), out
    assert smtp.received == 0
    last = q(store, "select result, detail from test_sends order by test_send_id desc limit 1")[0]
    assert last[0] == "refused" and why.split(":")[0] in " ".join(last[1].split())


def test_a_test_send_from_the_page(store: WebStore, smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_TEST_SEND_DOMAINS", "example.com")

    async def auth(request: Request) -> WebUser:
        return WebUser("ops-lead", may_run_campaign=lambda campaign_id: campaign_id == "abandoned_cart")

    def connection(conn_id: str) -> ConnectionInfo:
        assert conn_id == "baton_smtp"  # the policy's email connection
        return ConnectionInfo(
            conn_id, "smtp", host="127.0.0.1", port=smtp.port, extra={"from": "shop@example.com"}
        )

    client = TestClient(
        create_app(
            WebServices(
                authenticate=auth,
                engine=lambda: store.engine,
                dags_folder=lambda: DAGS,
                connection=connection,
            )
        )
    )
    before = q(store, "select count(*) from messages")[0][0]
    resp = client.post(
        "/marketing/campaigns/abandoned_cart/test-send",
        data={"channel": "email", "addresses": "ops@example.com", "customer": store.unsubscribed},
        headers={"Origin": "http://testserver", "accept": "text/html"},
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    assert "sent=" in resp.headers["location"] and parse_qs(urlsplit(resp.headers["location"]).query)["sent"][
        0
    ].endswith(":sent")
    [mail] = _mails(smtp)
    assert (
        mail["To"] == "ops@example.com"
        and mail["Subject"].startswith("[TEST] ")
        and mail["X-Baton-Test"] == "1"
    )
    assert q(store, "select requested_by, result from test_sends order by test_send_id desc limit 1")[0] == (
        "ops-lead",
        "sent",
    )
    assert q(store, "select count(*) from messages")[0][0] == before
    page = client.get(resp.headers["location"], headers={"accept": "text/html"})
    assert "ops@example.com" in page.text and "ops-lead" in page.text
    refused = client.post(
        "/marketing/campaigns/abandoned_cart/test-send",
        data={"channel": "email", "addresses": "someone@gmail.com"},
        headers={"Origin": "http://testserver", "accept": "text/html"},
    )
    assert refused.status_code == 400 and "not on the test-send allow-list" in refused.text
    assert smtp.received == 1
    # a campaign whose DAG this user may not run: refused before anything is rendered, stored or sent
    sends = q(store, "select count(*) from test_sends")[0][0]
    forbidden = client.post(
        "/marketing/campaigns/weekly_newsletter/test-send",
        data={"channel": "email", "addresses": "ops@example.com"},
        headers={"Origin": "http://testserver", "accept": "text/html"},
    )
    assert forbidden.status_code == 403
    assert "not run the DAG of campaign &#39;weekly_newsletter&#39;" in forbidden.text
    assert q(store, "select count(*) from test_sends")[0][0] == sends and smtp.received == 1
    page = client.get("/marketing/campaigns/weekly_newsletter", headers={"accept": "text/html"})
    assert 'id="test-send-not-allowed"' in page.text and 'id="test-send-form"' not in page.text


def test_test_sends_only_on_channels_that_deliver_to_an_address(
    store: WebStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    dep = deployment(DAGS)
    shown = pv.preview(store.engine, dep, "weekly_newsletter", store.unsubscribed)
    with pytest.raises(pv.InputError, match="test sends go to email, sms or push only"):
        pv.send_test(
            store.engine,
            dep,
            shown,
            "audience",
            ["a@example.com"],
            requested_by="t",
            connection=lambda c: ConnectionInfo(c),
        )
    monkeypatch.setenv("BATON_TEST_SEND_NUMBERS", "+15550100199")
    with pytest.raises(pv.InputError, match="has no sms message"):
        pv.send_test(
            store.engine,
            dep,
            shown,
            "sms",
            ["+1 555 010 0199"],
            requested_by="t",
            connection=lambda c: ConnectionInfo(c),
        )
    assert pv.allowed("sms", "+1 (555) 010-0199", ["+15550100199"]) and not pv.allowed(
        "sms", "+15550100198", ["+15550100199"]
    )
    assert pv.allowed("email", "a@sub.example.com", ["example.com"]) and not pv.allowed(
        "email", "a@badexample.com", ["example.com"]
    )
