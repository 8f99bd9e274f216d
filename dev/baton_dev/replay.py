"""A day of the seed's story, replayed: the campaign runs and decision cycles of the 24 hours up to a
cycle, and what one person would have got from the shop's independent automations — and got with
Baton.

``make demo`` replays the day through the real Airflow (backfills of every campaign DAG and of the
arbitration DAG, :func:`day_runs` and :func:`day_cycles` say which runs); tests replay it without
Airflow (:func:`load_day`, :func:`decide_day`: the functions the DAGs' tasks call).  Both count with
the same queries:

* **without Baton** (:func:`independent_sql`): every candidate row of every campaign run is a message
  of its own, to that profile alone, on the first of the campaign's channels the profile has an
  address for — each automation fires on its own and knows nothing of the others, nor of the
  person's other profiles;
* **with Baton** (:func:`person_day`): the messages the cycles decided (selected) for the person's
  profiles, and what became of them (sent, expired, pending).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from baton.arbitration.cycle import begin_cycle, commit_cycle, decide_shard
from baton.audience.load import BatchResult, load_batch
from baton.identity.resolve import IdentitySettings
from baton.spec import Campaign, Policy
from baton.spec.schedule import first_at_or_after, previous_at

DAY = timedelta(hours=24)
_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class CampaignRun:
    """One run of a campaign: its data interval ``[start, end)`` and the cycle it feeds (the first
    decision time at or after ``end``, as the campaign DAG's task computes it)."""

    campaign_id: str
    start: datetime
    end: datetime
    cycle_at: datetime


def day_cycles(policy: Policy, until: datetime, span: timedelta = DAY) -> list[datetime]:
    """The decision times in ``(until - span, until]``, oldest first."""
    out: list[datetime] = []
    t = previous_at(policy.cycle.schedule, until)
    while t > until - span:
        out.append(t)
        t = previous_at(policy.cycle.schedule, t - _US)
    return out[::-1]


def day_runs(
    campaigns: Iterable[Campaign], policy: Policy, until: datetime, span: timedelta = DAY
) -> list[CampaignRun]:
    """Every run the scheduler makes of every enabled campaign whose data interval ends in
    ``(until - span, until]`` (within the campaign's start and end dates), oldest first."""
    runs: list[CampaignRun] = []
    for c in campaigns:
        if not c.enabled:
            continue
        end = previous_at(c.schedule, until)
        while end > until - span:
            start = previous_at(c.schedule, end - _US)
            if start >= c.start_date and (c.end_date is None or end <= c.end_date):
                runs.append(CampaignRun(c.id, start, end, first_at_or_after(policy.cycle.schedule, end)))
            end = start
    return sorted(runs, key=lambda r: (r.end, r.campaign_id))


def load_day(engine: Engine, campaigns: Iterable[Campaign], runs: Iterable[CampaignRun]) -> list[BatchResult]:
    """Load the batch of each run with its campaign's audience SQL (what the campaign DAGs do)."""
    by_id = {c.id: c for c in campaigns}
    return [
        load_batch(
            engine,
            by_id[r.campaign_id],
            data_interval_start=r.start,
            data_interval_end=r.end,
            cycle_at=r.cycle_at,
            run_id=f"replay__{r.end.isoformat()}",
        )
        for r in runs
    ]


def decide_day(
    engine: Engine,
    policy: Policy,
    campaigns: Sequence[Campaign],
    cycles: Iterable[datetime],
    runs: Iterable[CampaignRun],
    *,
    shards: int = 2,
) -> None:
    """Decide *cycles* in order — begin, decide every shard, commit: what the arbitration DAG's tasks
    call — each expecting the campaigns whose runs feed it."""
    fed: dict[datetime, set[str]] = {}
    for r in runs:
        fed.setdefault(r.cycle_at, set()).add(r.campaign_id)
    for at in cycles:
        start = begin_cycle(
            engine,
            at,
            campaigns,
            shards=shards,
            run_id=f"replay__{at.isoformat()}",
            expected=sorted(fed.get(at, ())),
            identity=IdentitySettings.of(policy),
        )
        for shard in range(start.shards):
            decide_shard(engine, at, policy, campaigns, shard)
        commit_cycle(engine, at, policy, campaigns)


# ------------------------------------------------------------------------------------ counting

#: a profile's own address for a channel (what an automation that knows only that profile can use)
_OWN_ADDRESS = (
    "case u.ch when 'email' then nullif(btrim(cu.email), '') is not null"
    " when 'sms' then nullif(btrim(cu.phone), '') is not null"
    " when 'push' then nullif(btrim(cu.push_token), '') is not null"
    " when 'audience' then coalesce(nullif(btrim(cu.email), ''), nullif(btrim(cu.phone), '')) is not null"
    " when 'direct_mail' then nullif(btrim(cu.postal_address), '') is not null else false end"
)


def independent_sql(campaigns: Iterable[Campaign]) -> tuple[str, dict[str, Any]]:
    """SQL (and its parameters, to be completed with ``lo`` and ``hi``) of the messages the independent
    automations send for the batches of the cycles in ``(lo, hi]``: one row per candidate row whose
    profile has an address of its own for one of the row's channels — ``customer_id``, ``person_id``
    (the current person, from ``identity_persons``), ``campaign_id``, ``cycle_at``, ``channel`` (the
    first such channel in the campaign's order) and ``marketing`` (whether it counts toward caps)."""
    camps = list(campaigns)
    params: dict[str, Any] = {
        "ids": [c.id for c in camps],
        "channels": [",".join(ch.value for ch in c.channels) for c in camps],
        "counting": [c.counts_toward_caps for c in camps],
    }
    sql = (
        "select c.customer_id, coalesce(p.person_id, c.customer_id) as person_id, b.campaign_id, b.cycle_at,"
        " k.counting as marketing, (select u.ch from unnest(string_to_array(k.channels, ',')) with ordinality"
        f" as u(ch, o) where (c.channel is null or c.channel = u.ch) and {_OWN_ADDRESS} order by u.o limit 1)"
        " as channel"
        " from candidates c join candidate_batches b using (batch_id)"
        " join unnest(cast(:ids as text[]), cast(:channels as text[]), cast(:counting as boolean[]))"
        " as k(campaign_id, channels, counting) on k.campaign_id = b.campaign_id"
        " join customers cu on cu.customer_id = c.customer_id"
        " left join identity_persons p on p.customer_id = c.customer_id"
        " where b.cycle_at > :lo and b.cycle_at <= :hi"
    )
    return f"select * from ({sql}) i where channel is not null", params


@dataclass
class PersonCampaign:
    """One campaign's messages to the person over the day."""

    campaign_id: str
    marketing: bool
    independent: dict[str, int] = field(default_factory=dict)  # profile -> messages without Baton
    selected: int = 0  # messages Baton decided (selected)
    statuses: dict[str, int] = field(default_factory=dict)  # what became of them


@dataclass
class PersonDay:
    """What one person would have got over the day without Baton, and got with it."""

    profiles: list[str]
    campaigns: dict[str, PersonCampaign]
    outcomes: dict[str, int]  # Baton's outcome of each of the person's alternatives ("capped: daily_total")

    def independent(self, marketing_only: bool = False) -> int:
        """Messages without Baton (only those that count toward caps with *marketing_only*)."""
        return sum(
            sum(c.independent.values()) for c in self.campaigns.values() if c.marketing or not marketing_only
        )

    def selected(self, marketing_only: bool = False) -> int:
        """Messages Baton decided (only those that count toward caps with *marketing_only*)."""
        return sum(c.selected for c in self.campaigns.values() if c.marketing or not marketing_only)

    def status(self, status: str) -> int:
        """The person's messages of the day with *status* (``sent``, ``expired``, ``pending``…)."""
        return sum(c.statuses.get(status, 0) for c in self.campaigns.values())


def person_day(
    conn: Connection,
    campaigns: Sequence[Campaign],
    profiles: Sequence[str],
    until: datetime,
    span: timedelta = DAY,
) -> PersonDay:
    """The person of *profiles* over the cycles in ``(until - span, until]``: per campaign, the messages
    each profile would have got from the independent automations, those Baton decided, and their fate."""
    window = {"lo": until - span, "hi": until, "profiles": list(profiles)}
    day = PersonDay(
        list(profiles),
        {c.id: PersonCampaign(c.id, c.counts_toward_caps) for c in campaigns},
        {},
    )
    sql, params = independent_sql(campaigns)
    for cid, campaign_id, n in conn.execute(
        sa.text(
            f"select customer_id, campaign_id, count(*) from ({sql}) i where customer_id = any(:profiles) group by 1, 2"
        ),
        {**params, **window},
    ).all():
        day.campaigns[campaign_id].independent[cid] = int(n)
    for campaign_id, status, n in conn.execute(
        sa.text(
            "select campaign_id, status, count(*) from messages where customer_id = any(:profiles)"
            " and cycle_at > :lo and cycle_at <= :hi group by 1, 2"
        ),
        window,
    ).all():
        c = day.campaigns[campaign_id]
        c.selected += int(n)
        c.statuses[status] = int(n)
    for outcome, reason, n in conn.execute(
        sa.text(
            "select outcome, reason, count(*) from decisions where customer_id = any(:profiles)"
            " and cycle_at > :lo and cycle_at <= :hi group by 1, 2 order by 3 desc, 1, 2"
        ),
        window,
    ).all():
        key = f"{outcome}: {reason}" if outcome == "capped" and reason else str(outcome)
        day.outcomes[key] = day.outcomes.get(key, 0) + int(n)
    return day


def daily_cap(policy: Policy) -> int | None:
    """The tightest cap on all of a person's counting messages in any 24 hours (a rolling 24h window
    on every channel and tag), if the policy has one."""
    return min(
        (c.limit for c in policy.caps if c.window == DAY and c.channel is None and c.tag is None),
        default=None,
    )
