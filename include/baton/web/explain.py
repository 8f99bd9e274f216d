"""Every decision explained in words ("why did she get this?"), from rows the store keeps.

Pure functions over plain rows: :func:`explain` takes one alternative's decision (SPEC §3: its
outcome and reason) and the :class:`PersonFacts` around it — the person's consents, the
suppressions of their addresses, their timezone, the messages that counted toward their caps,
their other decisions of the same cycle — and answers one sentence, e.g.

* ``capped by daily_total: 2 of 2 already used by weekly_newsletter (09:00) and price_drop (10:00)``
* ``held out: in the global control group (5%, permanent until the salt changes)``
* ``no consent: opted out of email/newsletter on 2026-10-14 via the unsubscribe link``

The caps are counted as the engine counts them (SPEC §3): a cap applies to a message when its
channel (if any) is the message's and its tag (if any) is among the message's tags; a message
counts unless it was cancelled, expired or failed *when the cycle read the history* (its start; a
message that failed later still counted then) and unless its campaign does not count toward caps — except for
``campaign_frequency``, which counts every message of its campaign.  The room used is the
person's counting messages decided in the window ``(T − window, T)`` (or from the start of the
local period), plus the messages selected earlier in the same cycle's walk (higher in the
person's ranking).  The person's messages are those of the person's profiles that were recorded for
the decision's person (``person_id`` as of each message's cycle).  Control groups are SPEC §3's SHA-256 buckets of the ``person_id``.

Times are shown in UTC (``09:00``; with the date when it is not the decision's day), local
times where the rule is local (quiet hours, calendar periods).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from baton.spec import Campaign, Cap, Category, Channel, ConsentMode, Period, Policy
from baton.store.status import MessageStatus

__all__ = [
    "ConsentRow",
    "Decision",
    "HistoryMessage",
    "PersonFacts",
    "SuppressionRow",
    "bucket",
    "cap_applies",
    "cap_range",
    "cap_usage",
    "effective_timezone",
    "explain",
    "explain_pending",
    "global_holdout",
    "campaign_holdout",
    "rank_key",
    "valid_timezone",
]

NOT_COUNTING = frozenset(
    s.value for s in (MessageStatus.CANCELLED, MessageStatus.EXPIRED, MessageStatus.FAILED)
)
"""Message statuses that do not count toward caps (SPEC §3)."""

ADDRESS_WORDS = {
    "email": "an email address",
    "sms": "a phone number",
    "push": "a push token",
    "audience": "an email address or a phone number",
    "direct_mail": "a postal address",
}

SOURCE_WORDS = {
    "unsubscribe_link": "via the unsubscribe link",
    "seed": "in the imported data",
}


@dataclass(frozen=True)
class Decision:
    """One alternative as the view ``decisions`` shows it, with what the timeline adds (expiry)."""

    cycle_at: datetime
    customer_id: str
    campaign_id: str
    channel: str
    outcome: str
    reason: str | None = None
    send_at: datetime | None = None
    person_id: str | None = None
    priority: int | None = None
    score: float | None = None
    expires_at: datetime | None = None
    decided_at: datetime | None = None  # when the cycle began deciding (read the history); None: T

    @property
    def history_read_at(self) -> datetime:
        """When the cycle read the person's history (its start), else its decision time."""
        return self.decided_at or self.cycle_at


@dataclass(frozen=True)
class HistoryMessage:
    """A message of the person (any profile) that caps may count."""

    cycle_at: datetime
    customer_id: str
    campaign_id: str
    channel: str
    tags: tuple[str, ...]
    counts_toward_caps: bool
    status: str
    updated_at: datetime | None = None
    person_id: str | None = None  # the person it went to, as of its cycle (None: not recorded)

    def counting_at(self, at: datetime) -> bool:
        """Whether the message counted when a cycle read the history at *at* (wall-clock time): its status
        then was a counting one (a message that was cancelled, expired or failed after *at* still counted)."""
        if self.status not in NOT_COUNTING:
            return True
        return self.updated_at is not None and self.updated_at > at


@dataclass(frozen=True)
class ConsentRow:
    """A row of ``consents``."""

    customer_id: str
    channel: str
    topic: str
    status: str
    source: str | None = None
    updated_at: datetime | None = None


@dataclass(frozen=True)
class SuppressionRow:
    """A row of ``suppressions`` that matches one of the person's addresses."""

    channel: str
    address: str
    reason: str
    created_at: datetime | None = None


@dataclass
class PersonFacts:
    """What :func:`explain` needs about the person beyond the decision itself."""

    policy: Policy
    campaigns: dict[str, Campaign]
    person_id: str
    timezone: str
    profiles: tuple[str, ...] = ()
    consents: Sequence[ConsentRow] = ()
    suppressions: Sequence[SuppressionRow] = ()
    history: Sequence[HistoryMessage] = ()
    decisions: Sequence[Decision] = field(default_factory=tuple)  # the person's decisions (same cycle's too)


# ---------------------------------------------------------------------------------------- helpers


def bucket(key: str) -> int:
    """SPEC §3's ``bucket(key)``: the first 8 hex digits of SHA-256 of the UTF-8 key, modulo 10000."""
    return int(hashlib.sha256(key.encode("utf-8")).hexdigest()[:8], 16) % 10000


def global_holdout(policy: Policy, person_id: str) -> tuple[bool, int]:
    """(in the global control group, the person's bucket) for *person_id*."""
    b = bucket(f"{policy.holdout_salt}:{person_id}")
    return b < float(policy.global_control_percent) * 100, b


def campaign_holdout(campaign: Campaign, person_id: str) -> tuple[bool, int]:
    """(in the campaign's holdout, the person's bucket for the campaign) for *person_id*."""
    b = bucket(f"{campaign.id}:{person_id}")
    return b < float(campaign.holdout_percent) * 100, b


def valid_timezone(name: str | None) -> bool:
    """Whether *name* is an IANA timezone (as PostgreSQL knows them; exact spelling)."""
    if not name or name != name.strip() or name.startswith("/") or ".." in name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def effective_timezone(timezones: Iterable[str | None], default: str) -> str:
    """The person's timezone (SPEC §6): the first valid one of *timezones* (the person's profile first,
    then by id), else *default*."""
    for tz in timezones:
        if valid_timezone(tz):
            return str(tz)
    return default


def _pct(value: float) -> str:
    return f"{value:g}%"


def _hm(t: datetime, ref: datetime) -> str:
    """``09:00`` (UTC), with the date when *t* is not on *ref*'s UTC day."""
    t, ref = t.astimezone(UTC), ref.astimezone(UTC)
    return f"{t:%H:%M}" if t.date() == ref.date() else f"{t:%b %d %H:%M}"


def _utc(t: datetime) -> str:
    return f"{t.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


def _join(items: Sequence[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def rank_key(d: Decision) -> tuple[int, float, bytes]:
    """The person's ranking (SPEC §3): priority high first, then score high first, then campaign id."""
    return (-(d.priority or 0), -(d.score or 0.0), d.campaign_id.encode())


def cap_applies(
    cap: Cap, campaign_id: str, channel: str, tags: Iterable[str], *, of_campaign: str | None
) -> bool:
    """Whether *cap* applies to a message of *campaign_id* on *channel* with *tags*: its channel and tag
    match; a ``campaign_frequency`` cap (*of_campaign* set) only to its campaign's messages."""
    if of_campaign is not None:
        return campaign_id == of_campaign
    if cap.channel is not None and cap.channel.value != channel:
        return False
    return cap.tag is None or cap.tag in tuple(tags)


def cap_range(cap: Cap, at: datetime, timezone: str) -> tuple[datetime, bool, str]:
    """(start, start included, description) of the history *cap* counts at decision time *at*."""
    if cap.window is not None:
        return at - cap.window, False, f"in the {_duration(cap.window)} before"
    assert cap.period is not None
    local = at.astimezone(ZoneInfo(timezone))
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if cap.period == Period.week:
        start -= timedelta(days=start.weekday())
    elif cap.period == Period.month:
        start = start.replace(day=1)
    word = {Period.day: "today", Period.week: "this week", Period.month: "this month"}[cap.period]
    return start.astimezone(UTC), True, f"{word} ({timezone})"


def _duration(td: timedelta) -> str:
    seconds = int(td.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _campaign_counts(campaigns: dict[str, Campaign], campaign_id: str) -> bool:
    c = campaigns.get(campaign_id)
    return True if c is None else bool(c.counts_toward_caps)


def _campaign_tags(campaigns: dict[str, Campaign], campaign_id: str) -> tuple[str, ...]:
    c = campaigns.get(campaign_id)
    return tuple(c.tags) if c is not None else ()


def _cap_named(facts: PersonFacts, name: str, campaign_id: str) -> tuple[Cap | None, str | None]:
    """The cap called *name* for a decision of *campaign_id*, and the campaign it is the frequency cap of."""
    if name == "campaign_frequency":
        c = facts.campaigns.get(campaign_id)
        return (c.frequency if c is not None else None), campaign_id
    for cap in facts.policy.caps:
        if cap.name == name:
            return cap, None
    return None, None


def cap_usage(
    facts: PersonFacts, decision: Decision, cap: Cap, of_campaign: str | None
) -> list[tuple[str, str]]:
    """The (campaign, when) of every message that used room of *cap* when *decision* was made: the
    person's counting history in the cap's range, then the same cycle's selections ranked higher."""
    at = decision.cycle_at
    start, included, _ = cap_range(cap, at, facts.timezone)
    used: list[tuple[datetime, str, str]] = []
    for m in facts.history:
        in_range = (m.cycle_at >= start if included else m.cycle_at > start) and m.cycle_at < at
        if not in_range or not m.counting_at(decision.history_read_at):
            continue
        if m.person_id is not None and decision.person_id is not None and m.person_id != decision.person_id:
            continue  # then a message of another person (the profiles were linked later)
        if of_campaign is None and not m.counts_toward_caps:
            continue
        if cap_applies(cap, m.campaign_id, m.channel, m.tags, of_campaign=of_campaign):
            used.append((m.cycle_at, m.campaign_id, _hm(m.cycle_at, at)))
    mine = rank_key(decision)
    for d in facts.decisions:
        if d.cycle_at != at or d.outcome != "selected" or d.campaign_id == decision.campaign_id:
            continue
        if rank_key(d) >= mine:
            continue
        if of_campaign is None and not _campaign_counts(facts.campaigns, d.campaign_id):
            continue
        tags = _campaign_tags(facts.campaigns, d.campaign_id)
        if cap_applies(cap, d.campaign_id, d.channel, tags, of_campaign=of_campaign):
            used.append((at, d.campaign_id, "this cycle, ranked higher"))
    used.sort(key=lambda u: (u[0], u[1]))
    return [(cid, when) for _t, cid, when in used]


# ------------------------------------------------------------------------------------ the sentence


def explain(decision: Decision, facts: PersonFacts) -> str:
    """One sentence saying why *decision* has its outcome (see the module)."""
    how = _EXPLAINERS.get(decision.outcome)
    if how is None:
        return f"{decision.outcome}: {decision.reason}" if decision.reason else decision.outcome
    return how(decision, facts)


def _unknown(d: Decision, facts: PersonFacts) -> str:
    return f"unknown customer: no profile has the customer id {d.customer_id!r}"


def _expired(d: Decision, facts: PersonFacts) -> str:
    if d.expires_at is not None:
        return f"expired: the candidate expired at {_utc(d.expires_at)}, not after the decision time {_utc(d.cycle_at)}"
    return f"expired: the candidate had expired by the decision time {_utc(d.cycle_at)}"


def _unreachable(d: Decision, facts: PersonFacts) -> str:
    what = ADDRESS_WORDS.get(d.channel, f"an address for {d.channel}")
    if len(facts.profiles) > 1:
        return f"unreachable on {d.channel}: no profile of the person has {what}"
    if d.channel == "audience":
        return "unreachable on audience: the customer has neither an email address nor a phone number"
    return f"unreachable on {d.channel}: the customer has no {what.split(' ', 1)[1]}"


def _suppressed(d: Decision, facts: PersonFacts) -> str:
    rows = [s for s in facts.suppressions if s.channel == d.channel]
    if not rows:
        return f"suppressed: the {d.channel} address was on the suppression list at the decision time (it has been removed since)"
    s = rows[0]
    since = f" since {s.created_at:%Y-%m-%d}" if s.created_at else ""
    return f"suppressed: {s.address} is on the {d.channel} suppression list ({s.reason}{since})"


def _consent_source(row: ConsentRow) -> str:
    parts = []
    if row.updated_at is not None:
        parts.append(f"on {row.updated_at:%Y-%m-%d}")
    if row.source:
        parts.append(SOURCE_WORDS.get(row.source, f"via {row.source}"))
    return (" " + " ".join(parts)) if parts else ""


def _no_consent(d: Decision, facts: PersonFacts) -> str:
    campaign = facts.campaigns.get(d.campaign_id)
    topic = campaign.topic if campaign is not None else ""
    reason = d.reason or ""
    outs = [
        c
        for c in facts.consents
        if c.channel == d.channel and c.status == "opt_out" and c.topic in ("", topic)
    ]
    if reason.startswith("opt_out") or (outs and not reason.startswith("no opt_in")):
        wanted = "" if reason == f"opt_out {d.channel}" else topic
        rows = [c for c in outs if c.topic == wanted] or outs
        if rows:
            row = sorted(rows, key=lambda c: c.updated_at or datetime.min.replace(tzinfo=UTC))[0]
            what = f"{d.channel}/{row.topic}" if row.topic else f"{d.channel} (every topic)"
            where = f" (profile {row.customer_id})" if row.customer_id != d.customer_id else ""
            return f"no consent: opted out of {what}{_consent_source(row)}{where}"
        what = reason.removeprefix("opt_out ") or d.channel
        return f"no consent: opted out of {what} at the decision time (the opt-out has been changed since)"
    ins = [
        c
        for c in facts.consents
        if c.channel == d.channel and c.status == "opt_in" and c.topic in ("", topic)
    ]
    need = f"no consent: {d.channel} needs an opt-in (the policy's consent mode), and the person has none for {d.channel}"
    if topic:
        need += f" or {d.channel}/{topic}"
    if ins:
        row = ins[0]
        if row.updated_at is not None and row.updated_at > d.cycle_at:
            return need + f" at the decision time (an opt-in came later, on {row.updated_at:%Y-%m-%d})"
        return (
            need
            + f" from the profile whose address is used (profile {row.customer_id}'s opt-in counts only for its own address)"
        )
    return need


def _quiet(d: Decision, facts: PersonFacts) -> str:
    known = {c.value for c in Channel}
    quiet = facts.policy.quiet_hours.get(Channel(d.channel)) if d.channel in known else None
    if quiet is None:
        return f"quiet hours: {d.channel} was in its quiet hours at the decision time"
    tz = ZoneInfo(facts.timezone)
    local = d.cycle_at.astimezone(tz)
    end = _quiet_end(local, quiet.start, quiet.end)
    text = (
        f"quiet hours: {d.channel} is quiet {quiet.start:%H:%M}–{quiet.end:%H:%M} in {facts.timezone}; the cycle ran at"
        f" {local:%H:%M} there, and the quiet hours end at {end:%H:%M} ({_hm(end, d.cycle_at)} UTC)"
    )
    if d.expires_at is not None:
        text += f", after the candidate expired at {_hm(d.expires_at, d.cycle_at)} UTC"
    return text


def _quiet_end(local: datetime, start: object, end: object) -> datetime:
    """The end of the quiet hours that *local* falls in (a local datetime)."""
    from datetime import time as dtime

    assert isinstance(start, dtime) and isinstance(end, dtime)
    day = local.date()
    if start > end and local.time() >= start:
        day = day + timedelta(days=1)
    naive = datetime.combine(day, end)
    return naive.replace(tzinfo=local.tzinfo)


def _holdout_global(d: Decision, facts: PersonFacts) -> str:
    pct = _pct(float(facts.policy.global_control_percent))
    return f"held out: in the global control group ({pct}, permanent until the salt changes)"


def _holdout_campaign(d: Decision, facts: PersonFacts) -> str:
    campaign = facts.campaigns.get(d.campaign_id)
    pct = _pct(float(campaign.holdout_percent)) if campaign is not None else "its holdout share"
    return f"held out: in the holdout of {d.campaign_id} ({pct} of its audience, the same people every time)"


def _alternative(d: Decision, facts: PersonFacts) -> str:
    used = (d.reason or "").removeprefix("first surviving channel: ")
    if used and used != d.reason:
        return f"not needed: the campaign went by {used} instead (an earlier channel of the campaign passed every check)"
    return "not needed: an earlier channel of the campaign passed every check"


def _capped(d: Decision, facts: PersonFacts) -> str:
    name = d.reason or "a cap"
    cap, of_campaign = _cap_named(facts, name, d.campaign_id)
    if cap is None:
        return f"capped by {name} (the cap is no longer in the policy)"
    try:
        usage = cap_usage(facts, d, cap, of_campaign)
    except (ZoneInfoNotFoundError, ValueError):
        usage = []
    where = cap_range(cap, d.cycle_at, facts.timezone)[2] if cap.period is not None else ""
    if cap.limit == 0:
        return f"capped by {name}: its limit is 0, it blocks every message it applies to"
    if not usage:
        return f"capped by {name}: {cap.limit} of {cap.limit} already used (those messages are no longer recorded as counting)"
    shown = [f"{cid} ({when})" for cid, when in usage]
    more = ""
    if len(shown) > 6:
        more = f" and {len(shown) - 5} more"
        shown = shown[:5]
    scope = f" {where}" if where else ""
    return f"capped by {name}: {len(usage)} of {cap.limit} already used{scope} by {_join(shown)}{more}"


def _selected(d: Decision, facts: PersonFacts) -> str:
    campaign = facts.campaigns.get(d.campaign_id)
    kind = "transactional, " if campaign is not None and campaign.category == Category.transactional else ""
    if d.send_at is None or d.send_at == d.cycle_at:
        return f"selected: {kind}handed to {d.channel} at the decision time {_utc(d.cycle_at)}"
    local = d.send_at.astimezone(ZoneInfo(facts.timezone))
    return f"selected: {kind}to go at {local:%H:%M} {facts.timezone} ({_utc(d.send_at)}), when {d.channel}'s quiet hours end"


_EXPLAINERS = {
    "unknown_customer": _unknown,
    "expired": _expired,
    "unreachable": _unreachable,
    "suppressed": _suppressed,
    "no_consent": _no_consent,
    "quiet_hours": _quiet,
    "holdout_global": _holdout_global,
    "holdout_campaign": _holdout_campaign,
    "channel_alternative": _alternative,
    "capped": _capped,
    "selected": _selected,
}


def explain_pending(
    cycle_at: datetime,
    *,
    cycle_status: str | None,
    taken_by: datetime | None,
    cycle_alive: bool,
    latest_cycle: datetime | None,
    campaign: str,
) -> str:
    """Why a candidate has no decision yet: where its batch stands.  A campaign run feeds the first
    cycle at or after its interval's end (*cycle_at*); *cycle_status* is that cycle's status (None:
    it has not run) and *cycle_alive* whether it still beats (a cycle that stopped while deciding
    keeps its status until it is retried); *taken_by* is the decision time of a cycle deciding now
    that took the batch; *latest_cycle* the latest cycle that ran; *campaign* ``enabled``,
    ``disabled`` or ``unknown`` (no longer deployed)."""
    at = _utc(cycle_at)
    if taken_by is not None:
        return f"being decided now by the cycle at {_utc(taken_by)}"
    if campaign != "enabled":
        why = "is disabled" if campaign == "disabled" else "is no longer deployed"
        return f"not decided: its campaign {why}, so no cycle takes it (it was for the cycle at {at})"
    if cycle_status is None:
        if latest_cycle is not None and cycle_at < latest_cycle:
            return (
                f"waits for the cycle at {at}, which never ran: later cycles do not take it"
                " (backfill that cycle to decide it; `baton status` shows the command)"
            )
        return f"waits for the cycle at {at}: not decided yet"
    if cycle_status != "decided" and not cycle_alive:
        return (
            f"the cycle at {at} stopped while deciding: retry (clear) its run; until it is decided, no"
            " cycle takes this batch"
        )
    if cycle_status != "decided":
        return f"landed after the cycle at {at} began: the next cycle decides it"
    return f"landed after the cycle at {at} was decided: the next cycle decides it"


def consent_mode(policy: Policy, channel: str) -> ConsentMode:
    """The consent mode of *channel* under *policy*."""
    return policy.channel(Channel(channel)).consent
