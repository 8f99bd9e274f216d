"""The email adapter against a real SMTP server on loopback (aiosmtpd sink)."""

from __future__ import annotations

from pathlib import Path

import pytest

import delivery_servers
from baton.delivery import ChannelTransientError, RecipientRejectedError, SendResult, adapter_for
from baton.delivery.base import ConnectionInfo
from baton.delivery.channels.email import EmailAdapter, split_address
from baton.errors import TerminalDeliveryError, TransientDeliveryError
from baton_dev.sinks import SmtpSink
from delivery_servers import (
    free_port,
    make_message,
    make_recipient,
    outcomes,
    self_signed_cert,
    server_tls_context,
)

pytestmark = pytest.mark.integration
smtp_sink = delivery_servers.smtp_sink  # fixture


def _adapter(sink: SmtpSink, **extra: object) -> EmailAdapter:
    adapter = adapter_for("email", sink.connection(**extra))
    assert isinstance(adapter, EmailAdapter)
    return adapter


def test_multipart_text_and_html_arrive(smtp_sink: SmtpSink) -> None:
    msg = make_message(
        42,
        subject="Grüße, Ann: your cart",
        html='<html><head><style>p{}</style></head><body><span style="display:none">preheader</span>'
        '<p>Hello <b>Ann</b> — 20% off <a href="https://shop.example/cart">your cart</a></p></body></html>',
    )
    with _adapter(smtp_sink) as adapter:
        result = adapter.send(msg)
    assert result == SendResult(42, "<baton-42@northwind.example>")
    [mail] = smtp_sink.messages()
    assert mail.get_content_type() == "multipart/alternative"
    text, html = mail.iter_parts()
    assert text.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    assert "Hello Ann — 20% off your cart (https://shop.example/cart)" in text.get_content()
    assert "preheader" not in text.get_content() and "p{}" not in text.get_content()
    assert "<b>Ann</b> — 20% off" in html.get_content()
    assert str(mail["Subject"]) == "Grüße, Ann: your cart"
    assert mail["To"].addresses[0].display_name == "Ann Lee"
    assert mail["To"].addresses[0].addr_spec == "ann.lee@example.com"
    assert mail["From"].addresses[0].addr_spec == "shop@northwind.example"
    assert mail["Delivered-To"] == "ann.lee@example.com"


def test_given_text_part_is_used_verbatim_and_dots_survive(smtp_sink: SmtpSink) -> None:
    text = "Hi Ann,\n.\n..a line that starts with dots\nBye\n"
    with _adapter(smtp_sink) as adapter:
        adapter.send(make_message(1, text=text, html="<p>.leading dot</p>\n.\n<p>x</p>"))
    [mail] = smtp_sink.messages()
    plain, html = mail.iter_parts()
    assert plain.get_content() == text
    assert html.get_content().startswith("<p>.leading dot</p>\n.\n")


def test_headers_message_id_and_one_click_unsubscribe(smtp_sink: SmtpSink) -> None:
    with _adapter(smtp_sink) as adapter:
        adapter.send(make_message(7, unsubscribe_url="https://shop.example/baton/unsubscribe/abc.def"))
        adapter.send(make_message(8, unsubscribe_url=""))
    by_id = {m["Message-ID"]: m for m in smtp_sink.messages()}
    first, second = by_id["<baton-7@northwind.example>"], by_id["<baton-8@northwind.example>"]
    assert first["List-Unsubscribe"] == "<https://shop.example/baton/unsubscribe/abc.def>"
    assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert first["X-Baton-Message-Id"] == "7"
    assert first["X-Baton-Campaign"] == "abandoned_cart"
    assert "List-Unsubscribe" not in second and "List-Unsubscribe-Post" not in second
    assert smtp_sink.count("baton-7@northwind.example") == 1


def test_one_connection_for_a_batch(smtp_sink: SmtpSink) -> None:
    msgs = [make_message(i) for i in range(1, 6)]
    with _adapter(smtp_sink) as adapter:
        results = outcomes(adapter, msgs)
    assert [r.message_id for r in results if isinstance(r, SendResult)] == [1, 2, 3, 4, 5]
    assert smtp_sink.sessions == 1
    assert smtp_sink.received == 5 and smtp_sink.duplicates == 0


def test_works_without_pipelining(tmp_path: Path) -> None:
    with SmtpSink(maildir=tmp_path / "md", pipelining=False) as sink, _adapter(sink) as adapter:
        assert all(isinstance(r, SendResult) for r in outcomes(adapter, [make_message(1), make_message(2)]))
        assert sink.received == 2 and sink.sessions == 1


def test_reconnects_when_the_server_ends_the_session(smtp_sink: SmtpSink) -> None:
    smtp_sink.close_after = 2  # 421 and hang up on the third MAIL of a session
    with _adapter(smtp_sink) as adapter:
        results = outcomes(adapter, [make_message(i) for i in range(1, 6)])
    assert all(isinstance(r, SendResult) for r in results)
    assert smtp_sink.sessions == 3
    assert smtp_sink.received == 5 and smtp_sink.duplicates == 0


def test_550_is_terminal_and_the_batch_goes_on(smtp_sink: SmtpSink) -> None:
    smtp_sink.reject.add("gone@example.com")
    msgs = [
        make_message(1),
        make_message(2, recipient=make_recipient(email="gone@example.com")),
        make_message(3),
    ]
    with _adapter(smtp_sink) as adapter:
        ok1, rejected, ok3 = outcomes(adapter, msgs)
    assert isinstance(ok1, SendResult) and isinstance(ok3, SendResult)
    assert isinstance(rejected, RecipientRejectedError) and isinstance(rejected, TerminalDeliveryError)
    assert "550" in str(rejected) and rejected.address == "gone@example.com"
    assert smtp_sink.received == 2 and smtp_sink.sessions == 1


def test_4xx_is_transient(smtp_sink: SmtpSink) -> None:
    smtp_sink.tempfail.add("busy@example.com")
    with _adapter(smtp_sink) as adapter, pytest.raises(ChannelTransientError, match="451"):
        adapter.send(make_message(1, recipient=make_recipient(email="busy@example.com")))
    assert smtp_sink.received == 0


def test_server_down_is_transient() -> None:
    conn = ConnectionInfo("baton_email", "smtp", "127.0.0.1", free_port(), extra={"timeout": 1})
    with pytest.raises(TransientDeliveryError, match="cannot connect") as info:
        adapter_for("email", conn).send(make_message(1))
    assert isinstance(info.value, ChannelTransientError) and not info.value.maybe_sent


@pytest.mark.parametrize(
    "address",
    ["", "no-at-sign", "a@b", "two@@example.com", "sp ace@example.com", "a@-bad-.example", "x@example.123"],
)
def test_invalid_address_is_terminal_without_contacting_the_server(smtp_sink: SmtpSink, address: str) -> None:
    with pytest.raises(RecipientRejectedError, match="invalid email address"):
        _adapter(smtp_sink).send(make_message(1, recipient=make_recipient(email=address)))
    assert smtp_sink.sessions == 0


def test_address_syntax() -> None:
    assert split_address(" Ann.Lee+promo@Example.COM ") == ("Ann.Lee+promo", "example.com")
    assert split_address("ann@bücher.example") == ("ann", "xn--bcher-kva.example")
    assert split_address("a..b@example.com") is None
    assert split_address("ann@example.com\r\nBcc: x@example.com") is None


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")
def test_login(tmp_path: Path) -> None:
    with SmtpSink(maildir=tmp_path / "md", auth=("shop", "s3cret")) as sink:
        with _adapter(sink) as adapter:
            assert isinstance(adapter.send(make_message(1)), SendResult)
        bad = ConnectionInfo(
            "baton_email", "smtp", sink.host, sink.port, "shop", "wrong", extra={"timeout": 2}
        )
        with pytest.raises(ChannelTransientError, match="authentication failed"):
            adapter_for("email", bad).send(make_message(2))
        assert sink.received == 1


def test_starttls_with_a_verified_certificate(tmp_path: Path) -> None:
    cert, key = self_signed_cert(tmp_path)
    with SmtpSink(maildir=tmp_path / "md", tls_context=server_tls_context(cert, key)) as sink:
        with _adapter(sink, starttls=True, ca_file=str(cert)) as adapter:
            assert isinstance(adapter.send(make_message(1)), SendResult)
        assert sink.received == 1
        # without the CA the certificate does not verify: a configuration problem, retried
        with pytest.raises(ChannelTransientError, match="CERTIFICATE_VERIFY_FAILED|certificate verify"):
            _adapter(sink, starttls=True).send(make_message(2))


def test_header_injection_is_neutralised(smtp_sink: SmtpSink) -> None:
    evil = make_recipient(first_name="Ann\r\nBcc: victim@example.com")
    with _adapter(smtp_sink) as adapter:
        adapter.send(make_message(1, recipient=evil, subject="Hi\r\nBcc: victim@example.com"))
    [mail] = smtp_sink.messages()
    assert "Bcc" not in mail
    assert mail["Subject"] == "Hi Bcc: victim@example.com"
