"""The data of the Marketing view's pages, one function per page, straight from the store.

Every function reads in one read-only transaction with a statement timeout, with named parameters
(``baton.store.tx``), and touches only what its page shows — through the store's indexes, never a
whole table:

* :func:`calendar` — campaigns × days (or the hours of one day): planned runs from the schedules,
  past volumes and outcomes per campaign (``cycle_outcomes`` by ``(campaign_id, cycle_at)``), the
  candidates of the runs (``candidate_batches`` by its unique key), how often each cap blocked;
* :func:`cycle_funnel` — one cycle: its batches, every outcome per campaign and channel, which caps
  bit, late campaigns, when each step happened (all by primary key);
* :func:`find_profiles` / :func:`customer_timeline` — a person found by any identifier (the
  identity's indexes), their profiles, identifiers, consents, suppressions, timezone, control
  groups, events (``events (customer_id, ts)``), and decisions, candidates, messages and message
  events — read cycle by cycle (one index probe per cycle, as ``baton_decisions_of`` does: the
  indexes a cycle writes into are cycle-first), every decision explained in words;
* :func:`campaign_page` — one campaign: its spec as written, recent runs, volumes and outcomes per
  day, test sends; :func:`audience_count` runs its audience SQL as a dry run (read-only, with a
  timeout) — the one query whose cost is the campaign author's.

Long lists are paginated by time (``until`` and a number of days) and capped in rows.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from baton.arbitration.cycle import LEASE as CYCLE_LEASE
from baton.arbitration.scenario import TIME_RANGE
from baton.errors import AudienceError, InputError
from baton.identity import admin
from baton.identity.resolve import IdentitySettings
from baton.spec import Campaign, Category, Outcome
from baton.store.tx import Session, transaction
from baton.web import explain as ex
from baton.web.deployment import Deployment
from baton.web.schedule import schedule_times

log = logging.getLogger(__name__)

__all__ = [
    "OUTCOMES",
    "Timeline",
    "audience_count",
    "calendar",
    "campaign_page",
    "customer_timeline",
    "cycle_funnel",
    "find_profiles",
    "parse_time",
]

OUTCOMES = [o.value for o in Outcome]
"""Every outcome, in the order the checks run (SPEC §3)."""

STATEMENT_TIMEOUT = "5s"
MAX_DAYS = 62
TIMELINE_DECISIONS = 300
TIMELINE_EVENTS = 100
TIMELINE_PENDING = 50
PENDING_SCAN_LIMIT = 5_000_000
"""A customer's candidates not decided yet are searched among at most this many pending rows."""
HOLDOUTS = ("holdout_global", "holdout_campaign")


def parse_time(text: str, what: str = "time") -> datetime:
    """An ISO 8601 time (``2026-03-02T15:00:00Z``; a date means its midnight UTC) as UTC, from 1970 to 8999;
    InputError otherwise."""
    value = (text or "").strip()
    t: datetime | None
    try:
        if len(value) == 10:
            t = datetime.fromisoformat(value).replace(tzinfo=UTC)
        else:
            t = datetime.fromisoformat(
                value.replace("Z", "+00:00").replace(" ", "+") if "T" in value else value
            )
            t = (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)
    except ValueError:
        raise InputError(
            f"{what} {text!r} is not a time: write ISO 8601 in UTC, e.g. 2026-03-02T15:00:00Z"
        ) from None
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before the first datetime in UTC
        t = None
    if t is None or not TIME_RANGE[0] <= t < TIME_RANGE[1]:
        raise InputError(f"{what} {text!r} is out of range: write a time from 1970 to 8999")
    return t


@contextmanager
def _read(engine: Engine, timeout: str = STATEMENT_TIMEOUT) -> Iterator[Session]:
    with transaction(engine) as tx:
        tx.execute("set transaction read only")
        tx.execute("select set_config('statement_timeout', %(t)s, true)", {"t": timeout})
        yield tx


def _rows(tx: Session, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    return admin.dict_rows(tx, sql, params)


def _campaign_info(c: Campaign) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "owner": c.owner,
        "channels": [ch.value for ch in c.channels],
        "tags": list(c.tags),
        "schedule": c.schedule,
        "enabled": c.enabled,
        "priority": c.priority,
        "category": c.category.value,
        "topic": c.topic,
    }


# ------------------------------------------------------------------------------------------ calendar


def _filtered(dep: Deployment, channel: str | None, tag: str | None, owner: str | None) -> list[Campaign]:
    out = []
    for c in dep.campaigns.values():
        if channel and channel not in {ch.value for ch in c.channels}:
            continue
        if tag and tag not in c.tags:
            continue
        if owner and owner != c.owner:
            continue
        out.append(c)
    return out


def _planned(c: Campaign, lo: datetime, hi: datetime) -> tuple[datetime, ...]:
    """The campaign's schedule times in ``[lo, hi)`` within its start and end dates (none when disabled)."""
    if not c.enabled:
        return ()
    return schedule_times(c.schedule, max(lo, c.start_date), min(hi, c.end_date) if c.end_date else hi)


def _tally(
    rows: list[dict[str, Any]], cells: dict[str, list[dict[str, Any]]], width: int, col: Any
) -> tuple[dict[str, list[int]], list[int], dict[str, int]]:
    """Add the outcome rows to the cells; returns (capped per cap and column, alternatives that reached
    the caps per column — selected or capped —, totals per outcome)."""
    caps: dict[str, list[int]] = {}
    reached = [0] * width
    totals: dict[str, int] = defaultdict(int)
    for r in rows:
        i, n, outcome = col(r["cycle_at"]), int(r["n"]), r["outcome"]
        cell = cells[r["campaign_id"]][i]
        cell["alternatives"] += n
        cell["outcomes"][outcome] = cell["outcomes"].get(outcome, 0) + n
        totals[outcome] += n
        if outcome == "capped":
            cap = r["reason"] or "?"
            cell["caps"][cap] = cell["caps"].get(cap, 0) + n
            caps.setdefault(cap, [0] * width)[i] += n
        if outcome in ("capped", "selected"):
            reached[i] += n
    return caps, reached, dict(totals)


def calendar(
    engine: Engine,
    dep: Deployment,
    *,
    start: date,
    days: int = 21,
    day: date | None = None,
    channel: str | None = None,
    tag: str | None = None,
    owner: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Campaigns × days from *start* (or × the hours of *day*): planned runs, past volumes, caps.

    Each cell: ``planned`` (runs still to come), ``estimate`` (≈ messages they select, from the
    campaign's selections per run over its latest 30 runs), and for the past ``runs``, ``candidates`` (rows
    its runs proposed), ``alternatives`` and one count per outcome (``capped`` also per cap)."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    days = max(1, min(int(days), MAX_DAYS))
    first = day or start
    lo = datetime(first.year, first.month, first.day, tzinfo=UTC)
    hi = lo + timedelta(days=1 if day is not None else days)
    step = timedelta(hours=1) if day is not None else timedelta(days=1)
    columns = [lo + i * step for i in range(int((hi - lo) / step))]

    def col(ts: datetime) -> int:
        return int((ts - lo) / step)

    camps = _filtered(dep, channel, tag, owner)
    ids = [c.id for c in camps]
    cells: dict[str, list[dict[str, Any]]] = {
        cid: [
            {"planned": 0, "runs": 0, "candidates": 0, "alternatives": 0, "outcomes": {}, "caps": {}}
            for _ in columns
        ]
        for cid in ids
    }
    cycle_schedule = dep.policy.cycle.schedule
    for c in camps:
        for when in _planned(c, max(lo, now), hi):
            cells[c.id][col(when)]["planned"] += 1
    with _read(engine) as tx:
        # summed per column (day or hour) in the database: a few rows per campaign and column
        outcome_rows = _rows(
            tx,
            "select date_bin(%(step)s, cycle_at, %(lo)s) as cycle_at, campaign_id, outcome, reason,"
            " sum(n)::bigint as n from cycle_outcomes"
            " where campaign_id = any(%(ids)s) and cycle_at >= %(lo)s and cycle_at < %(hi)s"
            + (" and channel = %(ch)s" if channel else "")
            + " group by 1, 2, 3, 4",
            {"ids": ids, "lo": lo, "hi": hi, "ch": channel, "step": step},
        )
        batch_rows = _rows(
            tx,
            "select campaign_id, date_bin(%(step)s, cycle_at, %(lo)s) as cycle_at, count(*)::int as runs,"
            " sum(row_count)::bigint as rows from candidate_batches"
            " where campaign_id = any(%(ids)s) and cycle_at >= %(lo)s and cycle_at < %(hi)s group by 1, 2",
            {"ids": ids, "lo": lo, "hi": hi, "step": step},
        )
        cycles = _rows(
            tx,
            "select cycle_at, status, alternatives, selected, late_campaigns from cycles"
            " where cycle_at >= %(lo)s and cycle_at < %(hi)s order by cycle_at",
            {"lo": lo, "hi": hi},
        )
        # ≈ messages per future run: the campaign's selections per run over its latest 30 decided runs
        # (its batches by their unique index, its summaries by (campaign_id, cycle_at))
        recent = _rows(
            tx,
            "select k.id as campaign_id, s.selected, b.runs from unnest(%(ids)s::text[]) k(id)"
            " cross join lateral (select count(*)::int as runs, array_agg(distinct decided_cycle_at) as cycles"
            " from (select decided_cycle_at from candidate_batches where campaign_id = k.id"
            " and decided_cycle_at is not null and cycle_at <= %(now)s order by cycle_at desc limit 30) x) b"
            " cross join lateral (select coalesce(sum(o.n), 0)::bigint as selected from cycle_outcomes o"
            " where o.campaign_id = k.id and o.cycle_at = any(b.cycles) and o.outcome = 'selected'"
            + (" and o.channel = %(ch)s" if channel else "")
            + ") s",
            {"ids": ids, "now": now, "ch": channel},
        )
    per_run = {r["campaign_id"]: (r["selected"] or 0) / r["runs"] for r in recent if r["runs"]}
    caps, reached, totals = _tally(outcome_rows, cells, len(columns), col)
    for r in batch_rows:
        cell = cells[r["campaign_id"]][col(r["cycle_at"])]
        cell["runs"] += int(r["runs"])
        cell["candidates"] += int(r["rows"] or 0)
    for cid, row in cells.items():
        for cell in row:
            if cell["planned"] and cid in per_run:
                cell["estimate"] = round(cell["planned"] * per_run[cid])
    cap_names = [cap.name for cap in dep.policy.caps]
    cap_names += sorted(set(caps) - set(cap_names))
    return {
        "zoom": "hours" if day is not None else "days",
        "start": lo,
        "end": hi,
        "now": now,
        "columns": columns,
        "campaigns": [_campaign_info(c) for c in camps],
        "cells": cells,
        "caps": [
            {
                "name": name,
                "capped": caps.get(name, [0] * len(columns)),
                "share": [
                    (caps.get(name, [0] * len(columns))[i] / reached[i]) if reached[i] else None
                    for i in range(len(columns))
                ],
            }
            for name in cap_names
        ],
        "cycles": cycles,
        "totals": totals,
        "cycle_schedule": cycle_schedule,
        "planned_cycles": list(schedule_times(cycle_schedule, max(lo, now), hi)[:200]),
        "filters": {"channel": channel, "tag": tag, "owner": owner},
        "owners": sorted({c.owner for c in dep.campaigns.values()}),
        "tags": sorted({t for c in dep.campaigns.values() for t in c.tags}),
        "channels": sorted({ch.value for c in dep.campaigns.values() for ch in c.channels}),
    }


# ------------------------------------------------------------------------------------------- funnel


def cycle_funnel(engine: Engine, dep: Deployment, cycle_at: datetime) -> dict[str, Any] | None:
    """One cycle: candidates → every outcome per campaign and channel, caps, late campaigns, timings."""
    with _read(engine) as tx:
        rows = _rows(tx, "select * from cycles where cycle_at = %(t)s", {"t": cycle_at})
        if not rows:
            return None
        cycle = rows[0]
        batches = _rows(
            tx,
            "select batch_id, campaign_id, cycle_at, data_interval_start, data_interval_end, row_count, run_id,"
            " loaded_at, decided_cycle_at from candidate_batches where batch_id = any(%(b)s) order by campaign_id, batch_id",
            {"b": list(cycle["batch_ids"] or [])},
        )
        outcomes = _rows(
            tx,
            "select campaign_id, channel, outcome, reason, n from cycle_outcomes where cycle_at = %(t)s",
            {"t": cycle_at},
        )
        near = tx.execute(
            "select (select max(cycle_at) from cycles where cycle_at < %(t)s),"
            " (select min(cycle_at) from cycles where cycle_at > %(t)s)",
            {"t": cycle_at},
        ).fetchone()
    if cycle["status"] != "decided":  # not published yet: the shards' counts so far
        for shard_rows in (cycle.get("shard_outcomes") or {}).values():
            for r in shard_rows:
                outcomes.append({**r, "reason": r.get("reason") or ""})
    per: dict[tuple[str, str], dict[str, Any]] = {}
    caps: dict[str, int] = defaultdict(int)
    totals: dict[str, int] = defaultdict(int)
    for r in outcomes:
        key = (r["campaign_id"], r["channel"])
        row = per.setdefault(
            key, {"campaign_id": key[0], "channel": key[1], "alternatives": 0, "outcomes": {}, "caps": {}}
        )
        n = int(r["n"])
        row["alternatives"] += n
        row["outcomes"][r["outcome"]] = row["outcomes"].get(r["outcome"], 0) + n
        totals[r["outcome"]] += n
        if r["outcome"] == "capped":
            row["caps"][r["reason"] or "?"] = row["caps"].get(r["reason"] or "?", 0) + n
            caps[r["reason"] or "?"] += n
    candidates: dict[str, int] = defaultdict(int)
    runs: dict[str, int] = defaultdict(int)
    for b in batches:
        candidates[b["campaign_id"]] += int(b["row_count"])
        runs[b["campaign_id"]] += 1
    campaigns = []
    for cid in sorted({k[0] for k in per} | set(candidates) | set(cycle["campaigns"] or [])):
        spec = dep.campaigns.get(cid)
        chans = [ch.value for ch in spec.channels] if spec else sorted({k[1] for k in per if k[0] == cid})
        lines = [per[(cid, ch)] for ch in chans if (cid, ch) in per]
        lines += [v for k, v in sorted(per.items()) if k[0] == cid and k[1] not in chans]
        campaigns.append(
            {
                "id": cid,
                "name": spec.name if spec else cid,
                "priority": spec.priority if spec else None,
                "candidates": candidates.get(cid, 0),
                "runs": runs.get(cid, 0),
                "late": cid in (cycle["late_campaigns"] or []),
                "lines": lines,
                "alternatives": sum(line["alternatives"] for line in lines),
                "selected": sum(line["outcomes"].get("selected", 0) for line in lines),
            }
        )
    campaigns.sort(key=lambda c: (-(c["priority"] or 0), c["id"]))
    t = cycle_at
    timings = [
        ("decision time T", t, None),
        (
            "batches loaded",
            max((b["loaded_at"] for b in batches), default=None),
            "the last campaign batch this cycle decides landed",
        ),
        ("cycle began", cycle["started_at"], "took the decision token after waiting for the campaigns"),
        ("cycle decided", cycle["decided_at"], "decisions and outbox published together"),
    ]
    return {
        "cycle": cycle,
        "batches": batches,
        "campaigns": campaigns,
        "caps": dict(sorted(caps.items(), key=lambda kv: -kv[1])),
        "totals": {o: totals.get(o, 0) for o in OUTCOMES},
        "alternatives": sum(totals.values()),
        "candidates": sum(candidates.values()),
        "outcome_columns": [o for o in OUTCOMES if totals.get(o)] or ["selected"],
        "timings": [
            {"step": s, "at": at, "after_t": (at - t).total_seconds() if at else None, "what": w}
            for s, at, w in timings
        ],
        "waited_seconds": (cycle["started_at"] - t).total_seconds() if cycle["started_at"] else None,
        "deciding_seconds": (cycle["decided_at"] - cycle["started_at"]).total_seconds()
        if cycle["decided_at"] and cycle["started_at"]
        else None,
        "previous": near[0] if near else None,
        "next": near[1] if near else None,
    }


# ------------------------------------------------------------------------------------------ timeline


@dataclass
class Timeline:
    """One person's page: who they are and what happened to them, newest first."""

    query: str
    person_id: str
    profiles: list[dict[str, Any]]
    observations: list[Any]
    chains: dict[str, Any]
    consents: list[dict[str, Any]]
    suppressions: list[dict[str, Any]]
    timezone: str
    timezone_note: str
    control: dict[str, Any]
    since: datetime
    until: datetime
    events: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)  # one per alternative, explained
    messages: dict[int, dict[str, Any]] = field(default_factory=dict)
    pending: list[dict[str, Any]] = field(default_factory=list)  # candidates no cycle has decided yet
    more_decisions: bool = False
    more_events: bool = False
    more_pending: bool = False
    pending_not_searched: tuple[int, int] | None = None  # (batches, rows) too many to search

    def items(self) -> list[dict[str, Any]]:
        """Events and decisions in one list, newest first: a decision item is one campaign in one cycle,
        with its alternatives (each explained) and the message that went out."""
        groups: dict[tuple[datetime, str, str], dict[str, Any]] = {}
        for d in self.decisions:
            key = (d["cycle_at"], d["customer_id"], d["campaign_id"])
            item = groups.setdefault(
                key,
                {
                    "kind": "decision",
                    "at": d["cycle_at"],
                    "customer_id": d["customer_id"],
                    "campaign_id": d["campaign_id"],
                    "run_id": d["run_id"],
                    "score": d["score"],
                    "payload": d["payload"],
                    "expires_at": d["expires_at"],
                    "alternatives": [],
                    "message": None,
                },
            )
            item["alternatives"].append(d)
            if d["message_id"] is not None:
                item["message"] = self.messages.get(d["message_id"])
        items = (
            [{"kind": "event", "at": e["ts"], **e} for e in self.events]
            + [{"kind": "candidate", "at": c["loaded_at"], **c} for c in self.pending]
            + list(groups.values())
        )
        items.sort(key=lambda i: i["at"], reverse=True)
        return items

    def as_json(self) -> dict[str, Any]:
        """The timeline as JSON-friendly data (the page's API)."""
        return {
            "query": self.query,
            "person_id": self.person_id,
            "profiles": self.profiles,
            "identifiers": [o.__dict__ for o in self.observations],
            "consents": self.consents,
            "suppressions": self.suppressions,
            "timezone": self.timezone,
            "control": self.control,
            "since": self.since,
            "until": self.until,
            "events": self.events,
            "decisions": self.decisions,
            "pending": self.pending,
            "messages": list(self.messages.values()),
        }


def find_profiles(engine: Engine, query: str) -> list[dict[str, Any]]:
    """The profiles a customer id or any identifier (email, phone, login…, in any spelling) names, each
    with its person."""
    query = (query or "").strip()
    if not query:
        return []
    with _read(engine) as tx:
        found = admin.find_profiles(tx, query)
        if not found:
            return []
        return _rows(
            tx,
            "select c.customer_id, coalesce(p.person_id, c.customer_id) as person_id, c.email, c.phone,"
            " c.first_name, c.last_name from customers c left join identity_persons p using (customer_id)"
            " where c.customer_id = any(%(ids)s) order by 2, 1",
            {"ids": found[:50]},
        )


_ADDRESS_CHANNELS = (
    ("email", "email", "lower"),
    ("audience", "email", "lower"),
    ("sms", "phone", "trim"),
    ("audience", "phone", "trim"),
    ("push", "push_token", "trim"),
    ("direct_mail", "postal_address", "trim"),
)


def _suppression_keys(profiles: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    chans, addrs = [], []
    for p in profiles:
        for channel, column, how in _ADDRESS_CHANNELS:
            value = (p.get(column) or "").strip(" \t\n\r\f\v")
            if value:
                chans.append(channel)
                addrs.append(value.lower() if how == "lower" else value)
    return chans, addrs


def _person_timezone(profiles: list[dict[str, Any]], person_id: str, default: str) -> tuple[str, str]:
    ordered = sorted(profiles, key=lambda p: (p["customer_id"] != person_id, p["customer_id"].encode()))
    tz = ex.effective_timezone([p.get("timezone") for p in ordered], default)
    given = [p.get("timezone") for p in ordered if p.get("timezone")]
    if tz == default and not any(ex.valid_timezone(g) for g in given):
        note = (
            f"the policy's default_timezone (the profile's {given[0]!r} is no IANA timezone)"
            if given
            else "the policy's default_timezone (no profile has one)"
        )
    else:
        owner = next(p["customer_id"] for p in ordered if p.get("timezone") == tz)
        note = "the profile's own" if len(profiles) == 1 else f"from profile {owner}"
    return tz, note


def customer_timeline(
    engine: Engine,
    dep: Deployment,
    query: str,
    *,
    until: datetime | None = None,
    days: int = 30,
) -> Timeline | None:
    """The person named by *query* (customer id or any identifier) and their timeline in
    ``[until − days, until)`` (default: the last 30 days), every decision explained."""
    until = (until or datetime.now(UTC) + timedelta(minutes=1)).astimezone(UTC)
    days = max(1, min(int(days), MAX_DAYS))
    since = until - timedelta(days=days)
    policy = dep.policy
    view = admin.show(engine, query.strip(), IdentitySettings.of(policy))
    if view is None:
        return None
    person = view.person_id
    members = [p["customer_id"] for p in view.profiles]
    with _read(engine) as tx:
        profiles = _rows(
            tx,
            "select customer_id, email, phone, push_token, postal_address, first_name, last_name, timezone,"
            " attributes, created_at from customers where customer_id = any(%(m)s) order by customer_id",
            {"m": members},
        )
        consents = _rows(
            tx,
            "select customer_id, channel, topic, status, source, updated_at from consents"
            " where customer_id = any(%(m)s) order by channel, topic, customer_id",
            {"m": members},
        )
        chans, addrs = _suppression_keys(profiles)
        suppressions = _rows(
            tx,
            "select s.channel, s.address, s.reason, s.created_at from suppressions s"
            " join unnest(%(c)s::text[], %(a)s::text[]) k(channel, address)"
            " on s.channel = k.channel and s.address = k.address order by 1, 2",
            {"c": chans, "a": addrs},
        )
        events = _rows(
            tx,
            "select event_id, customer_id, type, ts, product_id, item_name, category, price, cart_value, order_id"
            " from events where customer_id = any(%(m)s) and ts >= %(lo)s and ts < %(hi)s"
            " order by ts desc, event_id desc limit %(n)s",
            {"m": members, "lo": since, "hi": until, "n": TIMELINE_EVENTS + 1},
        )
        # one index probe per cycle (cycle-first index), as baton_decisions_of does
        decisions = _rows(
            tx,
            "select d.cycle_at, d.customer_id, d.campaign_id, d.channel, d.outcome, d.reason, d.send_at,"
            " d.person_id, d.priority, d.score, d.batch_id, d.seq, c.run_id, c.started_at"
            " from cycles c cross join lateral (select * from decisions v where v.cycle_at = c.cycle_at"
            " and v.customer_id = any(%(m)s)) d where c.cycle_at >= %(lo)s and c.cycle_at < %(hi)s"
            " and c.status = 'decided' order by d.cycle_at desc, d.priority desc nulls last, d.campaign_id, d.channel"
            " limit %(n)s",
            {"m": members, "lo": since, "hi": until, "n": TIMELINE_DECISIONS + 1},
        )
        more_decisions = len(decisions) > TIMELINE_DECISIONS
        # candidates proposed but not decided yet: the pending batches (few: their partial index) first,
        # then only their rows (the candidates' primary key); candidates has no per-customer index, so
        # this reads every row of the pending batches (about 130 ms per million) — skipped, and said so,
        # when they hold more than PENDING_SCAN_LIMIT rows (batches left behind pile up)
        waiting = _rows(
            tx,
            # the live deciding cycles (few) are read once, not once per pending batch: no index on status
            "with live as materialized (select cycle_at, batch_ids from cycles where status = 'deciding'"
            " and heartbeat_at > now() - %(lease)s)"
            " select b.batch_id, b.campaign_id, b.cycle_at, b.loaded_at, b.run_id, b.row_count,"
            " y.status as cycle_status, coalesce(y.heartbeat_at > now() - %(lease)s, false) as cycle_alive,"
            " (select min(l.cycle_at) from live l where b.batch_id = any(l.batch_ids)) as taken_by"
            " from candidate_batches b left join cycles y on y.cycle_at = b.cycle_at"
            " where b.decided_cycle_at is null and b.loaded_at < %(hi)s",
            {"hi": until, "lease": CYCLE_LEASE},
        )
        batches = {b["batch_id"]: b for b in waiting}
        pending_rows = sum(int(b["row_count"] or 0) for b in waiting)
        pending = []
        if 0 < pending_rows <= PENDING_SCAN_LIMIT:
            pending = [
                {**batches[c["batch_id"]], **c}
                for c in _rows(
                    tx,
                    "select batch_id, seq, customer_id, score, channel, expires_at, payload from candidates"
                    " where batch_id = any(%(b)s) and customer_id = any(%(m)s) order by batch_id desc, seq"
                    " limit %(n)s",
                    {"b": list(batches), "m": members, "n": TIMELINE_PENDING + 1},
                )
            ]
        pending.sort(key=lambda c: (c["loaded_at"], c["batch_id"]), reverse=True)
        latest_cycle = tx.execute("select max(cycle_at) from cycles").fetchone()[0] if pending else None
        decisions = decisions[:TIMELINE_DECISIONS]
        refs = sorted({(d["batch_id"], d["seq"]) for d in decisions if d["batch_id"] is not None})
        candidates = {
            (r["batch_id"], r["seq"]): r
            for r in _rows(
                tx,
                "select c.batch_id, c.seq, c.customer_id, c.score, c.expires_at, c.payload from candidates c"
                " join unnest(%(b)s::bigint[], %(s)s::int[]) k(batch_id, seq) on c.batch_id = k.batch_id"
                " and c.seq = k.seq",
                {"b": [r[0] for r in refs], "s": [r[1] for r in refs]},
            )
        }
        chosen = [d for d in decisions if d["outcome"] == "selected"]
        messages = _rows(
            tx,
            "select m.message_id, m.cycle_at, m.customer_id, m.campaign_id, m.channel, m.status, m.send_at,"
            " m.sent_at, m.attempts, m.provider_id, m.error, m.updated_at"
            " from unnest(%(t)s::timestamptz[], %(c)s::text[], %(k)s::text[], %(h)s::text[]) u(cycle_at, customer_id,"
            " campaign_id, channel) join messages m on m.cycle_at = u.cycle_at and m.customer_id = u.customer_id"
            " and m.campaign_id = u.campaign_id and m.channel = u.channel",
            {
                "t": [d["cycle_at"] for d in chosen],
                "c": [d["customer_id"] for d in chosen],
                "k": [d["campaign_id"] for d in chosen],
                "h": [d["channel"] for d in chosen],
            },
        )
        by_id = {m["message_id"]: {**m, "events": []} for m in messages}
        for e in _rows(
            tx,
            "select event_id, message_id, type, ts, detail from message_events where message_id = any(%(ids)s)"
            " order by ts, event_id",
            {"ids": list(by_id)},
        ):
            by_id[e["message_id"]]["events"].append(e)
        history = _history(tx, dep, members, decisions)
    tz, tz_note = _person_timezone(profiles, person, policy.default_timezone)
    in_global, g_bucket = ex.global_holdout(policy, person)
    holdouts = []
    for c in dep.campaigns.values():
        if c.holdout_percent and c.category == Category.marketing:
            inside, b = ex.campaign_holdout(c, person)
            holdouts.append(
                {"campaign_id": c.id, "percent": float(c.holdout_percent), "in": inside, "bucket": b}
            )
    facts = ex.PersonFacts(
        policy=policy,
        campaigns=dep.campaigns,
        person_id=person,
        timezone=tz,
        profiles=tuple(members),
        consents=[ex.ConsentRow(**c) for c in consents],
        suppressions=[ex.SuppressionRow(**s) for s in suppressions],
        history=history,
    )
    alternatives = []
    for d in decisions:
        cand = candidates.get((d["batch_id"], d["seq"]))
        alternatives.append(
            ex.Decision(
                cycle_at=d["cycle_at"],
                customer_id=d["customer_id"],
                campaign_id=d["campaign_id"],
                channel=d["channel"],
                outcome=d["outcome"],
                reason=d["reason"],
                send_at=d["send_at"],
                person_id=d["person_id"],
                priority=d["priority"],
                score=d["score"],
                expires_at=cand["expires_at"] if cand else None,
                decided_at=d["started_at"],
            )
        )
    facts.decisions = tuple(alternatives)
    keyed = {(m["cycle_at"], m["customer_id"], m["campaign_id"], m["channel"]): m for m in by_id.values()}
    out = []
    for d, alt in zip(decisions, alternatives, strict=True):
        cand = candidates.get((d["batch_id"], d["seq"]))
        msg = keyed.get((d["cycle_at"], d["customer_id"], d["campaign_id"], d["channel"]))
        out.append(
            {
                **{
                    k: d[k]
                    for k in (
                        "cycle_at",
                        "customer_id",
                        "campaign_id",
                        "channel",
                        "outcome",
                        "reason",
                        "send_at",
                        "person_id",
                        "run_id",
                    )
                },
                "score": d["score"],
                "explanation": ex.explain(alt, facts),
                "payload": cand["payload"] if cand else None,
                "expires_at": cand["expires_at"] if cand else None,
                "message_id": msg["message_id"] if msg else None,
            }
        )
    for row in pending:
        campaign = dep.campaigns.get(row["campaign_id"])
        row["state"] = ex.explain_pending(
            row["cycle_at"],
            cycle_status=row.pop("cycle_status"),
            taken_by=row.pop("taken_by"),
            cycle_alive=row.pop("cycle_alive"),
            latest_cycle=latest_cycle,
            campaign="unknown" if campaign is None else "enabled" if campaign.enabled else "disabled",
        )
        row.pop("row_count")
    for p in profiles:
        p.pop("attributes", None)
    return Timeline(
        query=query,
        person_id=person,
        profiles=[{**p, "chain": view.chains.get(p["customer_id"])} for p in profiles],
        observations=_distinct(view.observations),
        chains=view.chains,
        consents=consents,
        suppressions=suppressions,
        timezone=tz,
        timezone_note=tz_note,
        control={
            "global": {
                "in": in_global,
                "bucket": g_bucket,
                "percent": float(policy.global_control_percent),
                "salt": policy.holdout_salt,
            },
            "campaigns": holdouts,
        },
        since=since,
        until=until,
        events=events[:TIMELINE_EVENTS],
        decisions=out,
        messages=by_id,
        more_decisions=more_decisions,
        more_events=len(events) > TIMELINE_EVENTS,
        pending=pending[:TIMELINE_PENDING],
        more_pending=len(pending) > TIMELINE_PENDING,
        pending_not_searched=(len(waiting), pending_rows) if pending_rows > PENDING_SCAN_LIMIT else None,
    )


def _distinct(observations: list[Any]) -> list[Any]:
    """The person's identifiers without the profile-column copy of one also stored as an observation."""
    stored = {(o.customer_id, o.kind, o.norm) for o in observations if o.source != "profile"}
    return [o for o in observations if o.source != "profile" or (o.customer_id, o.kind, o.norm) not in stored]


def _history_span(dep: Deployment) -> timedelta:
    """The longest history any cap counts (a month period: 32 days, timezones included)."""
    spans = [timedelta(0)]
    caps = list(dep.policy.caps) + [c.frequency for c in dep.campaigns.values() if c.frequency]
    for cap in caps:
        if cap.window is not None:
            spans.append(cap.window)
        elif cap.period is not None:
            spans.append(
                {"day": timedelta(days=2), "week": timedelta(days=8), "month": timedelta(days=32)}[
                    cap.period.value
                ]
            )
    return max(spans)


def _history(
    tx: Session, dep: Deployment, members: list[str], decisions: list[dict[str, Any]]
) -> list[ex.HistoryMessage]:
    """The person's messages that the caps of the capped decisions counted (one probe per cycle)."""
    capped = [d["cycle_at"] for d in decisions if d["outcome"] == "capped"]
    if not capped:
        return []
    lo, hi = min(capped) - _history_span(dep), max(capped)
    rows = _rows(
        tx,
        "select m.cycle_at, m.customer_id, m.campaign_id, m.channel, m.tags, m.counts_toward_caps, m.status,"
        " m.updated_at, m.person_id from cycles c cross join lateral (select * from messages m where m.cycle_at = c.cycle_at"
        " and m.customer_id = any(%(m)s)) m where c.cycle_at >= %(lo)s and c.cycle_at < %(hi)s"
        " and c.status = 'decided'",
        {"m": members, "lo": lo, "hi": hi},
    )
    return [
        ex.HistoryMessage(
            cycle_at=r["cycle_at"],
            customer_id=r["customer_id"],
            campaign_id=r["campaign_id"],
            channel=r["channel"],
            tags=tuple(r["tags"] or ()),
            counts_toward_caps=bool(r["counts_toward_caps"]),
            status=r["status"],
            updated_at=r["updated_at"],
            person_id=r["person_id"],
        )
        for r in rows
    ]


# ------------------------------------------------------------------------------------------ campaign


def campaign_page(
    engine: Engine, dep: Deployment, campaign_id: str, *, days: int = 14, now: datetime | None = None
) -> dict[str, Any] | None:
    """One campaign: its spec as written, recent runs, volumes and outcomes per day, test sends."""
    spec = dep.campaigns.get(campaign_id)
    if spec is None:
        return None
    now = (now or datetime.now(UTC)).astimezone(UTC)
    days = max(1, min(int(days), MAX_DAYS))
    lo = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=days - 1)
    path = dep.campaign_file(campaign_id)
    try:
        text = path.read_text(encoding="utf-8") if path else ""
    except OSError as exc:
        text = f"# cannot read {path}: {exc}"
    with _read(engine) as tx:
        runs = _rows(
            tx,
            "select batch_id, cycle_at, data_interval_start, data_interval_end, row_count, run_id, loaded_at,"
            " decided_cycle_at, status from candidate_batches where campaign_id = %(c)s"
            " order by cycle_at desc, data_interval_start desc limit 20",
            {"c": campaign_id},
        )
        volumes = _rows(
            tx,
            "select date_trunc('day', cycle_at at time zone 'UTC') as day, outcome, sum(n)::bigint as n"
            " from cycle_outcomes where campaign_id = %(c)s and cycle_at >= %(lo)s and cycle_at <= %(now)s"
            " group by 1, 2 order by 1",
            {"c": campaign_id, "lo": lo, "now": now},
        )
        last = _rows(
            tx,
            "select cycle_at, channel, outcome, reason, n from cycle_outcomes where campaign_id = %(c)s"
            " and cycle_at = (select max(cycle_at) from cycle_outcomes where campaign_id = %(c)s)"
            " order by channel, outcome, reason",
            {"c": campaign_id},
        )
        sends = _rows(
            tx,
            "select test_send_id, requested_by, requested_at, channel, addresses, result, detail from test_sends"
            " where campaign_id = %(c)s order by requested_at desc limit 10",
            {"c": campaign_id},
        )
    series: dict[str, list[int]] = {o: [0] * days for o in OUTCOMES}
    day_list = [(lo + timedelta(days=i)).date() for i in range(days)]
    for r in volumes:
        i = (r["day"].date() - lo.date()).days
        if 0 <= i < days and r["outcome"] in series:
            series[r["outcome"]][i] += int(r["n"])
    upcoming = [
        t for t in schedule_times(spec.schedule, max(now, spec.start_date), now + timedelta(days=14))
    ][:50]
    if spec.end_date:
        upcoming = [t for t in upcoming if t <= spec.end_date]
    return {
        "campaign": _campaign_info(spec),
        "spec": spec,
        "yaml": text,
        "file": str(path) if path else None,
        "runs": runs,
        "days": day_list,
        "series": {o: v for o, v in series.items() if any(v)},
        "last_cycle": last,
        "test_sends": sends,
        "upcoming": upcoming,
    }


def audience_count(
    engine: Engine, dep: Deployment, campaign_id: str, *, timeout_s: float = 10.0, now: datetime | None = None
) -> dict[str, Any]:
    """How many rows (and distinct customers) the campaign's audience query returns right now, for its
    latest data interval: a dry run in a read-only transaction with a statement timeout.  Raises
    InputError for an unknown campaign and AudienceError when the query fails or times out."""
    from baton.audience.check import sample_interval
    from baton.audience.load import audience_context
    from baton.audience.render import render_audience_sql

    spec = dep.campaigns.get(campaign_id)
    if spec is None:
        raise InputError(f"unknown campaign {campaign_id!r}")
    start, end, cycle_at = sample_interval(spec, dep.policy, now)
    rendered = render_audience_sql(spec.audience.sql, audience_context(spec, start, end, cycle_at))
    started = time.perf_counter()
    try:
        with _read(engine, f"{int(timeout_s * 1000)}ms") as tx:
            row = tx.execute(
                f"select count(*), count(distinct customer_id) from ({rendered.sql}) q", rendered.params
            ).fetchone()
    except Exception as exc:
        message = str(getattr(getattr(exc, "diag", None), "message_primary", None) or exc).strip()
        if "statement timeout" in message:
            raise AudienceError(
                f"campaign {campaign_id}: the audience query did not finish within {timeout_s:g} s (dry run stopped); "
                "its real runs are not limited this way"
            ) from None
        raise AudienceError(f"campaign {campaign_id}: the audience query fails: {message}") from None
    return {
        "campaign_id": campaign_id,
        "rows": int(row[0]),
        "customers": int(row[1]),
        "data_interval_start": start,
        "data_interval_end": end,
        "cycle_at": cycle_at,
        "seconds": round(time.perf_counter() - started, 3),
    }
