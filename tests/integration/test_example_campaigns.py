"""The example campaigns in dags/campaigns/ run against seeded data and their messages render.

Each audience query is rendered here the simple way (every ``{{ name }}`` becomes a
psycopg placeholder bound to its value), run over a store seeded with 2,000 customers
and 7 days of events, and its rows are fed to the campaign's message templates.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from jinja2 import StrictUndefined, meta
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy.engine import Engine

from baton.seed import run_seed
from conftest import _fresh_database

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CAMPAIGNS = sorted((ROOT / "dags" / "campaigns").glob("*.yaml"))
TEMPLATES = ROOT / "dags" / "templates"
UNTIL = datetime(2026, 3, 9, 18, 0, tzinfo=UTC)  # a Monday, after the newsletter's 14:00 run
EVENT_DRIVEN = {
    "abandoned_cart",
    "browse_abandonment",
    "review_request",
    "back_in_stock",
    "price_drop",
    "order_confirmation",
}
CUSTOMER_FIELDS = {
    "customer_id",
    "email",
    "phone",
    "push_token",
    "postal_address",
    "first_name",
    "last_name",
    "timezone",
    "attributes",
}
_EXPR = re.compile(r"\{\{\s*([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*\}\}")


def render_sql(sql: str, context: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """``{{ a.b }}`` -> ``%(a__b)s`` bound to ``context['a']['b']``; refuses expressions inside quotes."""
    assert "{%" not in sql, "the example campaigns use no Jinja statements"
    params: dict[str, Any] = {}
    text = sql.replace("%", "%%")

    def substitute(m: re.Match[str]) -> str:
        before = text[: m.start()]
        assert before.count("'") % 2 == 0, f"{{{{ {m.group(1)} }}}} is inside a quoted literal"
        value: Any = context
        for part in m.group(1).split("."):
            value = value[part]
        name = m.group(1).replace(".", "__")
        params[name] = value
        return f"%({name})s"

    out = _EXPR.sub(substitute, text)
    assert "{{" not in out and "}}" not in out, "only plain {{ name }} expressions are expected"
    return out, params


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def seeded() -> Iterator[Engine]:
    for engine in _fresh_database("baton_t"):
        run_seed(engine, customers=2_000, days=7, seed=42, until=UNTIL.isoformat())
        yield engine


def run_audience(
    engine: Engine, campaign: dict[str, Any], start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """The audience rows as the loader sees them (to_jsonb of each row), with the column order."""
    sql, params = render_sql(
        campaign["audience"]["sql"],
        {
            "data_interval_start": start,
            "data_interval_end": end,
            "cycle_at": end,
            "params": campaign.get("params") or {},
        },
    )
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            cur.execute(f"select to_jsonb(q) from ({sql.strip().rstrip(';')}) q", params)
            rows = [r[0] if isinstance(r[0], dict) else json.loads(r[0]) for r in cur.fetchall()]
        raw.rollback()
    finally:
        raw.close()
    return rows


def message_strings(campaign: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for block in campaign["message"].values():
        for key, value in block.items():
            if key == "template":
                out.append((TEMPLATES / value).read_text(encoding="utf-8"))
            else:
                out.append(value)
    return out


def test_every_example_campaign_is_present() -> None:
    assert {p.stem for p in CAMPAIGNS} >= EVENT_DRIVEN | {
        "weekly_newsletter",
        "seasonal_promotion",
        "win_back",
    }


def test_example_files_validate() -> None:
    from baton.spec import validate_paths

    assert [str(i) for i in validate_paths([ROOT / "dags"])] == []


@pytest.mark.parametrize("path", CAMPAIGNS, ids=lambda p: p.stem)
def test_audience_runs_and_messages_render(seeded: Engine, path: Path) -> None:
    campaign = load(path)
    rows = run_audience(seeded, campaign, UNTIL - timedelta(days=7), UNTIL)
    if campaign["id"] in EVENT_DRIVEN:
        assert rows, f"{campaign['id']}: no candidates over 7 days of seeded events"
    assert rows, f"{campaign['id']}: no candidates"
    ids = [r["customer_id"] for r in rows]
    assert all(isinstance(i, str) and i for i in ids)
    if campaign["id"] == "order_confirmation":  # one row per order: a shopper may order twice in a week
        orders = [r["order_id"] for r in rows]
        assert len(orders) == len(set(orders)), "one row per order"
        assert len(ids) > len(set(ids)), "the seed's very active shopper orders every day"
    else:
        assert len(ids) == len(set(ids)), "one row per customer"
    assert all(isinstance(r.get("score"), int | float) for r in rows)
    if "channel" in rows[0]:
        assert {r["channel"] for r in rows} <= set(campaign["channels"]) | {None}

    # every variable used by a message is in the payload, the customer's fields or unsubscribe_url
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    payload_keys = set(rows[0]) - {"customer_id", "score", "channel"}
    # delivery gives marketing messages an unsubscribe link; transactional ones get none
    marketing = campaign.get("category", "marketing") == "marketing"
    known = payload_keys | CUSTOMER_FIELDS | ({"unsubscribe_url"} if marketing else set())
    for text in message_strings(campaign):
        used = meta.find_undeclared_variables(env.parse(text))
        assert used <= known, f"{campaign['id']}: unknown template variables {sorted(used - known)}"

    # ... and the messages render for real rows (a few, including one without a first name)
    for row in rows[:3]:
        context = {**row, "first_name": "Ada", "last_name": "Lovelace"}
        if marketing:
            context["unsubscribe_url"] = "https://u.example/x"
        for text in message_strings(campaign):
            rendered = env.from_string(text).render(**context)
            assert "{{" not in rendered and "None" not in rendered
        no_name = {**context, "first_name": None}
        for text in message_strings(campaign):
            assert "None" not in env.from_string(text).render(**no_name)
    for name, block in campaign["message"].items():
        if name == "email" and "template" in block and campaign.get("category", "marketing") == "marketing":
            assert "{{ unsubscribe_url }}" in (TEMPLATES / block["template"]).read_text(encoding="utf-8")


@pytest.mark.parametrize("path", CAMPAIGNS, ids=lambda p: p.stem)
def test_audience_is_bounded_by_its_interval(seeded: Engine, path: Path) -> None:
    """An interval before any event gives no event-driven candidates (the SQL really uses it)."""
    campaign = load(path)
    rows = run_audience(seeded, campaign, UNTIL - timedelta(days=40), UNTIL - timedelta(days=39))
    if campaign["id"] in EVENT_DRIVEN:
        assert rows == []


def test_people_are_candidates_of_several_campaigns_a_day(seeded: Engine) -> None:
    """The reason Baton exists: on one day many people qualify for several campaigns."""
    per_customer: Counter[str] = Counter()
    for path in CAMPAIGNS:
        campaign = load(path)
        if campaign.get("category") == "transactional":
            continue
        for row in run_audience(seeded, campaign, UNTIL - timedelta(days=1), UNTIL):
            per_customer[row["customer_id"]] += 1
    several = sum(1 for n in per_customer.values() if n >= 3)
    # the daily_total cap of dags/policy.yaml is 2: these people would get more without Baton
    assert max(per_customer.values()) >= 4
    assert several >= 0.05 * 2_000, f"only {several} customers qualify for 3+ campaigns in a day"
