"""Hand-written checks of the arbitration reference (tests/reference_arbitration.py) against SPEC.md §3.

The property tests compare the SQL engine with the reference, so the reference itself
must be right: every case here is worked out by hand from the SPEC's text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

from baton.arbitration.scenario import (
    CandidateRow,
    ConsentRow,
    CustomerRow,
    Decision,
    HistoryRow,
    Scenario,
    SuppressionRow,
    load_scenario,
    parse_at,
)
from baton.spec import Campaign, Policy
from reference_arbitration import bucket, check_invariants, decide_reference, period_start, quiet_state
from strategies import scenarios

pytestmark = pytest.mark.unit

# Monday 2026-03-02, 07:00 in New York (EST, UTC-5), 13:00 in Berlin (CET, UTC+1).
T = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

MESSAGES: dict[str, dict[str, str]] = {
    "email": {"subject": "Hi", "html": "<p>Hi</p>"},
    "sms": {"text": "Hi"},
    "push": {"title": "Hi", "body": "Hi"},
    "audience": {"list": "retarget"},
    "direct_mail": {"creative": "DM-1"},
}


def campaign(cid: str, channels: tuple[str, ...] = ("email",), **kw: Any) -> Campaign:
    data: dict[str, Any] = {
        "id": cid,
        "name": cid,
        "owner": "tests",
        "schedule": "@hourly",
        "start_date": "2026-01-01",
        "channels": list(channels),
        "audience": {"sql": "select customer_id from customers"},
        "message": {ch: MESSAGES[ch] for ch in channels},
    }
    data.update(kw)
    return Campaign.model_validate(data)


def person(cid: str = "c1", **kw: Any) -> CustomerRow:
    """A profile whose email and phone are its own: profiles made here link no one (SPEC §6)."""
    fields: dict[str, Any] = {
        "email": f"{cid}@example.com",
        "phone": "+15550001" if cid == "c1" else "+1555" + "".join(f"{b:03d}" for b in cid.encode()),
        "push_token": f"tok-{cid}",
        "postal_address": "1 Main St",
        "timezone": "America/New_York",
    }
    fields.update(kw)
    return CustomerRow(customer_id=cid, **fields)


_seq = iter(range(10**9))


def cand(
    campaign_id: str,
    customer_id: str = "c1",
    score: float = 0.0,
    channel: str | None = None,
    expires_at: datetime | None = None,
    seq: int | None = None,
) -> CandidateRow:
    return CandidateRow(
        seq=next(_seq) if seq is None else seq,
        campaign_id=campaign_id,
        customer_id=customer_id,
        score=score,
        channel=channel,
        expires_at=expires_at,
    )


def scenario(
    campaigns: Sequence[Campaign],
    candidates: Sequence[CandidateRow],
    customers: Sequence[CustomerRow] | None = None,
    policy: dict[str, Any] | None = None,
    consents: Sequence[ConsentRow] = (),
    suppressions: Sequence[SuppressionRow] = (),
    history: Sequence[HistoryRow] = (),
) -> Scenario:
    return Scenario(
        policy=Policy.model_validate(policy or {}),
        campaigns={c.id: c for c in campaigns},
        customers=tuple(customers if customers is not None else [person()]),
        candidates=tuple(candidates),
        consents=tuple(consents),
        suppressions=tuple(suppressions),
        history=tuple(history),
    )


def decide(s: Scenario, at: datetime = T) -> dict[tuple[str, str, str], Decision]:
    decisions = decide_reference(s, at)
    keyed = {(d.customer_id, d.campaign_id, d.channel): d for d in decisions}
    assert len(keyed) == len(decisions), "one decision per alternative"
    return keyed


def outcome(
    s: Scenario, campaign_id: str, channel: str = "email", customer_id: str = "c1", at: datetime = T
) -> tuple[str, str | None, datetime | None]:
    d = decide(s, at)[(customer_id, campaign_id, channel)]
    return d.outcome, d.reason, d.send_at


def hist(
    campaign_id: str,
    decided_at: datetime,
    customer_id: str = "c1",
    channel: str = "email",
    tags: tuple[str, ...] = (),
    counts: bool = True,
) -> HistoryRow:
    return HistoryRow(
        customer_id=customer_id,
        campaign_id=campaign_id,
        channel=channel,
        decided_at=decided_at,
        tags=tags,
        counts=counts,
    )


def sha_bucket(key: str) -> int:
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % 10000


def find_id(predicate: Any, prefix: str = "p") -> str:
    for i in range(200_000):
        cid = f"{prefix}{i}"
        if predicate(cid):
            return cid
    raise AssertionError("no id found")


SELECTED_NOW = ("selected", None, T)


# --------------------------------------------------------------------------- buckets


def test_bucket_known_values() -> None:
    # sha256("abc") = ba7816bf 8f01cfea ...; 0xba7816bf = 3128432319
    assert bucket("abc") == 3128432319 % 10000 == 2319
    # sha256("") = e3b0c442 98fc1c14 ...; 0xe3b0c442 = 3820012610
    assert bucket("") == 3820012610 % 10000 == 2610
    for key in ["baton:c1", "promo:c1", "s:ä", "x" * 100]:
        assert bucket(key) == sha_bucket(key)
        assert 0 <= bucket(key) < 10000


def test_global_control_threshold_is_strict() -> None:
    cid = find_id(lambda c: sha_bucket(f"baton:{c}") % 100 == 0 and 0 < sha_bucket(f"baton:{c}") < 5000)
    b = sha_bucket(f"baton:{cid}")
    c = campaign("promo")
    at_threshold = scenario(
        [c], [cand("promo", cid)], [person(cid)], policy={"global_control_percent": b / 100}
    )
    assert outcome(at_threshold, "promo", customer_id=cid)[0] == "selected"  # bucket == percent*100: not in
    above = scenario(
        [c], [cand("promo", cid)], [person(cid)], policy={"global_control_percent": (b + 1) / 100}
    )
    assert outcome(above, "promo", customer_id=cid)[0] == "holdout_global"


# ------------------------------------------------------------------------- outcomes


def test_selected_plain() -> None:
    s = scenario([campaign("promo")], [cand("promo")])
    assert outcome(s, "promo") == SELECTED_NOW


def test_unknown_customer_before_expired() -> None:
    s = scenario(
        [campaign("promo", ("email", "sms"))], [cand("promo", "ghost", expires_at=T - timedelta(hours=1))]
    )
    d = decide(s)
    assert {k: v.outcome for k, v in d.items()} == {
        ("ghost", "promo", "email"): "unknown_customer",
        ("ghost", "promo", "sms"): "unknown_customer",
    }
    assert all(v.reason is None and v.send_at is None for v in d.values())


@pytest.mark.parametrize(
    ("expires_at", "expected"),
    [
        (T - timedelta(hours=1), "expired"),
        (T, "expired"),
        (T + timedelta(seconds=1), "selected"),
        (None, "selected"),
    ],
)
def test_expired_when_expires_at_not_after_T(expires_at: datetime | None, expected: str) -> None:
    s = scenario([campaign("promo")], [cand("promo", expires_at=expires_at)])
    assert outcome(s, "promo")[0] == expected


def test_expired_before_unreachable() -> None:
    s = scenario([campaign("promo")], [cand("promo", expires_at=T)], [person(email=None)])
    assert outcome(s, "promo")[0] == "expired"


@pytest.mark.parametrize(
    ("channel", "fields", "expected"),
    [
        ("email", {"email": None}, "unreachable"),
        ("email", {"email": "   "}, "unreachable"),
        ("email", {"email": ""}, "unreachable"),
        ("sms", {"phone": None}, "unreachable"),
        ("push", {"push_token": " "}, "unreachable"),
        ("direct_mail", {"postal_address": None}, "unreachable"),
        ("audience", {"email": None, "phone": None}, "unreachable"),
        ("audience", {"email": None}, "selected"),  # the phone is used
        ("audience", {"phone": None}, "selected"),
        ("direct_mail", {"email": None, "phone": None, "push_token": None}, "selected"),
    ],
)
def test_unreachable(channel: str, fields: dict[str, Any], expected: str) -> None:
    s = scenario(
        [campaign("promo", (channel,))],
        [cand("promo")],
        [person(**fields)],
        policy={"channels": {"sms": {"consent": "opt_out"}}},
    )
    assert outcome(s, "promo", channel)[0] == expected


def test_unreachable_before_suppressed() -> None:
    s = scenario(
        [campaign("promo", ("audience",))],
        [cand("promo")],
        [person(email=None, phone=None)],
        suppressions=[SuppressionRow("audience", "")],
    )
    assert outcome(s, "promo", "audience")[0] == "unreachable"


def test_suppressed_email_case_insensitive_and_trimmed() -> None:
    s = scenario(
        [campaign("promo", ("email", "push"))],
        [cand("promo")],
        [person(email="  Ann@Example.COM ")],
        suppressions=[SuppressionRow("email", " aNN@example.com  ")],
    )
    d = decide(s)
    assert d[("c1", "promo", "email")].outcome == "suppressed"
    assert d[("c1", "promo", "push")].outcome == "selected"  # the next channel takes over


def test_suppression_is_per_channel() -> None:
    s = scenario(
        [campaign("promo", ("email",))],
        [cand("promo")],
        [person(email="ann@example.com")],
        suppressions=[SuppressionRow("audience", "ann@example.com")],
    )
    assert outcome(s, "promo")[0] == "selected"


def test_suppressed_non_email_is_case_sensitive_but_trimmed() -> None:
    sup = [SuppressionRow("push", " TOKA "), SuppressionRow("sms", "+15550001 ")]
    s = scenario(
        [campaign("promo", ("push",)), campaign("flash", ("sms",))],
        [cand("promo"), cand("flash")],
        [person(push_token="tokA", phone=" +15550001")],
        policy={"channels": {"sms": {"consent": "opt_out"}}},
        suppressions=sup,
    )
    assert outcome(s, "promo", "push")[0] == "selected"
    assert outcome(s, "flash", "sms")[0] == "suppressed"


def test_audience_suppression_uses_email_rules_only_for_email() -> None:
    camp = campaign("promo", ("audience",))
    by_email = scenario(
        [camp],
        [cand("promo")],
        [person(email="Ann@Example.com")],
        suppressions=[SuppressionRow("audience", "ann@example.com")],
    )
    assert outcome(by_email, "promo", "audience")[0] == "suppressed"
    by_phone = scenario(
        [camp],
        [cand("promo")],
        [person(email=None, phone="+1555")],
        suppressions=[SuppressionRow("audience", "+1555")],
    )
    assert outcome(by_phone, "promo", "audience")[0] == "suppressed"
    phone_not_used = scenario(
        [camp],
        [cand("promo")],
        [person(email="a@b.c", phone="+1555")],
        suppressions=[SuppressionRow("audience", "+1555")],
    )
    assert outcome(phone_not_used, "promo", "audience")[0] == "selected"


def test_suppressed_applies_to_transactional() -> None:
    s = scenario(
        [campaign("receipt", category="transactional")],
        [cand("receipt")],
        [person(email="a@b.c")],
        suppressions=[SuppressionRow("email", "A@B.C")],
    )
    assert outcome(s, "receipt")[0] == "suppressed"


@pytest.mark.parametrize(
    ("consents", "expected"),
    [
        ([], "selected"),
        ([ConsentRow("c1", "email", "", "opt_out")], "no_consent"),
        ([ConsentRow("c1", "email", "promotions", "opt_out")], "no_consent"),
        ([ConsentRow("c1", "email", "other", "opt_out")], "selected"),
        ([ConsentRow("c1", "sms", "", "opt_out")], "selected"),
        ([ConsentRow("c2", "email", "", "opt_out")], "selected"),
        (
            [ConsentRow("c1", "email", "", "opt_in"), ConsentRow("c1", "email", "promotions", "opt_out")],
            "no_consent",
        ),
        (
            [ConsentRow("c1", "email", "", "opt_out"), ConsentRow("c1", "email", "promotions", "opt_in")],
            "no_consent",
        ),
    ],
)
def test_consent_opt_out_channel(consents: list[ConsentRow], expected: str) -> None:
    s = scenario([campaign("promo", topic="promotions")], [cand("promo")], consents=consents)
    assert outcome(s, "promo")[0] == expected


@pytest.mark.parametrize(
    ("consents", "expected"),
    [
        ([], "no_consent"),
        ([ConsentRow("c1", "sms", "", "opt_in")], "selected"),
        ([ConsentRow("c1", "sms", "flash", "opt_in")], "selected"),  # topic defaults to the id
        ([ConsentRow("c1", "sms", "other", "opt_in")], "no_consent"),
        ([ConsentRow("c1", "email", "", "opt_in")], "no_consent"),
        ([ConsentRow("c1", "sms", "", "opt_in"), ConsentRow("c1", "sms", "flash", "opt_out")], "no_consent"),
    ],
)
def test_consent_opt_in_channel(consents: list[ConsentRow], expected: str) -> None:
    s = scenario([campaign("flash", ("sms",))], [cand("flash")], consents=consents)  # sms defaults to opt_in
    assert outcome(s, "flash", "sms")[0] == expected


def test_consent_mode_from_policy() -> None:
    s = scenario([campaign("promo")], [cand("promo")], policy={"channels": {"email": {"consent": "opt_in"}}})
    assert outcome(s, "promo")[0] == "no_consent"


def test_suppressed_before_no_consent() -> None:
    s = scenario(
        [campaign("promo")],
        [cand("promo")],
        [person(email="a@b.c")],
        consents=[ConsentRow("c1", "email", "", "opt_out")],
        suppressions=[SuppressionRow("email", "a@b.c")],
    )
    assert outcome(s, "promo")[0] == "suppressed"


# --------------------------------------------------------------------------- quiet hours


SMS_OK = {"channels": {"sms": {"consent": "opt_out"}}}


def quiet_policy(start: str = "21:00", end: str = "09:00", **kw: Any) -> dict[str, Any]:
    return {**SMS_OK, "quiet_hours": {"sms": {"start": start, "end": end}}, **kw}


def test_quiet_hours_morning_send_at_next_end() -> None:
    s = scenario([campaign("flash", ("sms",))], [cand("flash")], policy=quiet_policy())
    # 07:00 EST is quiet; the end is 09:00 EST = 14:00Z.
    assert outcome(s, "flash", "sms") == ("selected", None, datetime(2026, 3, 2, 14, 0, tzinfo=UTC))


def test_quiet_hours_evening_wraps_midnight() -> None:
    at = datetime(2026, 3, 3, 3, 0, tzinfo=UTC)  # 22:00 EST on Monday 2 March
    s = scenario([campaign("flash", ("sms",))], [cand("flash")], policy=quiet_policy())
    assert outcome(s, "flash", "sms", at=at) == ("selected", None, datetime(2026, 3, 3, 14, 0, tzinfo=UTC))


@pytest.mark.parametrize(
    ("at", "quiet"),
    [
        (datetime(2026, 3, 2, 2, 0, tzinfo=UTC), True),  # 21:00 EST: start is quiet
        (datetime(2026, 3, 2, 1, 59, tzinfo=UTC), False),  # 20:59 EST
        (datetime(2026, 3, 2, 14, 0, tzinfo=UTC), False),  # 09:00 EST: end is not quiet
        (datetime(2026, 3, 2, 13, 59, tzinfo=UTC), True),  # 08:59 EST
        (datetime(2026, 3, 2, 5, 0, tzinfo=UTC), True),  # 00:00 EST
    ],
)
def test_quiet_hours_bounds(at: datetime, quiet: bool) -> None:
    s = scenario([campaign("flash", ("sms",))], [cand("flash")], policy=quiet_policy())
    _, _, send_at = outcome(s, "flash", "sms", at=at)
    assert (send_at != at) == quiet


def test_quiet_hours_not_wrapping() -> None:
    # Berlin 13:00-17:00; T = 13:00 CET is quiet until 17:00 CET = 16:00Z.
    s = scenario(
        [campaign("flash", ("sms",))],
        [cand("flash")],
        [person(timezone="Europe/Berlin")],
        policy=quiet_policy("13:00", "17:00"),
    )
    assert outcome(s, "flash", "sms") == ("selected", None, datetime(2026, 3, 2, 16, 0, tzinfo=UTC))
    later = datetime(2026, 3, 2, 17, 30, tzinfo=UTC)  # 18:30 CET
    assert outcome(s, "flash", "sms", at=later) == ("selected", None, later)


def test_quiet_hours_end_across_dst() -> None:
    # 2026-03-08 06:30Z = 01:30 EST; the clocks go forward at 02:00, so 09:00 is EDT = 13:00Z.
    at = datetime(2026, 3, 8, 6, 30, tzinfo=UTC)
    s = scenario([campaign("flash", ("sms",))], [cand("flash")], policy=quiet_policy())
    assert outcome(s, "flash", "sms", at=at) == ("selected", None, datetime(2026, 3, 8, 13, 0, tzinfo=UTC))


def test_quiet_state_in_gap_and_overlap_resolves_like_postgres() -> None:
    from zoneinfo import ZoneInfo

    ny = ZoneInfo("America/New_York")
    from datetime import time

    # The end 02:30 does not exist on 2026-03-08: fold=0 reads it with the offset before (EST) = 07:30Z.
    quiet, end = quiet_state(datetime(2026, 3, 8, 6, 0, tzinfo=UTC), ny, time(0, 30), time(2, 30))
    assert quiet and end == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    # The end 01:30 happens twice on 2026-11-01: PostgreSQL's AT TIME ZONE takes the later,
    # standard-time instant (EST) = 06:30Z.
    quiet, end = quiet_state(datetime(2026, 11, 1, 4, 45, tzinfo=UTC), ny, time(0, 30), time(1, 30))
    assert quiet and end == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expires_at", "expected"),
    [
        (datetime(2026, 3, 2, 13, 0, tzinfo=UTC), "quiet_hours"),  # end 14:00Z is later than expires_at
        (datetime(2026, 3, 2, 13, 59, tzinfo=UTC), "quiet_hours"),
        (datetime(2026, 3, 2, 14, 0, tzinfo=UTC), "selected"),  # end == expires_at: not later
        (None, "selected"),
    ],
)
def test_quiet_hours_outcome_when_end_after_expiry(expires_at: datetime | None, expected: str) -> None:
    s = scenario([campaign("flash", ("sms",))], [cand("flash", expires_at=expires_at)], policy=quiet_policy())
    assert outcome(s, "flash", "sms")[0] == expected


def test_quiet_hours_outcome_lets_next_channel_take_over() -> None:
    s = scenario(
        [campaign("flash", ("sms", "email"))],
        [cand("flash", expires_at=datetime(2026, 3, 2, 13, 0, tzinfo=UTC))],
        policy=quiet_policy(),
    )
    d = decide(s)
    assert d[("c1", "flash", "sms")].outcome == "quiet_hours"
    assert (d[("c1", "flash", "email")].outcome, d[("c1", "flash", "email")].send_at) == ("selected", T)


def test_quiet_but_deliverable_blocks_later_channels() -> None:
    s = scenario([campaign("flash", ("sms", "email"))], [cand("flash")], policy=quiet_policy())
    d = decide(s)
    assert d[("c1", "flash", "sms")].outcome == "selected"
    assert d[("c1", "flash", "email")].outcome == "channel_alternative"


def test_quiet_hours_ignore_transactional() -> None:
    s = scenario(
        [campaign("otp", ("sms",), category="transactional")],
        [cand("otp", expires_at=T + timedelta(minutes=5))],
        policy=quiet_policy(),
    )
    assert outcome(s, "otp", "sms") == SELECTED_NOW


@pytest.mark.parametrize(
    ("tz", "expected_end"),
    [
        ("America/New_York", datetime(2026, 3, 2, 14, 0, tzinfo=UTC)),
        ("america/new_york", datetime(2026, 3, 2, 9, 0, tzinfo=UTC)),  # not exact: default (UTC)
        ("Mars/Olympus", datetime(2026, 3, 2, 9, 0, tzinfo=UTC)),
        (None, datetime(2026, 3, 2, 9, 0, tzinfo=UTC)),
        ("", datetime(2026, 3, 2, 9, 0, tzinfo=UTC)),
    ],
)
def test_timezone_falls_back_to_default(tz: str | None, expected_end: datetime) -> None:
    at = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # 08:00 UTC, 03:00 EST: quiet in both
    s = scenario(
        [campaign("flash", ("sms",))],
        [cand("flash")],
        [person(timezone=tz)],
        policy=quiet_policy(default_timezone="UTC"),
    )
    assert outcome(s, "flash", "sms", at=at) == ("selected", None, expected_end)


def test_quiet_hours_before_holdout() -> None:
    cid = find_id(lambda c: sha_bucket(f"baton:{c}") < 5000)
    s = scenario(
        [campaign("flash", ("sms",))],
        [cand("flash", cid, expires_at=T + timedelta(minutes=1))],
        [person(cid)],
        policy=quiet_policy(global_control_percent=50),
    )
    assert outcome(s, "flash", "sms", customer_id=cid)[0] == "quiet_hours"


# --------------------------------------------------------------------------- holdouts


def test_global_control_marketing_only() -> None:
    inside = find_id(lambda c: sha_bucket(f"s1:{c}") < 500)
    outside = find_id(lambda c: sha_bucket(f"s1:{c}") >= 500)
    camps = [campaign("promo"), campaign("receipt", category="transactional")]
    cands = [cand("promo", inside), cand("receipt", inside), cand("promo", outside)]
    s = scenario(
        camps,
        cands,
        [person(inside), person(outside)],
        policy={"global_control_percent": 5, "holdout_salt": "s1"},
    )
    d = decide(s)
    assert d[(inside, "promo", "email")].outcome == "holdout_global"
    assert d[(inside, "receipt", "email")].outcome == "selected"
    assert d[(outside, "promo", "email")].outcome == "selected"


def test_global_control_uses_salt() -> None:
    cid = find_id(lambda c: sha_bucket(f"baton:{c}") < 1000 and sha_bucket(f"other:{c}") >= 1000)
    s1 = scenario(
        [campaign("promo")], [cand("promo", cid)], [person(cid)], policy={"global_control_percent": 10}
    )
    s2 = scenario(
        [campaign("promo")],
        [cand("promo", cid)],
        [person(cid)],
        policy={"global_control_percent": 10, "holdout_salt": "other"},
    )
    assert outcome(s1, "promo", customer_id=cid)[0] == "holdout_global"
    assert outcome(s2, "promo", customer_id=cid)[0] == "selected"


def test_campaign_holdout() -> None:
    inside = find_id(lambda c: sha_bucket(f"promo:{c}") < 1000)
    outside = find_id(lambda c: sha_bucket(f"promo:{c}") >= 1000)
    s = scenario(
        [campaign("promo", ("email", "push"), holdout_percent=10)],
        [cand("promo", inside), cand("promo", outside)],
        [person(inside), person(outside)],
    )
    d = decide(s)
    assert d[(inside, "promo", "email")].outcome == "holdout_campaign"
    assert d[(inside, "promo", "push")].outcome == "holdout_campaign"
    assert d[(outside, "promo", "email")].outcome == "selected"
    assert d[(outside, "promo", "push")].outcome == "channel_alternative"


def test_global_control_before_campaign_holdout_after_consent() -> None:
    cid = find_id(lambda c: sha_bucket(f"baton:{c}") < 5000 and sha_bucket(f"promo:{c}") < 5000)
    camp = campaign("promo", holdout_percent=50)
    s = scenario([camp], [cand("promo", cid)], [person(cid)], policy={"global_control_percent": 50})
    assert outcome(s, "promo", customer_id=cid)[0] == "holdout_global"
    s = scenario(
        [camp],
        [cand("promo", cid)],
        [person(cid)],
        policy={"global_control_percent": 50},
        consents=[ConsentRow(cid, "email", "", "opt_out")],
    )
    assert outcome(s, "promo", customer_id=cid)[0] == "no_consent"
    s = scenario([camp], [cand("promo", cid)], [person(cid)])
    assert outcome(s, "promo", customer_id=cid)[0] == "holdout_campaign"


def test_transactional_skips_consent_and_holdout() -> None:
    cid = find_id(lambda c: sha_bucket(f"baton:{c}") < 5000)
    s = scenario(
        [campaign("otp", ("sms",), category="transactional")],
        [cand("otp", cid)],
        [person(cid)],
        policy={"global_control_percent": 50},
        consents=[ConsentRow(cid, "sms", "", "opt_out")],
    )
    assert outcome(s, "otp", "sms", customer_id=cid) == SELECTED_NOW


# --------------------------------------------------------------------- channel alternatives


def test_channel_alternative_follows_campaign_order() -> None:
    s = scenario([campaign("promo", ("push", "email", "sms"))], [cand("promo")], policy=SMS_OK)
    d = decide(s)
    assert [d[("c1", "promo", ch)].outcome for ch in ("push", "email", "sms")] == [
        "selected",
        "channel_alternative",
        "channel_alternative",
    ]


def test_channel_alternative_only_after_earlier_survivor() -> None:
    s = scenario(
        [campaign("promo", ("push", "email", "sms"))],
        [cand("promo")],
        [person(push_token=None)],
        policy=SMS_OK,
    )
    d = decide(s)
    assert [d[("c1", "promo", ch)].outcome for ch in ("push", "email", "sms")] == [
        "unreachable",
        "selected",
        "channel_alternative",
    ]


def test_row_channel_restricts_alternatives() -> None:
    s = scenario([campaign("promo", ("email", "push"))], [cand("promo", channel="push")])
    d = decide(s)
    assert set(d) == {("c1", "promo", "push")}
    assert d[("c1", "promo", "push")].outcome == "selected"


def test_capped_channel_does_not_fall_back() -> None:
    s = scenario(
        [campaign("promo", ("email", "push"))],
        [cand("promo")],
        policy={"caps": [{"name": "no_email", "limit": 0, "window": "24h", "channel": "email"}]},
    )
    d = decide(s)
    assert (d[("c1", "promo", "email")].outcome, d[("c1", "promo", "email")].reason) == ("capped", "no_email")
    assert d[("c1", "promo", "push")].outcome == "channel_alternative"


# ---------------------------------------------------------------------------- dedup


def test_duplicate_rows_highest_score_wins() -> None:
    s = scenario(
        [campaign("promo", ("email", "push"))],
        [cand("promo", score=1, channel="email", seq=0), cand("promo", score=2, channel="push", seq=1)],
    )
    assert set(decide(s)) == {("c1", "promo", "push")}


def test_duplicate_rows_tie_first_returned_wins() -> None:
    s = scenario(
        [campaign("promo", ("email", "push"))],
        [cand("promo", score=1, channel="push", seq=5), cand("promo", score=1, channel="email", seq=7)],
    )
    assert set(decide(s)) == {("c1", "promo", "push")}
    s = scenario(
        [campaign("promo", ("email", "push"))],
        [cand("promo", score=1, channel="push", seq=7), cand("promo", score=1, channel="email", seq=5)],
    )
    assert set(decide(s)) == {("c1", "promo", "email")}


def test_duplicate_rows_kept_row_decides_expiry() -> None:
    s = scenario([campaign("promo")], [cand("promo", score=3, expires_at=T), cand("promo", score=1)])
    assert outcome(s, "promo")[0] == "expired"


# --------------------------------------------------------------------- ranking and caps


def three_campaigns(**policy: Any) -> Scenario:
    camps = [campaign("aa", priority=50), campaign("a_b", priority=50), campaign("top", priority=90)]
    return scenario(camps, [cand("aa", score=1), cand("a_b", score=1), cand("top", score=0)], policy=policy)


def test_ranking_priority_then_score_then_id_byte_order() -> None:
    s = three_campaigns(caps=[{"name": "daily", "limit": 2, "window": "24h"}])
    d = decide(s)
    assert d[("c1", "top", "email")].outcome == "selected"  # highest priority
    assert d[("c1", "a_b", "email")].outcome == "selected"  # '_' (0x5f) < 'a' (0x61)
    assert (d[("c1", "aa", "email")].outcome, d[("c1", "aa", "email")].reason) == ("capped", "daily")


def test_ranking_score_beats_id() -> None:
    camps = [campaign("aa", priority=50), campaign("zz", priority=50)]
    s = scenario(
        camps,
        [cand("aa", score=1), cand("zz", score=1.5)],
        policy={"caps": [{"name": "one", "limit": 1, "window": "24h"}]},
    )
    d = decide(s)
    assert d[("c1", "zz", "email")].outcome == "selected"
    assert d[("c1", "aa", "email")].outcome == "capped"


def test_first_blocking_cap_in_file_order_then_frequency() -> None:
    camp = campaign("promo", tags=["promo"], frequency={"limit": 0, "window": "1d"})
    caps = [
        {"name": "roomy", "limit": 5, "window": "24h"},
        {"name": "promo_day", "limit": 0, "period": "day", "tag": "promo"},
        {"name": "email_day", "limit": 0, "period": "day", "channel": "email"},
    ]
    s = scenario([camp], [cand("promo")], policy={"caps": caps})
    assert outcome(s, "promo") == ("capped", "promo_day", None)
    s = scenario([camp], [cand("promo")], policy={"caps": caps[:1]})
    assert outcome(s, "promo") == ("capped", "campaign_frequency", None)


def test_window_cap_bounds() -> None:
    caps = [{"name": "daily", "limit": 1, "window": "24h"}]

    def with_history(at: datetime) -> str:
        s = scenario([campaign("promo")], [cand("promo")], policy={"caps": caps}, history=[hist("old", at)])
        return outcome(s, "promo")[0]

    assert with_history(T - timedelta(hours=24)) == "selected"  # (T - window, T]: open at T - window
    assert with_history(T - timedelta(hours=24) + timedelta(minutes=1)) == "capped"
    assert with_history(T) == "capped"
    assert with_history(T + timedelta(minutes=1)) == "selected"  # after T: not history of this cycle


def test_period_week_starts_monday_in_person_zone() -> None:
    caps = [{"name": "weekly", "limit": 1, "period": "week"}]
    # T is Monday 07:00 EST; the week began Monday 00:00 EST = 05:00Z.
    for at, tz, expected in [
        (datetime(2026, 3, 2, 4, 59, tzinfo=UTC), "America/New_York", "selected"),  # Sunday 23:59 EST
        (datetime(2026, 3, 2, 5, 0, tzinfo=UTC), "America/New_York", "capped"),
        (datetime(2026, 3, 2, 4, 59, tzinfo=UTC), "UTC", "capped"),  # Monday 04:59 UTC
        (datetime(2026, 3, 1, 23, 59, tzinfo=UTC), "UTC", "selected"),
        (datetime(2026, 3, 1, 23, 30, tzinfo=UTC), "Europe/Berlin", "capped"),  # Monday 00:30 CET
    ]:
        s = scenario(
            [campaign("promo")],
            [cand("promo")],
            [person(timezone=tz)],
            policy={"caps": caps},
            history=[hist("old", at)],
        )
        assert outcome(s, "promo")[0] == expected, (at, tz)


def test_period_start_values() -> None:
    from zoneinfo import ZoneInfo

    ny = ZoneInfo("America/New_York")
    at = datetime(2026, 3, 2, 3, 0, tzinfo=UTC)  # Sunday 1 March, 22:00 EST
    assert period_start(at, ny, "day") == datetime(2026, 3, 1, 5, 0, tzinfo=UTC)
    assert period_start(at, ny, "week") == datetime(2026, 2, 23, 5, 0, tzinfo=UTC)
    assert period_start(at, ny, "month") == datetime(2026, 3, 1, 5, 0, tzinfo=UTC)
    at = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)  # Saturday 28 February, 22:00 EST
    assert period_start(at, ny, "month") == datetime(2026, 2, 1, 5, 0, tzinfo=UTC)
    # After the spring-forward (Sunday 8 March), Monday 9 March starts at 00:00 EDT = 04:00Z.
    at = datetime(2026, 3, 9, 12, 0, tzinfo=UTC)
    assert period_start(at, ny, "week") == datetime(2026, 3, 9, 4, 0, tzinfo=UTC)
    assert period_start(datetime(2026, 3, 8, 12, 0, tzinfo=UTC), ny, "day") == datetime(
        2026, 3, 8, 5, 0, tzinfo=UTC
    )


def test_period_includes_T_and_start() -> None:
    caps = [{"name": "today", "limit": 1, "period": "day"}]
    start = datetime(2026, 3, 2, 5, 0, tzinfo=UTC)  # Monday 00:00 EST
    for at, expected in [
        (start, "capped"),
        (start - timedelta(seconds=1), "selected"),
        (T, "capped"),
        (T + timedelta(seconds=1), "selected"),
    ]:
        s = scenario([campaign("promo")], [cand("promo")], policy={"caps": caps}, history=[hist("old", at)])
        assert outcome(s, "promo")[0] == expected, at


def test_tag_scope_uses_history_tags() -> None:
    caps = [{"name": "promo_day", "limit": 1, "window": "24h", "tag": "promo"}]
    h = T - timedelta(hours=1)
    promo = campaign("promo", tags=["promo", "cart"])
    plain = campaign("plain")
    for history, expected in [
        ([hist("x", h, tags=("promo",))], "capped"),
        ([hist("x", h, tags=("news",))], "selected"),
        ([hist("x", h, tags=())], "selected"),
    ]:
        s = scenario([promo], [cand("promo")], policy={"caps": caps}, history=history)
        assert outcome(s, "promo")[0] == expected
    # The cap does not apply to a campaign without the tag, whatever the history.
    s = scenario([plain], [cand("plain")], policy={"caps": caps}, history=[hist("x", h, tags=("promo",))])
    assert outcome(s, "plain")[0] == "selected"


def test_channel_scope() -> None:
    caps = [{"name": "email_day", "limit": 1, "window": "24h", "channel": "email"}]
    h = T - timedelta(hours=1)
    camp = campaign("promo", ("email", "push"))
    s = scenario([camp], [cand("promo")], policy={"caps": caps}, history=[hist("x", h, channel="sms")])
    assert outcome(s, "promo")[0] == "selected"
    s = scenario([camp], [cand("promo")], policy={"caps": caps}, history=[hist("x", h, channel="email")])
    assert outcome(s, "promo") == ("capped", "email_day", None)
    s = scenario(
        [camp],
        [cand("promo", channel="push")],
        policy={"caps": caps},
        history=[hist("x", h, channel="email")],
    )
    assert outcome(s, "promo", "push")[0] == "selected"


def test_history_counts_false_is_ignored_by_policy_caps() -> None:
    caps = [{"name": "daily", "limit": 1, "window": "24h"}]
    h = T - timedelta(hours=1)
    s = scenario(
        [campaign("promo")], [cand("promo")], policy={"caps": caps}, history=[hist("x", h, counts=False)]
    )
    assert outcome(s, "promo")[0] == "selected"


def test_history_of_other_people_is_ignored() -> None:
    caps = [{"name": "daily", "limit": 1, "window": "24h"}]
    s = scenario(
        [campaign("promo")],
        [cand("promo")],
        policy={"caps": caps},
        history=[hist("x", T - timedelta(hours=1), customer_id="c2")],
    )
    assert outcome(s, "promo")[0] == "selected"


def test_campaign_frequency_counts_non_counting_history_of_its_campaign() -> None:
    camp = campaign("promo", frequency={"limit": 1, "window": "3d"}, counts_toward_caps=False)
    h = T - timedelta(days=2)
    s = scenario([camp], [cand("promo")], history=[hist("promo", h, counts=False)])
    assert outcome(s, "promo") == ("capped", "campaign_frequency", None)
    s = scenario([camp], [cand("promo")], history=[hist("other", h)])
    assert outcome(s, "promo")[0] == "selected"
    s = scenario([camp], [cand("promo")], history=[hist("promo", T - timedelta(days=3))])
    assert outcome(s, "promo")[0] == "selected"


def test_campaign_frequency_any_channel() -> None:
    camp = campaign("promo", ("email", "push"), frequency={"limit": 1, "period": "week"})
    s = scenario([camp], [cand("promo")], history=[hist("promo", T - timedelta(hours=2), channel="sms")])
    assert outcome(s, "promo") == ("capped", "campaign_frequency", None)


def test_selected_earlier_in_walk_uses_room() -> None:
    caps = [{"name": "daily", "limit": 1, "window": "24h"}]
    camps = [campaign("first", priority=90), campaign("second", priority=10)]
    s = scenario(camps, [cand("first"), cand("second")], policy={"caps": caps})
    assert outcome(s, "first")[0] == "selected"
    assert outcome(s, "second") == ("capped", "daily", None)


def test_capped_does_not_use_room() -> None:
    caps = [
        {"name": "promo", "limit": 0, "window": "24h", "tag": "promo"},
        {"name": "daily", "limit": 1, "window": "24h"},
    ]
    camps = [campaign("first", priority=90, tags=["promo"]), campaign("second", priority=10)]
    s = scenario(camps, [cand("first"), cand("second")], policy={"caps": caps})
    assert outcome(s, "first") == ("capped", "promo", None)
    assert outcome(s, "second")[0] == "selected"


def test_non_counting_marketing_is_capped_but_uses_no_room() -> None:
    caps = [{"name": "daily", "limit": 1, "window": "24h"}]
    camps = [campaign("free", priority=90, counts_toward_caps=False), campaign("paid", priority=10)]
    s = scenario(camps, [cand("free"), cand("paid")], policy={"caps": caps})
    assert outcome(s, "free")[0] == "selected"
    assert outcome(s, "paid")[0] == "selected"
    s = scenario(
        camps,
        [cand("free"), cand("paid")],
        policy={"caps": caps},
        history=[hist("x", T - timedelta(hours=1))],
    )
    assert outcome(s, "free") == ("capped", "daily", None)


def test_quiet_selected_counts_from_T() -> None:
    caps = [{"name": "daily", "limit": 1, "window": "24h"}]
    camps = [campaign("flash", ("sms",), priority=90), campaign("other", ("sms",), priority=10)]
    s = scenario(camps, [cand("flash"), cand("other")], policy=quiet_policy(caps=caps))
    assert outcome(s, "flash", "sms") == ("selected", None, datetime(2026, 3, 2, 14, 0, tzinfo=UTC))
    assert outcome(s, "other", "sms") == ("capped", "daily", None)


def test_transactional_skips_caps_and_does_not_count() -> None:
    caps = [{"name": "daily", "limit": 1, "window": "24h"}]
    camps = [campaign("receipt", category="transactional", priority=100), campaign("promo", priority=10)]
    s = scenario(camps, [cand("receipt"), cand("promo")], policy={"caps": caps})
    assert outcome(s, "receipt") == SELECTED_NOW
    assert outcome(s, "promo")[0] == "selected"
    # Caps full: the transactional message is still selected.
    s = scenario(
        camps,
        [cand("receipt"), cand("promo")],
        policy={"caps": caps},
        history=[hist("x", T - timedelta(hours=1))],
    )
    assert outcome(s, "receipt") == SELECTED_NOW
    assert outcome(s, "promo") == ("capped", "daily", None)


def test_transactional_counting_when_configured() -> None:
    caps = [{"name": "daily", "limit": 1, "window": "24h"}]
    camps = [
        campaign("receipt", category="transactional", priority=100, counts_toward_caps=True),
        campaign("promo", priority=10),
    ]
    s = scenario(camps, [cand("receipt"), cand("promo")], policy={"caps": caps})
    assert outcome(s, "receipt")[0] == "selected"
    assert outcome(s, "promo") == ("capped", "daily", None)


def test_limit_zero_caps_everything_it_applies_to() -> None:
    s = scenario(
        [campaign("promo")], [cand("promo")], policy={"caps": [{"name": "off", "limit": 0, "window": "1h"}]}
    )
    assert outcome(s, "promo") == ("capped", "off", None)


def test_people_are_independent() -> None:
    caps = [{"name": "daily", "limit": 1, "window": "24h"}]
    s = scenario(
        [campaign("promo")],
        [cand("promo", "c1"), cand("promo", "c2")],
        [person("c1"), person("c2")],
        policy={"caps": caps},
    )
    d = decide(s)
    assert d[("c1", "promo", "email")].outcome == d[("c2", "promo", "email")].outcome == "selected"


# ------------------------------------------------------------------------ the fixture


BASIC_EXPECTED = """\
c1,abandoned_cart,email,capped,campaign_frequency,,c1
c1,abandoned_cart,push,channel_alternative,,,c1
c1,newsletter,email,capped,daily_total,,c1
c1,order_confirmation,email,selected,,2026-03-02T12:00:00Z,c1
c1,price_drop,email,channel_alternative,,,c1
c1,price_drop,push,selected,,2026-03-02T13:00:00Z,c1
c1,sms_flash,sms,quiet_hours,,,c1
c2,abandoned_cart,email,expired,,,c2
c2,abandoned_cart,push,expired,,,c2
c2,newsletter,email,no_consent,,,c2
c3,price_drop,email,unreachable,,,c3
c3,price_drop,push,unreachable,,,c3
c3,sms_flash,sms,no_consent,,,c3
c4,abandoned_cart,push,selected,,2026-03-02T13:00:00Z,c4
c4,newsletter,email,suppressed,,,c4
ghost,order_confirmation,email,unknown_customer,,,
ghost,order_confirmation,sms,unknown_customer,,,
"""


def test_basic_scenario_worked_by_hand(tmp_path: Path) -> None:
    """tests/unit/scenarios/basic at 2026-03-02T12:00Z (07:00 in New York), decided by hand.

    c1: the receipt is transactional (selected, uses no room); abandoned_cart's email is
    capped by campaign_frequency (a non-counting send 2 days ago) and its push is only a
    channel alternative; price_drop's push is quiet until 08:00 EST and takes the second
    daily_total slot, so the newsletter is capped; sms_flash's quiet hours end (09:00 EST)
    after it expires.  c4's timezone is invalid (New York by default) and its email is
    suppressed as " DEE@Example.com ".  No two profiles share a value: every person is one
    profile (person_id = customer_id; empty for the unknown ghost).
    """
    from baton.arbitration.scenario import write_decisions_csv

    s = load_scenario(Path(__file__).parent / "scenarios" / "basic")
    out = tmp_path / "d.csv"
    write_decisions_csv(decide_reference(s, parse_at("2026-03-02T12:00:00Z")), out)
    assert (
        out.read_text()
        == "customer_id,campaign_id,channel,outcome,reason,send_at,person_id\n" + BASIC_EXPECTED
    )


# ------------------------------------------------------------------------- invariants


@settings(max_examples=150, deadline=None)
@given(case=scenarios())
def test_reference_invariants(case: tuple[Scenario, datetime]) -> None:
    """The invariants the engine is held to hold for the reference too (a check of the checks)."""
    s, T = case
    decisions = decide_reference(s, T)
    check_invariants(s, T, decisions)
    assert decide_reference(s, T) == decisions  # deterministic
