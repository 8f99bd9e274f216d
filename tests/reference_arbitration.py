"""A plain-Python reference of SPEC.md §3 (arbitration) and §6 (identity), for testing the SQL engine.

Written to be obviously correct rather than fast: it resolves profiles into persons with a
breadth-first search over the shared identifier values, loops person by person and follows
the SPEC's text line by line.  ``decide_reference(scenario, at)`` must agree with
``baton.arbitration.simulate.decide_scenario`` on every scenario.

Interpretations pinned down here (the SQL engine uses the same ones):

* Dedup: per (campaign_id, person) the row with the highest score is kept; ties go to the
  smallest customer_id, then to the lowest ``seq`` (the first returned) — see identity 5
  below; where nothing links that is per (campaign_id, customer_id).  That row becomes one
  alternative per campaign channel, or only the row's ``channel`` when it names one.
* An address is missing when it is ``None`` or blank.  ``audience`` uses the email when
  there is one, else the phone.
* Suppression addresses and customer addresses are compared after ``strip()``; email
  addresses (channel ``email``, and ``audience`` when it uses the email) also after
  ``lower()``.
* A customer's timezone is used when it is exactly (case-sensitively) an IANA name that
  ``zoneinfo`` knows; otherwise ``policy.default_timezone``.
* Local date-times built from a zone (end of quiet hours, start of a period) are
  resolved as PostgreSQL does: skipped wall times with the offset before the gap,
  repeated wall times as the later (standard-time) instant.
* Quiet hours never touch transactional campaigns (their ``send_at`` is ``T``).
* ``reason`` is ``None`` for every outcome but ``capped``.

Identity (SPEC §6), as pinned by the lead:

1. Identifier kinds: email, phone, login, cookie, device, push_token.  A profile's own
   ``email``/``phone``/``push_token`` columns are identifiers of kinds email/phone/push_token
   of that profile, always known in a scenario.
2. Values are normalised with ``baton.identity.normalize.normalize(kind, value)``; a
   normalised value is blocked when ``is_blocked(kind, norm, identity.blocked_values)``
   (junk, or equal, case-insensitively, to a blocked value normalised as that kind).
   Blocked values identify no one.
3. Two profiles are linked when they hold the same (kind, normalised unblocked value) with
   kind in ``identity.link_on``, unless that (kind, value) is held by more than
   ``identity.max_profiles_per_value`` distinct profiles (counting only identifiers known
   at T) or is excluded (``exclusions.csv``: kind + value, the value normalised as that
   kind).  An identifier row is known at T when its ``first_seen`` is empty or ≤ T.
   Identifier rows whose customer_id is no profile are ignored entirely (neither link
   nor count).
4. A person is a connected component of linked profiles; ``person_id`` is the smallest
   customer_id in it (byte order); a profile linked to no one is its own person.
5. Candidate rows of all the person's profiles form one ranking.  Several rows of one
   campaign for one person: the highest score wins, ties the smallest customer_id (byte
   order), then the lowest seq; the others get no decision at all.  Rows whose
   customer_id is no profile are deduplicated per customer_id as before
   (``unknown_customer``), with ``person_id`` ``None``.
6. Check 3's address is the row's own profile's address for the channel; where it has
   none, the first profile of the person that has one, ordered ``person_id``'s profile
   first, then by customer_id (byte order), with the same per-channel rule for each
   profile (audience: that profile's email, else its phone).  Checks 4 and 5 concern that
   address.
7. Check 5: an opt-out on any profile of the person counts (channel-wide, or channel and
   the campaign's topic); an opt-in counts only from the profile whose address is used.
8. One timezone per person: the first valid one among its profiles in the order of 6
   (``person_id``'s first, then by customer_id), else ``default_timezone``.
9. Control groups bucket ``person_id``.
10. Caps count the person's history: ``history.csv`` rows of any of its profiles.  Rows
    of a customer_id that is no profile count for no one (no decision of theirs reaches
    the caps).
11. Every decision carries ``person_id`` (``None`` for unknown customers).
12. Where nothing links, a person is one profile and every outcome is exactly as before.

Identity choices made here where the pinned list is silent (the SQL engine must make the
same ones):

13. Exclusions compare the normalised values exactly (an email exclusion is therefore
    case-insensitive, a login exclusion case-sensitive), per kind, whatever ``link_on``
    says; ``blocked_values`` compare case-insensitively for every kind (``is_blocked``).
14. ``max_profiles_per_value`` counts the distinct profiles that hold the (kind, value)
    at T, through their own columns or identifier rows alike; a profile holding it twice
    counts once.  Exactly ``max_profiles_per_value`` holders still link.
15. Duplicate identifier rows are allowed: a (profile, kind, value) is known at T when
    any of its rows is (the earliest ``first_seen`` decides).
16. Blocking is about linking only: a junk own column (``email: null``) is still the
    profile's address for check 3, as before; identifiers from ``identifiers.csv`` are
    never addresses.
17. Deduplication happens before any check, as before: the winning row of a (campaign,
    person) may be expired or unreachable while a losing row of another profile would not
    have been; the row's ``channel`` and ``expires_at`` play no part in choosing it.
18. Consents, suppressions and history rows of a customer_id that is no profile match no
    person.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, available_timezones

from baton.arbitration.scenario import (
    OUTCOMES,
    CandidateRow,
    CustomerRow,
    Decision,
    HistoryRow,
    Scenario,
    campaign_channels,
    campaign_counts_toward_caps,
    campaign_tags,
    campaign_topic,
)
from baton.identity.normalize import (
    DEFAULT_LINK_ON,
    DEFAULT_MAX_PROFILES_PER_VALUE,
    PROFILE_COLUMNS,
    is_blocked,
    normalize,
)
from baton.spec import Campaign, Channel

CAMPAIGN_FREQUENCY = "campaign_frequency"


# --------------------------------------------------------------------------- helpers


def bucket(key: str) -> int:
    """SPEC §3: the first 8 hex digits of SHA-256 of the UTF-8 key, as an integer, modulo 10000."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % 10000


def in_global_control(salt: str, person_id: str, percent: float) -> bool:
    return bucket(f"{salt}:{person_id}") < percent * 100


def in_campaign_holdout(campaign_id: str, person_id: str, percent: float) -> bool:
    return bucket(f"{campaign_id}:{person_id}") < percent * 100


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _present(text: str | None) -> bool:
    return text is not None and text.strip() != ""


def address_for(customer: CustomerRow, channel: str) -> tuple[str | None, bool]:
    """The address used for ``channel`` and whether it is an email address."""
    if channel == "email":
        return (customer.email if _present(customer.email) else None), True
    if channel == "sms":
        return (customer.phone if _present(customer.phone) else None), False
    if channel == "push":
        return (customer.push_token if _present(customer.push_token) else None), False
    if channel == "direct_mail":
        return (customer.postal_address if _present(customer.postal_address) else None), False
    if channel == "audience":
        if _present(customer.email):
            return customer.email, True
        if _present(customer.phone):
            return customer.phone, False
        return None, False
    raise ValueError(f"unknown channel {channel!r}")


def normalise_address(address: str, is_email: bool) -> str:
    a = address.strip()
    return a.lower() if is_email else a


def local_at(zone: ZoneInfo, day: date, at: time) -> datetime:
    """The UTC instant of local ``day`` ``at`` in ``zone``, resolved as PostgreSQL's
    ``AT TIME ZONE`` does: a wall time skipped by a spring-forward gap is read with the
    offset before the gap (fold=0); a wall time that happens twice (fall back) is the
    later instant, in standard time (fold=1)."""
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=zone, fold=0)
    second = naive.replace(tzinfo=zone, fold=1)
    exists = first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == naive
    if exists and first.utcoffset() != second.utcoffset():
        return second.astimezone(UTC)
    return first.astimezone(UTC)


def quiet_state(T: datetime, zone: ZoneInfo, start: time, end: time) -> tuple[bool, datetime | None]:
    """Whether T is in quiet hours in ``zone``, and if so the UTC end of those quiet hours."""
    local = T.astimezone(zone)
    t = local.time().replace(tzinfo=None)
    if start <= end:
        quiet = start <= t < end
    else:
        quiet = t >= start or t < end
    if not quiet:
        return False, None
    end_day = local.date()
    if start > end and t >= start:
        end_day = end_day + timedelta(days=1)
    return True, local_at(zone, end_day, end)


def period_start(T: datetime, zone: ZoneInfo, period: str) -> datetime:
    """UTC start of the local calendar ``period`` (day, week from Monday, month) containing T."""
    d = T.astimezone(zone).date()
    if period == "day":
        start = d
    elif period == "week":
        start = d - timedelta(days=d.weekday())
    elif period == "month":
        start = d.replace(day=1)
    else:
        raise ValueError(f"unknown period {period!r}")
    return local_at(zone, start, time(0, 0))


def _s(x: object) -> str:
    """Plain string of an enum member or a string."""
    value = getattr(x, "value", x)
    return str(value)


def is_marketing(campaign: object) -> bool:
    return _s(campaign.category) != "transactional"  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- identity


def _by_bytes(customer_id: str) -> bytes:
    """Byte order of ids (SPEC: "byte order")."""
    return customer_id.encode()


def identity_settings(policy: object) -> tuple[tuple[str, ...], int, tuple[str, ...]]:
    """The policy's ``identity:`` keys: (link_on, max_profiles_per_value, blocked_values)."""
    identity = getattr(policy, "identity", None)
    if identity is None:
        return DEFAULT_LINK_ON, DEFAULT_MAX_PROFILES_PER_VALUE, ()
    return (
        tuple(_s(k) for k in identity.link_on),
        int(identity.max_profiles_per_value),
        tuple(str(v) for v in identity.blocked_values),
    )


@dataclass(frozen=True)
class Identity:
    """The persons of a scenario at one decision time."""

    person_of: dict[str, str]
    """customer_id of every profile -> its person_id."""
    profiles_of: dict[str, tuple[str, ...]]
    """person_id -> its profiles, the person_id's first, then by customer_id (byte order)."""
    linking: dict[tuple[str, str], frozenset[str]]
    """(kind, normalised value) -> its holders, for every value that links (two or more holders)."""


def known_identifiers(scenario: Scenario, T: datetime) -> set[tuple[str, str, str]]:
    """Every (customer_id, kind, normalised value) held by a profile at T that is not blocked.

    The profile's own email, phone and push_token columns always; an ``identifiers.csv``
    row when its customer_id is a profile and its ``first_seen`` is empty or ≤ T.
    """
    _, _, blocked_values = identity_settings(scenario.policy)
    profiles = {c.customer_id for c in scenario.customers}
    held: set[tuple[str, str, str]] = set()
    for c in scenario.customers:
        for kind in PROFILE_COLUMNS:
            value = getattr(c, kind)
            if value is not None:
                held.add((c.customer_id, kind, normalize(kind, value)))
    for i in scenario.identifiers:
        if i.customer_id not in profiles:
            continue
        if i.first_seen is not None and i.first_seen > T:
            continue
        held.add((i.customer_id, i.kind, normalize(i.kind, i.value)))
    return {(cid, kind, norm) for cid, kind, norm in held if not is_blocked(kind, norm, blocked_values)}


def resolve_persons(scenario: Scenario, T: datetime) -> Identity:
    """SPEC §6: the persons at decision time T (connected components of linked profiles)."""
    link_on, max_holders, _ = identity_settings(scenario.policy)
    excluded = {(e.kind, normalize(e.kind, e.value)) for e in scenario.exclusions}

    holders: dict[tuple[str, str], set[str]] = {}
    for cid, kind, norm in known_identifiers(scenario, T):
        if kind in link_on:
            holders.setdefault((kind, norm), set()).add(cid)
    linking = {
        value: frozenset(who)
        for value, who in holders.items()
        if 2 <= len(who) <= max_holders and value not in excluded
    }

    # Profile -> the profiles it shares a linking value with.
    neighbours: dict[str, set[str]] = {c.customer_id: set() for c in scenario.customers}
    for who in linking.values():
        for cid in who:
            neighbours[cid] |= who - {cid}

    person_of: dict[str, str] = {}
    profiles_of: dict[str, tuple[str, ...]] = {}
    for start in sorted(neighbours, key=_by_bytes):
        if start in person_of:
            continue
        component = {start}
        queue = [start]
        while queue:
            cid = queue.pop()
            for other in neighbours[cid]:
                if other not in component:
                    component.add(other)
                    queue.append(other)
        ordered = tuple(sorted(component, key=_by_bytes))  # the smallest id first: the person_id
        person_id = ordered[0]
        profiles_of[person_id] = ordered
        for cid in component:
            person_of[cid] = person_id
    return Identity(person_of=person_of, profiles_of=profiles_of, linking=linking)


@dataclass(frozen=True)
class Person:
    """One person as the checks see it: its id, its profiles in address order, its zone."""

    person_id: str
    profiles: tuple[CustomerRow, ...]
    zone: ZoneInfo


def person_zone(profiles: Iterable[CustomerRow], default_timezone: str) -> ZoneInfo:
    """The first valid timezone among ``profiles`` (in the order given), else the default."""
    for customer in profiles:
        tz = customer.timezone
        if tz is not None and tz in _known_zones():
            return ZoneInfo(tz)
    return ZoneInfo(str(default_timezone))


def persons_of(scenario: Scenario, identity: Identity) -> dict[str, Person]:
    """person_id -> :class:`Person`."""
    customers = {c.customer_id: c for c in scenario.customers}
    out: dict[str, Person] = {}
    for person_id, ids in identity.profiles_of.items():
        profiles = tuple(customers[cid] for cid in ids)
        out[person_id] = Person(
            person_id, profiles, person_zone(profiles, str(scenario.policy.default_timezone))
        )
    return out


def person_address(
    customer: CustomerRow, person: Person, channel: str
) -> tuple[str | None, bool, CustomerRow | None]:
    """Check 3's address: (address, is it an email, the profile that owns it).

    The row's own profile's address for the channel; where it has none, the first of the
    person's profiles (the person_id's first, then by customer_id) that has one.
    """
    for profile in (customer, *person.profiles):
        address, is_email = address_for(profile, channel)
        if address is not None:
            return address, is_email, profile
    return None, False, None


# --------------------------------------------------------------------------- caps


@dataclass(frozen=True)
class CapRule:
    """A cap as the reference sees it (policy caps and ``campaign_frequency`` alike)."""

    name: str
    limit: int
    window: timedelta | None
    period: str | None
    channel: str | None
    tag: str | None
    campaign_id: str | None  # set for campaign_frequency only

    def applies(self, campaign_id: str, channel: str, tags: Iterable[str]) -> bool:
        if self.campaign_id is not None:
            return campaign_id == self.campaign_id
        if self.channel is not None and self.channel != channel:
            return False
        if self.tag is not None and self.tag not in tuple(tags):
            return False
        return True

    def in_range(self, decided_at: datetime, T: datetime, zone: ZoneInfo) -> bool:
        if self.window is not None:
            return T - self.window < decided_at <= T
        assert self.period is not None
        return period_start(T, zone, self.period) <= decided_at <= T


def _cap_rule(cap: object, campaign_id: str | None = None) -> CapRule:
    window = getattr(cap, "window", None)
    period = getattr(cap, "period", None)
    channel = getattr(cap, "channel", None)
    tag = getattr(cap, "tag", None)
    return CapRule(
        name=str(cap.name),  # type: ignore[attr-defined]
        limit=int(cap.limit),  # type: ignore[attr-defined]
        window=window,
        period=None if period is None else _s(period),
        channel=None if channel is None else _s(channel),
        tag=None if tag is None else str(tag),
        campaign_id=campaign_id,
    )


def caps_for(scenario: Scenario, campaign_id: str) -> list[CapRule]:
    """Policy caps in file order, then the campaign's ``campaign_frequency`` if it has one."""
    rules = [_cap_rule(c) for c in scenario.policy.caps]
    freq = getattr(scenario.campaigns[campaign_id], "frequency", None)
    if freq is not None:
        rules.append(_cap_rule(freq, campaign_id=campaign_id))
    return rules


# --------------------------------------------------------------------------- engine


@dataclass
class _Alt:
    row: CandidateRow
    channel: str
    outcome: str | None = None  # None: survived checks 1-8 so far
    send_at: datetime | None = None
    reason: str | None = None


def _better(a: CandidateRow, b: CandidateRow) -> bool:
    """Whether row ``a`` beats row ``b`` of the same campaign and person: the higher score,
    then the smaller customer_id (byte order), then the lower seq (the first returned)."""
    if a.score != b.score:
        return a.score > b.score
    if a.customer_id != b.customer_id:
        return _by_bytes(a.customer_id) < _by_bytes(b.customer_id)
    return a.seq < b.seq


def _dedup(candidates: Iterable[CandidateRow], person_of: dict[str, str]) -> list[CandidateRow]:
    """One row per (campaign, person); rows of unknown customers one per (campaign, customer_id)."""
    best: dict[tuple[str, str, str], CandidateRow] = {}
    for row in candidates:
        person_id = person_of.get(row.customer_id)
        if person_id is None:
            key = (row.campaign_id, "unknown customer", row.customer_id)
        else:
            key = (row.campaign_id, "person", person_id)
        cur = best.get(key)
        if cur is None or _better(row, cur):
            best[key] = row
    return sorted(best.values(), key=lambda r: r.seq)


def _checks_1_to_8(
    scenario: Scenario, alt: _Alt, customer: CustomerRow | None, person: Person | None, T: datetime
) -> None:
    """Set ``alt.outcome`` to the first of checks 1–8 that applies; else set its ``send_at``."""
    row = alt.row
    campaign = scenario.campaigns[row.campaign_id]
    policy = scenario.policy
    channel = alt.channel
    marketing = is_marketing(campaign)

    # 1 unknown_customer
    if customer is None or person is None:
        alt.outcome = "unknown_customer"
        return
    # 2 expired
    if row.expires_at is not None and row.expires_at <= T:
        alt.outcome = "expired"
        return
    # 3 unreachable: the row's profile's address, else the first of the person's profiles'.
    address, is_email, owner = person_address(customer, person, channel)
    if address is None or owner is None:
        alt.outcome = "unreachable"
        return
    # 4 suppressed
    if _suppressed(scenario, channel, address, is_email):
        alt.outcome = "suppressed"
        return
    if not marketing:
        alt.send_at = T
        return
    # 5 no_consent: an opt-out of any of the person's profiles; an opt-in of the address's owner.
    if _no_consent(scenario, campaign, channel, person, owner):
        alt.outcome = "no_consent"
        return
    # 6 quiet_hours, in the person's zone: sent when they end, unless the candidate expires first
    send_at = T
    quiet_end = _quiet_hours_end(policy, channel, T, person.zone)
    if quiet_end is not None:
        if row.expires_at is not None and quiet_end > row.expires_at:
            alt.outcome = "quiet_hours"
            return
        send_at = quiet_end
    # 7 holdout_global, by person_id
    if in_global_control(str(policy.holdout_salt), person.person_id, policy.global_control_percent):
        alt.outcome = "holdout_global"
        return
    # 8 holdout_campaign, by person_id
    if in_campaign_holdout(row.campaign_id, person.person_id, campaign.holdout_percent):
        alt.outcome = "holdout_campaign"
        return
    alt.send_at = send_at


def _suppressed(scenario: Scenario, channel: str, address: str, is_email: bool) -> bool:
    """Check 4: the address is on the channel's suppression list (compared normalised)."""
    mine = normalise_address(address, is_email)
    return any(
        sup.channel == channel and normalise_address(sup.address, is_email) == mine
        for sup in scenario.suppressions
    )


def _no_consent(
    scenario: Scenario, campaign: Campaign, channel: str, person: Person, owner: CustomerRow
) -> bool:
    """Check 5: an opt-out (channel-wide or of the campaign's topic) of any of the person's profiles,
    or, on an opt_in channel, no opt-in of the profile whose address is used."""
    topic = campaign_topic(campaign)
    profile_ids = {p.customer_id for p in person.profiles}
    relevant = [
        c
        for c in scenario.consents
        if c.customer_id in profile_ids and c.channel == channel and c.topic in ("", topic)
    ]
    if any(c.status == "opt_out" for c in relevant):
        return True
    return _s(scenario.policy.channel(Channel(channel)).consent) == "opt_in" and not any(
        c.status == "opt_in" and c.customer_id == owner.customer_id for c in relevant
    )


def _quiet_hours_end(policy: object, channel: str, T: datetime, zone: ZoneInfo) -> datetime | None:
    """Check 6: the end of the channel's quiet hours in ``zone`` when T lies in them, else None."""
    qh = _quiet_hours_of(policy, channel)
    if qh is None:
        return None
    quiet, quiet_end = quiet_state(T, zone, qh[0], qh[1])
    if not quiet:
        return None
    assert quiet_end is not None
    return quiet_end


def _quiet_hours_of(policy: object, channel: str) -> tuple[time, time] | None:
    for ch, qh in (getattr(policy, "quiet_hours", None) or {}).items():
        if _s(ch) == channel:
            return qh.start, qh.end
    return None


def decide_reference(scenario: Scenario, at: datetime) -> list[Decision]:
    """Decide one cycle at decision time ``at`` (SPEC §3, §6); one Decision per alternative."""
    T = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    T = T.astimezone(UTC)
    customers = {c.customer_id: c for c in scenario.customers}
    identity = resolve_persons(scenario, T)
    persons = persons_of(scenario, identity)
    rows = _dedup(scenario.candidates, identity.person_of)

    # Alternatives and checks 1-9, per candidate row.
    alts: list[_Alt] = []
    survivors_by_person: dict[str, list[_Alt]] = {}
    for row in rows:
        campaign = scenario.campaigns[row.campaign_id]
        channels = [row.channel] if row.channel is not None else list(campaign_channels(campaign))
        customer = customers.get(row.customer_id)
        person_id = identity.person_of.get(row.customer_id)
        person = None if person_id is None else persons[person_id]
        row_alts = [_Alt(row=row, channel=ch) for ch in channels]
        survivor: _Alt | None = None
        for alt in row_alts:
            _checks_1_to_8(scenario, alt, customer, person, T)
            if alt.outcome is None:
                if survivor is None:
                    survivor = alt
                else:
                    # 9 channel_alternative: an earlier channel of this campaign survived.
                    alt.outcome = "channel_alternative"
                    alt.send_at = None
        alts.extend(row_alts)
        if survivor is not None:
            assert person_id is not None
            survivors_by_person.setdefault(person_id, []).append(survivor)

    # Ranking and caps (checks 10-11), per person.
    for person_id, survivors in survivors_by_person.items():
        person = persons[person_id]
        history = [h for h in scenario.history if identity.person_of.get(h.customer_id) == person_id]
        ranked = sorted(
            survivors,
            key=lambda a: (
                -int(scenario.campaigns[a.row.campaign_id].priority),
                -a.row.score,
                a.row.campaign_id.encode(),
            ),
        )
        selected: list[_Alt] = []
        for alt in ranked:
            campaign = scenario.campaigns[alt.row.campaign_id]
            if not is_marketing(campaign):
                alt.outcome = "selected"
                selected.append(alt)
                continue
            blocking = _first_blocking_cap(scenario, alt, history, selected, T, person.zone)
            if blocking is None:
                alt.outcome = "selected"
                selected.append(alt)
            else:
                alt.outcome = "capped"
                alt.reason = blocking
                alt.send_at = None

    out: list[Decision] = []
    for alt in alts:
        assert alt.outcome is not None
        out.append(
            Decision(
                customer_id=alt.row.customer_id,
                campaign_id=alt.row.campaign_id,
                channel=alt.channel,
                outcome=alt.outcome,
                reason=alt.reason if alt.outcome == "capped" else None,
                send_at=alt.send_at if alt.outcome == "selected" else None,
                person_id=identity.person_of.get(alt.row.customer_id),
            )
        )
    return out


def _first_blocking_cap(
    scenario: Scenario,
    alt: _Alt,
    history: list[HistoryRow],
    selected: list[_Alt],
    T: datetime,
    zone: ZoneInfo,
) -> str | None:
    campaign_id = alt.row.campaign_id
    tags = campaign_tags(scenario.campaigns[campaign_id])
    for cap in caps_for(scenario, campaign_id):
        if not cap.applies(campaign_id, alt.channel, tags):
            continue
        frequency = cap.campaign_id is not None
        used = 0
        for h in history:
            if not cap.applies(h.campaign_id, h.channel, h.tags):
                continue
            if not (frequency or h.counts):
                continue
            if cap.in_range(h.decided_at, T, zone):
                used += 1
        for s in selected:
            s_campaign = scenario.campaigns[s.row.campaign_id]
            if not cap.applies(s.row.campaign_id, s.channel, campaign_tags(s_campaign)):
                continue
            if frequency or campaign_counts_toward_caps(s_campaign):
                used += 1
        if used >= cap.limit:
            return cap.name
    return None


def used_room(
    scenario: Scenario,
    cap: CapRule,
    person_id: str,
    decisions: Iterable[Decision],
    T: datetime,
) -> int:
    """Recompute a cap's used room for one person from history plus the selected decisions.

    For invariant checks on engine output: the history of every profile of the person,
    and every selected decision of any of its profiles (from T), when the cap applies to
    it and it counts toward caps (always, for ``campaign_frequency``).
    """
    identity = resolve_persons(scenario, T)
    zone = persons_of(scenario, identity)[person_id].zone
    frequency = cap.campaign_id is not None
    used = 0
    for h in scenario.history:
        if identity.person_of.get(h.customer_id) != person_id:
            continue
        if not cap.applies(h.campaign_id, h.channel, h.tags):
            continue
        if (frequency or h.counts) and cap.in_range(h.decided_at, T, zone):
            used += 1
    for d in decisions:
        if identity.person_of.get(d.customer_id) != person_id or d.outcome != "selected":
            continue
        campaign = scenario.campaigns[d.campaign_id]
        if not cap.applies(d.campaign_id, d.channel, campaign_tags(campaign)):
            continue
        if frequency or campaign_counts_toward_caps(campaign):
            used += 1
    return used


# --------------------------------------------------------------------------- invariants


def check_invariants(s: Scenario, T: datetime, decisions: list[Decision]) -> None:
    """Properties of any correct output, whatever the reference says.

    Persons are those of :func:`resolve_persons` (the plain reading of SPEC §6); the output's
    own ``person_id`` must name them.
    """
    keys = [(d.customer_id, d.campaign_id, str(d.channel)) for d in decisions]
    assert len(keys) == len(set(keys)), "one decision per alternative"
    assert {str(d.outcome) for d in decisions} <= set(OUTCOMES)
    customers = {c.customer_id for c in s.customers}
    identity = resolve_persons(s, T)
    for d in decisions:
        _check_decision(s, T, d, customers, identity.person_of)

    # One candidate row per (person, campaign): all its decisions come from one profile.
    row_of: dict[tuple[str, str], str] = {}
    for d in decisions:
        if d.person_id is None:
            continue
        first = row_of.setdefault((d.person_id, d.campaign_id), d.customer_id)
        assert first == d.customer_id, ("two profiles of one person decided for one campaign", d, first)

    # At most one selected message per (person, campaign).
    selected = [d for d in decisions if str(d.outcome) == "selected"]
    per_campaign = [(d.person_id or d.customer_id, d.campaign_id) for d in selected]
    assert len(per_campaign) == len(set(per_campaign))

    _check_caps(s, T, selected)


def _check_decision(
    s: Scenario, T: datetime, d: Decision, customers: set[str], person_of: dict[str, str]
) -> None:
    """The properties of one decision on its own: send_at, cap names, person_id, the global control group."""
    campaign = s.campaigns[d.campaign_id]
    outcome = str(d.outcome)
    if outcome == "selected":
        assert d.send_at is not None and d.send_at >= T, d
        if not is_marketing(campaign):
            assert d.send_at == T, d
    else:
        assert d.send_at is None, d
    if outcome == "capped":
        assert is_marketing(campaign), d
        assert d.reason in {r.name for r in caps_for(s, d.campaign_id)}, d
    if d.customer_id not in customers:
        assert outcome == "unknown_customer", d
        assert d.person_id is None, d
    else:
        assert outcome != "unknown_customer", d
        # person_id: a profile of the person, the smallest id of them (byte order)
        assert d.person_id == person_of[d.customer_id], d
        assert d.person_id in customers and _by_bytes(d.person_id) <= _by_bytes(d.customer_id), d
    # The global control group gets no marketing at all.
    if outcome == "selected" and is_marketing(campaign) and d.person_id is not None:
        policy = s.policy
        assert not in_global_control(str(policy.holdout_salt), d.person_id, policy.global_control_percent), d


def _check_caps(s: Scenario, T: datetime, selected: list[Decision]) -> None:
    """No person exceeds a cap: when the cap let a marketing message through, the person's
    counting history plus the counting marketing messages selected now fit in the limit."""
    rules: dict[str, list[CapRule]] = {cid: caps_for(s, cid) for cid in s.campaigns}
    for person_id in {d.person_id for d in selected if d.person_id is not None}:
        mine = [d for d in selected if d.person_id == person_id and is_marketing(s.campaigns[d.campaign_id])]
        seen: set[tuple[str, str | None]] = set()
        for cid in s.campaigns:
            for rule in rules[cid]:
                if (rule.name, rule.campaign_id) in seen:
                    continue
                seen.add((rule.name, rule.campaign_id))
                applicable = [
                    d
                    for d in mine
                    if rule.applies(d.campaign_id, str(d.channel), campaign_tags(s.campaigns[d.campaign_id]))
                ]
                if not applicable:
                    continue
                from_history = used_room(s, rule, person_id, [], T)
                counting = [
                    d
                    for d in applicable
                    if rule.campaign_id is not None or campaign_counts_toward_caps(s.campaigns[d.campaign_id])
                ]
                assert from_history < rule.limit, (person_id, rule, from_history)
                assert from_history + len(counting) <= rule.limit, (person_id, rule, from_history, counting)
