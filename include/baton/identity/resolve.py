"""Profiles into persons (SPEC §6), set-based in PostgreSQL.

Two steps, both plain SQL over relations named like the store's tables (``baton simulate``
shadows them with temporary tables of the same names, so a scenario resolves with exactly this
SQL):

1. **Shared values** — ``identity_links``: every observation ``(kind, norm, customer_id,
   first_seen)`` of a normalised, not junk value that two or more profiles hold (ever).  A value
   only one profile holds can never link anyone, so the persons of any decision time are computed
   from this small relation, not from every identifier.  :func:`refresh_links` keeps it current
   incrementally: only values touched by identifiers or profiles added or changed since the last
   refresh are recomputed.
2. **Persons as of T** — :func:`persons_as_of`: the connected components of the profiles linked
   at decision time ``T`` (values of a kind in ``link_on``, first seen at or before ``T``, held by
   at most ``max_profiles_per_value`` profiles at ``T``, neither blocked nor excluded).  The result
   is a temporary table ``_pm(customer_id, person_id)`` holding the profiles of persons with two
   or more profiles; every other profile is a person of its own (``person_id = customer_id``).
   ``person_id`` is the ``customer_id`` of the person's earliest-created profile (ties: the
   smallest id, byte order); without creation times (a scenario), the smallest ``customer_id``.

Components are found by label propagation over the bipartite graph profile — value: each round,
every value takes the smallest label of its holders and every profile the smallest label of its
values, until nothing changes (as many rounds as the longest chain of links is long, a few in
practice).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from baton.identity.normalize import (
    DEFAULT_LINK_ON,
    DEFAULT_MAX_PROFILES_PER_VALUE,
    KINDS,
    PROFILE_COLUMNS,
    blocked_set,
    junk_sql,
    norm_sql,
)

log = logging.getLogger(__name__)

MAX_ROUNDS = 10_000


@dataclass(frozen=True)
class IdentitySettings:
    """The policy's ``identity:`` keys (SPEC §6)."""

    link_on: tuple[str, ...] = DEFAULT_LINK_ON
    max_profiles_per_value: int = DEFAULT_MAX_PROFILES_PER_VALUE
    blocked_values: tuple[str, ...] = ()

    @classmethod
    def of(cls, policy: Any) -> IdentitySettings:
        """The settings of a :class:`~baton.spec.Policy` (defaults when it has no ``identity:``)."""
        identity = getattr(policy, "identity", None)
        if identity is None:
            return cls()
        return cls(
            tuple(str(k) for k in identity.link_on),
            int(identity.max_profiles_per_value),
            tuple(identity.blocked_values),
        )

    def blocked_pairs(self) -> list[tuple[str, str]]:
        """(kind, lower-cased normalised value) of every blocked value, per linking kind."""
        return sorted({(k, v) for k in self.link_on for v in blocked_set(k, self.blocked_values)})


def observations_sql(*, since: str | None = None, profiles: str | None = None, at: str | None = None) -> str:
    """SQL: every identifier observation ``(customer_id, kind, norm, first_seen)``, not junk.

    The ``identifiers`` rows and the profiles' own columns (first seen when the profile was
    created).  *since* (a timestamptz expression) keeps only observations added after it; *profiles*
    (a relation with ``customer_id``) only those of these profiles; *at* only those first seen at
    or before it.
    """
    where_i, where_c = ["true"], ["true"]
    if since is not None:
        where_i.append(f"i.added_at > {since}")
        where_c.append(f"greatest(c.created_at, c.updated_at) > {since}")  # ix_customers_changed
    if profiles is not None:
        where_i.append(f"i.customer_id in (select customer_id from {profiles})")
        where_c.append(f"c.customer_id in (select customer_id from {profiles})")
    if at is not None:
        where_i.append(f"i.first_seen <= {at}")
        where_c.append(f"c.created_at <= {at}")
    parts = [
        f"select i.customer_id, i.kind, i.norm, i.first_seen from identifiers i where {' and '.join(where_i)}"
    ]
    for column in PROFILE_COLUMNS:
        norm = norm_sql(column, f"c.{column}")
        parts.append(
            f"select c.customer_id, '{column}', {norm}, c.created_at from customers c"
            f" where c.{column} is not null and {' and '.join(where_c)}"
        )
    union = " union all ".join(parts)
    return f"select customer_id, kind, norm, first_seen from ({union}) o where not {junk_sql('o.norm')}"


@dataclass
class RefreshStats:
    """What :func:`refresh_links` did."""

    touched_values: int = 0
    link_rows: int = 0
    full: bool = False
    seconds: float = 0.0


def refresh_links(raw: Any, *, since: datetime | None, full: bool = False) -> RefreshStats:
    """Bring ``identity_links`` up to date (in the caller's transaction, on the driver connection *raw*).

    With *full* (or no *since*), it is rebuilt from every observation; otherwise only the values
    held by observations added since *since* (new identifiers, new or changed profiles) — and the
    values those changed profiles held before — are recomputed.
    """
    started = time.perf_counter()
    stats = RefreshStats(full=full or since is None)
    if stats.full:
        raw.execute("delete from identity_links")
        cur = raw.execute(
            "insert into identity_links (kind, norm, customer_id, first_seen)"
            " select kind, norm, customer_id, min(first_seen) from ("
            + observations_sql()
            + ") o where (kind, norm) in (select kind, norm from ("
            + observations_sql()
            + ") s group by kind, norm having count(distinct customer_id) > 1)"
            " group by kind, norm, customer_id"
        )
        stats.link_rows = int(cur.rowcount or 0)
        stats.touched_values = -1
    else:
        raw.execute("drop table if exists _touched, _changed, _holders")
        raw.execute(
            "create temp table _changed as select customer_id from customers"
            " where greatest(created_at, updated_at) > %(since)s"
            " union select customer_id from identifiers where added_at > %(since)s",
            {"since": since},
        )
        raw.execute(
            "create temp table _touched as select distinct kind, norm from ("
            + observations_sql(since="%(since)s")
            + ") n union select kind, norm from identity_links where customer_id in (select customer_id from _changed)",
            {"since": since},
        )
        stats.touched_values = int(raw.execute("select count(*) from _touched").fetchone()[0])
        raw.execute("analyze _touched")
        raw.execute("delete from identity_links where (kind, norm) in (select kind, norm from _touched)")
        raw.execute("create temp table _holders as " + _holders_of_touched())
        cur = raw.execute(
            "insert into identity_links (kind, norm, customer_id, first_seen)"
            " select o.kind, o.norm, o.customer_id, min(o.first_seen) from _holders o"
            " where (o.kind, o.norm) in (select kind, norm from _holders s"
            " group by kind, norm having count(distinct customer_id) > 1)"
            " group by o.kind, o.norm, o.customer_id"
        )
        stats.link_rows = int(cur.rowcount or 0)
        raw.execute("drop table _touched, _changed, _holders")
    stats.seconds = time.perf_counter() - started
    return stats


def _holders_of_touched() -> str:
    """SQL: every observation of a value in ``_touched``, found through the indexes on the normalised
    values: one index probe per touched value (``offset 0`` keeps each lateral subquery a probe — as a
    join, the planner may misjudge the few touched values and normalise every profile's column)."""
    parts = [
        "select i.customer_id, i.kind, i.norm, i.first_seen from identifiers i"
        " join _touched t on t.kind = i.kind and t.norm = i.norm"
    ]
    for column in PROFILE_COLUMNS:
        norm = norm_sql(column, f"c.{column}")
        parts.append(
            f"select h.customer_id, '{column}', t.norm, h.created_at from _touched t cross join lateral"
            f" (select c.customer_id, c.created_at from customers c where {norm} = t.norm offset 0) h"
            f" where t.kind = '{column}'"
        )
    return " union all ".join(parts)


@dataclass
class PersonStats:
    """What :func:`persons_as_of` found."""

    linked_profiles: int = 0
    persons: int = 0
    rounds: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    source: str = ""
    """How the persons were found (a cycle's: from the current persons, or as of T)."""


def persons_as_of(
    raw: Any,
    at: datetime | None,
    settings: IdentitySettings,
    *,
    by_creation: bool = True,
    table: str = "_pm",
    restrict_to: str | None = None,
) -> PersonStats:
    """Create the temporary table *table* ``(customer_id, person_id)``: the profiles of persons with two
    or more profiles at decision time *at* (``None``: every observation, whenever first seen).

    *by_creation*: ``person_id`` is the earliest-created profile's id (the store); otherwise the
    smallest id (a scenario, whose profiles have no creation time).  *restrict_to* (a relation with
    ``customer_id``) limits the graph to the links of those profiles — for an incremental resolve,
    whose caller guarantees that the set is closed under linking.
    """
    started = time.perf_counter()
    stats = PersonStats()
    kinds = [k for k in settings.link_on if k in KINDS]
    params: dict[str, Any] = {
        "kinds": kinds,
        "max": settings.max_profiles_per_value,
        "at": at,
        "bk": [k for k, _v in settings.blocked_pairs()],
        "bv": [v for _k, v in settings.blocked_pairs()],
    }
    raw.execute(f"drop table if exists _edges, _vl, _lab, _lab_next, {table}")
    when = "" if at is None else " and l.first_seen <= %(at)s"
    restrict = "" if restrict_to is None else f" and l.customer_id in (select customer_id from {restrict_to})"
    # restricted: only the values those profiles hold are counted (by all their holders), through the
    # index on customer_id, instead of grouping every shared value of the store
    values = ""
    if restrict_to is not None:
        raw.execute("drop table if exists _rv")
        raw.execute(
            "create temp table _rv as select distinct r.kind, r.norm from identity_links r"
            f" where r.customer_id in (select customer_id from {restrict_to})"
        )
        raw.execute("analyze _rv")
        values = " and (l.kind, l.norm) in (select kind, norm from _rv)"
    # the links at T: linking kinds, not blocked by the policy, not excluded, held by 2..max profiles at T
    raw.execute(
        "create temp table _edges as select l.customer_id, v.vid from identity_links l join ("
        " select kind, norm, row_number() over () as vid from identity_links l"
        f" where l.kind = any(%(kinds)s){when}{values}"
        " and not exists (select 1 from unnest(%(bk)s::text[], %(bv)s::text[]) b(kind, v)"
        " where b.kind = l.kind and b.v = lower(l.norm))"
        " and not exists (select 1 from identity_exclusions x where x.kind = l.kind and x.norm = l.norm)"
        " group by kind, norm having count(distinct customer_id) between 2 and %(max)s"
        f") v on v.kind = l.kind and v.norm = l.norm where true{when}{restrict}",
        params,
    )
    raw.execute("create index on _edges (vid)")
    raw.execute("analyze _edges")
    stats.timings["links"] = time.perf_counter() - started
    order = 'c.created_at, p.customer_id collate "C"' if by_creation else 'p.customer_id collate "C"'
    join = " left join customers c on c.customer_id = p.customer_id" if by_creation else ""
    # each profile starts with its own rank as its label; a round gives every value the smallest label
    # of its holders and every profile the smallest label of its values, until the holders of every
    # value share one label — then each person's profiles carry the smallest rank among them (labels
    # only fall, and are always ranks of the person's own profiles).  A round writes a new table (no
    # row versions, no index to maintain): much cheaper than updating most rows in place
    raw.execute(
        "create temp table _lab as select customer_id, ord, ord as lab from (select p.customer_id,"
        " row_number() over (order by "
        + order
        + ") as ord from (select distinct customer_id from _edges) p"
        + join
        + ") z"
    )
    raw.execute("analyze _lab")
    unsettled = True
    while unsettled:
        stats.rounds += 1
        if stats.rounds > MAX_ROUNDS:
            raise RuntimeError("identity resolution did not converge")
        raw.execute("drop table if exists _vl, _lab_next")
        raw.execute(
            "create temp table _vl as select e.vid, min(l.lab) as lab from _edges e"
            " join _lab l on l.customer_id = e.customer_id group by e.vid"
        )
        raw.execute(
            "create temp table _lab_next as select l.customer_id, l.ord, x.lab from _lab l join"
            " (select e.customer_id, min(v.lab) as lab from _edges e join _vl v on v.vid = e.vid"
            " group by e.customer_id) x on x.customer_id = l.customer_id"
        )
        raw.execute("drop table _lab")
        raw.execute("alter table _lab_next rename to _lab")
        raw.execute("analyze _lab")
        # (a count, not exists(): a fast-start plan for exists() would loop over the unindexed _lab)
        unsettled = bool(
            raw.execute(
                "select count(*) from (select e.vid from _edges e join _lab l on l.customer_id = e.customer_id"
                " group by e.vid having min(l.lab) <> max(l.lab)) u"
            ).fetchone()[0]
        )
    stats.timings["components"] = time.perf_counter() - started - stats.timings["links"]
    raw.execute(
        f"create temp table {table} as select l.customer_id, r.customer_id as person_id"
        " from _lab l join _lab r on r.ord = l.lab"
    )
    raw.execute(f"create unique index on {table} (customer_id)")
    raw.execute(f"analyze {table}")
    raw.execute("drop table if exists _edges, _vl, _lab, _rv")
    row = raw.execute(f"select count(*), count(distinct person_id) from {table}").fetchone()
    stats.linked_profiles, stats.persons = int(row[0]), int(row[1])
    stats.seconds = time.perf_counter() - started
    return stats


__all__ = [
    "IdentitySettings",
    "PersonStats",
    "RefreshStats",
    "observations_sql",
    "persons_as_of",
    "refresh_links",
]
