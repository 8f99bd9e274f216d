"""Operating the identity: load identifiers, exclude a value, and explain one person
(``baton identity load | exclude | show``).

Loading is a bulk COPY into a staging table, checked row by row in SQL: a row of an unknown kind,
an empty or overlong value, a ``first_seen`` that is not a time (or lies in the future), a NUL
character, or a ``customer_id`` that is no profile is rejected with its (first) line and reason; the
valid rows are stored together, in one transaction, and an observation already stored keeps its
earliest ``first_seen``.
"""

from __future__ import annotations

import csv
import io
import re
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from psycopg.rows import dict_row
from sqlalchemy.engine import Engine

from baton.arbitration.scenario import parse_time, read_csv_text
from baton.errors import InputError
from baton.identity.normalize import (
    KINDS,
    MAX_VALUE_LENGTH,
    PROFILE_COLUMNS,
    WS,
    is_blocked,
    is_junk,
    norm_sql,
    normalize,
)
from baton.identity.resolve import IdentitySettings
from baton.store.tx import Session, transaction

LOAD_COLUMNS = ("customer_id", "kind", "value")
LOAD_OPTIONAL = ("first_seen", "source")


@dataclass
class LoadResult:
    """What :func:`load_identifiers` stored and rejected."""

    rows: int = 0
    stored: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)


def _read_rows(path: Path) -> tuple[list[str], Any]:
    text = read_csv_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [c.strip() for c in next(reader, [])]
    except csv.Error as exc:
        raise InputError(f"{path}:1: is not valid CSV ({exc})") from None
    expected = ",".join(LOAD_COLUMNS + LOAD_OPTIONAL)
    missing = [c for c in LOAD_COLUMNS if c not in header]
    unknown = [c for c in header if c not in LOAD_COLUMNS + LOAD_OPTIONAL]
    if not header or missing or unknown or len(set(header)) != len(header):
        what = (
            f"missing {', '.join(missing)}"
            if missing
            else f"unknown {', '.join(unknown) or 'or repeated'} column"
        )
        raise InputError(f"{path}:1: the header must be {expected} (first_seen and source optional): {what}")
    return header, reader


def _row_problem(row: dict[str, str], now: datetime) -> tuple[str | None, datetime | None]:
    """Why a row cannot be stored (None when it can), and its first_seen."""
    if not row["customer_id"].strip():
        return "customer_id is empty", None
    kind = row["kind"].strip()
    if kind not in KINDS:
        return f"unknown kind {kind!r}: use one of {', '.join(KINDS)}", None
    value = row["value"]
    if not value.strip():
        return "value is empty", None
    if len(value) > MAX_VALUE_LENGTH:
        return f"value is longer than {MAX_VALUE_LENGTH} characters", None
    text = (row.get("first_seen") or "").strip()
    if not text:
        return None, None
    try:
        first_seen = parse_time(text)
    except ValueError:
        return f"first_seen {text!r} is not a time (write ISO 8601, e.g. 2026-03-01T21:00:00Z)", None
    if first_seen > now:
        return f"first_seen {text!r} lies in the future", None
    return None, first_seen


def load_identifiers(engine: Engine, path: Path, *, source: str | None = None) -> LoadResult:
    """Store the identifiers of the CSV file *path* (see the module); returns counts and rejected rows."""
    header, reader = _read_rows(path)
    result = LoadResult()
    staged: list[tuple[Any, ...]] = []
    now = datetime.now(UTC)
    last = reader.line_num  # the header's last line
    try:
        for cells in reader:
            line, last = last + 1, reader.line_num  # a row's line is its first (a quoted cell may span lines)
            if not any(c.strip() for c in cells):
                continue
            result.rows += 1
            if len(cells) != len(header):
                result.rejected.append((line, f"has {len(cells)} cells, the header {len(header)}"))
                continue
            if any("\x00" in c for c in cells):  # PostgreSQL's text cannot hold one
                result.rejected.append((line, "contains a NUL character (is the file binary?)"))
                continue
            row = dict(zip(header, cells, strict=True))
            problem, first_seen = _row_problem(row, now)
            if problem is not None:
                result.rejected.append((line, problem))
                continue
            kind = row["kind"].strip()
            staged.append(
                (
                    line,
                    row["customer_id"].strip(),
                    kind,
                    row["value"],
                    normalize(kind, row["value"]),
                    first_seen,
                    (row.get("source") or "").strip() or source or path.name,
                )
            )
    except csv.Error as exc:
        raise InputError(f"{path}:{last + 1}: is not valid CSV ({exc})") from None
    with transaction(engine) as tx:
        tx.execute(
            "create temp table _load (line int, customer_id text, kind text, value text, norm text,"
            " first_seen timestamptz, source text) on commit drop"
        )
        with tx.cursor().copy(
            "copy _load (line, customer_id, kind, value, norm, first_seen, source) from stdin"
        ) as cp:
            for item in staged:
                cp.write_row(item)
        unknown = tx.execute(
            "select line, customer_id from _load l"
            " where not exists (select 1 from customers c where c.customer_id = l.customer_id)"
        ).fetchall()
        result.rejected += [
            (int(ln), f"customer_id {cid!r} is no profile: load the customer first") for ln, cid in unknown
        ]
        stored = tx.execute(
            "insert into identifiers (customer_id, kind, value, norm, first_seen, source)"
            " select distinct on (customer_id, kind, norm) customer_id, kind, value, norm,"
            " coalesce(first_seen, now()), source from _load l"
            " where exists (select 1 from customers c where c.customer_id = l.customer_id)"
            " order by customer_id, kind, norm, coalesce(first_seen, now()), line"
            " on conflict (customer_id, kind, norm) do update set"
            " first_seen = least(identifiers.first_seen, excluded.first_seen)"
        ).rowcount
        result.stored = int(stored or 0)
    result.rejected.sort()
    return result


def exclude(engine: Engine, kind: str, value: str, *, reason: str | None = None) -> int:
    """Stop (kind, value) from linking anyone; returns how many profiles hold it.  Takes effect at the
    next ``baton identity resolve`` and in every cycle that begins afterwards."""
    if kind not in KINDS:
        raise InputError(f"unknown identifier kind {kind!r}: use one of {', '.join(KINDS)}")
    norm = normalize(kind, value)
    if not norm.strip():
        raise InputError("the value is empty after normalisation: there is nothing to exclude")
    with transaction(engine) as tx:
        tx.execute(
            "insert into identity_exclusions (kind, norm, value, reason) values (%(k)s, %(n)s, %(v)s, %(r)s)"
            " on conflict (kind, norm) do update"
            " set reason = coalesce(excluded.reason, identity_exclusions.reason)",  # since: the first time
            {"k": kind, "n": norm, "v": value, "r": reason},
        )
        row = tx.execute(
            "select count(distinct customer_id) from identity_links where kind = %(k)s and norm = %(n)s",
            {"k": kind, "n": norm},
        ).fetchone()
    return int(row[0]) if row else 0


# ------------------------------------------------------------------------------------------ show


@dataclass(frozen=True)
class Observation:
    """An identifier of a profile, with why it does or does not link."""

    customer_id: str
    kind: str
    value: str
    norm: str
    first_seen: datetime | None
    source: str
    holders: int
    status: str  # links | not shared | blocked | excluded | over-shared | not a linking kind


@dataclass
class PersonView:
    """One person: its profiles, their identifiers, and the chain of shared values linking each profile
    to the person's profile (``baton identity show``)."""

    query: str
    person_id: str
    profiles: list[dict[str, Any]]
    observations: list[Observation]
    chains: dict[str, list[tuple[str, str, str, str]]]  # profile -> [(from, kind, normalised value, to), ...]


def dict_rows(tx: Session, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of *sql* as dictionaries (column name -> value)."""
    with tx.raw.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params)
        return list(cur.fetchall())


_PHONE_LIKE = re.compile(r"\+?[0-9 ().\-/]+")


def lookup_kinds(query: str) -> tuple[str, ...]:
    """The identifier kinds a search text is compared as: an email only when it has an ``@``, a phone only
    when it is written as one (digits, spaces, ``+ ( ) . - /``, at least 5 digits) — a phone keeps only
    its digits, so ``x14160000002`` or ``mary.14160000002@example.com`` must not name the person whose
    phone is +1 416 000 0002 — and the other kinds (trimmed, exact) always."""
    text = query.strip(WS)
    kinds = [k for k in KINDS if k not in ("email", "phone")]
    if "@" in text:
        kinds.insert(0, "email")
    if _PHONE_LIKE.fullmatch(text) and sum(c.isdigit() for c in text) >= 5:
        kinds.insert(0, "phone")
    return tuple(kinds)


def find_profiles(tx: Session, query: str) -> list[str]:
    """The profiles a customer id or an identifier value names: a customer id exactly, else the
    identifier in any spelling, compared only as the kinds it can be (:func:`lookup_kinds`); a value
    that identifies no one (``null``, ``000``, empty) names no one."""
    row = tx.execute("select customer_id from customers where customer_id = %(q)s", {"q": query}).fetchone()
    if row is not None:
        return [str(row[0])]
    norms = {kind: normalize(kind, query) for kind in lookup_kinds(query)}
    norms = {kind: norm for kind, norm in norms.items() if not is_junk(norm)}
    if not norms:
        return []
    columns = [col for col in PROFILE_COLUMNS if col in norms]
    found = tx.execute(
        "select distinct customer_id from identifiers where (kind, norm) in"
        " (select * from unnest(%(kinds)s::text[], %(norms)s::text[]))"
        + "".join(
            f" union select customer_id from customers where {norm_sql(col, col)} = %(n_{col})s"
            for col in columns
        )
        + " order by 1",
        {
            "kinds": list(norms),
            "norms": list(norms.values()),
            **{f"n_{c}": norms[c] for c in columns},
        },
    ).fetchall()
    return [str(r[0]) for r in found]


def person_of(tx: Session, customer_id: str) -> str:
    """The current person of a profile (``identity_persons``; itself when linked to no one)."""
    row = tx.execute(
        "select person_id from identity_persons where customer_id = %(c)s", {"c": customer_id}
    ).fetchone()
    return str(row[0]) if row else customer_id


def person_named(tx: Session, query: str) -> tuple[str, list[str]] | None:
    """The person a customer id or identifier names and all of its profiles (None: no profile has it).

    Raises :class:`InputError` when the value names profiles of several persons (an excluded or
    over-shared value): the command must not pick one of them."""
    profiles = find_profiles(tx, query)
    if not profiles:
        return None
    persons = sorted({person_of(tx, p) for p in profiles})
    if len(persons) > 1:
        shown = ", ".join(persons[:10]) + (", …" if len(persons) > 10 else "")
        raise InputError(
            f"{query!r} names profiles of {len(persons)} different persons ({shown}): "
            "give a customer id or a value only one person holds"
        )
    person = persons[0]
    rows = tx.execute(
        "select customer_id from identity_persons where person_id = %(p)s union select %(p)s order by 1",
        {"p": person},
    ).fetchall()
    return person, [str(r[0]) for r in rows]


def show(engine: Engine, query: str, settings: IdentitySettings) -> PersonView | None:
    """The person named by *query* (a customer id or any identifier), as of the last resolve."""
    with transaction(engine) as tx:
        named = person_named(tx, query)
        if named is None:
            return None
        person, members = named
        rows = dict_rows(
            tx,
            "select customer_id, email, phone, push_token, postal_address, first_name, last_name, timezone,"
            " created_at from customers where customer_id = any(%(m)s) order by customer_id",
            {"m": members},
        )
        observations = _observations(tx, members, settings)
    chains = _chains(person, [o for o in observations if o.status == "links"])
    return PersonView(query, person, rows, observations, chains)


def _observations(tx: Session, members: list[str], settings: IdentitySettings) -> list[Observation]:
    columns = " union all ".join(
        f"select customer_id, '{col}' as kind, {col} as value, {norm_sql(col, col)} as norm,"
        " created_at as first_seen, 'profile' as source from customers"
        f" where customer_id = any(%(m)s) and {col} is not null"
        for col in PROFILE_COLUMNS
    )
    rows = tx.execute(
        "select o.customer_id, o.kind, o.value, o.norm, o.first_seen, o.source,"
        " (select count(distinct l.customer_id) from identity_links l where l.kind = o.kind and l.norm = o.norm),"
        " exists (select 1 from identity_exclusions x where x.kind = o.kind and x.norm = o.norm)"
        " from (select customer_id, kind, value, norm, first_seen, coalesce(source, '') as source from identifiers"
        f" where customer_id = any(%(m)s) union all {columns}) o order by o.customer_id, o.kind, o.norm",
        {"m": members},
    ).fetchall()
    out = []
    for cid, kind, value, norm, first_seen, source, holders, excluded in rows:
        holders = max(int(holders), 1)
        if is_blocked(kind, norm, settings.blocked_values):
            status = "blocked"
        elif kind not in settings.link_on:
            status = "not a linking kind"
        elif excluded:
            status = "excluded"
        elif holders > settings.max_profiles_per_value:
            status = f"over-shared ({holders} profiles, more than {settings.max_profiles_per_value})"
        elif holders < 2:
            status = "not shared"
        else:
            status = "links"
        out.append(Observation(cid, kind, value, norm, first_seen, source, holders, status))
    return out


def _chains(person: str, links: list[Observation]) -> dict[str, list[tuple[str, str, str, str]]]:
    """For every profile, the shortest chain of shared values from the person's profile to it."""
    by_value: dict[tuple[str, str], list[Observation]] = {}
    for o in links:
        by_value.setdefault((o.kind, o.norm), []).append(o)
    neighbours: dict[str, list[tuple[str, Observation]]] = {}
    for holders in by_value.values():
        for a in holders:
            for b in holders:
                if a.customer_id != b.customer_id:
                    neighbours.setdefault(a.customer_id, []).append((b.customer_id, b))
    chains: dict[str, list[tuple[str, str, str, str]]] = {person: []}
    queue = deque([person])
    while queue:
        current = queue.popleft()
        for nxt, via in sorted(
            neighbours.get(current, []), key=lambda item: (item[0].encode(), item[1].kind)
        ):
            if nxt not in chains:
                chains[nxt] = [*chains[current], (current, via.kind, via.norm, nxt)]
                queue.append(nxt)
    return chains


__all__ = [
    "LoadResult",
    "Observation",
    "PersonView",
    "exclude",
    "find_profiles",
    "lookup_kinds",
    "person_named",
    "load_identifiers",
    "person_of",
    "show",
]
