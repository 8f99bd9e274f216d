"""Benchmark: one arbitration cycle at retail scale, end to end, against the naive loop.

Data (generated in SQL, not timed): 1,000,000 people across 9 timezones (some missing or
invalid), 12 campaigns proposing 5,000,000+ candidate rows (duplicates and unknown
customers included), SMS opt-ins and topic opt-outs, suppressions, and 30 days of
message history.  Policy: four caps (rolling 24h, 7d per channel, a calendar-day period
cap by tag, a weekly period cap), quiet hours on SMS and push, a 5% global control
group, campaign holdouts and a campaign frequency cap.

Timed, in one run: *load* (each campaign's audience SQL into its batch, as the campaign
DAGs do), *decide* (shards in parallel, as the mapped DAG tasks do), *commit* (outbox
and summary in one transaction).  Then the same cycle is decided for a sample of the
people by a naive per-person Python loop (fetch the rows, loop person by person — what
a DAG author would write; it is the plain-Python reference of the test suite) and the
throughputs are compared.  Peak memory is the Python process's maximum RSS.
"""

from __future__ import annotations

import os
import resource
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from baton.arbitration.cycle import begin_cycle, commit_cycle, decide_shard
from baton.audience.load import load_batch
from baton.identity.resolve import IdentitySettings
from baton.spec import Campaign, Policy
from baton.store import engine as store_engine
from baton.store.migrate import upgrade

ROOT = Path(__file__).resolve().parents[1]
T = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
console = Console()

# id, priority, category, channels, tags, share of people, holdout
CAMPAIGNS: list[tuple[str, int, str, list[str], list[str], float, int]] = [
    ("abandoned_cart", 80, "marketing", ["email", "push"], ["cart", "promo"], 0.40, 10),
    ("browse_abandonment", 60, "marketing", ["email", "push"], ["browse"], 0.55, 0),
    ("back_in_stock", 75, "marketing", ["sms", "email", "push"], ["stock"], 0.25, 0),
    ("price_drop", 70, "marketing", ["email", "push"], ["promo"], 0.45, 0),
    ("review_request", 40, "marketing", ["email"], ["review"], 0.35, 0),
    ("weekly_newsletter", 30, "marketing", ["email"], ["newsletter"], 0.90, 0),
    ("seasonal_promotion", 50, "marketing", ["email", "sms"], ["promo"], 0.80, 10),
    ("win_back", 45, "marketing", ["email", "direct_mail"], ["winback"], 0.30, 20),
    ("loyalty_points", 35, "marketing", ["email", "push"], ["loyalty"], 0.50, 0),
    ("birthday", 65, "marketing", ["email", "sms"], ["promo"], 0.10, 0),
    ("order_confirmation", 100, "transactional", ["email", "sms"], [], 0.20, 0),
    ("shipping_update", 95, "transactional", ["push", "sms"], [], 0.30, 0),
]

POLICY = {
    "cycle": {"schedule": "0 * * * *", "wait_for": "30m", "max_send_delay": "2h"},
    "default_timezone": "America/New_York",
    "global_control_percent": 5,
    "caps": [
        {"name": "daily_total", "limit": 2, "window": "24h"},
        {"name": "weekly_email", "limit": 5, "window": "7d", "channel": "email"},
        {"name": "one_promo_a_day", "limit": 1, "period": "day", "tag": "promo"},
        {"name": "weekly_total", "limit": 8, "period": "week"},
    ],
    "quiet_hours": {"sms": {"start": "21:00", "end": "09:00"}, "push": {"start": "22:00", "end": "08:00"}},
}


def build_specs() -> tuple[Policy, list[Campaign]]:
    policy = Policy.model_validate(POLICY)
    campaigns = []
    for cid, prio, cat, chans, tags, _share, holdout in CAMPAIGNS:
        spec: dict[str, Any] = {
            "id": cid,
            "name": cid.replace("_", " "),
            "owner": "bench",
            "schedule": "@hourly",
            "start_date": "2026-01-01",
            "priority": prio,
            "category": cat,
            "channels": chans,
            "tags": tags,
            "holdout_percent": holdout,
            "params": {"cid": cid},
            "audience": {
                "sql": "select customer_id, score, item_name from bench_audience"
                " where campaign_id = {{ params.cid }} order by seq"
            },
            "message": {
                "email": {"subject": "s", "html": "h"},
                "sms": {"text": "t"},
                "push": {"title": "t", "body": "b"},
                "direct_mail": {"creative": "c"},
                "audience": {"list": "l"},
            },
        }
        spec["message"] = {k: v for k, v in spec["message"].items() if k in chans}
        if cid == "review_request":
            spec["frequency"] = {"limit": 1, "window": "7d"}
        campaigns.append(Campaign.model_validate(spec))
    return policy, campaigns


def generate(engine: sa.Engine, people: int, history_per_day: float) -> int:
    """Fill the benchmark database (not timed). Returns the number of candidate rows."""
    zones = (
        "array['America/New_York','America/Chicago','America/Los_Angeles','Europe/London','Europe/Berlin',"
        "'Asia/Tokyo','Australia/Sydney',null,'Bad/Zone']"
    )
    stmts = [
        f"""insert into customers (customer_id, email, phone, push_token, postal_address, timezone)
            select 'c' || lpad(i::text, 7, '0'),
                   case when i % 20 <> 0 then 'User' || i || '@Example.com' end,
                   case when i % 10 < 7 then '+1555' || lpad(i::text, 7, '0') end,
                   case when i % 5 < 2 then 'tok' || i end,
                   case when i % 5 < 3 then i || ' Main St' end,
                   ({zones})[1 + i % 9]
            from generate_series(1, {people}) i""",
        f"""insert into consents (customer_id, channel, topic, status)
            select 'c' || lpad(i::text, 7, '0'), 'sms', '', 'opt_in' from generate_series(1, {people}) i
            where i % 10 < 7 and i % 3 = 0""",
        f"""insert into consents (customer_id, channel, topic, status)
            select 'c' || lpad(i::text, 7, '0'), 'email', 'weekly_newsletter', 'opt_out'
            from generate_series(1, {people}) i where i % 29 = 0""",
        f"""insert into consents (customer_id, channel, topic, status)
            select 'c' || lpad(i::text, 7, '0'), 'email', '', 'opt_out' from generate_series(1, {people}) i
            where i % 97 = 0""",
        f"""insert into suppressions (channel, address, reason)
            select 'email', lower('User' || i || '@example.com'), 'bounce' from generate_series(1, {people}) i
            where i % 101 = 0""",
        f"""insert into messages (cycle_at, customer_id, campaign_id, channel, tags, counts_toward_caps, send_at,
                                  status)
            select at, cid, k.id, k.ch, k.tags, true, at, case when g % 17 = 0 then 'expired' else 'sent' end
            from (select g, 'c' || lpad((1 + (g * 7919) % {people})::text, 7, '0') as cid,
                         date_trunc('hour', timestamptz '{T.isoformat()}' - (1 + g % 720) * interval '1 hour') as at,
                         g % 4 as kind
                  -- (person, hour, campaign) repeats after lcm(people, 720) rows: no more than that
                  from generate_series(1::bigint, least({int(people * history_per_day * 30)}, lcm({people}, 720))) g) h
            join (values (0, 'weekly_newsletter', 'email', '{{newsletter}}'::text[]),
                         (1, 'price_drop', 'push', '{{promo}}'), (2, 'review_request', 'email', '{{review}}'),
                         (3, 'browse_abandonment', 'email', '{{browse}}')) k(kind, id, ch, tags) on k.kind = h.kind""",
        "create table bench_audience (seq bigint, campaign_id text, customer_id text, score float8,"
        " item_name text)",
    ]
    for i, (cid, *_rest) in enumerate(CAMPAIGNS):
        share = CAMPAIGNS[i][5]
        n = int(people * share)
        stride = [
            7919,
            104729,
            1299709,
            15485863,
            32452843,
            49979687,
            67867967,
            86028121,
            104395301,
            122949823,
            141650939,
            160481183,
        ][i]
        stmts.append(
            f"""insert into bench_audience select g, '{cid}',
                   case when g % 5000 = 0 then 'ghost' || g
                        else 'c' || lpad((1 + (g::bigint * {stride}) % {people})::text, 7, '0') end,
                   ((g * 2654435761) % 1000) / 10.0, 'item ' || (g % 500)
                from generate_series(1::bigint, {n}) g"""
        )
        # a few duplicate rows (same person proposed twice in one batch)
        stmts.append(
            f"""insert into bench_audience select {n} + g, '{cid}',
                   'c' || lpad((1 + (g::bigint * {stride}) % {people})::text, 7, '0'), 50, 'dup'
                from generate_series(1::bigint, {max(1, n // 100)}) g"""
        )
    stmts.append("create index on bench_audience (campaign_id, seq)")
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        raw.execute("set local maintenance_work_mem = '1GB'")
        # the history (millions of rows) goes in without the secondary indexes of
        # `messages`, which are then built once by sorting: same table, a fraction of the time
        rebuild = raw.execute(
            "select 'alter table messages add constraint ' || quote_ident(conname) || ' '"
            " || pg_get_constraintdef(oid) from pg_constraint where conrelid = 'messages'::regclass"
            " and contype = 'u'"
        ).fetchall()
        rebuild += raw.execute(
            "select pg_get_indexdef(i.indexrelid) from pg_index i where i.indrelid = 'messages'::regclass"
            " and not i.indisprimary and not exists (select 1 from pg_constraint c where c.conindid = i.indexrelid)"
        ).fetchall()
        for (name,) in raw.execute(
            "select conname from pg_constraint where conrelid = 'messages'::regclass and contype = 'u'"
        ).fetchall():
            raw.execute(f'alter table messages drop constraint "{name}"')
        for (name,) in raw.execute(
            "select c.relname from pg_index i join pg_class c on c.oid = i.indexrelid"
            " where i.indrelid = 'messages'::regclass and not i.indisprimary"
        ).fetchall():
            raw.execute(f'drop index "{name}"')
        for s in stmts:
            raw.execute(s)
        for (ddl,) in rebuild:
            raw.execute(ddl)
    with engine.connect() as conn:
        conn.exec_driver_sql("analyze")
        return int(conn.exec_driver_sql("select count(*) from bench_audience").scalar() or 0)


def reset_cycle(engine: sa.Engine, people: int) -> int | None:
    """Reset the benchmark cycle in a kept database; None when it holds no (or other) data."""
    with engine.begin() as conn:
        n = conn.exec_driver_sql("select count(*) from customers").scalar()
        if n != people or conn.exec_driver_sql("select to_regclass('bench_audience')").scalar() is None:
            if n:
                raise SystemExit(
                    f"BATON_BENCH_DB holds {n:,} people, not {people:,}: drop it or pick another name"
                )
            return None
        conn.exec_driver_sql("delete from messages where cycle_at >= %(t)s", {"t": T})
        conn.exec_driver_sql("delete from cycle_decisions where cycle_at >= %(t)s", {"t": T})
        conn.exec_driver_sql("delete from cycle_outcomes where cycle_at >= %(t)s", {"t": T})
        conn.exec_driver_sql("delete from cycles where cycle_at >= %(t)s", {"t": T})
        conn.exec_driver_sql("truncate candidates, candidate_batches")
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("vacuum analyze candidates")
        conn.exec_driver_sql("vacuum analyze cycle_decisions")
        conn.exec_driver_sql("vacuum analyze messages")
        return int(conn.exec_driver_sql("select count(*) from bench_audience").scalar() or 0)


@dataclass
class CycleRun:
    """The timings and results of one benchmark cycle."""

    phases: dict[str, float]
    stats: list[Any]
    result: Any
    total: float


def identity_steady_state(engine: sa.Engine, policy: Policy) -> None:
    """The identity as a live store has it when a cycle begins (not timed): resolved, and the shared
    values refreshed by the previous cycle or resolve — its watermarks a minute ago and the bulk load an
    hour ago, instead of a store that was never resolved (whose first cycle refreshes every value in
    full) or one whose bulk load lies within the refresh's 15-minute lag."""
    from baton.identity.store import resolve

    with engine.begin() as conn:
        # what the bulk load stored lies an hour back, behind the watermarks (every profile moved alike)
        recent = "> now() - interval '1 hour'"
        conn.exec_driver_sql(
            f"update identifiers set added_at = added_at - interval '1 hour' where added_at {recent}"
        )
        conn.exec_driver_sql(
            "update customers set created_at = created_at - interval '1 hour',"
            f" updated_at = updated_at - interval '1 hour' where created_at {recent} or updated_at {recent}"
        )
    resolve(engine, IdentitySettings.of(policy), full=True)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "update baton_meta set value = value || jsonb_build_object('links_watermark',"
            " (now() - interval '1 minute')::text, 'persons_watermark', (now() - interval '1 minute')::text)"
            " where key = 'identity'"
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("identity_links", "identity_persons", "identifiers", "customers"):
            conn.exec_driver_sql(f"vacuum analyze {table}")


def run_cycle(engine: sa.Engine, policy: Policy, campaigns: list[Campaign], shards: int) -> CycleRun:
    """One cycle, timed: load the batches (as many campaigns at a time as shards), decide the shards in
    parallel, commit."""
    phases: dict[str, float] = {}
    t0 = time.perf_counter()
    # the campaigns' DAGs load their batches concurrently: here with as many workers as shards
    with ThreadPoolExecutor(max_workers=shards) as pool:
        list(
            pool.map(
                lambda c: load_batch(
                    engine, c, data_interval_start=T - timedelta(hours=1), data_interval_end=T, cycle_at=T
                ),
                campaigns,
            )
        )
    phases[f"load (audience SQL → batches, {shards} campaigns at a time)"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    start = begin_cycle(engine, T, campaigns, shards=shards, identity=IdentitySettings.of(policy))
    phases["begin (decision token, identity as of T)"] = time.perf_counter() - t1
    t1 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=shards) as pool:
        stats = list(pool.map(lambda s: decide_shard(engine, T, policy, campaigns, s), range(start.shards)))
    phases["decide (shards in parallel)"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    result = commit_cycle(engine, T, policy, campaigns)
    phases["commit (outbox + summary)"] = time.perf_counter() - t2
    return CycleRun(phases, stats, result, time.perf_counter() - t0)


def naive_loop(
    engine: sa.Engine, policy: Policy, campaigns: list[Campaign], sample_shards: int
) -> tuple[int, float]:
    """The same cycle, for the people of one shard out of ``sample_shards``, decided by a
    per-person Python loop over rows fetched from the store. Returns (candidate rows, seconds)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from baton.arbitration.scenario import (
        CandidateRow,
        ConsentRow,
        CustomerRow,
        HistoryRow,
        Scenario,
        SuppressionRow,
    )
    from reference_arbitration import decide_reference  # the plain-Python reading of SPEC §3

    started = time.perf_counter()
    where = f"baton_shard(customer_id, {sample_shards}) = 0"
    with engine.connect() as conn:
        cands = conn.exec_driver_sql(
            "select c.seq, b.campaign_id, c.customer_id, c.score, c.channel, c.expires_at from candidates c"
            f" join candidate_batches b using (batch_id) where {where}"
        ).all()
        people = conn.exec_driver_sql(
            f"select customer_id, email, phone, push_token, postal_address, timezone from customers where {where}"
        ).all()
        consents = conn.exec_driver_sql(
            f"select customer_id, channel, topic, status from consents where {where}"
        ).all()
        sups = conn.exec_driver_sql("select channel, address from suppressions").all()
        hist = conn.exec_driver_sql(
            "select customer_id, campaign_id, channel, cycle_at, tags, counts_toward_caps from messages"
            f" where {where} and status not in ('cancelled', 'expired', 'failed')"
            " and cycle_at > cast(%(t)s as timestamptz) - interval '32 days' and cycle_at < %(t)s",
            {"t": T},
        ).all()
    scenario = Scenario(
        policy=policy,
        campaigns={c.id: c for c in campaigns},
        customers=tuple(CustomerRow(*r) for r in people),
        candidates=tuple(CandidateRow(r[0], r[1], r[2], r[3], r[4], r[5]) for r in cands),
        consents=tuple(ConsentRow(*r) for r in consents),
        suppressions=tuple(SuppressionRow(*r) for r in sups),
        history=tuple(HistoryRow(r[0], r[1], r[2], r[3], tuple(r[4]), r[5]) for r in hist),
    )
    decide_reference(scenario, T)
    return len(cands), time.perf_counter() - started


def main(
    people: int = 1_000_000, shards: int = 2, naive_sample: int = 50, history_per_day: float = 0.3
) -> None:
    base = store_engine.server_url()
    # BATON_BENCH_DB=<name>: keep the generated data in that database and reuse it next time
    # (the cycle is reset first); otherwise a throw-away database
    reuse = os.environ.get("BATON_BENCH_DB")
    name = reuse or f"baton_bench_{uuid.uuid4().hex[:8]}"
    url = base.set(database=name)
    store_engine.ensure_database(url)
    engine = sa.create_engine(url, pool_size=shards + 2, connect_args=store_engine.connect_args())
    try:
        upgrade(engine)
        policy, campaigns = build_specs()
        with console.status(f"generating {people:,} people, candidates and 30 days of history (not timed)…"):
            t0 = time.perf_counter()
            rows = reset_cycle(engine, people) if reuse else None
            if rows is None:
                rows = generate(engine, people, history_per_day)
            with engine.connect() as conn:
                hist = conn.exec_driver_sql("select count(*) from messages").scalar()
            gen_s = time.perf_counter() - t0
        console.print(
            f"data: {people:,} people, {rows:,} candidate rows from {len(campaigns)} campaigns, "
            f"{hist:,} history messages ({gen_s:.0f}s to generate)"
        )
        identity_steady_state(engine, policy)
        # the state a live cycle starts from: a checkpoint has just passed (checkpoint_timeout is
        # shorter than the cycle), so the first change to every existing page writes it whole
        # to the WAL; and it makes runs comparable
        with engine.connect() as conn:
            conn.exec_driver_sql("checkpoint")
            wal0 = conn.exec_driver_sql("select pg_current_wal_lsn()").scalar()
        run = run_cycle(engine, policy, campaigns, shards)
        phases, stats, result, total = run.phases, run.stats, run.result, run.total
        with engine.connect() as conn:
            wal_mb = (
                float(
                    conn.exec_driver_sql(
                        "select pg_wal_lsn_diff(pg_current_wal_lsn(), %(l)s)", {"l": wal0}
                    ).scalar()
                    or 0
                )
                / 1e6
            )
        sub: dict[str, float] = {}
        for s in stats:
            for k, v in (s.timings if s else {}).items():
                sub[k] = sub.get(k, 0.0) + v
        naive_rows, naive_s = naive_loop(engine, policy, campaigns, naive_sample)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        engine_rate = rows / total
        naive_rate = naive_rows / naive_s if naive_s else float("nan")

        table = Table(title=f"one cycle: {people:,} people, {rows:,} candidate rows, {shards} shard(s)")
        table.add_column("phase")
        table.add_column("seconds", justify="right")
        for k, v in phases.items():
            table.add_row(k, f"{v:.1f}")
        for k, v in sub.items():
            table.add_row(f"  decide: {k} (sum over shards)", f"{v:.1f}")
        table.add_row("end to end", f"{total:.1f}")
        console.print(table)
        console.print(
            f"alternatives decided: {result.alternatives:,}; selected: {result.selected:,}; "
            f"outbox messages: {result.messages:,}"
        )
        console.print(f"WAL written by the cycle: {wal_mb:,.0f} MB")
        console.print(f"[bold]candidates per second end to end: {engine_rate:,.0f}[/bold]")
        console.print(
            f"naive per-person Python loop: {naive_rows:,} candidate rows (1/{naive_sample} of the people)"
            f" in {naive_s:.1f}s = {naive_rate:,.0f} candidates/s"
        )
        console.print(f"[bold]engine vs naive loop: {engine_rate / naive_rate:,.1f}x[/bold]")
        console.print(f"[bold]peak memory of the Python process: {peak_mb:,.0f} MB[/bold]")
    finally:
        engine.dispose()
        if not (os.environ.get("BATON_BENCH_KEEP") or reuse):
            store_engine.drop_database(url)
