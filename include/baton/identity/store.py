"""Identity in the store: keeping the shared values current, the persons a cycle decides with, and
the current persons (``baton identity resolve``).

* :func:`refresh` brings ``identity_links`` up to date incrementally: observations Baton stored
  since the last refresh (``identifiers.added_at``, new or changed profiles, new exclusions) touch
  some values; only those values are recomputed.  The watermark is kept in ``baton_meta``
  (``identity``: ``links_watermark``) a little behind the refresh's own start (:data:`LAG`), so that a transaction that
  stored identifiers while a refresh ran is read by the next one; recomputing a value twice is
  harmless.  A transaction that stores identifiers for longer than :data:`LAG` should be followed by
  ``baton identity resolve --full`` (``baton seed`` does its own).
* :func:`cycle_persons` computes the persons as of a cycle's decision time ``T`` once, in
  ``begin_cycle``, into ``cycle_persons`` — every shard of the cycle reads the same persons, and a
  retry of the cycle decides with them again.  ``commit_cycle`` deletes them (every decision and
  message keeps its ``person_id``).
* :func:`resolve` stores the current persons in ``identity_persons`` (what ``baton identity show``,
  ``baton why`` and the marketing view read): in full, or only for the persons that the touched
  values could change — the closure argument: a link between an untouched value's holders held
  before and still holds, so every profile linked now to a touched profile was in the same person
  before.

All of it runs under the cycle's decision token lock, so a refresh never changes the shared values
while a cycle computes its persons.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Engine

from baton.identity.resolve import IdentitySettings, PersonStats, RefreshStats, persons_as_of, refresh_links
from baton.store.tx import Session, transaction

log = logging.getLogger(__name__)

META_KEY = "identity"
LAG = timedelta(minutes=15)
"""How far behind its own start a refresh sets the watermark (see the module)."""
TOKEN_LOCK = 0x0BA7_0002
"""The cycle's decision token lock (``baton.arbitration.cycle.TOKEN_LOCK``)."""


def _read_meta(tx: Session) -> dict[str, Any]:
    row = tx.execute("select value from baton_meta where key = %(key)s", {"key": META_KEY}).fetchone()
    if row is None:
        return {}
    value = row[0]
    return json.loads(value) if isinstance(value, str) else dict(value)


def _write_meta(tx: Session, value: dict[str, Any]) -> None:
    tx.execute(
        "insert into baton_meta (key, value, updated_at) values (%(key)s, %(value)s::jsonb, now())"
        " on conflict (key) do update set value = excluded.value, updated_at = excluded.updated_at",
        {"key": META_KEY, "value": json.dumps(value, sort_keys=True)},
    )


def settings_fingerprint(settings: IdentitySettings) -> str:
    """A short digest of the identity settings (the current persons depend on them)."""
    text = json.dumps([settings.link_on, settings.max_profiles_per_value, settings.blocked_values])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def refresh(tx: Session, *, full: bool = False) -> RefreshStats:
    """Bring ``identity_links`` up to date in the transaction *tx* (which holds the token lock)."""
    meta = _read_meta(tx)
    started: datetime = tx.execute("select now()").fetchone()[0]
    mark = meta.get("links_watermark")
    since = None if full or not isinstance(mark, str) else datetime.fromisoformat(mark)
    # (exclusions do not change the shared values: they apply when persons are computed)
    stats = refresh_links(tx.raw, since=since)
    meta["links_watermark"] = (started - LAG).isoformat()
    _write_meta(tx, meta)
    log.info(
        "identity: %s refresh, %s value(s) touched, %d link row(s) written in %.2fs",
        "full" if stats.full else "incremental",
        "all" if stats.touched_values < 0 else stats.touched_values,
        stats.link_rows,
        stats.seconds,
    )
    return stats


REUSE_LIMIT = 0.25
"""A cycle computes its persons from scratch when more than this share of the linked profiles (and more
than :data:`REUSE_MIN` of them) were touched by values first seen after its decision time."""
REUSE_MIN = 1000


def cycle_persons(tx: Session, at: datetime, settings: IdentitySettings) -> PersonStats:
    """Store the persons with several profiles as of decision time *at* in ``cycle_persons``.

    First the current persons (``identity_persons``) are brought up to date, as ``baton identity
    resolve`` does — incrementally, or in full the first time and when the identity settings changed —
    so the Marketing view and ``baton why`` show the persons the cycles decide with.  Then the persons
    as of *at* are taken from them: only the profiles holding a value first seen after *at* — with every profile of their
    current persons — are computed again, as of *at*.  Every other profile's person as of *at* is its
    current one: its current person holds no value first seen after *at*, so the same links hold at
    *at* and none leaves it (a value without later observations had the same holders at *at*).
    When more than :data:`REUSE_LIMIT` of the linked profiles hold such values (a backfill far behind
    the observations), the persons are computed as of *at* from every shared value instead."""
    meta = _read_meta(tx)
    mark = meta.get("persons_watermark")
    current = meta.get("settings") == settings_fingerprint(settings) and isinstance(mark, str)
    stats = _persons_from_current(tx, at, settings, mark if current else None)
    if stats is None:
        stats = persons_as_of(tx.raw, at, settings, table="_cycle_pm")
        stats.source = "as of T"
    tx.execute("delete from cycle_persons where cycle_at = %(at)s", {"at": at})
    tx.execute(
        "insert into cycle_persons (cycle_at, customer_id, person_id)"
        " select %(at)s, customer_id, person_id from _cycle_pm",
        {"at": at},
    )
    tx.execute("drop table _cycle_pm")
    log.info(
        "identity as of %s: %d profiles in %d persons of several profiles (%s; %d rounds, %.2fs)",
        at.isoformat(),
        stats.linked_profiles,
        stats.persons,
        stats.source,
        stats.rounds,
        stats.seconds,
    )
    return stats


def _persons_from_current(
    tx: Session, at: datetime, settings: IdentitySettings, mark: str | None
) -> PersonStats | None:
    """``_cycle_pm`` from the current persons, brought up to date since the watermark *mark* (in full
    without one; see :func:`cycle_persons`); ``None`` (and no ``_cycle_pm``) when too many profiles
    hold values first seen after *at*."""
    started = time.perf_counter()
    updated, _found = _update_persons(tx, settings, mark=mark)
    tx.execute("drop table if exists _late")
    tx.execute(
        "create temp table _late as"
        " with later as (select distinct kind, norm from identity_links where first_seen > %(at)s),"
        " holders as (select customer_id from identity_links where (kind, norm) in (select kind, norm from later))"
        " select customer_id from holders"
        " union select p.customer_id from identity_persons p where p.person_id in"
        " (select person_id from identity_persons where customer_id in (select customer_id from holders))",
        {"at": at},
    )
    tx.execute("create unique index on _late (customer_id)")
    tx.execute("analyze _late")
    late = int(tx.execute("select count(*) from _late").fetchone()[0])
    linked = int(tx.execute("select count(*) from identity_persons").fetchone()[0])
    if late > REUSE_MIN and late > REUSE_LIMIT * linked:
        tx.execute("drop table _late")
        log.info("identity: %d of %d linked profiles hold values first seen after %s", late, linked, at)
        return None
    again = persons_as_of(tx.raw, at, settings, table="_late_pm", restrict_to="_late")
    tx.execute(
        "create temp table _cycle_pm as select customer_id, person_id from identity_persons"
        " where customer_id not in (select customer_id from _late)"
        " union all select customer_id, person_id from _late_pm"
    )
    tx.execute("drop table _late, _late_pm")
    row = tx.execute("select count(*), count(distinct person_id) from _cycle_pm").fetchone()
    stats = PersonStats(linked_profiles=int(row[0]), persons=int(row[1]), rounds=again.rounds)
    what = "computed in full" if updated < 0 else f"updated for {updated} profile(s)"
    stats.source = f"current persons {what}, {late} profile(s) recomputed as of T"
    stats.seconds = time.perf_counter() - started
    return stats


@dataclass
class ResolveResult:
    """What :func:`resolve` did."""

    refresh: RefreshStats
    persons: PersonStats
    full: bool
    affected_profiles: int = -1
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)


def resolve(engine: Engine, settings: IdentitySettings, *, full: bool = False) -> ResolveResult:
    """Refresh the shared values and store the current persons in ``identity_persons``.

    Incremental unless *full*, the first time, or when the identity settings changed since the last
    resolve (then every person is recomputed)."""
    started = time.perf_counter()
    with transaction(engine) as tx:
        tx.execute("select pg_advisory_xact_lock(%(k)s)", {"k": TOKEN_LOCK})
        meta = _read_meta(tx)
        mark = meta.get("persons_watermark")
        full = full or not isinstance(mark, str) or meta.get("settings") != settings_fingerprint(settings)
        refreshed = refresh(tx, full=full)
        t_links = time.perf_counter() - started
        affected, persons = _update_persons(tx, settings, mark=None if full else mark)
    result = ResolveResult(refreshed, persons, full, affected, time.perf_counter() - started)
    result.timings = {"links": t_links, "persons": result.seconds - t_links}
    return result


def _update_persons(tx: Session, settings: IdentitySettings, *, mark: str | None) -> tuple[int, PersonStats]:
    """Store the current persons in ``identity_persons`` — those of the profiles the observations since
    the watermark *mark* can change, or all of them without one — and move the watermark behind the
    transaction's start.  The shared values must be current.  Returns the number of profiles
    recomputed (-1: all) and what the recomputation found."""
    started_at: datetime = tx.execute("select now()").fetchone()[0]  # the transaction's start
    if mark is None:
        persons = persons_as_of(tx.raw, None, settings, table="_now_pm")
        tx.execute("delete from identity_persons")
        affected = -1
    else:
        affected = _affected(tx, datetime.fromisoformat(mark))
        persons = persons_as_of(tx.raw, None, settings, table="_now_pm", restrict_to="_affected")
        tx.execute("delete from identity_persons where customer_id in (select customer_id from _affected)")
    tx.execute(
        "insert into identity_persons (customer_id, person_id, resolved_at)"
        " select customer_id, person_id, now() from _now_pm"
    )
    tx.execute("drop table if exists _now_pm, _affected")
    meta = _read_meta(tx)
    meta["settings"] = settings_fingerprint(settings)
    meta["persons_watermark"] = (started_at - LAG).isoformat()
    _write_meta(tx, meta)
    return affected, persons


def _affected(tx: Session, since: datetime) -> int:
    """``_affected``: the profiles whose current person the observations since *since* can change —
    the holders of every touched value (new identifiers, new or changed profiles, new exclusions)
    and every profile of their current persons."""
    tx.execute("drop table if exists _affected")
    tx.execute(
        "create temp table _affected as"
        " with changed as (select customer_id from customers where greatest(created_at, updated_at) > %(since)s"
        " union select customer_id from identifiers where added_at > %(since)s),"
        " touched as (select kind, norm from identity_links where customer_id in (select customer_id from changed)"
        " union select kind, norm from identity_exclusions where created_at > %(since)s),"
        " holders as (select customer_id from changed"
        " union select customer_id from identity_links l where (l.kind, l.norm) in (select kind, norm from touched))"
        " select customer_id from holders"
        " union select p.customer_id from identity_persons p where p.person_id in"
        " (select person_id from identity_persons where customer_id in (select customer_id from holders))",
        {"since": since},
    )
    tx.execute("create unique index on _affected (customer_id)")
    tx.execute("analyze _affected")
    row = tx.execute("select count(*) from _affected").fetchone()
    return int(row[0])


__all__ = [
    "LAG",
    "META_KEY",
    "REUSE_LIMIT",
    "REUSE_MIN",
    "ResolveResult",
    "cycle_persons",
    "refresh",
    "resolve",
    "settings_fingerprint",
]
