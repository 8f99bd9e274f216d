"""Hypothesis strategies for arbitration scenarios (SPEC.md §3, §5).

``scenario_parts()`` draws the raw material of a small but meaningful scenario — the
policy and campaign *dicts* (as they would be written in YAML) plus the CSV rows — and
a decision time ``T``; ``scenarios()`` turns that into ``(Scenario, T)`` by validating
the dicts with the spec models.  The parts are kept so that a test can also write them
out as a scenario directory (see ``write_scenario_dir``).

Everything is drawn from small pools so that coincidences happen often: equal
priorities and scores, suppressed addresses, history exactly on a window or period
boundary, decision times near DST transitions and local midnights.

Two families:

* ``scenario_parts()`` / ``scenarios()``: no identity — no identifiers, and no two profiles
  share an email or a phone (after normalisation), so every person is one profile and the
  outcomes are those of SPEC §3 alone.
* ``identity_scenario_parts()`` / ``identity_scenarios()``: overlapping profiles (SPEC §6),
  realistic and adversarial — one person's values in other spellings (case, blanks and
  tabs, phone punctuation), junk values, the policy's ``blocked_values``, values shared by
  more profiles than a small ``max_profiles_per_value``, identifiers first seen after T (or
  exactly at T), exclusions, identifiers of customer ids that are no profile, profiles
  without any address, consents, timezones, history and candidate rows of one campaign
  (with equal scores) spread over the profiles of one person, ``identity:`` policy keys.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import yaml
from hypothesis import strategies as st

from baton.arbitration.scenario import (
    CandidateRow,
    ConsentRow,
    CustomerRow,
    ExclusionRow,
    HistoryRow,
    IdentifierRow,
    Scenario,
    SuppressionRow,
    format_utc,
)
from baton.identity.normalize import KINDS, is_junk, normalize

CHANNELS = ["email", "sms", "push", "audience", "direct_mail"]
CHANNEL_WEIGHTS = ["email", "sms", "sms", "push", "push", "audience", "direct_mail"]
TAGS = ["promo", "cart", "news"]
CAMPAIGN_IDS = ["alpha", "beta", "b_promo", "cart", "zeta", "news_1"]
UNKNOWN_CAMPAIGN = "retired_campaign"
CUSTOMER_IDS = ["a1", "b2", "B3", "c10", "c9", "Z", "ä5", "_x"]
UNKNOWN_CUSTOMER = "ghost"
TIMEZONES: list[str | None] = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Asia/Kolkata",
    "Australia/Sydney",
    "Pacific/Auckland",
    "America/Los_Angeles",
    None,
    "",
    "Mars/Olympus",
    "america/new_york",
]
DEFAULT_TIMEZONES = ["UTC", "America/New_York", "Europe/Berlin", "Australia/Sydney"]
VALID_ZONES = sorted({tz for tz in TIMEZONES if tz} - {"Mars/Olympus", "america/new_york"})

# Addresses that start or end with the letter v: the engine once trimmed it.
EMAILS = ["ann@example.com", "bob@example.com", "cy@shop.test", "vera@shop.tv", "era@shop.tv"]
PHONES = ["+15550001", "+15550002", "+4930123"]
PUSH_TOKENS = ["tokA", "tokB", "vtokv"]
POSTAL = ["1 Main St, Springfield", "2 High St, Oxford"]

MESSAGES: dict[str, dict[str, str]] = {
    "email": {"subject": "Hello {{ first_name }}", "html": "<p>Hello</p>"},
    "sms": {"text": "Hello"},
    "push": {"title": "Hello", "body": "Hello there"},
    "audience": {"list": "retarget"},
    "direct_mail": {"creative": "DM-1"},
}

WINDOWS = ["1h", "6h", "24h", "3d", "7d"]
WINDOW_DELTAS = {
    "1h": timedelta(hours=1),
    "6h": timedelta(hours=6),
    "24h": timedelta(hours=24),
    "3d": timedelta(days=3),
    "7d": timedelta(days=7),
}
PERIODS = ["day", "week", "month"]
QUIET_PAIRS = [
    ("21:00", "09:00"),  # wraps midnight
    ("18:00", "10:00"),
    ("12:00", "11:00"),  # 23 hours
    ("22:00", "08:00"),
    ("00:30", "02:30"),  # 02:30 is skipped or repeated on most DST-change days
    ("00:00", "01:30"),  # 01:30 is repeated on the US fall-back day
    ("01:00", "03:30"),
    ("13:00", "17:00"),
    ("23:59", "00:01"),
]
DST_QUIET_PAIRS = [("00:30", "02:30"), ("00:00", "01:30"), ("22:00", "02:30"), ("23:00", "01:30")]
SPECIAL_DAYS = [
    datetime(2026, 3, 8, tzinfo=UTC),  # US spring forward
    datetime(2026, 3, 29, tzinfo=UTC),  # EU spring forward
    datetime(2026, 4, 5, tzinfo=UTC),  # AU/NZ fall back
    datetime(2026, 9, 27, tzinfo=UTC),  # NZ spring forward
    datetime(2026, 10, 4, tzinfo=UTC),  # AU spring forward
    datetime(2026, 10, 25, tzinfo=UTC),  # EU fall back
    datetime(2026, 11, 1, tzinfo=UTC),  # US fall back
    datetime(2026, 3, 2, tzinfo=UTC),  # a Monday
    datetime(2026, 6, 1, tzinfo=UTC),  # a Monday, first of a month
]


@dataclass
class ScenarioParts:
    """The drawn material of one scenario; ``build()`` validates it into a ``Scenario``."""

    T: datetime
    policy: dict[str, Any]
    campaigns: list[dict[str, Any]]
    customers: list[CustomerRow] = field(default_factory=list)
    candidates: list[CandidateRow] = field(default_factory=list)
    consents: list[ConsentRow] = field(default_factory=list)
    suppressions: list[SuppressionRow] = field(default_factory=list)
    history: list[HistoryRow] = field(default_factory=list)
    identifiers: list[IdentifierRow] = field(default_factory=list)
    exclusions: list[ExclusionRow] = field(default_factory=list)

    def build(self) -> Scenario:
        from baton.spec import Campaign, Policy

        campaigns = {c["id"]: Campaign.model_validate(c) for c in self.campaigns}
        return Scenario(
            policy=Policy.model_validate(self.policy),
            campaigns=campaigns,
            customers=tuple(self.customers),
            candidates=tuple(self.candidates),
            consents=tuple(self.consents),
            suppressions=tuple(self.suppressions),
            history=tuple(self.history),
            identifiers=tuple(self.identifiers),
            exclusions=tuple(self.exclusions),
        )


# ----------------------------------------------------------------------- times


def _local_midnight(day: datetime, zone: str) -> datetime:
    z = ZoneInfo(zone)
    local = day.astimezone(z).date()
    return datetime.combine(local, time(0, 0)).replace(tzinfo=z, fold=0).astimezone(UTC)


#: Local dates of DST changes in 2026, per zone (02:30 is skipped or repeated on most of them).
TRANSITIONS: dict[str, list[date]] = {
    "America/New_York": [date(2026, 3, 8), date(2026, 11, 1)],
    "America/Los_Angeles": [date(2026, 3, 8), date(2026, 11, 1)],
    "Europe/Berlin": [date(2026, 3, 29), date(2026, 10, 25)],
    "Australia/Sydney": [date(2026, 4, 5), date(2026, 10, 4)],
    "Pacific/Auckland": [date(2026, 4, 5), date(2026, 9, 27)],
}


@st.composite
def decision_times(draw: st.DrawFn, hot_zone: str = "UTC", kind: str | None = None) -> datetime:
    """Minute-aligned instants in 2026, often near DST transitions or local midnights.

    ``hot_zone`` is the zone most customers of the scenario live in: the "transition"
    kind puts T in the small hours of a DST-change day there.
    """
    if kind is None:
        kind = draw(st.sampled_from(["any", "dst", "midnight"]))
    if kind == "any":
        minutes = draw(st.integers(0, 365 * 24 * 60 - 1))
        return datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=minutes)
    if kind == "transition":
        day = draw(st.sampled_from(TRANSITIONS[hot_zone]))
        midnight = datetime.combine(day, time(0, 0)).replace(tzinfo=ZoneInfo(hot_zone)).astimezone(UTC)
        return midnight + timedelta(minutes=draw(st.integers(-60, 240)))
    day_utc = draw(st.sampled_from(SPECIAL_DAYS))
    if kind == "dst":
        return day_utc + timedelta(minutes=draw(st.integers(-36 * 60, 36 * 60)))
    zone = draw(st.sampled_from([hot_zone, *VALID_ZONES]))
    base = _local_midnight(day_utc + timedelta(hours=12), zone)
    return base + timedelta(minutes=draw(st.sampled_from([-61, -1, 0, 1, 59, 60, 480, 540])))


# -------------------------------------------------------------------- campaigns


def _frequency() -> st.SearchStrategy[dict[str, Any] | None]:
    limits = st.sampled_from([0, 1, 1, 2])
    window = st.builds(lambda limit, w: {"limit": limit, "window": w}, limits, st.sampled_from(WINDOWS))
    period = st.builds(lambda limit, p: {"limit": limit, "period": p}, limits, st.sampled_from(PERIODS))
    return st.one_of(st.none(), st.none(), window, period)


@st.composite
def campaign_dict(draw: st.DrawFn, campaign_id: str, quiet_focus: bool = False) -> dict[str, Any]:
    """A campaign; with ``quiet_focus`` its channels are mostly sms and push."""
    transactional = draw(st.integers(0, 4)) == 0
    # sms and push (the channels with quiet hours) come up more often.
    pool = ["sms", "push", "sms", "push", "email"] if quiet_focus else CHANNEL_WEIGHTS
    channels = draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True))
    c: dict[str, Any] = {
        "id": campaign_id,
        "name": f"Campaign {campaign_id}",
        "owner": "tests",
        "schedule": "@hourly",
        "start_date": "2026-01-01",
        "category": "transactional" if transactional else "marketing",
        "priority": draw(st.sampled_from([10, 50, 50, 80])),
        "tags": draw(st.lists(st.sampled_from(TAGS), max_size=2, unique=True)),
        "channels": channels,
        "audience": {"sql": "select customer_id from customers"},
        "message": {ch: dict(MESSAGES[ch]) for ch in channels},
    }
    if draw(st.booleans()):
        c["topic"] = draw(st.sampled_from(["promotions", "news"]))
    if not transactional:  # transactional campaigns may have neither holdout nor frequency
        c["holdout_percent"] = draw(st.sampled_from([0, 0, 10, 50]))
        freq = draw(_frequency())
        if freq is not None:
            c["frequency"] = freq
    counts = draw(st.sampled_from([None, None, True, False]))
    if counts is not None:
        c["counts_toward_caps"] = counts
    return c


def _topic(c: dict[str, Any]) -> str:
    return str(c.get("topic") or c["id"])


def _tags(c: dict[str, Any]) -> tuple[str, ...]:
    return tuple(c.get("tags") or ())


def _counts(c: dict[str, Any]) -> bool:
    value = c.get("counts_toward_caps")
    if value is None:
        return bool(c.get("category", "marketing") == "marketing")
    return bool(value)


# ----------------------------------------------------------------------- policy


@st.composite
def cap_dict(draw: st.DrawFn, name: str) -> dict[str, Any]:
    cap: dict[str, Any] = {"name": name, "limit": draw(st.sampled_from([0, 1, 1, 1, 2, 3]))}
    if draw(st.booleans()):
        cap["window"] = draw(st.sampled_from(WINDOWS))
    else:
        cap["period"] = draw(st.sampled_from(PERIODS))
    if draw(st.integers(0, 2)) == 0:
        cap["channel"] = draw(st.sampled_from(CHANNELS))
    if draw(st.integers(0, 2)) == 0:
        cap["tag"] = draw(st.sampled_from(TAGS))
    return cap


@st.composite
def policy_dict(
    draw: st.DrawFn,
    quiet_focus: bool = False,
    hot_zone: str = "UTC",
    quiet_pairs: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """A policy; ``quiet_focus`` forces quiet hours on sms and push and lets sms through consent."""
    p: dict[str, Any] = {
        "default_timezone": draw(st.sampled_from([hot_zone, *DEFAULT_TIMEZONES])),
        "global_control_percent": draw(st.sampled_from([0, 0, 0, 5, 50])),
        "holdout_salt": draw(st.sampled_from(["baton", "s2"])),
    }
    n_caps = draw(st.integers(0, 4))
    if n_caps:
        p["caps"] = [draw(cap_dict(f"cap_{i}")) for i in range(n_caps)]
    quiet: dict[str, dict[str, str]] = {}
    for ch in ("sms", "push"):
        if quiet_focus or draw(st.integers(0, 2)) > 0:
            start, end = draw(st.sampled_from(quiet_pairs or QUIET_PAIRS))
            quiet[ch] = {"start": start, "end": end}
    if quiet:
        p["quiet_hours"] = quiet
    channels: dict[str, dict[str, str]] = {}
    for ch in CHANNELS:
        modes = [None, "opt_out", "opt_out", "opt_in"] if ch == "sms" else [None, None, "opt_in", "opt_out"]
        mode = "opt_out" if quiet_focus and ch in ("sms", "push") else draw(st.sampled_from(modes))
        if mode is not None:
            channels[ch] = {"consent": mode}
    if channels:
        p["channels"] = channels
    return p


# -------------------------------------------------------------------- customers


@st.composite
def messy(draw: st.DrawFn, pool: list[str]) -> str | None:
    """An address from ``pool`` with random case and padding, or missing (None/empty/blank)."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return None
    if kind == 1:
        return draw(st.sampled_from(["", " "]))
    value = draw(st.sampled_from(pool))
    case = draw(st.sampled_from(["same", "same", "upper", "title"]))
    if case == "upper":
        value = value.upper()
    elif case == "title":
        value = value.title()
    pad = draw(st.sampled_from(["", "", " ", "  "]))
    return pad + value + draw(st.sampled_from(["", " "]))


@st.composite
def customer_row(draw: st.DrawFn, customer_id: str, hot_zone: str = "UTC") -> CustomerRow:
    return CustomerRow(
        customer_id=customer_id,
        email=draw(messy(EMAILS)),
        phone=draw(messy(PHONES)),
        push_token=draw(messy(PUSH_TOKENS)),
        postal_address=draw(messy(POSTAL)),
        timezone=draw(st.sampled_from([*TIMEZONES, hot_zone, hot_zone, hot_zone])),
    )


# ------------------------------------------------------------------- scenario


EXPIRY_OFFSETS = [
    None,
    None,
    None,
    None,
    timedelta(hours=-1),
    timedelta(0),
    timedelta(minutes=1),
    timedelta(hours=1),
    timedelta(hours=6),
    timedelta(hours=12),
    timedelta(days=3),
]
HISTORY_OFFSETS = (
    [timedelta(0), timedelta(minutes=1), timedelta(minutes=59), timedelta(minutes=-60)]
    + [d for w in WINDOW_DELTAS.values() for d in (w, w - timedelta(minutes=1), w + timedelta(minutes=1))]
    + [timedelta(days=31)]
)


def period_boundary(T: datetime, zone: str, period: str) -> datetime:
    """UTC start of the local ``period`` containing T (same rule as the reference)."""
    z = ZoneInfo(zone)
    d = T.astimezone(z).date()
    if period == "week":
        d = d - timedelta(days=d.weekday())
    elif period == "month":
        d = d.replace(day=1)
    return datetime.combine(d, time(0, 0)).replace(tzinfo=z, fold=0).astimezone(UTC)


def effective_zone(customer: CustomerRow, default_timezone: str) -> str:
    """The zone arbitration uses for ``customer`` (exact IANA name, else the default)."""
    tz = customer.timezone
    return tz if tz is not None and tz in _ZONES else default_timezone


_ZONES = frozenset(available_timezones())


def _frame(
    draw: st.DrawFn, max_campaigns: int = 6
) -> tuple[str, datetime, bool, dict[str, Any], list[dict[str, Any]]]:
    """The decision time, policy and campaigns of a scenario: (hot zone, T, quiet focus, policy, campaigns)."""
    hot_zone = draw(st.sampled_from(VALID_ZONES))
    # A quarter of the scenarios are about the small hours of a DST-change day, when the
    # end of quiet hours may be a local time that is skipped or repeated.
    dst_focus = hot_zone in TRANSITIONS and draw(st.integers(0, 3)) == 0
    T = draw(decision_times(hot_zone, "transition" if dst_focus else None))
    quiet_focus = dst_focus or draw(st.integers(0, 2)) == 0  # a third are about quiet hours
    policy = draw(policy_dict(quiet_focus, hot_zone, DST_QUIET_PAIRS if dst_focus else None))
    ids = draw(st.lists(st.sampled_from(CAMPAIGN_IDS), min_size=1, max_size=max_campaigns, unique=True))
    campaigns = [draw(campaign_dict(cid, quiet_focus)) for cid in ids]
    return hot_zone, T, quiet_focus, policy, campaigns


def _distinct_addresses(customers: list[CustomerRow]) -> list[CustomerRow]:
    """The customers with every email and phone held by one profile only (after normalisation):
    a later holder of a value gets a variant of it of its own, so that nothing links (SPEC §6)."""
    seen: set[tuple[str, str]] = set()
    out = []
    for n, c in enumerate(customers):
        email, phone = c.email, c.phone
        while email is not None and ("email", normalize("email", email)) in seen:
            email = email.replace("@", f".{n}@", 1) if "@" in email else f"{email}.{n}"
        while phone is not None and ("phone", normalize("phone", phone)) in seen:
            phone = f"{phone}{n}"
        for kind, value in (("email", email), ("phone", phone)):
            if value is not None and not is_junk(normalize(kind, value)):
                seen.add((kind, normalize(kind, value)))
        out.append(CustomerRow(c.customer_id, email, phone, c.push_token, c.postal_address, c.timezone))
    return out


def _rows(
    draw: st.DrawFn,
    parts: ScenarioParts,
    customer_ids: list[str],
    scores: list[float],
    max_candidates: int = 12,
    persons: bool = False,
) -> None:
    """Candidates, consents, suppressions and history of the people ``customer_ids`` (and of an
    unknown one now and then), added to ``parts``.  With ``persons``, history on a period
    boundary is also put in the zone of another profile (a person's zone may be another
    profile's)."""
    people = customer_ids + [UNKNOWN_CUSTOMER]

    def someone() -> str:
        """Mostly a known person, sometimes one who is not in customers.csv."""
        return (
            draw(st.sampled_from(people))
            if draw(st.integers(0, 7)) == 0
            else draw(st.sampled_from(customer_ids))
        )

    _candidates(draw, parts, someone, scores, max_candidates)
    _consents(draw, parts, someone)
    _suppressions(draw, parts)
    _history(draw, parts, someone, persons)


def _candidates(
    draw: st.DrawFn,
    parts: ScenarioParts,
    someone: Callable[[], str],
    scores: list[float],
    max_candidates: int,
) -> None:
    """Candidate rows: few people and campaigns, so duplicates of (campaign, person) come by themselves."""
    ids = [c["id"] for c in parts.campaigns]
    by_id = {c["id"]: c for c in parts.campaigns}
    for seq in range(draw(st.integers(1, max_candidates))):
        campaign = by_id[draw(st.sampled_from(ids))]
        person = someone()
        channel = draw(st.sampled_from(campaign["channels"])) if draw(st.integers(0, 3)) == 0 else None
        offset = draw(st.sampled_from(EXPIRY_OFFSETS))
        parts.candidates.append(
            CandidateRow(
                seq=seq,
                campaign_id=campaign["id"],
                customer_id=person,
                score=draw(st.sampled_from(scores)),
                channel=channel,
                expires_at=None if offset is None else parts.T + offset,
            )
        )


def _consents(draw: st.DrawFn, parts: ScenarioParts, someone: Callable[[], str]) -> None:
    """Opt-ins and opt-outs, channel-wide or of a topic, at most one per (person, channel, topic)."""
    seen: set[tuple[str, str, str]] = set()
    topics = sorted({_topic(c) for c in parts.campaigns} | {"other"})
    for _ in range(draw(st.integers(0, 8))):
        key = (
            someone(),
            draw(st.sampled_from(CHANNELS)),
            draw(st.sampled_from(["", "", *topics])),
        )
        if key in seen:
            continue
        seen.add(key)
        parts.consents.append(ConsentRow(*key, status=draw(st.sampled_from(["opt_in", "opt_out"]))))


def _suppressions(draw: st.DrawFn, parts: ScenarioParts) -> None:
    """Suppressed addresses, often the customers' own in another spelling."""
    pools = {
        "email": EMAILS + [c.email for c in parts.customers if c.email],
        "sms": PHONES + [c.phone for c in parts.customers if c.phone],
        "push": PUSH_TOKENS,
        "direct_mail": POSTAL,
        "audience": EMAILS + PHONES,
    }
    for _ in range(draw(st.integers(0, 4))):
        channel = draw(st.sampled_from(CHANNELS))
        address = draw(messy(pools[channel]))
        if address is None or not address.strip():
            continue
        parts.suppressions.append(SuppressionRow(channel=channel, address=address))


def _history(draw: st.DrawFn, parts: ScenarioParts, someone: Callable[[], str], persons: bool) -> None:
    """History that decides caps: exactly on (or a minute either side of) the start of a
    cap's window or of its period in the person's zone, or at some other time."""
    policy, campaigns = parts.policy, parts.campaigns
    ids = [c["id"] for c in campaigns]
    by_id = {c["id"]: c for c in campaigns}
    cap_dicts = list(policy.get("caps", [])) + [c["frequency"] for c in campaigns if "frequency" in c]
    windows = sorted({WINDOW_DELTAS[c["window"]] for c in cap_dicts if "window" in c})
    periods = sorted({c["period"] for c in cap_dicts if "period" in c})
    zone_of = {c.customer_id: effective_zone(c, policy["default_timezone"]) for c in parts.customers}
    zones = sorted(set(zone_of.values()) | {policy["default_timezone"]})
    for _ in range(draw(st.integers(0, 8))):
        customer_id = someone()
        campaign_id = draw(st.sampled_from([*ids, UNKNOWN_CAMPAIGN]))
        known = by_id.get(campaign_id)
        kind = draw(st.sampled_from(["window", "period", "other"]))
        nudge = timedelta(minutes=draw(st.sampled_from([-1, 0, 0, 1])))
        if kind == "window" and windows:
            decided_at = parts.T - draw(st.sampled_from(windows)) + nudge
        elif kind == "period" and periods:
            zone = zone_of.get(customer_id, policy["default_timezone"])
            if persons and draw(st.booleans()):
                zone = draw(st.sampled_from(zones))
            decided_at = period_boundary(parts.T, zone, draw(st.sampled_from(periods))) + nudge
        else:
            decided_at = parts.T - draw(st.sampled_from(HISTORY_OFFSETS))
        tags, counts = _history_tags_and_counts(draw, known)
        parts.history.append(
            HistoryRow(
                customer_id=customer_id,
                campaign_id=campaign_id,
                channel=draw(
                    st.sampled_from(known["channels"] if known and draw(st.booleans()) else CHANNELS)
                ),
                decided_at=decided_at,
                tags=tags,
                counts=counts,
            )
        )


def _history_tags_and_counts(draw: st.DrawFn, known: dict[str, Any] | None) -> tuple[tuple[str, ...], bool]:
    """A history row's tags and whether it counts toward caps: mostly its campaign's, sometimes others."""
    if draw(st.integers(0, 3)) == 0:
        tags = tuple(draw(st.lists(st.sampled_from(TAGS), max_size=2, unique=True)))
    else:
        tags = _tags(known) if known is not None else ()
    counts_choice = draw(st.sampled_from([None, None, True, False]))
    if counts_choice is None:
        counts = _counts(known) if known is not None else True
    else:
        counts = counts_choice
    return tags, counts


@st.composite
def scenario_parts(draw: st.DrawFn) -> ScenarioParts:
    """A scenario without identity: no identifiers, and no two profiles share an email or phone."""
    hot_zone, T, _, policy, campaigns = _frame(draw)
    customer_ids = draw(st.lists(st.sampled_from(CUSTOMER_IDS), min_size=1, max_size=8, unique=True))
    customers = _distinct_addresses([draw(customer_row(cid, hot_zone)) for cid in customer_ids])
    parts = ScenarioParts(T=T, policy=policy, campaigns=campaigns, customers=customers)
    _rows(draw, parts, customer_ids, [0.0, 0.5, 1.0, 1.0, 2.5])
    return parts


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[Scenario, datetime]:
    """A validated ``(Scenario, T)`` without identity (every person is one profile)."""
    parts = draw(scenario_parts())
    return parts.build(), parts.T


# --------------------------------------------------------------------- identity

#: The values of a few real people, each kind once.  Some start or end with the letter v.
PEOPLE_VALUES: list[dict[str, str]] = [
    {
        "email": "ann@shop.test",
        "phone": "+1 (555) 010-0199",
        "login": "ann",
        "cookie": "ck-ann-77",
        "device": "dev-ann-1",
        "push_token": "tok-ann",
    },
    {
        "email": "vera@shop.tv",
        "phone": "+44 20 7946 0958",
        "login": "Vlad",
        "cookie": "ck-v",
        "device": "v-dev-2v",
        "push_token": "vtok",
    },
    {
        "email": "era@shop.tv",
        "phone": "+49 30 123456",
        "login": "olav",
        "cookie": "ck-3",
        "device": "dev-3",
        "push_token": "tok-3v",
    },
]
#: Values many profiles hold: a shop's front desk, a family tablet.
SHARED_VALUES: dict[str, str] = {
    "email": "frontdesk@shop.test",
    "phone": "+1 555 000 1234",
    "login": "guest",
    "cookie": "ck-shared",
    "device": "family-tablet",
    "push_token": "tok-shared",
}
#: Junk: each normalises to a value that identifies no one (or to nothing at all).
JUNK_VALUES = ["null", "N/A", "0000000", "--", "Unknown", "undefined", "anonymous", "x", "-.-", "NONE"]
JUNK_PHONES = ["()", "+( ) -", "000-000-0000", "n/a"]
#: Blocked values a policy may list (in spellings other than the profiles').
BLOCKED_CHOICES = [
    "FrontDesk@Shop.test ",
    "+1-555-000-1234",
    "GUEST",
    "family-tablet",
    "ANN@shop.test",
    "test",
]
PADS = ["", "", " ", "\t", " \t", "  "]
NOT_A_PROFILE = ["ghost", "nobody"]
FIRST_SEEN_OFFSETS: list[timedelta | None] = [
    None,
    None,
    timedelta(days=-30),
    timedelta(minutes=-1),
    timedelta(0),
    timedelta(minutes=1),
    timedelta(days=2),
]


@st.composite
def spelling(draw: st.DrawFn, kind: str, value: str) -> str:
    """``value`` written another way that normalises the same (SPEC §6) — or, for the kinds that
    are only trimmed, now and then in another case (which does not)."""
    pad_left, pad_right = draw(st.sampled_from(PADS)), draw(st.sampled_from(PADS))
    if kind == "email":
        value = draw(st.sampled_from([value, value, value.upper(), value.title(), value.swapcase()]))
    elif kind == "phone":
        digits = re.sub(r"[^0-9]", "", value)
        value = draw(
            st.sampled_from(
                [
                    value,
                    digits,
                    "+" + digits,
                    f"+{digits[:1]} ({digits[1:4]}) {digits[4:7]}-{digits[7:]}",
                    ".".join([digits[:1], digits[1:4], digits[4:7], digits[7:]]),
                    f"{digits[:-4]} {digits[-4:]}",
                ]
            )
        )
    elif draw(st.integers(0, 5)) == 0:
        value = value.upper() if value != value.upper() else value.lower()
    return pad_left + value + pad_right


@st.composite
def identity_value(draw: st.DrawFn, kind: str, group: int) -> str:
    """A value of ``kind`` for a profile of person ``group``: mostly that person's own (in some
    spelling), sometimes another person's, a shared one, a blocked or a junk one."""
    choice = draw(
        st.sampled_from(["own", "own", "own", "own", "other", "shared", "shared", "blocked", "junk"])
    )
    if choice == "own":
        return draw(spelling(kind, PEOPLE_VALUES[group][kind]))
    if choice == "other":
        return draw(spelling(kind, draw(st.sampled_from(PEOPLE_VALUES))[kind]))
    if choice == "shared":
        return draw(spelling(kind, SHARED_VALUES[kind]))
    if choice == "blocked":
        return draw(st.sampled_from(BLOCKED_CHOICES))
    junk = JUNK_VALUES + (JUNK_PHONES if kind == "phone" else [])
    return draw(st.sampled_from(PADS)) + draw(st.sampled_from(junk)) + draw(st.sampled_from(PADS))


@st.composite
def identity_policy(draw: st.DrawFn) -> dict[str, Any] | None:
    """The policy's ``identity:`` keys, or None for the defaults."""
    if draw(st.integers(0, 4)) == 0:
        return None
    out: dict[str, Any] = {}
    if draw(st.integers(0, 2)) == 0:
        out["link_on"] = draw(st.lists(st.sampled_from(list(KINDS)), max_size=4, unique=True))
    if draw(st.integers(0, 3)) > 0:
        out["max_profiles_per_value"] = draw(st.sampled_from([1, 2, 2, 3, 3, 4]))
    if draw(st.booleans()):
        out["blocked_values"] = draw(st.lists(st.sampled_from(BLOCKED_CHOICES), min_size=1, max_size=3))
    return out


@st.composite
def profile_row(draw: st.DrawFn, customer_id: str, group: int, hot_zone: str) -> CustomerRow:
    """A profile of person ``group``: its own columns from that person's values (or others), some
    missing — a profile without any address now and then, so that the fallback matters."""
    bare = draw(st.integers(0, 4)) == 0

    def column(kind: str) -> str | None:
        if bare or draw(st.integers(0, 3)) == 0:
            return draw(st.sampled_from([None, None, "", " ", "\t"]))
        return draw(identity_value(kind, group))

    return CustomerRow(
        customer_id=customer_id,
        email=column("email"),
        phone=column("phone"),
        push_token=column("push_token"),
        postal_address=None if bare or draw(st.booleans()) else draw(st.sampled_from(POSTAL)),
        timezone=draw(st.sampled_from([*TIMEZONES, hot_zone])),
    )


@st.composite
def identity_scenario_parts(draw: st.DrawFn) -> ScenarioParts:
    """A scenario of overlapping profiles (SPEC §6): 2–7 profiles of 1–3 people, linked (or not)
    through their own columns and ``identifiers.csv``."""
    hot_zone, T, _, policy, campaigns = _frame(draw, max_campaigns=4)
    identity = draw(identity_policy())
    if identity is not None:
        policy["identity"] = identity
    customer_ids = draw(st.lists(st.sampled_from(CUSTOMER_IDS), min_size=2, max_size=7, unique=True))
    n_people = draw(st.integers(1, len(PEOPLE_VALUES)))
    group_of = {cid: draw(st.integers(0, n_people - 1)) for cid in customer_ids}
    customers = [draw(profile_row(cid, group_of[cid], hot_zone)) for cid in customer_ids]
    parts = ScenarioParts(T=T, policy=policy, campaigns=campaigns, customers=customers)

    def first_seen() -> datetime | None:
        offset = draw(st.sampled_from(FIRST_SEEN_OFFSETS))
        return None if offset is None else T + offset

    for cid in customer_ids:
        for _ in range(draw(st.integers(0, 3))):
            kind = draw(st.sampled_from(list(KINDS)))
            value = draw(identity_value(kind, group_of[cid]))
            parts.identifiers.append(IdentifierRow(cid, kind, value, first_seen()))
    # identifiers of customer ids that are no profile: they link and count no one
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(list(KINDS)))
        value = draw(st.sampled_from([SHARED_VALUES[kind], draw(st.sampled_from(PEOPLE_VALUES))[kind]]))
        parts.identifiers.append(
            IdentifierRow(
                draw(st.sampled_from(NOT_A_PROFILE)), kind, draw(spelling(kind, value)), first_seen()
            )
        )
    for _ in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(list(KINDS)))
        value = draw(st.sampled_from([SHARED_VALUES[kind], draw(st.sampled_from(PEOPLE_VALUES))[kind]]))
        parts.exclusions.append(ExclusionRow(kind, draw(spelling(kind, value))))
    # Identifier values are cells of identifiers.csv: never blank (a blank cell is bad input).
    parts.identifiers = [i for i in parts.identifiers if i.value.strip()]
    parts.exclusions = [e for e in parts.exclusions if e.value.strip()]

    # Equal scores are common: which profile's row of a campaign wins is then the tie-break.
    _rows(draw, parts, customer_ids, [0.0, 1.0, 1.0, 2.5], max_candidates=14, persons=True)
    return parts


@st.composite
def identity_scenarios(draw: st.DrawFn) -> tuple[Scenario, datetime]:
    """A validated ``(Scenario, T)`` of overlapping profiles (SPEC §6)."""
    parts = draw(identity_scenario_parts())
    return parts.build(), parts.T


# ------------------------------------------------------------------- writing


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return format_utc(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(header)
        for row in rows:
            writer.writerow([_cell(v) for v in row])


def write_scenario_dir(parts: ScenarioParts, directory: Path) -> None:
    """Write ``parts`` as a ``baton simulate`` scenario directory (SPEC §5).

    History tags and counts are always written explicitly (tags as ``;``-separated text;
    an empty tag list becomes an empty cell, which means "the campaign's tags" on load).
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "policy.yaml").write_text(yaml.safe_dump(parts.policy, sort_keys=False), encoding="utf-8")
    (directory / "campaigns").mkdir(exist_ok=True)
    for c in parts.campaigns:
        (directory / "campaigns" / f"{c['id']}.yaml").write_text(
            yaml.safe_dump(c, sort_keys=False), encoding="utf-8"
        )
    _write_csv(
        directory / "customers.csv",
        ["customer_id", "email", "phone", "push_token", "postal_address", "timezone"],
        [
            [c.customer_id, c.email, c.phone, c.push_token, c.postal_address, c.timezone]
            for c in parts.customers
        ],
    )
    _write_csv(
        directory / "candidates.csv",
        ["campaign_id", "customer_id", "score", "channel", "expires_at"],
        [[c.campaign_id, c.customer_id, repr(c.score), c.channel, c.expires_at] for c in parts.candidates],
    )
    _write_csv(
        directory / "consents.csv",
        ["customer_id", "channel", "topic", "status"],
        [[c.customer_id, c.channel, c.topic, c.status] for c in parts.consents],
    )
    _write_csv(
        directory / "suppressions.csv",
        ["channel", "address"],
        [[s.channel, s.address] for s in parts.suppressions],
    )
    _write_csv(
        directory / "history.csv",
        ["customer_id", "campaign_id", "channel", "decided_at", "tags", "counts"],
        [
            [h.customer_id, h.campaign_id, h.channel, h.decided_at, ";".join(h.tags), h.counts]
            for h in parts.history
        ],
    )
    _write_csv(
        directory / "identifiers.csv",
        ["customer_id", "kind", "value", "first_seen"],
        [[i.customer_id, i.kind, i.value, i.first_seen] for i in parts.identifiers],
    )
    _write_csv(
        directory / "exclusions.csv",
        ["kind", "value"],
        [[e.kind, e.value] for e in parts.exclusions],
    )
