"""Hand-worked identity scenarios (SPEC.md §6), as data: the same cases run against the plain-Python
reference (tests/unit/test_reference_identity.py) and against the SQL engine
(tests/integration/test_identity_cases.py).

Each :class:`IdentityCase` is a small scenario, a decision time and *every* decision expected,
worked out by hand from the SPEC's text and the interpretations listed in the docstring of
tests/reference_arbitration.py (numbered there; ``(i13)`` below is interpretation 13).
A row is ``(customer_id, campaign_id, channel, outcome, reason, send_at, person_id)``;
``reason`` is compared for ``capped`` only (the engine may add a detail to other outcomes).
A candidate row that loses the deduplication of its (campaign, person) has no decision at all,
so its absence from ``expected`` is part of the check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from baton.arbitration.scenario import (
    CandidateRow,
    ConsentRow,
    CustomerRow,
    Decision,
    ExclusionRow,
    HistoryRow,
    IdentifierRow,
    Scenario,
    SuppressionRow,
)
from baton.spec import Campaign, Policy

Row = tuple[str, str, str, str, str | None, datetime | None, str | None]

# Monday 2026-03-02, 07:00 in New York (EST, UTC-5), 13:00 in Berlin (CET, UTC+1).
T = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

MESSAGES: dict[str, dict[str, str]] = {
    "email": {"subject": "Hi", "html": "<p>Hi</p>"},
    "sms": {"text": "Hi"},
    "push": {"title": "Hi", "body": "Hi"},
    "audience": {"list": "retarget"},
    "direct_mail": {"creative": "DM-1"},
}


@dataclass(frozen=True)
class IdentityCase:
    """One hand-worked scenario and every decision it must produce."""

    name: str
    spec: str
    """The SPEC §6 rule (and interpretation) it checks, and how the expected rows follow."""
    scenario: Scenario
    at: datetime
    expected: tuple[Row, ...]

    def __str__(self) -> str:
        return self.name


def _key(row: Row) -> tuple[bytes, bytes, bytes]:
    return (row[0].encode(), row[1].encode(), row[2].encode())


def rows(decisions: Iterable[Decision]) -> list[Row]:
    """Decisions as comparable rows, sorted like decisions.csv; ``reason`` only for ``capped``."""
    out = [
        (
            d.customer_id,
            d.campaign_id,
            str(d.channel),
            str(d.outcome),
            d.reason if str(d.outcome) == "capped" else None,
            d.send_at,
            d.person_id,
        )
        for d in decisions
    ]
    return sorted(out, key=_key)


def expected_rows(c: IdentityCase) -> list[Row]:
    """The case's expected rows, sorted like :func:`rows`."""
    return sorted(c.expected, key=_key)


# ----------------------------------------------------------------------- builders


def camp(cid: str, channels: Sequence[str] = ("email",), **kw: Any) -> Campaign:
    """A marketing campaign (priority 50, no holdout) unless *kw* says otherwise."""
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


def prof(
    cid: str,
    email: str | None = None,
    phone: str | None = None,
    push: str | None = None,
    postal: str | None = None,
    tz: str | None = None,
) -> CustomerRow:
    """A profile (a row of customers.csv)."""
    return CustomerRow(cid, email, phone, push, postal, tz)


def scen(
    campaigns: Sequence[Campaign],
    customers: Sequence[CustomerRow],
    candidates: Sequence[tuple[Any, ...]],
    policy: dict[str, Any] | None = None,
    identifiers: Sequence[IdentifierRow] = (),
    exclusions: Sequence[ExclusionRow] = (),
    consents: Sequence[ConsentRow] = (),
    suppressions: Sequence[SuppressionRow] = (),
    history: Sequence[HistoryRow] = (),
) -> Scenario:
    """``candidates`` as ``(campaign_id, customer_id[, score[, channel[, expires_at]]])``, in file
    order (their ``seq`` is their position)."""
    cands = []
    for seq, c in enumerate(candidates):
        campaign_id, customer_id, *rest = c
        score = float(rest[0]) if len(rest) > 0 else 0.0
        channel = rest[1] if len(rest) > 1 else None
        expires = rest[2] if len(rest) > 2 else None
        cands.append(CandidateRow(seq, campaign_id, customer_id, score, channel, expires))
    return Scenario(
        policy=Policy.model_validate(policy or {}),
        campaigns={c.id: c for c in campaigns},
        customers=tuple(customers),
        candidates=tuple(cands),
        consents=tuple(consents),
        suppressions=tuple(suppressions),
        history=tuple(history),
        identifiers=tuple(identifiers),
        exclusions=tuple(exclusions),
    )


def ident(cid: str, kind: str, value: str, first_seen: datetime | None = None) -> IdentifierRow:
    """A row of identifiers.csv."""
    return IdentifierRow(cid, kind, value, first_seen)


def sel(cid: str, campaign: str, channel: str, person: str | None, send_at: datetime = T) -> Row:
    """A ``selected`` row."""
    return (cid, campaign, channel, "selected", None, send_at, person)


def out(
    cid: str, campaign: str, channel: str, outcome: str, person: str | None, reason: str | None = None
) -> Row:
    """A row of any outcome but ``selected``."""
    return (cid, campaign, channel, outcome, reason, None, person)


def _bucket(key: str) -> int:
    """SPEC §3's bucket, written out again here (not imported from the reference)."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % 10000


PROMO = camp("promo")
CASES: list[IdentityCase] = []


def case(name: str, spec: str, scenario: Scenario, expected: Sequence[Row], at: datetime = T) -> None:
    """Add a case to :data:`CASES`."""
    assert name not in {c.name for c in CASES}, name
    CASES.append(IdentityCase(name, spec, scenario, at, tuple(expected)))


# ------------------------------------------------------------------ normalisation

case(
    "email_in_other_spellings_links",
    "Normalised: email trimmed (tabs too) and lower-cased. p1 and p2 are one person (p1); their "
    "rows of promo tie on score, so only p1's (the smaller id) is decided (i5).",
    scen(
        [PROMO],
        [prof("p1", email="Ann@Shop.test"), prof("p2", email=" \tann@shop.TEST\t")],
        [("promo", "p2"), ("promo", "p1")],
    ),
    [sel("p1", "promo", "email", "p1")],
)

case(
    "phone_punctuation_links",
    "Normalised: phone reduced to its digits: '+1 (555) 010-0199' (p1's column) is '15550100199' "
    "(p2's identifier). p2's row has the higher score and wins; it goes to p2's own email (p1's is "
    "suppressed, which does not matter).",
    scen(
        [PROMO],
        [prof("p1", email="p1@x.test", phone="+1 (555) 010-0199"), prof("p2", email="p2@x.test")],
        [("promo", "p1", 1), ("promo", "p2", 2)],
        identifiers=[ident("p2", "phone", "15550100199")],
        suppressions=[SuppressionRow("email", "p1@x.test")],
    ),
    [sel("p2", "promo", "email", "p1")],
)

case(
    "login_trimmed_but_case_sensitive",
    "Normalised: every other kind is only trimmed: ' ann ' and 'ann' link, 'ANN' does not.",
    scen(
        [PROMO],
        [prof("p1", email="1@x.test"), prof("p2", email="2@x.test"), prof("p3", email="3@x.test")],
        [("promo", "p1"), ("promo", "p2"), ("promo", "p3")],
        identifiers=[ident("p1", "login", " ann "), ident("p2", "login", "ann"), ident("p3", "login", "ANN")],
    ),
    [sel("p1", "promo", "email", "p1"), sel("p3", "promo", "email", "p3")],
)

case(
    "junk_values_link_no_one",
    "Blocked: empty after normalisation ('+( ) -', '()'), only '0 - . x X' ('0000000', '--', "
    "'x.X-0'), or a junk word in any case identifies no one: four persons. A junk own column is "
    "still the profile's address (i16): q1's email 'NULL' is selected.",
    scen(
        [PROMO],
        [
            prof("q1", email="NULL", phone="+( ) -"),
            prof("q2", email="null", phone="()"),
            prof("q3", email="3@x.test", phone="000-000-0000"),
            prof("q4", email="4@x.test", phone="0000000"),
        ],
        [("promo", "q1"), ("promo", "q2"), ("promo", "q3"), ("promo", "q4")],
        identifiers=[
            ident("q3", "login", "--"),
            ident("q4", "login", " -- "),
            ident("q3", "device", "N/A"),
            ident("q4", "device", "n/a"),
            ident("q1", "login", "Unknown"),
            ident("q2", "login", "unknown"),
            ident("q3", "email", "x.X-0"),
            ident("q4", "email", "X.x-0"),
            ident("q1", "device", "Anonymous"),
            ident("q2", "device", "UNDEFINED"),
            ident("q3", "device", "undefined"),
            ident("q1", "login", "None"),
            ident("q4", "login", "NONE"),
        ],
    ),
    [
        sel("q1", "promo", "email", "q1"),
        sel("q2", "promo", "email", "q2"),
        sel("q3", "promo", "email", "q3"),
        sel("q4", "promo", "email", "q4"),
    ],
)

case(
    "blocked_values_of_the_policy",
    "Blocked: identity.blocked_values, each normalised as the identifier's kind and compared "
    "case-insensitively, for the own columns and the identifiers alike: six persons.",
    scen(
        [PROMO],
        [
            prof("r1", email="frontdesk@shop.test "),
            prof("r2", email=" FRONTDESK@shop.test"),
            prof("r3", email="3@x.test", phone="15550001234"),
            prof("r4", email="4@x.test", phone="+1-555-000-1234"),
            prof("r5", email="5@x.test"),
            prof("r6", email="6@x.test"),
        ],
        [("promo", c) for c in ("r1", "r2", "r3", "r4", "r5", "r6")],
        policy={"identity": {"blocked_values": ["FrontDesk@Shop.test", "+1 555 000 1234", "GUEST"]}},
        identifiers=[ident("r5", "login", "guest"), ident("r6", "login", " Guest")],
    ),
    [sel(c, "promo", "email", c) for c in ("r1", "r2", "r3", "r4", "r5", "r6")],
)

# ------------------------------------------------------------------------ link_on

case(
    "link_on_subset",
    "Linked only by a kind in identity.link_on: with [login], a shared email links no one, a shared "
    "login links s3 and s4.",
    scen(
        [PROMO],
        [
            prof("s1", email="same@x.test"),
            prof("s2", email="SAME@x.test"),
            prof("s3", email="3@x.test"),
            prof("s4", email="4@x.test"),
        ],
        [("promo", c) for c in ("s1", "s2", "s3", "s4")],
        policy={"identity": {"link_on": ["login"]}},
        identifiers=[ident("s3", "login", "bob"), ident("s4", "login", "bob")],
    ),
    [sel("s1", "promo", "email", "s1"), sel("s2", "promo", "email", "s2"), sel("s3", "promo", "email", "s3")],
)

case(
    "default_link_on_leaves_out_cookie_and_push_token",
    "Default link_on is [email, phone, login, device]: a shared push token (t1, t2) or cookie (t3, "
    "t4) links no one; a shared device (t5, t6) links.",
    scen(
        [PROMO],
        [
            prof("t1", email="1@x.test", push="tokS"),
            prof("t2", email="2@x.test", push="tokS"),
            prof("t3", email="3@x.test"),
            prof("t4", email="4@x.test"),
            prof("t5", email="5@x.test"),
            prof("t6", email="6@x.test"),
        ],
        [("promo", c) for c in ("t1", "t2", "t3", "t4", "t5", "t6")],
        identifiers=[
            ident("t3", "cookie", "ck1"),
            ident("t4", "cookie", "ck1"),
            ident("t5", "device", "dev-9"),
            ident("t6", "device", " dev-9\t"),
        ],
    ),
    [sel(c, "promo", "email", c) for c in ("t1", "t2", "t3", "t4", "t5")],
)

case(
    "link_on_push_token_and_cookie",
    "A push_token column is an identifier of kind push_token: with link_on [push_token, cookie] u1's "
    "column and u2's identifier link, and u4-u5's cookie; the email u3 and u4 share does not.",
    scen(
        [PROMO],
        [
            prof("u1", email="1@x.test", push=" tokS"),
            prof("u2", email="2@x.test"),
            prof("u3", email="same@x.test"),
            prof("u4", email="same@x.test"),
            prof("u5", email="5@x.test"),
        ],
        [("promo", c) for c in ("u1", "u2", "u3", "u4", "u5")],
        policy={"identity": {"link_on": ["push_token", "cookie"]}},
        identifiers=[
            ident("u2", "push_token", "tokS "),
            ident("u4", "cookie", "c"),
            ident("u5", "cookie", "c"),
        ],
    ),
    [sel("u1", "promo", "email", "u1"), sel("u3", "promo", "email", "u3"), sel("u4", "promo", "email", "u4")],
)

# --------------------------------------------------------- max_profiles_per_value

_MAX = scen(
    [PROMO],
    [
        prof("v1", email="desk@shop.test"),
        prof("v2", email="Desk@Shop.test"),
        prof("v3", email="v3@x.test"),
        prof("v4", email="v4@x.test"),
        prof("v5", email="v5@x.test"),
        prof("v6", email="v6@x.test"),
    ],
    [("promo", c) for c in ("v1", "v2", "v3", "v4", "v5", "v6")],
    policy={"identity": {"max_profiles_per_value": 2}},
    identifiers=[
        ident("v3", "email", "desk@shop.test", T + timedelta(hours=1)),
        ident("v4", "login", "fam"),
        ident("v5", "login", "fam"),
        ident("v6", "login", "fam"),
    ],
)
case(
    "max_profiles_per_value_counts_holders_known_at_T",
    "max_profiles_per_value 2: desk@shop.test has two holders at T (v3's identifier is first seen "
    "an hour later) and links v1-v2; 'fam' has three holders and links no one.",
    _MAX,
    [sel(c, "promo", "email", c) for c in ("v1", "v3", "v4", "v5", "v6")],
)
case(
    "max_profiles_per_value_later_the_value_is_over_shared",
    "The same scenario two hours later: desk@shop.test has three holders now and links no one.",
    _MAX,
    [sel(c, "promo", "email", c, T + timedelta(hours=2)) for c in ("v1", "v2", "v3", "v4", "v5", "v6")],
    at=T + timedelta(hours=2),
)

case(
    "max_profiles_per_value_counts_profiles_not_rows",
    "A profile holding a value twice (its column and an identifier in another spelling) is one "
    "holder (i14); exactly max_profiles_per_value holders still link.",
    scen(
        [PROMO],
        [prof("w1", email="a@x.test"), prof("w2", email="a@x.test")],
        [("promo", "w1"), ("promo", "w2")],
        policy={"identity": {"max_profiles_per_value": 2}},
        identifiers=[ident("w1", "email", " A@X.test")],
    ),
    [sel("w1", "promo", "email", "w1")],
)

case(
    "max_profiles_per_value_one_links_no_one",
    "max_profiles_per_value 1: every shared value has more holders than allowed.",
    scen(
        [PROMO],
        [prof("w1", email="a@x.test"), prof("w2", email="a@x.test")],
        [("promo", "w1"), ("promo", "w2")],
        policy={"identity": {"max_profiles_per_value": 1}},
    ),
    [sel("w1", "promo", "email", "w1"), sel("w2", "promo", "email", "w2")],
)

case(
    "identifiers_of_no_profile_are_ignored",
    "An identifier row whose customer_id is no profile neither links nor counts (i3): 'dev-1' has "
    "two profile holders (max 2) and links x1-x2 although ghost holds it too, and ghost's email "
    "identifier does not tie ghost to x3. ghost's rows are unknown_customer with an empty "
    "person_id, deduplicated per customer_id as before (score 2, its sms row, wins). x1 and x3 have "
    "no phone anywhere in their persons: sms unreachable.",
    scen(
        [camp("promo", ("email", "sms"))],
        [prof("x1", email="1@x.test"), prof("x2", email="2@x.test"), prof("x3", email="3@x.test")],
        [
            ("promo", "x1"),
            ("promo", "x2"),
            ("promo", "ghost", 1),
            ("promo", "ghost", 2, "sms"),
            ("promo", "x3"),
        ],
        policy={"identity": {"max_profiles_per_value": 2}},
        identifiers=[
            ident("x1", "device", "dev-1"),
            ident("x2", "device", "dev-1"),
            ident("ghost", "device", "dev-1"),
            ident("ghost", "email", "3@x.test"),
        ],
    ),
    [
        out("ghost", "promo", "sms", "unknown_customer", None),
        sel("x1", "promo", "email", "x1"),
        out("x1", "promo", "sms", "unreachable", "x1"),
        sel("x3", "promo", "email", "x3"),
        out("x3", "promo", "sms", "unreachable", "x3"),
    ],
)

case(
    "unknown_customer_rows_deduplicated_per_customer_id",
    "Rows of customer ids that are no profile: one per (campaign, customer_id), the highest score, "
    "then the first returned; its alternatives are all unknown_customer, person_id empty.",
    scen(
        [camp("promo", ("email", "sms"))],
        [prof("y1", email="1@x.test")],
        [
            ("promo", "nobody", 1, "sms"),
            ("promo", "nobody", 3),
            ("promo", "ghost", 2, "email"),
            ("promo", "ghost", 2),
        ],
    ),
    [
        out("ghost", "promo", "email", "unknown_customer", None),
        out("nobody", "promo", "email", "unknown_customer", None),
        out("nobody", "promo", "sms", "unknown_customer", None),
    ],
)

# ----------------------------------------------------------------------- first_seen

case(
    "first_seen_at_or_before_T",
    "An identifier exists from its first_seen on: first seen exactly at T links (z1-z2), a minute "
    "after T does not (z3-z4); an empty first_seen is always known.",
    scen(
        [PROMO],
        [prof(c, email=f"{c}@x.test") for c in ("z1", "z2", "z3", "z4")],
        [("promo", c) for c in ("z1", "z2", "z3", "z4")],
        identifiers=[
            ident("z1", "login", "L1"),
            ident("z2", "login", "L1", T),
            ident("z3", "login", "L2", T + timedelta(minutes=1)),
            ident("z4", "login", "L2"),
        ],
    ),
    [sel("z1", "promo", "email", "z1"), sel("z3", "promo", "email", "z3"), sel("z4", "promo", "email", "z4")],
)

case(
    "duplicate_identifier_rows_earliest_first_seen",
    "The same identifier of z2 twice, once first seen after T and once always known: it is known "
    "(i15), and links z1-z2.",
    scen(
        [PROMO],
        [prof("z1", email="z1@x.test"), prof("z2", email="z2@x.test")],
        [("promo", "z1"), ("promo", "z2")],
        identifiers=[
            ident("z2", "login", "L", T + timedelta(days=1)),
            ident("z1", "login", "L"),
            ident("z2", "login", " L", None),
        ],
    ),
    [sel("z1", "promo", "email", "z1")],
)

# ------------------------------------------------------------------------ exclusions

case(
    "exclusions",
    "Excluded values link no one; an exclusion is normalised as its kind and compared exactly "
    "(i13): 'ANN@shop.test ' excludes ann@shop.test (e1, e2 stay apart), login 'bob' does not "
    "exclude 'Bob' (e3-e4 linked), and an exclusion of kind phone does not touch an email (e5-e6).",
    scen(
        [PROMO],
        [
            prof("e1", email="ann@shop.test"),
            prof("e2", email="Ann@Shop.test"),
            prof("e3", email="3@x.test"),
            prof("e4", email="4@x.test"),
            prof("e5", email="55@x.test"),
            prof("e6", email="55@x.test"),
        ],
        [("promo", c) for c in ("e1", "e2", "e3", "e4", "e5", "e6")],
        identifiers=[ident("e3", "login", "Bob"), ident("e4", "login", "Bob ")],
        exclusions=[
            ExclusionRow("email", "ANN@shop.test "),
            ExclusionRow("login", "bob"),
            ExclusionRow("phone", "55@x.test"),
        ],
    ),
    [
        sel("e1", "promo", "email", "e1"),
        sel("e2", "promo", "email", "e2"),
        sel("e3", "promo", "email", "e3"),
        sel("e5", "promo", "email", "e5"),
    ],
)

# ------------------------------------------------------------------------- person_id

case(
    "person_is_a_connected_component_person_id_smallest_in_byte_order",
    "A chain b-a1 (email), a1-B3 (phone), B3-_x (login), _x-ä5 (device) is one person; its id is "
    "the smallest customer_id in byte order: 'B3' (upper case before '_' before lower case before "
    "'ä'), whatever a locale's collation would say. Its best row is b's (score 3).",
    scen(
        [PROMO],
        [
            prof("b", email="b@x.test"),
            prof("a1", email="B@X.test", phone="+49 30 1234"),
            prof("B3", phone="49301234"),
            prof("_x"),
            prof("ä5", email="a5@x.test"),
            prof("Z", email="z@x.test"),
        ],
        [("promo", "b", 3), ("promo", "ä5", 1), ("promo", "Z", 1)],
        identifiers=[
            ident("B3", "login", "chain"),
            ident("_x", "login", "chain"),
            ident("_x", "device", "d-9"),
            ident("ä5", "device", "d-9"),
        ],
    ),
    [sel("Z", "promo", "email", "Z"), sel("b", "promo", "email", "B3")],
)

# --------------------------------------------------------- candidates and ranking

case(
    "one_ranking_per_person",
    "Candidates of all the person's profiles form one ranking: hi (priority 90) of k2 takes the "
    "daily cap's only slot, lo (priority 10) of k1 is capped.",
    scen(
        [camp("hi", priority=90), camp("lo", priority=10)],
        [prof("k1", email="k@x.test"), prof("k2", email=" K@x.test")],
        [("lo", "k1"), ("hi", "k2")],
        policy={"caps": [{"name": "daily", "limit": 1, "window": "24h"}]},
    ),
    [out("k1", "lo", "email", "capped", "k1", "daily"), sel("k2", "hi", "email", "k1")],
)

case(
    "dedup_tie_smallest_customer_id_in_byte_order_then_first_returned",
    "Several rows of one campaign for one person (Z and a share an email): the highest score wins; "
    "on a tie the smallest customer_id in byte order ('Z' before 'a', although a's row comes "
    "first), then Z's first row — which names sms, so sms is the only alternative; Z has no phone "
    "and a's is used (check 3). For 'other', a's row has the higher score.",
    scen(
        [camp("promo", ("email", "sms")), camp("other")],
        [prof("a", email="a@x.test", phone="+15550111"), prof("Z", email="a@X.test")],
        [
            ("promo", "a", 1),
            ("promo", "Z", 1, "sms"),
            ("promo", "Z", 1),
            ("promo", "Z", 0.5),
            ("other", "a", 2),
            ("other", "Z", 1),
        ],
        policy={"channels": {"sms": {"consent": "opt_out"}}},
    ),
    [sel("Z", "promo", "sms", "Z"), sel("a", "other", "email", "Z")],
)

case(
    "dedup_before_any_check",
    "Deduplication comes before every check (i17): the winning row (higher score) is expired; the "
    "losing row of the other profile would have been selected but is not an alternative at all.",
    scen(
        [PROMO],
        [prof("m1", email="m@x.test"), prof("m2", email="M@x.test")],
        [("promo", "m1", 1), ("promo", "m2", 2, None, T - timedelta(minutes=1))],
    ),
    [out("m2", "promo", "email", "expired", "m1")],
)

# ------------------------------------------------------------------------- addresses

case(
    "address_fallback_in_person_order",
    "Check 3: the row's own profile's address; where it has none, the first profile of the person "
    "that has one, the person_id's first, then by customer_id. k has no email; c (the person_id) has "
    "none either, so d's is used — and it is suppressed (e's would not be). For audience each "
    "profile gives its email, else its phone: c's phone comes before d's email, and it is "
    "suppressed. e's row uses e's own email.",
    scen(
        [camp("mail"), camp("aud", ("audience",)), camp("own")],
        [
            prof("k"),
            prof("c", phone="+1 555 0100"),
            prof("e", email="e@x.test"),
            prof("d", email="d@x.test"),
        ],
        [("mail", "k"), ("aud", "k"), ("own", "e")],
        identifiers=[ident(x, "login", "fam-1") for x in ("k", "c", "e", "d")],
        suppressions=[SuppressionRow("email", " D@X.test"), SuppressionRow("audience", "+1 555 0100")],
    ),
    [
        sel("e", "own", "email", "c"),
        out("k", "aud", "audience", "suppressed", "c"),
        out("k", "mail", "email", "suppressed", "c"),
    ],
)

case(
    "identifiers_are_no_addresses",
    "Identifiers from identifiers.csv only link: an email identifier is no address (i16).",
    scen(
        [PROMO],
        [prof("n1")],
        [("promo", "n1")],
        identifiers=[ident("n1", "email", "n1@x.test")],
    ),
    [out("n1", "promo", "email", "unreachable", "n1")],
)

# --------------------------------------------------------------------------- consent

case(
    "opt_out_on_any_profile",
    "Check 5: an opt-out on any of the person's profiles counts, for the channel and the campaign's "
    "topic (o2's email/promotions) or for the whole channel (o2's sms); an opt-out of another topic "
    "does not (news is selected).",
    scen(
        [camp("promo", ("email", "sms"), topic="promotions"), camp("news", topic="newsletter")],
        [prof("o1", email="o@x.test", phone="+1555222"), prof("o2", email="O@x.test ")],
        [("promo", "o1"), ("news", "o1")],
        policy={"channels": {"sms": {"consent": "opt_out"}}},
        consents=[
            ConsentRow("o2", "email", "promotions", "opt_out"),
            ConsentRow("o2", "sms", "", "opt_out"),
            ConsentRow("o1", "email", "newsletter", "opt_in"),
            ConsentRow("o2", "email", "other", "opt_out"),
        ],
    ),
    [
        sel("o1", "news", "email", "o1"),
        out("o1", "promo", "email", "no_consent", "o1"),
        out("o1", "promo", "sms", "no_consent", "o1"),
    ],
)

case(
    "opt_in_only_from_the_address_owner",
    "Check 5, opt_in channel: an opt-in counts only from the profile whose address is used. i1's "
    "own phone is used and i2 gave the opt-in: no_consent. i4 has no phone, so i3's is used, and i3 "
    "opted in (for the topic): selected. i5's opt-in does not count for i6's own phone.",
    scen(
        [camp("flash", ("sms",))],
        [
            prof("i1", phone="+1555333"),
            prof("i2"),
            prof("i3", phone="+1555444"),
            prof("i4"),
            prof("i5", phone="+1555555"),
            prof("i6", phone="+1555666"),
        ],
        [("flash", "i1"), ("flash", "i4"), ("flash", "i6")],
        identifiers=[
            ident("i1", "login", "l12"),
            ident("i2", "login", "l12"),
            ident("i3", "login", "l34"),
            ident("i4", "login", "l34"),
            ident("i5", "login", "l56"),
            ident("i6", "login", "l56"),
        ],
        consents=[
            ConsentRow("i2", "sms", "", "opt_in"),
            ConsentRow("i3", "sms", "flash", "opt_in"),
            ConsentRow("i5", "sms", "", "opt_in"),
        ],
    ),
    [
        out("i1", "flash", "sms", "no_consent", "i1"),
        sel("i4", "flash", "sms", "i3"),
        out("i6", "flash", "sms", "no_consent", "i5"),
    ],
)

case(
    "opt_in_of_one_channel_never_lends_to_another",
    "Check 5, two opt_in channels: j2 owns the person's push token (j1 has none) and opted in to sms, "
    "but j1's own phone is used for the sms row, so only j1's sms opt-ins count: no_consent. j3's "
    "sms opt-in does count for j4's row, which uses j3's phone (j4 has none): selected.",
    scen(
        [camp("flash", ("sms",))],
        [
            prof("j1", phone="+1555777"),
            prof("j2", push="tok-j2"),
            prof("j3", phone="+1555888"),
            prof("j4", push="tok-j4"),
        ],
        [("flash", "j1"), ("flash", "j4")],
        policy={"channels": {"sms": {"consent": "opt_in"}, "push": {"consent": "opt_in"}}},
        identifiers=[
            ident("j1", "login", "l-j12"),
            ident("j2", "login", "l-j12"),
            ident("j3", "login", "l-j34"),
            ident("j4", "login", "l-j34"),
        ],
        consents=[ConsentRow("j2", "sms", "", "opt_in"), ConsentRow("j3", "sms", "", "opt_in")],
    ),
    [
        out("j1", "flash", "sms", "no_consent", "j1"),
        sel("j4", "flash", "sms", "j3"),
    ],
)

# -------------------------------------------------------------------------- timezone

T_0630 = datetime(2026, 3, 2, 6, 30, tzinfo=UTC)  # 07:30 Berlin, 12:00 Kolkata, 01:30 New York

case(
    "one_timezone_per_person",
    "One timezone per person: the first valid one among its profiles, the person_id's first, then "
    "by customer_id. tz-a's is no zone, tz-b's is Berlin: at 06:30Z it is 07:30 there, quiet until "
    "08:00 Berlin (07:00Z) — for tz-c's row too, whose own zone (Kolkata, 12:00) is not quiet. "
    "tz-d has no valid zone ('asia/kolkata'): default_timezone New York, quiet until 13:00Z.",
    scen(
        [camp("app", ("push",))],
        [
            prof("tz-a", push="t1", tz="Mars/Olympus"),
            prof("tz-b", push="t2", tz="Europe/Berlin"),
            prof("tz-c", push="t3", tz="Asia/Kolkata"),
            prof("tz-d", push="t4", tz="asia/kolkata"),
        ],
        [("app", "tz-c"), ("app", "tz-d")],
        policy={
            "quiet_hours": {"push": {"start": "22:00", "end": "08:00"}},
            "default_timezone": "America/New_York",
        },
        identifiers=[ident(x, "device", "phone-9") for x in ("tz-a", "tz-b", "tz-c")],
    ),
    [
        sel("tz-c", "app", "push", "tz-a", datetime(2026, 3, 2, 7, 0, tzinfo=UTC)),
        sel("tz-d", "app", "push", "tz-d", datetime(2026, 3, 2, 13, 0, tzinfo=UTC)),
    ],
    at=T_0630,
)

case(
    "calendar_period_in_the_person_zone",
    "Calendar periods use the person's timezone: Berlin (pz-b's; pz-a has none). pz-c's message at "
    "23:30Z on Sunday is on Monday in Berlin, so today's one_a_day is used up for pz-c's row "
    "although pz-c's own zone (UTC) would put it on Sunday.",
    scen(
        [PROMO],
        [
            prof("pz-a", email="a@x.test"),
            prof("pz-b", email="b@x.test", tz="Europe/Berlin"),
            prof("pz-c", email="c@x.test", tz="UTC"),
        ],
        [("promo", "pz-c")],
        policy={"caps": [{"name": "one_a_day", "limit": 1, "period": "day"}]},
        identifiers=[ident(x, "login", "pz") for x in ("pz-a", "pz-b", "pz-c")],
        history=[HistoryRow("pz-c", "promo", "email", datetime(2026, 3, 1, 23, 30, tzinfo=UTC))],
    ),
    [out("pz-c", "promo", "email", "capped", "pz-a", "one_a_day")],
)

# -------------------------------------------------------------------- control groups

# a3 is in the global control group of salt s1 (5%), b0 is not.
assert _bucket("s1:a3") < 500 <= _bucket("s1:b0")
# a15 is in promo's 10% holdout and not in the global control group; b1 is the other way round.
assert _bucket("promo:a15") < 1000 <= _bucket("s1:a15")
assert _bucket("promo:b1") >= 1000 and _bucket("s1:b1") < 500

case(
    "control_groups_bucket_person_id",
    "Control groups bucket person_id: b0's row is holdout_global because its person a3 is in the "
    "global control group; b1's row is holdout_campaign because its person a15 is in promo's "
    "holdout (b1 on its own would be in the global control group and not in the holdout).",
    scen(
        [camp("promo", holdout_percent=10)],
        [
            prof("a3", email="a3@x.test"),
            prof("b0", email="A3@x.test"),
            prof("a15", email="a15@x.test"),
            prof("b1", email="a15@x.test"),
        ],
        [("promo", "b0"), ("promo", "b1")],
        policy={"global_control_percent": 5, "holdout_salt": "s1"},
    ),
    [
        out("b0", "promo", "email", "holdout_global", "a3"),
        out("b1", "promo", "email", "holdout_campaign", "a15"),
    ],
)

# ------------------------------------------------------------------------------- caps

case(
    "caps_count_history_of_every_profile",
    "Caps count the person's messages whichever profile they went to: h2's weekly message two days "
    "ago (on sms) fills weekly's campaign_frequency for h1. A message of ghost (no profile) counts "
    "for no one, although ghost has an identifier equal to h3's email (i3, i18).",
    scen(
        [camp("weekly", frequency={"limit": 1, "window": "7d"}), camp("promo", tags=["promo"])],
        [prof("h1", email="h@x.test"), prof("h2", email="H@x.test"), prof("h3", email="h3@x.test")],
        [("weekly", "h1"), ("promo", "h3")],
        policy={"caps": [{"name": "daily", "limit": 1, "window": "24h", "tag": "promo"}]},
        identifiers=[ident("ghost", "email", "h3@x.test")],
        history=[
            HistoryRow("h2", "weekly", "sms", T - timedelta(days=2)),
            HistoryRow("ghost", "promo", "email", T - timedelta(hours=1), ("promo",)),
        ],
    ),
    [out("h1", "weekly", "email", "capped", "h1", "campaign_frequency"), sel("h3", "promo", "email", "h3")],
)

case(
    "caps_count_history_of_every_profile_tagged",
    "A policy cap: h2's promo-tagged message an hour ago fills the daily promo cap for h1's row.",
    scen(
        [camp("promo", tags=["promo"])],
        [prof("h1", email="h@x.test"), prof("h2", email="H@x.test")],
        [("promo", "h1")],
        policy={"caps": [{"name": "daily", "limit": 1, "window": "24h", "tag": "promo"}]},
        history=[HistoryRow("h2", "x", "email", T - timedelta(hours=1), ("promo",))],
    ),
    [out("h1", "promo", "email", "capped", "h1", "daily")],
)

# ---------------------------------------------------------------------- nothing links

case(
    "nothing_links_person_is_the_profile",
    "Where nothing links, a person is one profile: person_id = customer_id, and the outcomes are "
    "exactly those of SPEC §3 (c2 has no phone and takes none from c1); ghost's person_id is empty.",
    scen(
        [camp("promo", ("sms", "email"))],
        [prof("c1", email="c1@x.test", phone="+1555777"), prof("c2", email="c2@x.test")],
        [("promo", "c1"), ("promo", "c2"), ("promo", "ghost")],
        policy={"channels": {"sms": {"consent": "opt_out"}}},
    ),
    [
        out("c1", "promo", "email", "channel_alternative", "c1"),
        sel("c1", "promo", "sms", "c1"),
        sel("c2", "promo", "email", "c2"),
        out("c2", "promo", "sms", "unreachable", "c2"),
        out("ghost", "promo", "email", "unknown_customer", None),
        out("ghost", "promo", "sms", "unknown_customer", None),
    ],
)
