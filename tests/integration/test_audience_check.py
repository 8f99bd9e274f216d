"""A campaign is checked against the store before anything runs: its audience query is prepared
(read-only, rolled back) and every template variable must exist — a typo is a ``file:line`` error."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from baton.audience.check import check_campaign
from baton.seed import run_seed
from baton.spec import load_campaign, load_campaigns, load_policy
from conftest import _fresh_database

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UNTIL = datetime(2026, 3, 9, 18, 0, tzinfo=UTC)

CART = """\
id: cart
name: Cart
owner: crm
schedule: "@hourly"
start_date: 2026-01-01
channels: [email]
audience:
  sql: |
    select customer_id,
           max(cart_value)::float8 as score,
           max(item_name) as item_name
    from events
    where type = 'cart_abandoned'
      and ts >= {{ data_interval_start }}
    group by customer_id
message:
  email:
    subject: "You left {{ item_name }} behind"
    html: "<p>{{ item_name }}</p><p>{{ unsubscribe_url }}</p>"
"""


@pytest.fixture(scope="module")
def seeded() -> Iterator[Engine]:
    for engine in _fresh_database("baton_t"):
        run_seed(engine, customers=500, days=2, seed=42, until=UNTIL.isoformat())
        yield engine


@pytest.fixture()
def dags(tmp_path: Path) -> Path:
    folder = tmp_path / "dags"
    (folder / "campaigns").mkdir(parents=True)
    shutil.copytree(ROOT / "dags" / "templates", folder / "templates")
    return folder


def _check(engine: Engine, dags: Path, text: str, name: str = "cart") -> list[str]:
    path = dags / "campaigns" / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    campaign = load_campaign(path)
    policy = load_policy(ROOT / "dags" / "policy.yaml")
    issues = check_campaign(engine, campaign, policy, file=path, templates_dir=dags / "templates")
    return [str(i) for i in issues]


def test_the_shipped_campaigns_pass(seeded: Engine) -> None:
    campaigns, issues = load_campaigns(ROOT / "dags" / "campaigns", ROOT / "dags" / "templates")
    assert issues == []
    policy = load_policy(ROOT / "dags" / "policy.yaml")
    for c in campaigns:
        path = ROOT / "dags" / "campaigns" / f"{c.id}.yaml"
        found = check_campaign(seeded, c, policy, file=path, templates_dir=ROOT / "dags" / "templates")
        assert [str(i) for i in found] == [], c.id


def test_a_good_campaign_passes(seeded: Engine, dags: Path) -> None:
    assert _check(seeded, dags, CART) == []


def test_sql_error_points_at_the_line_in_the_yaml(seeded: Engine, dags: Path) -> None:
    text = CART.replace("max(item_name) as item_name", "max(item_nam) as item_name")
    [issue] = _check(seeded, dags, text)
    path = dags / "campaigns" / "cart.yaml"
    # line 11 of the file holds `max(item_nam) as item_name`
    assert issue.startswith(f"{path}:11: audience.sql: the audience query fails in the store: ")
    assert 'column "item_nam" does not exist' in issue


def test_sql_error_after_parameters_and_blank_lines_keeps_its_line(seeded: Engine, dags: Path) -> None:
    text = CART.replace(
        "      and ts >= {{ data_interval_start }}\n",
        "      and ts >= {{ data_interval_start }}\n\n      and no_such_column = {{ data_interval_end }}\n",
    ).replace("  sql: |\n", "  sql: |\n\n")
    [issue] = _check(seeded, dags, text)
    lines = (dags / "campaigns" / "cart.yaml").read_text().splitlines()
    line = int(issue.split(":")[1])
    assert "no_such_column" in lines[line - 1], (issue, lines[line - 1])


def test_unknown_template_variable_is_an_error_with_a_hint(seeded: Engine, dags: Path) -> None:
    [issue] = _check(
        seeded, dags, CART.replace('subject: "You left {{ item_name }}', 'subject: "You left {{ item_nme }}')
    )
    path = dags / "campaigns" / "cart.yaml"
    assert issue.startswith(
        f"{path}:18: message.email.subject: unknown variable 'item_nme' (did you mean 'item_name'?)"
    )
    assert "default('')" in issue


def test_variables_with_a_default_attributes_and_columns_are_known(seeded: Engine, dags: Path) -> None:
    text = CART.replace(
        'html: "<p>{{ item_name }}</p>',
        'html: "<p>{{ item_name }} {{ nickname | default(first_name) }} {{ loyalty_tier }} {{ email }}'
        " {% if coupon is defined %}{{ coupon }}{% endif %} {% for x in [1] %}{{ x }}{% endfor %}</p>",
    )
    assert _check(seeded, dags, text) == []


def test_an_attribute_no_customer_has_is_unknown(seeded: Engine, dags: Path) -> None:
    with seeded.connect() as conn:
        assert conn.execute(
            sa.text("select count(*) from customers where attributes ? 'loyalty_tier'")
        ).scalar()
    [issue] = _check(seeded, dags, CART.replace("{{ item_name }}</p>", "{{ loyalty_teir }}</p>"))
    assert "unknown variable 'loyalty_teir' (did you mean 'loyalty_tier'?)" in issue


def test_template_files_are_checked_too(seeded: Engine, dags: Path) -> None:
    (dags / "templates" / "mine.html.j2").write_text(
        "<p>Hi</p>\n{% include 'part.html.j2' %}\n", encoding="utf-8"
    )
    (dags / "templates" / "part.html.j2").write_text("<p>{{ itm_name }}</p>\n", encoding="utf-8")
    text = CART.replace(
        'html: "<p>{{ item_name }}</p><p>{{ unsubscribe_url }}</p>"', "template: mine.html.j2"
    )
    [issue] = _check(seeded, dags, text)
    assert "message.email.template: unknown variable 'itm_name' (part.html.j2, line 1)" in issue


def test_transactional_campaigns_have_no_unsubscribe_link(seeded: Engine, dags: Path) -> None:
    text = CART.replace("channels: [email]", "category: transactional\nchannels: [email]")
    [issue] = _check(seeded, dags, text)
    assert "unknown variable 'unsubscribe_url'" in issue


def test_a_query_without_customer_id(seeded: Engine, dags: Path) -> None:
    [issue] = _check(
        seeded, dags, CART.replace("    select customer_id,\n", "    select customer_id as cid,\n")
    )
    assert "must return a customer_id column" in issue


def _validate(engine: Engine, *paths: Path) -> tuple[int, str]:
    import os
    import subprocess
    import sys

    env = dict(os.environ, BATON_DATABASE_URL=engine.url.render_as_string(hide_password=False))
    proc = subprocess.run(
        [sys.executable, "-m", "baton", "validate", "--store", *map(str, paths)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc.returncode, proc.stdout + proc.stderr


def test_validate_store_passes_the_shipped_files(seeded: Engine) -> None:
    code, text = _validate(seeded, ROOT / "dags")
    assert code == 0, text
    assert "all files valid (and fit the store)" in text


def test_validate_store_reports_sql_and_variable_typos(seeded: Engine, dags: Path) -> None:
    (dags / "policy.yaml").write_text("global_control_percent: 5\n", encoding="utf-8")
    (dags / "campaigns" / "cart.yaml").write_text(
        CART.replace("max(item_name) as item_name", "max(item_nam) as item_name"), encoding="utf-8"
    )
    (dags / "campaigns" / "news.yaml").write_text(
        CART.replace("id: cart", "id: news").replace("{{ item_name }} behind", "{{ item_nme }} behind"),
        encoding="utf-8",
    )
    code, text = _validate(seeded, dags)
    assert code == 1
    assert (
        f"{dags / 'campaigns' / 'cart.yaml'}:11: audience.sql: the audience query fails in the store" in text
    )
    assert (
        f"{dags / 'campaigns' / 'news.yaml'}:18: message.email.subject: unknown variable 'item_nme'" in text
    )
    assert "2 error(s)" in text
