"""The adapter contract: registry, fake adapter knobs, batch semantics, connection helpers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import ClassVar

import pytest

from baton.delivery import REGISTRY, ChannelTransientError, SendResult, adapter_for, retry_after_of
from baton.delivery.base import (
    ChannelAdapter,
    ConnectionInfo,
    OutboundMessage,
    batch_id,
    http_base_url,
    normalize_email,
    normalize_phone,
    parse_retry_after,
)
from baton.delivery.channels import EmailAdapter, FakeAdapter, SmsAdapter
from baton.delivery.channels.fake import read_record
from baton.errors import ConfigError, DeliveryError, TerminalDeliveryError, TransientDeliveryError
from delivery_servers import make_message, outcomes

pytestmark = pytest.mark.unit


def test_registry_is_explicit_and_complete() -> None:
    assert sorted(REGISTRY) == ["audience", "direct_mail", "email", "fake", "push", "sms"]
    for name, cls in REGISTRY.items():
        assert cls.channel == name and isinstance(cls.idempotent_by_key, bool)
    assert REGISTRY["sms"].idempotent_by_key and not REGISTRY["email"].idempotent_by_key


CAPABILITIES = {  # channel: (idempotent_by_key, writes_files, needs_export_path, needs_unsubscribe_link, address)
    "email": (False, False, False, True, "email"),
    "sms": (True, False, False, False, "phone"),
    "push": (False, False, False, False, "push_token"),
    "audience": (True, True, True, False, None),
    "direct_mail": (True, True, True, False, "postal_address"),
    "fake": (True, False, False, False, None),
}


def test_every_adapter_declares_its_capabilities() -> None:
    assert set(CAPABILITIES) == set(REGISTRY)
    for name, cls in REGISTRY.items():
        declared = (
            cls.idempotent_by_key,
            cls.writes_files,
            cls.needs_export_path,
            cls.needs_unsubscribe_link,
            cls.address_field,
        )
        assert declared == CAPABILITIES[name], name
        assert isinstance(cls.allowed_extras, frozenset) and cls.allowed_extras, name
        assert "fake" not in cls.allowed_extras, "the fake switch is allowed everywhere, by the base class"
    assert REGISTRY["email"].address_case_insensitive and not REGISTRY["sms"].address_case_insensitive
    assert {"starttls", "ssl", "from", "timeout"} <= REGISTRY["email"].allowed_extras


def test_orchestration_never_branches_on_a_channel_name() -> None:
    """The outbox and the delivery task read capabilities; they never test which channel it is."""
    import ast
    import re

    root = Path(__file__).resolve().parents[2] / "include" / "baton"
    branch = re.compile(r"channel\s*(==|!=)|channel\s+(not\s+)?in\s*[(\[{A-Z]|FILE_CHANNELS")
    for name in ("delivery/outbox.py", "airflow/tasks/delivery.py"):
        source = (root / name).read_text(encoding="utf-8")
        assert not branch.search(source), f"{name}: {branch.search(source)}"
        compared: set[str] = set()  # string constants in comparisons (==, in, match against a name)
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Compare | ast.MatchValue):
                for sub in ast.walk(node):
                    if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                        compared.add(sub.value)
        assert not compared & set(REGISTRY), f"{name} compares with channel names: {compared & set(REGISTRY)}"


def test_the_fake_stands_in_with_the_channels_declarations() -> None:
    fake_email = adapter_for("email", ConnectionInfo("e", "baton_fake"))
    assert fake_email.needs_unsubscribe_link and fake_email.address_field == "email"
    assert fake_email.suppression_address(" Ann@Example.COM ") == "ann@example.com"
    fake_sms = adapter_for("sms", ConnectionInfo("s", "baton_fake"))
    assert not fake_sms.needs_unsubscribe_link and fake_sms.suppression_address(" +1 555 ") == "+1 555"
    fake_files = adapter_for("direct_mail", ConnectionInfo("d", "baton_fake", extra={"base_path": "/x"}))
    assert not fake_files.writes_files and not fake_files.needs_export_path


def test_adapter_for_picks_the_channel_or_the_fake() -> None:
    smtp = ConnectionInfo("baton_email", "smtp", "localhost", 25)
    assert type(adapter_for("email", smtp)) is EmailAdapter
    sms = ConnectionInfo("baton_sms", "http", login="AC1", password="t", extra={"from": "+15005550006"})
    assert type(adapter_for("sms", sms)) is SmsAdapter
    fake = adapter_for("sms", ConnectionInfo("baton_sms", "baton_fake"))
    assert isinstance(fake, FakeAdapter) and fake.for_channel == "sms"
    assert isinstance(
        adapter_for("push", ConnectionInfo("baton_push", "http", extra={"fake": "true"})), FakeAdapter
    )
    with pytest.raises(ConfigError, match="unknown channel 'fax'.*email"):
        adapter_for("fax", smtp)


def test_fake_records_what_it_sends(tmp_path: Path) -> None:
    record = tmp_path / "sent.jsonl"
    adapter = adapter_for("email", ConnectionInfo("f", "baton_fake", extra={"record": str(record)}))
    with adapter:
        results = outcomes(adapter, [make_message(1), make_message(2)])
    assert results == [SendResult(1, "fake-email-1"), SendResult(2, "fake-email-2")]
    assert isinstance(adapter, FakeAdapter) and [s["message_id"] for s in adapter.sent] == [1, 2]
    lines = read_record(record)
    assert [(e["message_id"], e["channel"], e["customer_id"]) for e in lines] == [
        (1, "email", "c-1"),
        (2, "email", "c-1"),
    ]
    assert lines[0]["content"]["subject"] == "Your cart is waiting"
    assert json.loads(record.read_text().splitlines()[0])["provider_id"] == "fake-email-1"


def test_fake_failure_knobs_are_seeded() -> None:
    def run() -> list[str]:
        conn = ConnectionInfo(
            "f",
            "baton_fake",
            extra={"transient_rate": 0.3, "terminal_rate": 0.2, "seed": 11, "retry_after": 2},
        )
        out = []
        for r in outcomes(adapter_for("sms", conn), [make_message(i, "sms") for i in range(200)]):
            out.append(type(r).__name__)
            if isinstance(r, TransientDeliveryError):
                assert retry_after_of(r) == 2.0
        return out

    first = run()
    assert first == run()  # same seed, same sequence
    assert {"SendResult", "ChannelTransientError", "TerminalDeliveryError"} == set(first)
    assert (
        30 <= first.count("ChannelTransientError") <= 90 and 15 <= first.count("TerminalDeliveryError") <= 70
    )
    always = adapter_for("sms", ConnectionInfo("f", "baton_fake", extra={"terminal_rate": 1}))
    assert all(isinstance(r, TerminalDeliveryError) for r in outcomes(always, [make_message(1, "sms")] * 5))
    with pytest.raises(ConfigError, match="between 0 and 1"):
        adapter_for("sms", ConnectionInfo("f", "baton_fake", extra={"transient_rate": 2}))


class _Scripted(ChannelAdapter):
    """Answers from a script: 'ok', 'transient', 'terminal', 'limited', 'bug'."""

    channel: ClassVar[str] = "scripted"
    idempotent_by_key: ClassVar[bool] = True

    def __init__(self, script: list[str]) -> None:
        super().__init__(ConnectionInfo("scripted"))
        self.script = list(script)
        self.calls = 0
        self.discarded = 0

    def discard(self) -> None:
        self.discarded += 1

    def send(self, msg: OutboundMessage) -> SendResult:
        self.calls += 1
        step = self.script.pop(0)
        if step == "transient":
            raise ChannelTransientError("try later")
        if step == "limited":
            raise ChannelTransientError("slow down", retry_after=5)
        if step == "terminal":
            raise TerminalDeliveryError("never")
        if step == "bug":
            raise KeyError("oops")
        return SendResult(msg.message_id, f"p{msg.message_id}")


def _kinds(results: list[SendResult | DeliveryError]) -> list[str]:
    out = []
    for r in results:
        if isinstance(r, ChannelTransientError):
            out.append("transient" if r.attempted else "skipped")
        else:
            out.append("ok" if isinstance(r, SendResult) else "terminal")
    return out


def test_send_batch_one_result_per_message_in_order() -> None:
    adapter = _Scripted(
        ["ok", "terminal", "transient", "ok", "transient", "terminal", "transient", "transient"]
    )
    results = outcomes(adapter, [make_message(i) for i in range(8)])
    assert _kinds(results) == [
        "ok",
        "terminal",
        "transient",
        "ok",
        "transient",
        "terminal",
        "transient",
        "transient",
    ]


def test_send_batch_stops_after_consecutive_transient_failures() -> None:
    adapter = _Scripted(["ok", "transient", "transient", "transient", "ok", "ok"])
    results = outcomes(adapter, [make_message(i) for i in range(6)])
    assert _kinds(results) == ["ok", "transient", "transient", "transient", "skipped", "skipped"]
    assert adapter.calls == 4
    assert "not attempted: 3 consecutive transient failures" in str(results[-1])


def test_send_batch_stops_at_once_when_asked_to_wait() -> None:
    adapter = _Scripted(["ok", "limited", "ok"])
    results = outcomes(adapter, [make_message(i) for i in range(3)])
    assert _kinds(results) == ["ok", "transient", "skipped"]
    assert retry_after_of(results[2]) == 5.0  # type: ignore[arg-type]


def test_send_batch_reports_a_bug_as_a_terminal_failure_of_that_message_and_goes_on() -> None:
    adapter = _Scripted(["ok", "bug", "ok"])
    results = outcomes(adapter, [make_message(i) for i in range(3)])
    assert _kinds(results) == ["ok", "terminal", "ok"]
    assert isinstance(results[1], TerminalDeliveryError)
    assert "unexpected KeyError in the scripted adapter: 'oops'" in str(results[1])
    assert adapter.calls == 3 and adapter.discarded == 1  # the connection was dropped after the bug


def test_send_batch_paces_the_sends() -> None:
    import time

    class _Clocked(_Scripted):
        def send(self, msg: OutboundMessage) -> SendResult:
            starts.append(time.perf_counter())
            return super().send(msg)

    starts: list[float] = []
    results = outcomes(_Clocked(["ok"] * 5), [make_message(i) for i in range(5)], interval=0.05)
    assert _kinds(results) == ["ok"] * 5
    assert all(b - a >= 0.049 for a, b in zip(starts, starts[1:], strict=False)), starts


def test_send_batch_stops_at_once_when_the_connection_fails() -> None:
    class _Down(_Scripted):
        def send(self, msg: OutboundMessage) -> SendResult:
            self.calls += 1
            raise ChannelTransientError("cannot connect: timed out", connection_failed=True)

    adapter = _Down([])
    results = outcomes(adapter, [make_message(i) for i in range(20)])
    assert adapter.calls == 1 and _kinds(results) == ["transient"] + ["skipped"] * 19
    assert all(isinstance(r, ChannelTransientError) and r.connection_failed for r in results)
    assert str(results[1]).startswith("not attempted: the connection failed earlier in this batch")


def test_connection_info_extras() -> None:
    conn = ConnectionInfo("c", extra={"a": "yes", "b": False, "n": "2.5", "s": "", "bad": "maybe"})
    assert conn.extra_bool("a") and not conn.extra_bool("b") and conn.extra_bool("missing", True)
    assert conn.extra_float("n", 1.0) == 2.5 and conn.extra_float("s", 1.0) == 1.0
    assert conn.extra_str("s", "d") == "d"
    with pytest.raises(ConfigError, match="'bad' must be true or false"):
        conn.extra_bool("bad")
    with pytest.raises(ConfigError, match="'a' must be a number"):
        conn.extra_float("a", 0)


def test_http_base_url() -> None:
    default = "https://api.twilio.com"
    assert http_base_url(ConnectionInfo("c"), default) == default
    assert (
        http_base_url(ConnectionInfo("c", host="http://127.0.0.1:8025/"), default) == "http://127.0.0.1:8025"
    )
    assert (
        http_base_url(ConnectionInfo("c", host="127.0.0.1", port=9000, schema="http"), default)
        == "http://127.0.0.1:9000"
    )
    assert (
        http_base_url(ConnectionInfo("c", host="api.example.com/x", port=8443), default)
        == "https://api.example.com:8443/x"
    )


def test_retry_after_parsing() -> None:
    assert parse_retry_after("3") == 3.0 and parse_retry_after(" 1.5 ") == 1.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    later = parse_retry_after(format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True))
    assert later is not None and 100 < later <= 120
    assert parse_retry_after(format_datetime(datetime(2000, 1, 1, tzinfo=UTC), usegmt=True)) == 0.0


def test_normalisation() -> None:
    assert normalize_email("  Ann@Example.COM ") == "ann@example.com" and normalize_email(" ") is None
    assert normalize_phone("+44 20 7946 0000") == "+442079460000"
    assert normalize_phone("0044 (20) 7946-0000") == "+442079460000"
    assert normalize_phone("020 7946 0000") is None and normalize_phone("+0123456789") is None
    assert normalize_phone(None) is None


def test_batch_id_depends_on_the_set_of_ids_only() -> None:
    assert batch_id([3, 1, 2]) == batch_id([1, 2, 3, 3])
    assert batch_id([1, 2, 3]).startswith("1-3-") and batch_id([1, 2, 3]) != batch_id([1, 3])
    with pytest.raises(ValueError):
        batch_id([])
