"""File channels: hashed customer-match audiences and print-vendor CSV batches."""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path

import pytest

from baton.delivery import SendResult, adapter_for
from baton.delivery.base import ConnectionInfo, batch_id
from baton.delivery.channels.audience import AudienceAdapter, hashed_identifiers, list_folder, sha256_hex
from baton.delivery.channels.direct_mail import DirectMailAdapter
from baton.errors import ConfigError, TerminalDeliveryError, TransientDeliveryError
from delivery_servers import make_message, make_recipient, outcomes

pytestmark = pytest.mark.unit

CONN = ConnectionInfo("baton_files")
# SHA-256 of "test@example.com", as published in ad platforms' customer-match examples
TEST_EMAIL_SHA256 = "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))


def test_hashing_of_normalised_identifiers() -> None:
    assert sha256_hex("test@example.com") == TEST_EMAIL_SHA256
    assert hashed_identifiers("  Test@EXAMPLE.com ", None) == (TEST_EMAIL_SHA256, "")
    phone = sha256_hex("+15550100001")
    assert phone == "bfb65de6e0f430140757d752965feeb68271d9705b29802200b78e91a420db8d"
    for raw in ("+1 (555) 010-0001", "+1.555.010.0001", "001 555 010 0001"):
        assert hashed_identifiers(None, raw) == ("", phone)
    assert hashed_identifiers(None, "555-0100") == ("", "")  # no country code: not E.164, not uploaded


def test_audience_csv_one_file_per_list_and_batch(tmp_path: Path) -> None:
    msgs = [
        make_message(3, "audience", recipient=make_recipient(email=" Test@Example.com", phone=None)),
        make_message(1, "audience", recipient=make_recipient(email=None, phone="+1 555 010 0001")),
        make_message(2, "audience", list="Lapsed buyers/2026"),
    ]
    results = outcomes(AudienceAdapter(CONN, base_path=tmp_path), msgs)
    cart = f"audiences/cart_abandoners/{batch_id([1, 3])}.csv"
    lapsed = f"audiences/Lapsed_buyers_2026/{batch_id([2])}.csv"
    assert results == [SendResult(3, cart), SendResult(1, cart), SendResult(2, lapsed)]
    assert (tmp_path / cart).read_text().splitlines()[0] == "email_sha256,phone_sha256"
    assert _rows(tmp_path / cart) == [
        {"email_sha256": TEST_EMAIL_SHA256, "phone_sha256": ""},
        {"email_sha256": "", "phone_sha256": sha256_hex("+15550100001")},
    ]
    assert _rows(tmp_path / lapsed) == [
        {"email_sha256": sha256_hex("ann.lee@example.com"), "phone_sha256": sha256_hex("+15550100001")}
    ]
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob(".*"))


def test_audience_resend_rewrites_the_same_file(tmp_path: Path) -> None:
    adapter = AudienceAdapter(CONN, base_path=tmp_path)
    msgs = [make_message(i, "audience") for i in (5, 4)]
    first = outcomes(adapter, msgs)
    again = outcomes(adapter, list(reversed(msgs)))
    assert {r.provider_id for r in first if isinstance(r, SendResult)} == {
        r.provider_id for r in again if isinstance(r, SendResult)
    }
    assert len(list(tmp_path.rglob("*.csv"))) == 1


def test_audience_unreachable_and_bad_list_are_terminal(tmp_path: Path) -> None:
    nobody = make_message(1, "audience", recipient=make_recipient(email=None, phone="12"))
    bad_list = make_message(2, "audience", list=" ../.. ")
    ok = make_message(3, "audience")
    r1, r2, r3 = outcomes(AudienceAdapter(CONN, base_path=tmp_path), [nobody, bad_list, ok])
    assert isinstance(r1, TerminalDeliveryError) and "no valid email or E.164 phone" in str(r1)
    assert isinstance(r2, TerminalDeliveryError) and "list name" in str(r2)
    assert isinstance(r3, SendResult)
    assert list_folder("../../etc") == "etc" and list_folder("vip.buyers-2") == "vip.buyers-2"
    with pytest.raises(TerminalDeliveryError):
        AudienceAdapter(CONN, base_path=tmp_path).send(nobody)


def test_object_storage_path_is_written_directly() -> None:
    upath = pytest.importorskip("upath")
    root = upath.UPath(f"memory:///baton-test-{uuid.uuid4().hex}")
    [result] = outcomes(AudienceAdapter(CONN, base_path=root), [make_message(9, "audience")])
    assert isinstance(result, SendResult) and result.provider_id is not None
    assert (root / result.provider_id).read_bytes().startswith(b"email_sha256,phone_sha256\r\n")


def test_write_failure_is_transient_for_the_whole_file(tmp_path: Path) -> None:
    (tmp_path / "direct_mail").write_text("a file where the folder should be")
    results = outcomes(
        DirectMailAdapter(CONN, base_path=tmp_path),
        [make_message(1, "direct_mail"), make_message(2, "direct_mail")],
    )
    assert all(isinstance(r, TransientDeliveryError) for r in results)


def test_direct_mail_csv(tmp_path: Path) -> None:
    msgs = [
        make_message(11, "direct_mail"),
        make_message(
            12, "direct_mail", recipient=make_recipient(first_name=None, last_name=None), creative="WB-B"
        ),
        make_message(13, "direct_mail", recipient=make_recipient(postal_address="  ")),
    ]
    r11, r12, r13 = outcomes(adapter_for("direct_mail", CONN, base_path=tmp_path), msgs)
    name = f"direct_mail/{batch_id([11, 12])}.csv"
    assert r11 == SendResult(11, name) and r12 == SendResult(12, name)
    assert isinstance(r13, TerminalDeliveryError) and "no postal address" in str(r13)
    assert (tmp_path / name).read_text().splitlines()[0] == "name,postal_address,creative,message_id"
    assert _rows(tmp_path / name) == [
        {
            "name": "Ann Lee",
            "postal_address": "1 Main St\nSpringfield, IL 62701",
            "creative": "WINBACK-2026-A",
            "message_id": "11",
        },
        {
            "name": "Current Resident",
            "postal_address": "1 Main St\nSpringfield, IL 62701",
            "creative": "WB-B",
            "message_id": "12",
        },
    ]


def test_base_path_from_the_connection(tmp_path: Path) -> None:
    conn = ConnectionInfo("baton_direct_mail", extra={"base_path": f"file://{tmp_path}/out"})
    [result] = outcomes(adapter_for("direct_mail", conn), [make_message(1, "direct_mail")])
    assert isinstance(result, SendResult) and (tmp_path / "out" / str(result.provider_id)).is_file()
    with pytest.raises(ConfigError, match="no base_path"):
        adapter_for("direct_mail", ConnectionInfo("x")).send(make_message(1, "direct_mail"))
    with pytest.raises(ConfigError, match="object storage"):
        adapter_for("audience", ConnectionInfo("x", extra={"base_path": "s3://b/p"})).send(
            make_message(1, "audience")
        )
