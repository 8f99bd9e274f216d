"""Audience SQL rendering: every expression becomes a bound parameter."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from baton.audience.render import render_audience_sql
from baton.errors import AudienceError

pytestmark = pytest.mark.unit

T0 = datetime(2026, 3, 1, tzinfo=UTC)
T1 = datetime(2026, 3, 2, tzinfo=UTC)


def test_expressions_become_parameters_not_text() -> None:
    r = render_audience_sql(
        "select customer_id from events where ts >= {{ data_interval_start }} and ts < {{ data_interval_end }}"
        " and item_name = {{ params.name }}",
        {"data_interval_start": T0, "data_interval_end": T1, "params": {"name": "x' or 1=1 --"}},
    )
    assert r.sql == (
        "select customer_id from events where ts >= %(p0)s and ts < %(p1)s and item_name = %(p2)s"
    )
    assert r.params == {"p0": T0, "p1": T1, "p2": "x' or 1=1 --"}
    assert "1=1" not in r.sql


def test_statements_shape_the_query_and_percent_is_escaped() -> None:
    sql = (
        "select customer_id from events where item_name like 'a%'"
        "{% if params.vip %} and customer_id in (select customer_id from customers){% endif %}"
        "{% for t in params.types %} or type = {{ t }}{% endfor %};"
    )
    r = render_audience_sql(sql, {"params": {"vip": True, "types": ["a", "b"]}})
    assert r.sql == (
        "select customer_id from events where item_name like 'a%%' and customer_id in "
        "(select customer_id from customers) or type = %(p0)s or type = %(p1)s"
    )
    assert r.params == {"p0": "a", "p1": "b"}
    r2 = render_audience_sql(sql, {"params": {"vip": False, "types": []}})
    assert r2.sql == "select customer_id from events where item_name like 'a%%'"


def test_sandbox_refuses_python_internals() -> None:
    with pytest.raises(AudienceError, match="cannot render"):
        render_audience_sql("select {{ params.__class__.__mro__ }}", {"params": {}}, source="x.yaml")


def test_undefined_variable_is_a_clear_error() -> None:
    with pytest.raises(AudienceError, match=r"x.yaml: cannot render the audience SQL.*'nope' is undefined"):
        render_audience_sql("select {{ nope }}", {}, source="x.yaml")
