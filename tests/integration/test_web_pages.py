"""The Marketing view's pages and their data show what the store holds: the calendar, a cycle's funnel,
a customer's timeline (found by any identifier, every decision explained consistently with what the
engine counted), a campaign page (volumes, audience count, previews).  Through the web app with a
stand-in for Airflow's login (the real one is tested in test_web_auth.py and the browser test)."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import HTTPException, Request
from fastapi.testclient import TestClient

from baton.web import queries
from baton.web.app import WebServices, WebUser, create_app
from baton.web.deployment import deployment
from conftest import _fresh_database
from web_data import DAGS, WebStore, build

pytestmark = pytest.mark.integration

HTML = {"accept": "text/html", "x-test-user": "ops"}


@pytest.fixture(scope="module")
def store() -> Iterator[WebStore]:
    for engine in _fresh_database("baton_web"):
        yield build(engine)


async def _auth(request: Request) -> WebUser:
    name = request.headers.get("x-test-user")
    if not name:
        raise HTTPException(401, "Not authenticated")
    return WebUser(name)


@pytest.fixture(scope="module")
def client(store: WebStore) -> TestClient:
    app = create_app(WebServices(authenticate=_auth, engine=lambda: store.engine, dags_folder=lambda: DAGS))
    return TestClient(app)


def q(store: WebStore, sql: str, **params: Any) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params).all())


def iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_the_store_has_the_story(store: WebStore) -> None:
    outcomes = dict(
        q(store, "select outcome || coalesce('/' || reason, ''), count(*) from decisions group by 1")
    )
    assert outcomes.get("selected", 0) > 1000
    assert outcomes.get("capped/daily_total", 0) > 0, outcomes
    assert outcomes.get("holdout_global", 0) > 0 and any(k.startswith("no_consent") for k in outcomes)


def test_calendar_cells_equal_the_store(client: TestClient, store: WebStore) -> None:
    data = client.get(f"/marketing/api/calendar?start={store.monday:%Y-%m-%d}&days=7", headers=HTML).json()
    day = iso(store.monday)
    col = [c for c in data["columns"]].index(day)
    selected = dict(
        q(
            store,
            "select campaign_id, sum(n) from cycle_outcomes where outcome = 'selected' and cycle_at >= :a"
            " and cycle_at < :b group by 1",
            a=store.monday,
            b=store.monday + timedelta(days=1),
        )
    )
    candidates = dict(
        q(
            store,
            "select campaign_id, sum(row_count) from candidate_batches where cycle_at >= :a and cycle_at < :b group by 1",
            a=store.monday,
            b=store.monday + timedelta(days=1),
        )
    )
    assert selected and candidates
    for cid, cells in data["cells"].items():
        assert cells[col]["outcomes"].get("selected", 0) == selected.get(cid, 0), cid
        assert cells[col]["candidates"] == candidates.get(cid, 0), cid
    daily = {c["name"]: c["capped"][col] for c in data["caps"]}
    assert (
        daily["daily_total"]
        == q(
            store,
            "select coalesce(sum(n), 0) from cycle_outcomes where outcome = 'capped' and reason = 'daily_total'"
            " and cycle_at >= :a and cycle_at < :b",
            a=store.monday,
            b=store.monday + timedelta(days=1),
        )[0][0]
    )
    # the page shows the same numbers
    page = client.get(f"/marketing/?start={store.monday:%Y-%m-%d}&days=7", headers=HTML)
    assert page.status_code == 200
    cell = re.search(
        rf'<tr class="" data-campaign="weekly_newsletter">.*?data-col="{day}" data-selected="(\d+)"',
        page.text,
        re.S,
    )
    assert cell and int(cell.group(1)) == selected["weekly_newsletter"]


def test_calendar_filters_and_day_zoom(client: TestClient, store: WebStore) -> None:
    data = client.get("/marketing/api/calendar?channel=sms", headers=HTML).json()
    ids = {c["id"] for c in data["campaigns"]}
    assert ids and all("sms" in c["channels"] for c in data["campaigns"]) and "weekly_newsletter" not in ids
    data = client.get("/marketing/api/calendar?owner=content-team", headers=HTML).json()
    assert [c["id"] for c in data["campaigns"]] == ["weekly_newsletter"]
    data = client.get(f"/marketing/api/calendar?day={store.monday:%Y-%m-%d}", headers=HTML).json()
    assert data["zoom"] == "hours" and len(data["columns"]) == 24
    hour14 = data["columns"].index(iso(store.cycles[-1]))
    sel = sum(c[hour14]["outcomes"].get("selected", 0) for c in data["cells"].values())
    assert sel == q(store, "select selected from cycles where cycle_at = :t", t=store.cycles[-1])[0][0]
    # planned runs: the future of the hourly campaigns (24 a day)
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date()
    later = client.get(f"/marketing/api/calendar?start={tomorrow}&days=3", headers=HTML).json()
    assert later["cells"]["abandoned_cart"][-1]["planned"] == 24
    assert client.get("/marketing/?start=tomorrow", headers=HTML).status_code == 400


def test_cycle_funnel_equals_the_store(client: TestClient, store: WebStore) -> None:
    t = store.cycles[-1]
    data = client.get(f"/marketing/api/cycles/{iso(t)}", headers=HTML).json()
    totals = dict(q(store, "select outcome, sum(n) from cycle_outcomes where cycle_at = :t group by 1", t=t))
    assert {k: v for k, v in data["totals"].items() if v} == totals
    assert data["alternatives"] == sum(totals.values())
    assert (
        data["candidates"]
        == q(
            store,
            "select sum(row_count) from candidate_batches b join cycles c on b.batch_id = any(c.batch_ids) where c.cycle_at = :t",
            t=t,
        )[0][0]
    )
    caps = dict(
        q(
            store,
            "select reason, sum(n) from cycle_outcomes where cycle_at = :t and outcome = 'capped' group by 1",
            t=t,
        )
    )
    assert data["caps"] == caps and caps.get("daily_total")
    line = next(
        line
        for c in data["campaigns"]
        if c["id"] == "weekly_newsletter"
        for line in c["lines"]
        if line["channel"] == "email"
    )
    per = dict(
        q(
            store,
            "select outcome, sum(n) from cycle_outcomes where cycle_at = :t and campaign_id = 'weekly_newsletter' group by 1",
            t=t,
        )
    )
    assert line["outcomes"] == per
    page = client.get(f"/marketing/cycles/{iso(t)}", headers=HTML)
    assert page.status_code == 200
    assert f'data-k="selected">{totals["selected"]:,}<' in page.text
    missing = client.get(f"/marketing/cycles/{iso(t + timedelta(minutes=30))}", headers=HTML)
    assert missing.status_code == 404 and "no cycle was decided" in missing.text
    assert client.get("/marketing/cycles/not-a-time", headers=HTML).status_code == 400


def test_customer_found_by_any_spelling_and_timeline_equals_the_store(
    client: TestClient, store: WebStore
) -> None:
    cid = store.unsubscribed
    email = q(store, "select email from customers where customer_id = :c", c=cid)[0][0]
    resp = client.get(f"/marketing/customers?q=  {email.upper()} ", headers=HTML, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"].startswith(f"/marketing/customers/{cid}")
    data = client.get(
        f"/marketing/api/customers/{cid}?until={iso(store.cycles[-1] + timedelta(hours=1))}&days=2",
        headers=HTML,
    ).json()
    want = q(
        store,
        "select cycle_at, campaign_id, channel, outcome from decisions where customer_id = :c order by 1 desc, 2, 3",
        c=cid,
    )
    got = sorted(
        ((d["cycle_at"], d["campaign_id"], d["channel"], d["outcome"]) for d in data["decisions"]),
        reverse=True,
    )
    assert sorted(((iso(r[0]), r[1], r[2], r[3]) for r in want), reverse=True) == got
    messages = {m["message_id"]: m for m in data["messages"]}
    news = next(m for m in messages.values() if m["campaign_id"] == "weekly_newsletter")
    assert news["status"] == "sent" and "unsubscribed" in [e["type"] for e in news["events"]]
    consent = next(c for c in data["consents"] if c["channel"] == "email" and c["topic"] == "newsletter")
    assert consent["status"] == "opt_out" and consent["source"] == "unsubscribe_link"
    events = q(
        store,
        "select count(*) from events where customer_id = :c and ts >= :a and ts < :b",
        c=cid,
        a=store.cycles[-1] - timedelta(days=1, hours=-1),
        b=store.cycles[-1] + timedelta(hours=1),
    )[0][0]
    assert len(data["events"]) == min(events, queries.TIMELINE_EVENTS)
    page = client.get(f"/marketing/customers/{cid}", headers=HTML)
    assert page.status_code == 200 and "weekly_newsletter" in page.text
    nobody = client.get("/marketing/customers?q=nobody@nowhere.example", headers=HTML)
    assert nobody.status_code == 200 and "No profile has" in nobody.text
    assert client.get("/marketing/customers/nobody-at-all", headers=HTML).status_code == 404


def test_candidates_not_decided_yet_are_on_the_timeline_with_where_their_batch_stands(
    client: TestClient, store: WebStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    cid = store.unsubscribed
    other = q(store, "select customer_id from customers where customer_id <> :c limit 1", c=cid)[0][0]
    latest = store.cycles[-1]
    # (cycle the batch feeds, campaign): one after the latest cycle, one at an hour that never ran while
    # later ones did, one that landed after its cycle was decided, one of a campaign no longer deployed
    crashed, running = store.cycles[3] + timedelta(minutes=15), store.cycles[4] + timedelta(minutes=15)
    batches = [
        (latest + timedelta(hours=1), "abandoned_cart", "waits for the cycle at"),
        (store.cycles[2] + timedelta(minutes=30), "price_drop", "which never ran"),
        (latest, "back_in_stock", "was decided: the next cycle decides it"),
        (latest + timedelta(hours=1), "retired_campaign", "no longer deployed"),
        (crashed, "price_drop", "stopped while deciding: retry (clear) its run"),
        (
            store.cycles[-2],
            "abandoned_cart",
            f"being decided now by the cycle at {running:%Y-%m-%d %H:%M} UTC",
        ),
    ]
    ids = []
    with store.engine.begin() as conn:
        for n, (at, campaign, _) in enumerate(batches):
            batch = conn.execute(
                sa.text(
                    "insert into candidate_batches (campaign_id, cycle_at, data_interval_start, row_count)"
                    " values (:c, :t, :s, 2) returning batch_id"
                ),
                {"c": campaign, "t": at, "s": at - timedelta(hours=1, minutes=n)},
            ).scalar_one()
            ids.append(batch)
            conn.execute(
                sa.text(
                    "insert into candidates (batch_id, seq, customer_id, score, channel, payload, bucket)"
                    " values (:b, 0, :c, 0.5, 'email', '{\"sku\": \"p-7\"}', 1), (:b, 1, :o, 0.5, null, '{}', 1)"
                ),
                {"b": batch, "c": cid, "o": other},
            )
        # a cycle that stopped while deciding (no heartbeat for an hour), and one deciding now that took
        # the late batch of an earlier cycle
        conn.execute(
            sa.text(
                "insert into cycles (cycle_at, status, heartbeat_at, batch_ids) values"
                " (:c, 'deciding', now() - interval '1 hour', '{}'), (:r, 'deciding', now(), array[:b]::bigint[])"
            ),
            {"c": crashed, "r": running, "b": ids[-1]},
        )
    try:
        data = client.get(f"/marketing/api/customers/{cid}", headers=HTML).json()
        pending = {c["batch_id"]: c for c in data["pending"]}
        assert sorted(pending) == sorted(ids)  # the other customer's candidates are not hers
        for batch, (at, campaign, words) in zip(ids, batches, strict=True):
            row = pending[batch]
            assert (row["campaign_id"], row["cycle_at"], row["customer_id"]) == (campaign, iso(at), cid)
            assert words in row["state"], row["state"]
        assert pending[ids[0]]["payload"] == {"sku": "p-7"}
        page = client.get(f"/marketing/customers/{cid}", headers=HTML)
        assert page.status_code == 200
        shown = re.findall(r'<li class="candidate" data-candidate="(\d+)\|0"', page.text)
        assert sorted(int(b) for b in shown) == sorted(ids)
        assert "no decision yet" in page.text and "6 candidates not decided yet" in page.text
        # too many pending rows to search: said so, nothing searched
        monkeypatch.setattr(queries, "PENDING_SCAN_LIMIT", 11)
        data = client.get(f"/marketing/api/customers/{cid}", headers=HTML).json()
        assert data["pending"] == []
        page = client.get(f"/marketing/customers/{cid}", headers=HTML)
        assert "6 batches (12 candidate rows) wait undecided" in page.text
        monkeypatch.setattr(queries, "PENDING_SCAN_LIMIT", 12)
        assert len(client.get(f"/marketing/api/customers/{cid}", headers=HTML).json()["pending"]) == 6
        # once decided, a batch leaves the pending list
        with store.engine.begin() as conn:
            conn.execute(
                sa.text("update candidate_batches set decided_cycle_at = cycle_at where batch_id = :b"),
                {"b": ids[0]},
            )
        data = client.get(f"/marketing/api/customers/{cid}", headers=HTML).json()
        assert sorted(c["batch_id"] for c in data["pending"]) == sorted(ids[1:])
    finally:
        with store.engine.begin() as conn:
            conn.execute(sa.text("delete from candidates where batch_id = any(:b)"), {"b": ids})
            conn.execute(sa.text("delete from candidate_batches where batch_id = any(:b)"), {"b": ids})
            conn.execute(
                sa.text("delete from cycles where cycle_at in (:c, :r)"), {"c": crashed, "r": running}
            )


def test_every_capped_decision_names_exactly_the_messages_that_filled_the_cap(store: WebStore) -> None:
    """The explanation recounts the cap from the recorded messages: it must find exactly the limit, as
    the engine did — for every capped decision of the store."""
    dep = deployment(DAGS)
    limits = {c.name: c.limit for c in dep.policy.caps}
    capped = q(store, "select distinct customer_id from decisions where outcome = 'capped'")
    assert capped
    checked = defaultdict(int)
    for (cid,) in capped:
        view = queries.customer_timeline(
            store.engine, dep, cid, until=store.cycles[-1] + timedelta(hours=1), days=2
        )
        assert view is not None
        for d in view.decisions:
            if d["outcome"] != "capped":
                continue
            m = re.match(r"capped by (\w+): (\d+) of (\d+) already used", d["explanation"])
            assert m, d["explanation"]
            name, used, limit = m.group(1), int(m.group(2)), int(m.group(3))
            assert name == d["reason"]
            assert used == limit == limits.get(name, limit), d["explanation"]
            checked[name] += 1
    assert checked["daily_total"] > 0


def test_holdouts_and_consents_are_explained_from_the_persons_facts(store: WebStore) -> None:
    dep = deployment(DAGS)
    for outcome in ("holdout_global", "no_consent"):
        (cid,) = q(
            store, "select customer_id from decisions where outcome = :o order by 1 limit 1", o=outcome
        )[0]
        view = queries.customer_timeline(
            store.engine, dep, cid, until=store.cycles[-1] + timedelta(hours=1), days=2
        )
        assert view is not None
        d = next(d for d in view.decisions if d["outcome"] == outcome)
        if outcome == "holdout_global":
            assert view.control["global"]["in"] and view.control["global"]["bucket"] < 500
            assert (
                d["explanation"]
                == "held out: in the global control group (5%, permanent until the salt changes)"
            )
        else:
            assert d["explanation"].startswith("no consent: opted out of "), d["explanation"]


def test_campaign_page_volumes_audience_and_preview(client: TestClient, store: WebStore) -> None:
    data = client.get("/marketing/api/campaigns/weekly_newsletter", headers=HTML).json()
    i = data["days"].index(store.monday.date().isoformat())
    per = dict(
        q(
            store,
            "select outcome, sum(n) from cycle_outcomes where campaign_id = 'weekly_newsletter' and cycle_at >= :a"
            " and cycle_at < :b group by 1",
            a=store.monday,
            b=store.monday + timedelta(days=1),
        )
    )
    assert {o: v[i] for o, v in data["series"].items() if v[i]} == per
    assert (
        data["runs"][0]["row_count"]
        == q(
            store,
            "select row_count from candidate_batches where campaign_id = 'weekly_newsletter' order by cycle_at desc limit 1",
        )[0][0]
    )
    count = client.get("/marketing/api/campaigns/weekly_newsletter/audience-count", headers=HTML).json()
    dep = deployment(DAGS)
    assert count == {
        **count,
        **{
            k: v
            for k, v in queries.audience_count(store.engine, dep, "weekly_newsletter").items()
            if k not in ("seconds", "data_interval_start", "data_interval_end", "cycle_at")
        },
    }
    assert count["rows"] > 1000
    cid = q(
        store,
        "select customer_id from candidates c join candidate_batches b using (batch_id) where b.campaign_id = 'price_drop' order by 1 limit 1",
    )[0][0]
    prev = client.get(f"/marketing/api/campaigns/price_drop/preview?customer={cid}", headers=HTML).json()
    assert prev["customer_id"] == cid and prev["source"] == "candidate"  # last Monday's price drop, not now's
    email = next(c for c in prev["channels"] if c["channel"] == "email")
    assert (
        email["error"] is None and email["content"]["subject"] == "Price drop: Trail Runner 2 is now $80.00"
    )
    # someone the campaign never proposed: the customer's data only, and the template says what is missing
    other = q(
        store,
        "select max(customer_id) from customers c where not exists (select 1 from candidates k join candidate_batches b"
        " using (batch_id) where b.campaign_id = 'price_drop' and k.customer_id = c.customer_id)",
    )[0][0]
    prev = client.get(f"/marketing/api/campaigns/price_drop/preview?customer={other}", headers=HTML).json()
    assert prev["source"] == "attributes" and "empty payload" in prev["note"]
    email = next(c for c in prev["channels"] if c["channel"] == "email")
    assert email["content"] is None and "'item_name' is undefined" in email["error"]
    # the newsletter's audience includes everyone with an email right now
    prev = client.get(
        f"/marketing/api/campaigns/weekly_newsletter/preview?customer={store.unsubscribed}", headers=HTML
    ).json()
    assert prev["source"] == "audience" and prev["payload"]["featured_category"]
    assert (
        client.get(
            "/marketing/api/campaigns/price_drop/preview?customer=nobody-at-all", headers=HTML
        ).status_code
        == 404
    )
    page = client.get(f"/marketing/campaigns/weekly_newsletter?customer={store.unsubscribed}", headers=HTML)
    assert (
        page.status_code == 200
        and 'data-preview="email"' in page.text
        and "This week at the shop" in page.text
    )
    assert client.get("/marketing/campaigns/no_such_campaign", headers=HTML).status_code == 404
    assert (
        client.get("/marketing/api/campaigns/no_such_campaign/audience-count", headers=HTML).status_code
        == 404
    )


def test_data_functions_answer_within_budget_on_the_small_store(store: WebStore) -> None:
    """A smoke check of the page data's speed (the benchmark measures the 1M-person store)."""
    import time

    dep = deployment(DAGS)
    t0 = time.perf_counter()
    queries.calendar(store.engine, dep, start=store.monday.date(), days=21)
    queries.cycle_funnel(store.engine, dep, store.cycles[-1])
    queries.customer_timeline(store.engine, dep, store.unsubscribed)
    queries.campaign_page(store.engine, dep, "weekly_newsletter")
    assert time.perf_counter() - t0 < 2.0
