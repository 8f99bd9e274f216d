"""Which variables a campaign's message templates need (no database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.audience.check import template_variables
from baton.spec import load_campaign

pytestmark = pytest.mark.unit

HEAD = """\
id: promo
name: Promo
owner: crm
schedule: "@hourly"
start_date: 2026-01-01
channels: [email, sms]
audience: {sql: "select customer_id from customers"}
message:
"""


def _needed(tmp_path: Path, email: str, sms: str = "text: Hi") -> set[tuple[str, str, str | None, int]]:
    (tmp_path / "campaigns").mkdir(exist_ok=True)
    (tmp_path / "templates").mkdir(exist_ok=True)
    path = tmp_path / "campaigns" / "promo.yaml"
    path.write_text(HEAD + f"  email: {{{email}}}\n  sms: {{{sms}}}\n", encoding="utf-8")
    campaign = load_campaign(path)
    return {
        (v.name, v.field, v.template, v.line) for v in template_variables(campaign, tmp_path / "templates")
    }


def test_plain_variables_are_needed(tmp_path: Path) -> None:
    found = _needed(
        tmp_path,
        'subject: "{{ item }} for {{ first_name }}", html: "<p>{{ price }}</p>"',
        'text: "{{ code }}"',
    )
    assert {(n, f) for n, f, _t, _l in found} == {
        ("item", "message.email.subject"),
        ("first_name", "message.email.subject"),
        ("price", "message.email.html"),
        ("code", "message.sms.text"),
    }


def test_defaults_tests_loops_and_assignments_are_not(tmp_path: Path) -> None:
    html = (
        '"{{ a | default(1) }}{{ b | d(2) }}{% if c is defined %}{{ c }}{% endif %}'
        "{% for x in [1, 2] %}{{ x }}{{ loop.index }}{% endfor %}{% set y = 3 %}{{ y }}"
        '{{ range(2) | list }}{{ attr.name }}"'
    )
    found = _needed(tmp_path, f'subject: "Hi", html: {html}')
    assert {n for n, *_ in found} == {"attr"}


def test_template_files_and_their_includes(tmp_path: Path) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "main.html.j2").write_text("<p>\n{{ hello }}</p>\n{% include 'foot.j2' %}\n")
    (tmp_path / "templates" / "foot.j2").write_text("\n\n{{ footer_note }}\n{% include 'main.html.j2' %}\n")
    found = _needed(tmp_path, 'subject: "Hi", template: main.html.j2')
    assert found == {
        ("hello", "message.email.template", "main.html.j2", 2),
        ("footer_note", "message.email.template", "foot.j2", 3),
    }
