"""Every decision explained in words (baton.web.explain): one sentence per outcome, caps counted as
the engine counts them, control groups bucketed as SPEC §3 says."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from baton.spec import Campaign, Policy
from baton.web import explain as ex

pytestmark = pytest.mark.unit

T = datetime(2026, 10, 20, 15, 0, tzinfo=UTC)  # a Tuesday

POLICY = Policy.model_validate(
    {
        "default_timezone": "America/New_York",
        "global_control_percent": 5,
        "holdout_salt": "baton",
        "caps": [
            {"name": "daily_total", "limit": 2, "window": "24h"},
            {"name": "weekly_email", "limit": 5, "window": "7d", "channel": "email"},
            {"name": "one_promo_a_day", "limit": 1, "period": "day", "tag": "promo"},
        ],
        "quiet_hours": {"sms": {"start": "21:00", "end": "09:00"}},
        "channels": {"sms": {"consent": "opt_in"}},
    }
)


def campaign(cid: str, **kw: Any) -> Campaign:
    spec: dict[str, Any] = {
        "id": cid,
        "name": cid,
        "owner": "crm",
        "schedule": "@hourly",
        "start_date": "2026-01-01",
        "channels": ["email", "sms"],
        "audience": {"sql": "select customer_id from customers"},
        "message": {"email": {"subject": "s", "html": "h"}, "sms": {"text": "t"}},
        **kw,
    }
    return Campaign.model_validate(spec)


CAMPAIGNS = {
    c.id: c
    for c in (
        campaign("weekly_newsletter", priority=20, topic="newsletter", tags=["newsletter"]),
        campaign("price_drop", priority=60, tags=["promo"]),
        campaign("abandoned_cart", priority=80, tags=["cart", "promo"], holdout_percent=10),
        campaign("review_request", priority=40, frequency={"limit": 1, "window": "7d"}),
        campaign("order_confirmation", priority=100, category="transactional"),
    )
}


def facts(**kw: Any) -> ex.PersonFacts:
    return ex.PersonFacts(
        policy=POLICY, campaigns=CAMPAIGNS, person_id="c1", timezone="America/Chicago", profiles=("c1",), **kw
    )


def decision(outcome: str, campaign_id: str = "price_drop", channel: str = "email", **kw: Any) -> ex.Decision:
    prio = CAMPAIGNS[campaign_id].priority if campaign_id in CAMPAIGNS else 50
    return ex.Decision(T, "c1", campaign_id, channel, outcome, person_id="c1", priority=prio, score=1.0, **kw)


def msg(
    campaign_id: str, hours_before: float, channel: str = "email", status: str = "sent", **kw: Any
) -> ex.HistoryMessage:
    c = CAMPAIGNS.get(campaign_id)
    return ex.HistoryMessage(
        cycle_at=T - timedelta(hours=hours_before),
        customer_id="c1",
        campaign_id=campaign_id,
        channel=channel,
        tags=tuple(c.tags) if c else (),
        counts_toward_caps=c.counts_toward_caps if c else True,
        status=status,
        **kw,
    )


def test_bucket_is_spec_sha256() -> None:
    for key in ("baton:c1", "abandoned_cart:p9", "ü:é"):
        assert ex.bucket(key) == int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % 10000


def test_capped_names_the_messages_that_used_the_room() -> None:
    history = [msg("weekly_newsletter", 6), msg("price_drop", 5, channel="sms"), msg("abandoned_cart", 30)]
    text = ex.explain(decision("capped", "review_request", reason="daily_total"), facts(history=history))
    assert (
        text
        == "capped by daily_total: 2 of 2 already used by weekly_newsletter (09:00) and price_drop (10:00)"
    )


def test_capped_counts_as_the_engine_counts() -> None:
    """Not counting: cancelled/expired/failed before T, messages of campaigns that do not count toward
    caps, other channels for a channel cap, other tags for a tag cap; a message that failed after T
    still counted then; a higher-ranked selection of the same cycle counts."""
    history = [
        msg("weekly_newsletter", 2, status="failed", updated_at=T - timedelta(hours=1)),  # failed before T
        msg("weekly_newsletter", 3, status="failed", updated_at=T + timedelta(hours=1)),  # failed after T
        msg("order_confirmation", 4),  # transactional: does not count
        msg("weekly_newsletter", 25),  # outside the 24h window
    ]
    same_cycle = [
        decision("selected", "abandoned_cart", send_at=T),
        decision("selected", "weekly_newsletter", send_at=T),
    ]
    f = facts(history=history, decisions=same_cycle)
    text = ex.explain(decision("capped", "price_drop", reason="daily_total"), f)
    # abandoned_cart ranks higher (priority 80) and counts; weekly_newsletter ranks lower and does not
    assert text == (
        "capped by daily_total: 2 of 2 already used by weekly_newsletter (12:00) and"
        " abandoned_cart (this cycle, ranked higher)"
    )


def test_capped_counts_the_messages_of_the_decisions_person_only() -> None:
    """A profile linked to the person later: its earlier messages went to another person then."""
    history = [
        msg("weekly_newsletter", 6),
        ex.HistoryMessage(
            T - timedelta(hours=4), "c2", "price_drop", "email", ("promo",), True, "sent", None, "c2"
        ),
        ex.HistoryMessage(T - timedelta(hours=3), "c3", "win_back", "email", (), True, "sent", None, "c1"),
    ]
    text = ex.explain(decision("capped", "review_request", reason="daily_total"), facts(history=history))
    assert (
        text == "capped by daily_total: 2 of 2 already used by weekly_newsletter (09:00) and win_back (12:00)"
    )


def test_capped_by_a_channel_cap_and_a_tag_period_cap() -> None:
    history = [msg("weekly_newsletter", h) for h in (10, 30, 50, 70, 90)] + [
        msg("price_drop", 2, channel="sms")
    ]
    text = ex.explain(decision("capped", "weekly_newsletter", reason="weekly_email"), facts(history=history))
    assert text.startswith("capped by weekly_email: 5 of 5 already used by weekly_newsletter (")
    assert "price_drop" not in text
    # one_promo_a_day: the local day in America/Chicago (T is 10:00 there), a promo-tagged message
    promo = [
        msg("price_drop", 1),
        msg("abandoned_cart", 11),
    ]  # 14:00 UTC today; 04:00 UTC = 23:00 yesterday local
    text = ex.explain(decision("capped", "abandoned_cart", reason="one_promo_a_day"), facts(history=promo))
    assert (
        text == "capped by one_promo_a_day: 1 of 1 already used today (America/Chicago) by price_drop (14:00)"
    )


def test_capped_by_campaign_frequency_counts_the_campaigns_own_messages() -> None:
    history = [msg("review_request", 48), msg("weekly_newsletter", 1)]
    text = ex.explain(
        decision("capped", "review_request", reason="campaign_frequency"), facts(history=history)
    )
    assert text == "capped by campaign_frequency: 1 of 1 already used by review_request (Oct 18 15:00)"


def test_capped_when_the_history_is_gone_says_so() -> None:
    text = ex.explain(decision("capped", reason="daily_total"), facts())
    assert (
        text
        == "capped by daily_total: 2 of 2 already used (those messages are no longer recorded as counting)"
    )
    assert "no longer in the policy" in ex.explain(decision("capped", reason="gone_cap"), facts())


def test_holdouts() -> None:
    assert (
        ex.explain(decision("holdout_global"), facts())
        == "held out: in the global control group (5%, permanent until the salt changes)"
    )
    assert (
        ex.explain(decision("holdout_campaign", "abandoned_cart"), facts())
        == "held out: in the holdout of abandoned_cart (10% of its audience, the same people every time)"
    )
    inside, b = ex.global_holdout(POLICY, "c1")
    assert b == ex.bucket("baton:c1") and inside == (b < 500)
    inside, b = ex.campaign_holdout(CAMPAIGNS["abandoned_cart"], "c1")
    assert b == ex.bucket("abandoned_cart:c1") and inside == (b < 1000)


def test_no_consent_opt_out_with_date_and_source() -> None:
    rows = [
        ex.ConsentRow(
            "c1", "email", "newsletter", "opt_out", "unsubscribe_link", datetime(2026, 10, 14, 8, tzinfo=UTC)
        )
    ]
    text = ex.explain(
        decision("no_consent", "weekly_newsletter", reason="opt_out email/newsletter"), facts(consents=rows)
    )
    assert text == "no consent: opted out of email/newsletter on 2026-10-14 via the unsubscribe link"
    rows = [ex.ConsentRow("c2", "email", "", "opt_out", "crm import", datetime(2026, 9, 1, tzinfo=UTC))]
    text = ex.explain(decision("no_consent", reason="opt_out email"), facts(consents=rows))
    assert text == "no consent: opted out of email (every topic) on 2026-09-01 via crm import (profile c2)"


def test_no_consent_missing_opt_in() -> None:
    text = ex.explain(decision("no_consent", channel="sms", reason="no opt_in for sms"), facts())
    assert text == (
        "no consent: sms needs an opt-in (the policy's consent mode), and the person has none for sms or sms/price_drop"
    )
    later = [ex.ConsentRow("c1", "sms", "", "opt_in", None, T + timedelta(days=2))]
    text = ex.explain(
        decision("no_consent", channel="sms", reason="no opt_in for sms"), facts(consents=later)
    )
    assert text.endswith("at the decision time (an opt-in came later, on 2026-10-22)")


def test_no_consent_changed_since() -> None:
    text = ex.explain(decision("no_consent", reason="opt_out email/price_drop"), facts())
    assert (
        text
        == "no consent: opted out of email/price_drop at the decision time (the opt-out has been changed since)"
    )


def test_quiet_hours_in_the_persons_timezone() -> None:
    at = datetime(2026, 10, 21, 3, 0, tzinfo=UTC)  # 22:00 in Chicago (CDT, UTC-5)
    d = ex.Decision(at, "c1", "price_drop", "sms", "quiet_hours", expires_at=at + timedelta(hours=6))
    text = ex.explain(d, facts())
    assert text == (
        "quiet hours: sms is quiet 21:00–09:00 in America/Chicago; the cycle ran at 22:00 there, and the quiet"
        " hours end at 09:00 (14:00 UTC), after the candidate expired at 09:00 UTC"
    )


def test_selected_now_and_after_quiet_hours() -> None:
    assert (
        ex.explain(decision("selected", send_at=T), facts())
        == "selected: handed to email at the decision time 2026-10-20 15:00 UTC"
    )
    later = datetime(2026, 10, 21, 14, 0, tzinfo=UTC)
    assert ex.explain(decision("selected", channel="sms", send_at=later), facts()) == (
        "selected: to go at 09:00 America/Chicago (2026-10-21 14:00 UTC), when sms's quiet hours end"
    )
    assert "transactional" in ex.explain(decision("selected", "order_confirmation", send_at=T), facts())


def test_the_remaining_outcomes() -> None:
    f = facts()
    assert (
        ex.explain(decision("unknown_customer"), f) == "unknown customer: no profile has the customer id 'c1'"
    )
    assert ex.explain(decision("expired", expires_at=T - timedelta(hours=1)), f) == (
        "expired: the candidate expired at 2026-10-20 14:00 UTC, not after the decision time 2026-10-20 15:00 UTC"
    )
    assert (
        ex.explain(decision("unreachable", channel="sms"), f)
        == "unreachable on sms: the customer has no phone number"
    )
    several = ex.PersonFacts(
        policy=POLICY, campaigns=CAMPAIGNS, person_id="c1", timezone="UTC", profiles=("c1", "c2")
    )
    assert (
        ex.explain(decision("unreachable"), several)
        == "unreachable on email: no profile of the person has an email address"
    )
    sup = [ex.SuppressionRow("email", "ann@x.com", "hard_bounce", datetime(2026, 10, 1, tzinfo=UTC))]
    assert ex.explain(decision("suppressed"), facts(suppressions=sup)) == (
        "suppressed: ann@x.com is on the email suppression list (hard_bounce since 2026-10-01)"
    )
    assert "removed since" in ex.explain(decision("suppressed"), f)
    assert ex.explain(
        decision("channel_alternative", channel="sms", reason="first surviving channel: email"), f
    ) == (
        "not needed: the campaign went by email instead (an earlier channel of the campaign passed every check)"
    )


def test_every_outcome_has_a_sentence() -> None:
    from baton.spec import Outcome

    assert (
        ex.explain(decision("some_new_outcome", reason="why"), facts()) == "some_new_outcome: why"
    )  # the fallback
    for o in Outcome:
        reason = "daily_total" if o.value == "capped" else None
        text = ex.explain(decision(o.value, send_at=T, reason=reason), facts())
        assert len(text.split()) >= 6, (o, text)  # a sentence, not the fallback


def test_effective_timezone() -> None:
    assert ex.effective_timezone([None, "Bad/Zone", "Europe/Berlin"], "UTC") == "Europe/Berlin"
    assert ex.effective_timezone(["", "europe/berlin"], "America/New_York") == "America/New_York"


def test_pending_candidates_say_where_their_batch_stands() -> None:
    at = datetime(2026, 3, 2, 10, tzinfo=UTC)
    later = at + timedelta(hours=3)

    def state(
        status: str | None,
        *,
        taken_by: datetime | None = None,
        alive: bool = True,
        latest: datetime | None = later,
        campaign: str = "enabled",
    ) -> str:
        return ex.explain_pending(
            at,
            cycle_status=status,
            taken_by=taken_by,
            cycle_alive=alive,
            latest_cycle=latest,
            campaign=campaign,
        )

    assert state(None, latest=None) == "waits for the cycle at 2026-03-02 10:00 UTC: not decided yet"
    assert state(None, latest=at - timedelta(hours=1)).endswith("not decided yet")
    assert state(None).startswith("waits for the cycle at 2026-03-02 10:00 UTC, which never ran")
    assert "backfill that cycle" in state(None)
    assert state("deciding", taken_by=at) == "being decided now by the cycle at 2026-03-02 10:00 UTC"
    # a late batch a later cycle took, and a campaign disabled after the cycle took its batch
    assert state("decided", taken_by=later) == "being decided now by the cycle at 2026-03-02 13:00 UTC"
    assert state("deciding", taken_by=at, campaign="disabled").startswith("being decided now")
    assert state("deciding").startswith("landed after the cycle at 2026-03-02 10:00 UTC began")
    assert state("deciding", alive=False).startswith(
        "the cycle at 2026-03-02 10:00 UTC stopped while deciding"
    )
    assert state("decided").startswith("landed after the cycle at 2026-03-02 10:00 UTC was decided")
    assert "its campaign is no longer deployed" in state(None, campaign="unknown")
    assert "its campaign is disabled, so no cycle takes it" in state("decided", campaign="disabled")
