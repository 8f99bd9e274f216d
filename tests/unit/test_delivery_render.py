"""Rendering message blocks in Jinja's sandbox: fields, context, errors that name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.delivery.base import Recipient
from baton.delivery.render import Renderer, html_to_text, message_context, render_message
from baton.errors import TerminalDeliveryError
from baton.spec.enums import Channel
from baton.spec.models import MessageBlocks

pytestmark = pytest.mark.unit

CUSTOMER = {
    "customer_id": "c-1",
    "email": "ann@example.com",
    "first_name": "Ann",
    "last_name": "Lee",
    "attributes": {"tier": "gold", "first_name": "ignored: the column wins"},
}


@pytest.fixture()
def templates(tmp_path: Path) -> Path:
    (tmp_path / "cart.html.j2").write_text(
        "<p>Hi {{ first_name }},</p>\n<p>{{ item_name }} is waiting.</p>\n"
        '<a href="{{ unsubscribe_url }}">Unsubscribe</a>\n',
        encoding="utf-8",
    )
    (tmp_path / "broken.html.j2").write_text(
        "<p>line one</p>\n<p>{{ missing_thing }}</p>\n", encoding="utf-8"
    )
    return tmp_path


def test_email_block_from_the_spec_model(templates: Path) -> None:
    blocks = MessageBlocks.model_validate(
        {"email": {"subject": "{{ first_name }}, {{ item_name }} is waiting", "html": "<p>{{ tier }}</p>"}}
    )
    context = message_context(CUSTOMER, {"item_name": "Red shoes"}, unsubscribe_url="https://x.example/u/t")
    content = render_message(Channel.email, blocks.block(Channel.email), context, templates)  # type: ignore[arg-type]
    assert content == {
        "subject": "Ann, Red shoes is waiting",
        "html": "<p>gold</p>",
        "unsubscribe_url": "https://x.example/u/t",
    }


def test_template_file_is_autoescaped_and_subject_is_not(templates: Path) -> None:
    context = message_context(
        CUSTOMER, {"item_name": "Tom & Jerry <DVD>"}, unsubscribe_url="https://x/u?a=1&b=2"
    )
    content = render_message(
        "email",
        {"subject": "{{ item_name }}", "template": "cart.html.j2", "text": "{{ item_name }}\n"},
        context,
        templates,
    )
    assert content["subject"] == "Tom & Jerry <DVD>"
    assert content["text"] == "Tom & Jerry <DVD>\n"
    assert "Tom &amp; Jerry &lt;DVD&gt; is waiting." in content["html"]
    assert 'href="https://x/u?a=1&amp;b=2"' in content["html"]


def test_every_channel_renders_its_fields(templates: Path) -> None:
    context = message_context(CUSTOMER, {"item_name": "Shoes", "segment": "vip"})
    assert render_message("sms", {"text": "{{ first_name }}: {{ item_name }}"}, context, templates) == {
        "text": "Ann: Shoes"
    }
    push = render_message(
        "push",
        {"title": "{{ item_name }}", "body": "for {{ first_name }}", "url": " https://s/{{ segment }} "},
        context,
        templates,
    )
    assert push == {"title": "Shoes", "body": "for Ann", "url": "https://s/vip"}
    assert render_message("audience", {"list": "buyers_{{ segment }}"}, context, templates) == {
        "list": "buyers_vip"
    }
    assert render_message("direct_mail", {"creative": "DM-{{ tier }}"}, context, templates) == {
        "creative": "DM-gold"
    }


def test_missing_variable_names_the_field(templates: Path) -> None:
    with pytest.raises(TerminalDeliveryError, match=r"^message\.email\.subject: 'item_name' is undefined$"):
        render_message("email", {"subject": "You left {{ item_name }}", "html": "x"}, {}, templates)
    with pytest.raises(TerminalDeliveryError, match=r"^message\.push\.body: 'x' is undefined$"):
        render_message("push", {"title": "t", "body": "{{ x }}"}, {}, templates)


def test_error_in_a_template_file_names_file_and_line(templates: Path) -> None:
    with pytest.raises(
        TerminalDeliveryError,
        match=r"^message\.email\.template \(broken\.html\.j2, line 2\): 'missing_thing' is undefined$",
    ):
        render_message("email", {"subject": "s", "template": "broken.html.j2"}, {}, templates)
    with pytest.raises(
        TerminalDeliveryError, match=r"message\.email\.template \(nope\.j2\): template 'nope\.j2' not found"
    ):
        render_message("email", {"subject": "s", "template": "nope.j2"}, {}, templates)


def test_runtime_errors_and_multi_line_fields(templates: Path) -> None:
    with pytest.raises(TerminalDeliveryError, match=r"^message\.sms\.text \(line 2\): division by zero$"):
        render_message("sms", {"text": "Hello\n{{ 1 / 0 }}"}, {}, templates)


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ first_name.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
    ],
)
def test_sandbox_blocks_python_internals(templates: Path, source: str) -> None:
    with pytest.raises(TerminalDeliveryError, match=r"^message\.sms\.text: .*(unsafe|undefined)"):
        render_message("sms", {"text": source}, {"first_name": "Ann"}, templates)


def test_sandbox_is_immutable(templates: Path) -> None:
    context = {"items": ["a"]}
    with pytest.raises(TerminalDeliveryError, match="message.sms.text"):
        render_message("sms", {"text": "{{ items.append('b') }}"}, context, templates)
    assert context == {"items": ["a"]}


def test_block_without_required_field(templates: Path) -> None:
    with pytest.raises(TerminalDeliveryError, match="message.email: the block has no subject"):
        render_message("email", {"html": "x"}, {}, templates)
    with pytest.raises(TerminalDeliveryError, match="neither html nor template"):
        render_message("email", {"subject": "s"}, {}, templates)
    with pytest.raises(TerminalDeliveryError, match="unknown channel"):
        render_message("fax", {"text": "x"}, {}, templates)


def test_context_precedence() -> None:
    context = message_context(CUSTOMER, {"tier": "payload wins", "item_name": "x"}, unsubscribe_url="u")
    assert context["first_name"] == "Ann"  # the column beats the attribute
    assert context["tier"] == "payload wins"  # the payload beats the attribute
    assert context["unsubscribe_url"] == "u"
    assert "attributes" not in context
    from_recipient = message_context(Recipient("c-2", email="b@example.com", first_name="Bo"))
    assert from_recipient["first_name"] == "Bo" and from_recipient["customer_id"] == "c-2"


def test_compiled_templates_are_cached(templates: Path) -> None:
    renderer = Renderer(templates)
    for name in ("Ann", "Bo"):
        assert renderer.render("sms", {"text": "Hi {{ n }}"}, {"n": name}) == {"text": f"Hi {name}"}
    assert len(renderer._compiled) == 1


def test_html_to_text() -> None:
    html = (
        "<html><head><title>T</title><style>.x{}</style></head><body>"
        '<span style="display:none">preheader</span>'
        "<h1>Hello&nbsp;Ann</h1><p>See <a href='https://s.example/c'>your cart</a> &amp; more.</p>"
        "<ul><li>One</li><li>Two</li></ul><img alt='logo' src='x.png'><br/>"
        '<a href="https://s.example/raw">https://s.example/raw</a></body></html>'
    )
    assert html_to_text(html) == (
        "Hello Ann\n\nSee your cart (https://s.example/c) & more.\n\n- One\n\n- Two\n\nlogo\n\n"
        "https://s.example/raw\n"
    )
