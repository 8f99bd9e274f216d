"""Benchmark: identity at retail scale (SPEC §6).

1. **Resolve**: 1,000,000 profiles with more than 3,000,000 identifiers (emails in other spellings,
   phones, cookies, devices, logins; about one person in eight has two to four profiles; junk values
   and over-shared values), resolved in full, then 10,000 new identifiers resolved incrementally.
2. **Arbitration with identity**: the arbitration benchmark's cycle (bench/arbitration.py: 1M people,
   5M+ candidate rows, four caps, quiet hours, holdouts) decided three times in the same run on the
   same candidates — with no profile linked to another; with a third of the profiles linked into
   persons of two to four profiles (the cycle takes its persons from the current ones); and linked,
   with the persons computed as of T in full (how cycles found them before) — and the throughputs
   compared (target: with identity at least 80% of without).

Data is generated in SQL and not timed.  ``BATON_BENCH_DB`` keeps and reuses the arbitration data.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
import uuid
from collections.abc import Iterator

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from baton.identity import store as identity_store
from baton.identity.resolve import IdentitySettings
from baton.identity.store import resolve
from baton.store import engine as store_engine
from baton.store.migrate import upgrade

console = Console()


def _scratch(prefix: str) -> tuple[sa.Engine, str]:
    base = store_engine.server_url()
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    url = base.set(database=name)
    store_engine.ensure_database(url)
    engine = sa.create_engine(url, connect_args=store_engine.connect_args())
    upgrade(engine)
    return engine, name


def _drop(name: str) -> None:
    store_engine.drop_database(store_engine.server_url().set(database=name))


def _execute(engine: sa.Engine, *statements: str) -> None:
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        raw.execute("set local maintenance_work_mem = '1GB'")
        for statement in statements:
            raw.execute(statement)
    with engine.connect() as conn:
        conn.exec_driver_sql("analyze")


def overlap_sql(people: int, every: int = 8) -> list[str]:
    """Identifiers that link profiles: every ``every``-th profile starts a group of two to four
    consecutive profiles sharing a login (plus the group's emails in another spelling on the first
    two), a few junk values everywhere and some over-shared family-tablet device ids; all first seen
    before the benchmark cycle."""
    pid = "'c' || lpad(i::text, 7, '0')"
    return [
        # the group's login, on each of its 2-4 profiles
        f"""insert into identifiers (customer_id, kind, value, norm, first_seen, source)
            select 'c' || lpad((g + k)::text, 7, '0'), 'login', 'acct-' || g, 'acct-' || g, '2026-01-01',
                   'bench'
            from generate_series(1, {people}, {every}) g, generate_series(0, 1 + g % 3) k where g + k <= {people}""",
        # junk: null emails and zero phones link no one
        f"""insert into identifiers (customer_id, kind, value, norm, first_seen, source)
            select {pid}, 'email', 'NULL', 'null', '2026-01-01', 'bench'
            from generate_series(1, {people}) i where i % 211 = 0""",
        # over-shared: 12 profiles per family tablet (more than max_profiles_per_value)
        f"""insert into identifiers (customer_id, kind, value, norm, first_seen, source)
            select {pid}, 'device', 'tablet-' || (i % ({people} / 1200 + 1)), 'tablet-' || (i % ({people} / 1200 + 1)),
                   '2026-01-01', 'bench'
            from generate_series(1, {people}) i where i % 100 = 7""",
    ]


def bench_resolve(people: int) -> list[tuple[str, str]]:
    """Resolve ``people`` profiles with 3+ identifiers each, in full and incrementally."""
    engine, name = _scratch("baton_bench_identity")
    rows: list[tuple[str, str]] = []
    try:
        with console.status(f"generating {people:,} profiles and their identifiers (not timed)…"):
            _execute(
                engine,
                f"""insert into customers (customer_id, email, phone, push_token, created_at, updated_at)
                    select 'c' || lpad(i::text, 7, '0'),
                           case when i % 20 <> 0 then case when i % 8 = 2 then ' USER' || (i - 1) || '@Example.com'
                                else 'user' || i || '@example.com' end end,
                           case when i % 10 < 7 then '+1 555 ' || lpad(i::text, 7, '0') end,
                           case when i % 5 < 2 then 'tok' || i end,
                           now() - (i % 1000) * interval '1 hour', now() - interval '40 days'
                    from generate_series(1, {people}) i""",
                f"""insert into identifiers (customer_id, kind, value, norm, first_seen, source)
                    select 'c' || lpad(i::text, 7, '0'), k.kind, k.kind || '-' || i || '-' || k.n,
                           k.kind || '-' || i || '-' || k.n, now() - interval '35 days', 'bench'
                    from generate_series(1, {people}) i,
                         (values ('cookie', 1), ('cookie', 2), ('device', 1)) k(kind, n)
                    where k.kind = 'cookie' or i % 5 < 2""",
                *overlap_sql(people),
            )
            with engine.connect() as conn:
                identifiers = conn.exec_driver_sql("select count(*) from identifiers").scalar() or 0
                columns = (
                    conn.exec_driver_sql(
                        "select count(email) + count(phone) + count(push_token) from customers"
                    ).scalar()
                    or 0
                )
        console.print(
            f"data: {people:,} profiles, {identifiers:,} identifier rows + {columns:,} identifying columns"
            f" = {identifiers + columns:,} identifiers"
        )
        with engine.begin() as conn:  # everything above was stored a while ago
            conn.exec_driver_sql("update identifiers set added_at = now() - interval '40 days'")
        t0 = time.perf_counter()
        full = resolve(engine, IdentitySettings(), full=True)
        rows.append(("resolve in full", f"{time.perf_counter() - t0:.1f} s"))
        rows.append(
            (
                "  persons of several profiles",
                f"{full.persons.persons:,} ({full.persons.linked_profiles:,} profiles)",
            )
        )
        rows.append(("  label propagation rounds", str(full.persons.rounds)))
        # an incremental resolve runs some time after the full one, when autovacuum has processed the
        # million rows the full resolve wrote (visibility map, statistics): the same state, not timed
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in ("customers", "identifiers", "identity_links", "identity_persons"):
                conn.exec_driver_sql(f"vacuum analyze {table}")
        with engine.begin() as conn:
            meta = (
                "jsonb_build_object('links_watermark', (now() - interval '1 minute')::text, 'persons_watermark',"
                " (now() - interval '1 minute')::text, 'settings', value->'settings')"
            )
            raw = conn.connection.driver_connection
            raw.execute(f"update baton_meta set value = {meta} where key = 'identity'")
            # 10,000 new identifiers: half link two existing profiles, half are new cookies
            raw.execute(
                f"""insert into identifiers (customer_id, kind, value, norm, first_seen, source)
                    select 'c' || lpad((1 + (g * 7919) % {people})::text, 7, '0'),
                           case when g % 2 = 0 then 'login' else 'cookie' end, 'new-' || (g / 2), 'new-' || (g / 2),
                           now(), 'bench' from generate_series(1, 10000) g"""
            )
        t0 = time.perf_counter()
        step = resolve(engine, IdentitySettings())
        rows.append(("incremental resolve of 10,000 new identifiers", f"{time.perf_counter() - t0:.2f} s"))
        rows.append(("  profiles re-resolved", f"{step.affected_profiles:,}"))
    finally:
        engine.dispose()
        _drop(name)
    return rows


@contextlib.contextmanager
def _persons_log() -> Iterator[list[str]]:
    """What ``cycle_persons`` logged about how the cycle found its persons."""
    found: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            text = record.getMessage()
            if text.startswith("identity as of"):
                found.append(text.split("(", 1)[-1].split(";")[0])

    logger = logging.getLogger("baton.identity.store")
    handler, level, propagate = Keep(), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield found
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate


def bench_arbitration(people: int, shards: int) -> list[tuple[str, str]]:
    """The arbitration benchmark's cycle without and with linked profiles, on the same candidates."""
    from bench import arbitration as arb

    base = store_engine.server_url()
    reuse = os.environ.get("BATON_BENCH_DB")
    name = reuse or f"baton_bench_{uuid.uuid4().hex[:8]}"
    url = base.set(database=name)
    store_engine.ensure_database(url)
    engine = sa.create_engine(url, pool_size=shards + 2, connect_args=store_engine.connect_args())
    rows: list[tuple[str, str]] = []
    try:
        upgrade(engine)
        policy, campaigns = arb.build_specs()
        with console.status(f"generating {people:,} people and their candidates (not timed)…"):
            candidates = arb.reset_cycle(engine, people) if reuse else None
            if candidates is None:
                candidates = arb.generate(engine, people, 0.3)
            with engine.begin() as conn:
                conn.exec_driver_sql("truncate identifiers, identity_links, identity_persons, cycle_persons")
                conn.exec_driver_sql("delete from baton_meta where key = 'identity'")
        rates: dict[str, float] = {}
        runs = (
            ("without identity", False, True),
            ("with identity", True, True),
            ("with identity, persons computed as of T in full", True, False),
        )
        for label, linked, current in runs:
            if linked:
                arb.reset_cycle(engine, people)  # the same cycle again, on the same candidates
                if "with identity" not in rates:
                    _execute(engine, *overlap_sql(people))
            arb.identity_steady_state(engine, policy)
            # without reuse: every cycle found its persons so before it took the current ones
            limits = (identity_store.REUSE_LIMIT, identity_store.REUSE_MIN)
            if not current:
                identity_store.REUSE_LIMIT, identity_store.REUSE_MIN = -1.0, -1
            try:
                with _persons_log() as found:
                    run = arb.run_cycle(engine, policy, campaigns, shards)
            finally:
                identity_store.REUSE_LIMIT, identity_store.REUSE_MIN = limits
            rates[label] = candidates / run.total
            rows.append((f"{label}: end to end", f"{run.total:.1f} s = {rates[label]:,.0f} candidates/s"))
            for phase, seconds in run.phases.items():
                rows.append((f"  {phase}", f"{seconds:.1f} s"))
            if linked:
                rows.append(("  the cycle's persons", "; ".join(found)))
                with engine.connect() as conn:
                    linked_profiles = conn.exec_driver_sql("select count(*) from identity_persons").scalar()
                rows.append(("  profiles in persons of several profiles", f"{linked_profiles:,}"))
            rows.append((f"  {label}: selected", f"{run.result.selected:,}"))
        without = rates["without identity"]
        rows.append(
            (
                "[bold]with / without identity[/bold]",
                f"[bold]{rates['with identity'] / without:.0%}[/bold] (target ≥ 80%); persons computed as of T"
                f" in full: {rates['with identity, persons computed as of T in full'] / without:.0%}",
            )
        )
    finally:
        engine.dispose()
        if not (os.environ.get("BATON_BENCH_KEEP") or reuse):
            _drop(name)
    return rows


def main(
    people: int = 1_000_000, shards: int = 2, parts: tuple[str, ...] = ("resolve", "arbitration")
) -> None:
    """Run the identity benchmarks and print their figures."""
    rows: list[tuple[str, str]] = []
    if "resolve" in parts:
        rows += bench_resolve(people)
    if "arbitration" in parts:
        rows += bench_arbitration(people, shards)
    table = Table(title=f"identity: {people:,} profiles", show_header=False)
    for k, v in rows:
        table.add_row(k, v)
    console.print(table)


__all__ = ["main", "overlap_sql"]
