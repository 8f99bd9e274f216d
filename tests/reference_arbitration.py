"""A plain-Python reference of SPEC.md §3 (arbitration), for testing the SQL engine.

Written to be obviously correct rather than fast: it loops person by person and
follows the SPEC's text line by line.  ``decide_reference(scenario, at)`` must agree
with ``baton.arbitration.simulate.decide_scenario`` on every scenario.

Interpretations pinned down here (the SQL engine uses the same ones):

* Dedup: per (campaign_id, customer_id) the row with the highest score is kept; ties go
  to the lowest ``seq`` (the first returned).  That row becomes one alternative per
  campaign channel, or only the row's ``channel`` when it names one.
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
from baton.spec import Channel

CAMPAIGN_FREQUENCY = "campaign_frequency"


# --------------------------------------------------------------------------- helpers


def bucket(key: str) -> int:
    """SPEC §3: the first 8 hex digits of SHA-256 of the UTF-8 key, as an integer, modulo 10000."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % 10000


def in_global_control(salt: str, customer_id: str, percent: float) -> bool:
    return bucket(f"{salt}:{customer_id}") < percent * 100


def in_campaign_holdout(campaign_id: str, customer_id: str, percent: float) -> bool:
    return bucket(f"{campaign_id}:{customer_id}") < percent * 100


@lru_cache(maxsize=1)
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def person_zone(customer: CustomerRow, default_timezone: str) -> ZoneInfo:
    tz = customer.timezone
    if tz is not None and tz in _known_zones():
        return ZoneInfo(tz)
    return ZoneInfo(str(default_timezone))


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


def _dedup(candidates: Iterable[CandidateRow]) -> list[CandidateRow]:
    best: dict[tuple[str, str], CandidateRow] = {}
    for row in candidates:
        key = (row.campaign_id, row.customer_id)
        cur = best.get(key)
        if cur is None or row.score > cur.score or (row.score == cur.score and row.seq < cur.seq):
            best[key] = row
    return sorted(best.values(), key=lambda r: r.seq)


def _checks_1_to_8(scenario: Scenario, alt: _Alt, customer: CustomerRow | None, T: datetime) -> None:
    """Set ``alt.outcome`` to the first of checks 1–8 that applies; else set its ``send_at``."""
    row = alt.row
    campaign = scenario.campaigns[row.campaign_id]
    policy = scenario.policy
    channel = alt.channel
    marketing = is_marketing(campaign)

    # 1 unknown_customer
    if customer is None:
        alt.outcome = "unknown_customer"
        return
    # 2 expired
    if row.expires_at is not None and row.expires_at <= T:
        alt.outcome = "expired"
        return
    # 3 unreachable
    address, is_email = address_for(customer, channel)
    if address is None:
        alt.outcome = "unreachable"
        return
    # 4 suppressed
    mine = normalise_address(address, is_email)
    for sup in scenario.suppressions:
        if sup.channel == channel and normalise_address(sup.address, is_email) == mine:
            alt.outcome = "suppressed"
            return
    if not marketing:
        alt.send_at = T
        return
    # 5 no_consent
    topic = campaign_topic(campaign)
    consents = [
        c for c in scenario.consents if c.customer_id == customer.customer_id and c.channel == channel
    ]
    relevant = [c for c in consents if c.topic in ("", topic)]
    if any(c.status == "opt_out" for c in relevant):
        alt.outcome = "no_consent"
        return
    if _s(policy.channel(Channel(channel)).consent) == "opt_in" and not any(
        c.status == "opt_in" for c in relevant
    ):
        alt.outcome = "no_consent"
        return
    # 6 quiet_hours
    zone = person_zone(customer, policy.default_timezone)
    send_at = T
    qh = _quiet_hours_of(policy, channel)
    if qh is not None:
        quiet, quiet_end = quiet_state(T, zone, qh[0], qh[1])
        if quiet:
            assert quiet_end is not None
            if row.expires_at is not None and quiet_end > row.expires_at:
                alt.outcome = "quiet_hours"
                return
            send_at = quiet_end
    # 7 holdout_global
    if in_global_control(str(policy.holdout_salt), customer.customer_id, policy.global_control_percent):
        alt.outcome = "holdout_global"
        return
    # 8 holdout_campaign
    if in_campaign_holdout(row.campaign_id, customer.customer_id, campaign.holdout_percent):
        alt.outcome = "holdout_campaign"
        return
    alt.send_at = send_at


def _quiet_hours_of(policy: object, channel: str) -> tuple[time, time] | None:
    for ch, qh in (getattr(policy, "quiet_hours", None) or {}).items():
        if _s(ch) == channel:
            return qh.start, qh.end
    return None


def decide_reference(scenario: Scenario, at: datetime) -> list[Decision]:
    """Decide one cycle at decision time ``at`` (SPEC §3); one Decision per alternative."""
    T = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    T = T.astimezone(UTC)
    customers = {c.customer_id: c for c in scenario.customers}
    rows = _dedup(scenario.candidates)

    # Alternatives and checks 1-9, per candidate row.
    alts_by_person: dict[str, list[_Alt]] = {}
    survivors_by_person: dict[str, list[_Alt]] = {}
    for row in rows:
        campaign = scenario.campaigns[row.campaign_id]
        channels = [row.channel] if row.channel is not None else list(campaign_channels(campaign))
        customer = customers.get(row.customer_id)
        alts = [_Alt(row=row, channel=ch) for ch in channels]
        survivor: _Alt | None = None
        for alt in alts:
            _checks_1_to_8(scenario, alt, customer, T)
            if alt.outcome is None:
                if survivor is None:
                    survivor = alt
                else:
                    # 9 channel_alternative: an earlier channel of this campaign survived.
                    alt.outcome = "channel_alternative"
                    alt.send_at = None
        alts_by_person.setdefault(row.customer_id, []).extend(alts)
        if survivor is not None:
            survivors_by_person.setdefault(row.customer_id, []).append(survivor)

    # Ranking and caps (checks 10-11), per person.
    for customer_id, survivors in survivors_by_person.items():
        customer = customers[customer_id]
        zone = person_zone(customer, scenario.policy.default_timezone)
        history = [h for h in scenario.history if h.customer_id == customer_id]
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
            blocking = _first_blocking_cap(scenario, alt, history, selected, T, zone)
            if blocking is None:
                alt.outcome = "selected"
                selected.append(alt)
            else:
                alt.outcome = "capped"
                alt.reason = blocking
                alt.send_at = None

    out: list[Decision] = []
    for alts in alts_by_person.values():
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
    customer_id: str,
    decisions: Iterable[Decision],
    T: datetime,
) -> int:
    """Recompute a cap's used room for one person from history plus the selected decisions.

    For invariant checks on engine output: every selected decision counts (from T), when
    the cap applies to it and it counts toward caps (always, for ``campaign_frequency``).
    """
    customer = next(c for c in scenario.customers if c.customer_id == customer_id)
    zone = person_zone(customer, scenario.policy.default_timezone)
    frequency = cap.campaign_id is not None
    used = 0
    for h in scenario.history:
        if h.customer_id != customer_id or not cap.applies(h.campaign_id, h.channel, h.tags):
            continue
        if (frequency or h.counts) and cap.in_range(h.decided_at, T, zone):
            used += 1
    for d in decisions:
        if d.customer_id != customer_id or d.outcome != "selected":
            continue
        campaign = scenario.campaigns[d.campaign_id]
        if not cap.applies(d.campaign_id, d.channel, campaign_tags(campaign)):
            continue
        if frequency or campaign_counts_toward_caps(campaign):
            used += 1
    return used


# --------------------------------------------------------------------------- invariants


def check_invariants(s: Scenario, T: datetime, decisions: list[Decision]) -> None:
    """Properties of any correct output, whatever the reference says."""
    keys = [(d.customer_id, d.campaign_id, str(d.channel)) for d in decisions]
    assert len(keys) == len(set(keys)), "one decision per alternative"
    assert {str(d.outcome) for d in decisions} <= set(OUTCOMES)
    customers = {c.customer_id for c in s.customers}
    policy = s.policy
    for d in decisions:
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
        # The global control group gets no marketing at all.
        if outcome == "selected" and is_marketing(campaign) and d.customer_id in customers:
            assert not in_global_control(
                str(policy.holdout_salt), d.customer_id, policy.global_control_percent
            ), d

    # At most one selected message per (person, campaign).
    selected = [d for d in decisions if str(d.outcome) == "selected"]
    per_campaign = [(d.customer_id, d.campaign_id) for d in selected]
    assert len(per_campaign) == len(set(per_campaign))

    # No person exceeds a cap: when the cap let a marketing message through, the person's
    # counting history plus the counting marketing messages selected now fit in the limit.
    rules: dict[str, list[CapRule]] = {cid: caps_for(s, cid) for cid in s.campaigns}
    for customer_id in {d.customer_id for d in selected}:
        mine = [
            d for d in selected if d.customer_id == customer_id and is_marketing(s.campaigns[d.campaign_id])
        ]
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
                from_history = used_room(s, rule, customer_id, [], T)
                counting = [
                    d
                    for d in applicable
                    if rule.campaign_id is not None or campaign_counts_toward_caps(s.campaigns[d.campaign_id])
                ]
                assert from_history < rule.limit, (customer_id, rule, from_history)
                assert from_history + len(counting) <= rule.limit, (customer_id, rule, from_history, counting)
