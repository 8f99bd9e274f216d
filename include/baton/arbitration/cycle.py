"""One arbitration cycle in the store (SPEC §4): which batches it waits for, the decision
token, sharded decisions, and the single atomic commit of decisions and outbox.

Life of cycle ``T`` (no Airflow here; ``baton.airflow.arbitration`` calls these):

1. :func:`expected_campaigns` / :func:`batch_readiness` — which enabled campaigns feed
   ``T`` and whether their batches are ready (the DAG waits, deferred, up to ``wait_for``);
2. :func:`begin_cycle` — takes the decision token (one cycle decides at a time, so caps
   hold whatever runs in parallel), fixes the batches the cycle decides: its own, plus
   late batches of cycles already decided;
3. :func:`decide_shard` — per shard (stable hash of the person), in one transaction, the
   engine writes the shard's decisions and its outbox rows (one per selected alternative);
   a retry replaces exactly that shard's rows.  Shards run in parallel;
4. :func:`commit_cycle` — one transaction: batches marked decided, the per-campaign
   summary, the cycle marked ``decided`` — which is what publishes its outbox.

Until step 4 commits, the cycle's outbox rows are invisible to delivery (it skips messages
of cycles still deciding) and to other cycles' history, so decisions and outbox become
real together, atomically; a rerun of a decided cycle changes nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from psycopg import sql as pgsql
from psycopg.types.json import Jsonb
from sqlalchemy.engine import Engine

from baton.arbitration.engine import CycleEngine, ShardStats
from baton.identity.resolve import IdentitySettings
from baton.identity.store import cycle_persons
from baton.identity.store import refresh as refresh_identity
from baton.spec import Campaign, Policy
from baton.spec.schedule import previous_at
from baton.store.status import MessageStatus
from baton.store.tx import Tx, transaction

log = logging.getLogger(__name__)

TOKEN_LOCK = 0x0BA7_0002
LEASE = timedelta(minutes=30)
_US = timedelta(microseconds=1)


def expected_campaigns(campaigns: Iterable[Campaign], policy: Policy, at: datetime) -> dict[str, datetime]:
    """Enabled campaigns expected to feed cycle ``at``, with the end of the interval awaited.

    A campaign feeds ``at`` when one of its schedule times ``e`` lies in
    ``(previous cycle, at]`` — its run for the interval ending at ``e`` feeds the first
    cycle at or after ``e`` — and that interval lies within its start and end dates.
    """
    prev_cycle = previous_at(policy.cycle.schedule, at - _US)
    out: dict[str, datetime] = {}
    for c in campaigns:
        if not c.enabled:
            continue
        e = previous_at(c.schedule, at)
        if e <= prev_cycle:
            continue
        start = previous_at(c.schedule, e - _US)
        if start < c.start_date or (c.end_date is not None and e > c.end_date):
            continue
        out[c.id] = e
    return out


def batch_readiness(
    engine: Engine, at: datetime, expected: dict[str, datetime]
) -> tuple[list[str], list[str]]:
    """(ready, missing) among the expected campaigns of cycle ``at``."""
    if not expected:
        return [], []
    with engine.connect() as conn:
        ready = set(
            conn.execute(
                sa.text(
                    "select distinct b.campaign_id from candidate_batches b"
                    " join unnest(cast(:ids as text[]), cast(:ends as timestamptz[])) as e(campaign_id, interval_end)"
                    " on e.campaign_id = b.campaign_id where b.cycle_at = :at and b.data_interval_end >= e.interval_end"
                ),
                {"ids": list(expected), "ends": list(expected.values()), "at": at},
            ).scalars()
        )
    return sorted(ready), sorted(set(expected) - ready)


@dataclass
class CycleStart:
    """What :func:`begin_cycle` found or started: the shards and candidate batches the cycle decides,
    or that it was already decided, or the other cycles still deciding that block it."""

    cycle_at: datetime
    already_decided: bool
    shards: int
    batch_ids: list[int] = field(default_factory=list)
    blocked_by: list[datetime] = field(default_factory=list)


def _try_begin(
    engine: Engine,
    at: datetime,
    campaign_ids: list[str],
    *,
    shards: int,
    run_id: str | None,
    expected: list[str],
    late: list[str],
    identity: IdentitySettings,
) -> CycleStart:
    with transaction(engine) as tx:
        tx.execute("select pg_advisory_xact_lock(%(k)s)", {"k": TOKEN_LOCK})
        row = tx.execute(
            "select status, shards, batch_ids from cycles where cycle_at = %(at)s for update", {"at": at}
        ).fetchone()
        if row is not None and row[0] == "decided":
            return CycleStart(at, True, row[1], list(row[2]))
        others = [
            r[0]
            for r in tx.execute(
                "select cycle_at from cycles where status = 'deciding' and cycle_at <> %(at)s"
                " and heartbeat_at > now() - %(lease)s order by cycle_at",
                {"at": at, "lease": LEASE},
            ).fetchall()
        ]
        if others:
            return CycleStart(at, False, shards, blocked_by=others)
        if row is not None:  # a retry or a cleared run: keep what the cycle decided to decide
            tx.execute(
                "update cycles set heartbeat_at = now(), run_id = %(r)s where cycle_at = %(at)s",
                {"at": at, "r": run_id},
            )
            return CycleStart(at, False, row[1], list(row[2]))
        batch_ids = [
            r[0]
            for r in tx.execute(
                "select batch_id from candidate_batches b where b.decided_cycle_at is null"
                " and b.campaign_id = any(%(ids)s) and (b.cycle_at = %(at)s or (b.cycle_at < %(at)s and exists"
                " (select 1 from cycles c where c.cycle_at = b.cycle_at and c.status = 'decided')))"
                " order by batch_id",
                {"ids": campaign_ids, "at": at},
            ).fetchall()
        ]
        # the persons this cycle decides with, as of its decision time (SPEC §6): fixed once, so
        # every shard and every retry decides with the same ones
        refresh_identity(tx)
        cycle_persons(tx, at, identity)
        tx.execute(
            "insert into cycles (cycle_at, status, run_id, shards, batch_ids, campaigns, expected_campaigns,"
            " late_campaigns) values (%(at)s, 'deciding', %(r)s, %(n)s, %(b)s, %(c)s, %(e)s, %(l)s)",
            {
                "at": at,
                "r": run_id,
                "n": shards,
                "b": batch_ids,
                "c": campaign_ids,
                "e": expected,
                "l": late,
            },
        )
        return CycleStart(at, False, shards, batch_ids)


def begin_cycle(
    engine: Engine,
    at: datetime,
    campaigns: Iterable[Campaign],
    *,
    shards: int,
    run_id: str | None = None,
    expected: list[str] | None = None,
    late: list[str] | None = None,
    wait_timeout: float = 3600.0,
    poll: float = 5.0,
    identity: IdentitySettings | None = None,
) -> CycleStart:
    """Take the decision token for cycle ``at`` (waiting while another cycle decides).

    A new cycle also refreshes the identity's shared values and fixes the persons it decides with
    (*identity*: the policy's identity settings; default ones when not given)."""
    ids = sorted(c.id for c in campaigns if c.enabled)
    deadline = time.monotonic() + wait_timeout
    while True:
        start = _try_begin(
            engine,
            at,
            ids,
            shards=max(1, shards),
            run_id=run_id,
            expected=expected or [],
            late=late or [],
            identity=identity or IdentitySettings(),
        )
        if not start.blocked_by:
            if not start.already_decided:
                # the batches were just loaded: the shards' plans need their statistics
                with transaction(engine) as tx:
                    tx.execute("analyze candidates")
            return start
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"cycle {at.isoformat()} waited {wait_timeout:.0f}s for cycle(s) "
                f"{', '.join(t.isoformat() for t in start.blocked_by)} to finish deciding"
            )
        log.info(
            "cycle %s waits: cycle(s) %s are deciding",
            at.isoformat(),
            ", ".join(t.isoformat() for t in start.blocked_by),
        )
        time.sleep(poll)


def _literal(value: object) -> str:
    """A SQL literal of *value* (for the few constants inlined into generated statements)."""
    return f"{pgsql.Literal(value).as_string(None)}"


def _candidates_view(tx: Tx, batch_ids: list[int]) -> None:
    """``_cand``: the candidate rows of the cycle's batches with their campaign (named by a
    CASE over the few batch ids rather than a join per row)."""
    ids = ",".join(str(int(b)) for b in batch_ids) or "null"
    campaign_of = tx.execute(
        "select batch_id, campaign_id from candidate_batches where batch_id = any(%(ids)s) order by batch_id",
        {"ids": list(batch_ids)},
    ).fetchall()
    campaign = (
        "case c.batch_id "
        + " ".join(f"when {int(b)} then {pgsql.Literal(cid).as_string(tx.raw)}" for b, cid in campaign_of)
        + " end"
        if campaign_of
        else "null::text"
    )
    tx.execute("drop view if exists _cand")
    tx.execute(
        f"create temp view _cand as select {campaign} as campaign_id, c.customer_id, c.score, c.channel,"
        f" c.expires_at, c.batch_id, c.seq, c.bucket from candidates c where c.batch_id in ({ids})"
    )


def decide_shard(
    engine: Engine, at: datetime, policy: Policy, campaigns: Iterable[Campaign], shard: int
) -> ShardStats | None:
    """Decide one shard of cycle ``at`` and store its decisions (replacing a previous try).

    Two transactions on one session: the heartbeat, then the decision — the shard's decisions
    and outbox rows, replacing a previous try's — which is rolled back whole when the cycle was
    decided meanwhile."""
    key = {"at": at, "shard": shard}
    with engine.connect() as conn:
        # heartbeat in a transaction of its own: holding the cycle's row lock while deciding
        # would make the shards of a cycle wait for one another
        with transaction(conn) as tx:
            row = tx.execute(
                "select status, shards, batch_ids from cycles where cycle_at = %(at)s", key
            ).fetchone()
            if row is None:
                raise RuntimeError(f"cycle {at.isoformat()} was not begun; run its begin task first")
            status, shards, batch_ids = row
            if status == "decided":
                log.info("cycle %s is already decided: shard %s has nothing to do", at.isoformat(), shard)
                return None
            tx.execute("update cycles set heartbeat_at = now() where cycle_at = %(at)s", key)
        with transaction(conn) as tx:
            _candidates_view(tx, list(batch_ids))
            # every shard decides with the persons the cycle fixed when it began (SPEC §6)
            persons = f"select customer_id, person_id from cycle_persons where cycle_at = {_literal(at)}"
            eng = CycleEngine(tx.conn, at, policy, campaigns, live=True, persons_sql=persons)
            stats = eng.decide_shard(shard, shards, count=False)
            started = time.perf_counter()
            # the outbox rows stay invisible to delivery (and to other cycles' history) until
            # commit_cycle marks the cycle decided
            tx.execute("delete from cycle_decisions where cycle_at = %(at)s and shard = %(shard)s", key)
            tx.execute("delete from messages where cycle_at = %(at)s and shard = %(shard)s", key)

            def store_decisions() -> int:
                return int(
                    tx.execute(
                        "insert into cycle_decisions (cycle_at, customer_id, campaign_id, shard, batch_id, seq, priority,"
                        " score, channel, send_at, channels, outcomes, reasons, person_id)"
                        " select %(at)s, customer_id, campaign_id, %(shard)s, batch_id, seq, priority, score, channel,"
                        " send_at, channels, outcomes, reasons, person_id from _dec order by customer_id",  # index order
                        key,
                    ).rowcount
                )

            def store_outbox() -> int:
                return int(
                    tx.execute(
                        "insert into messages (cycle_at, customer_id, campaign_id, channel, tags, counts_toward_caps,"
                        " send_at, shard, status, batch_id, seq, person_id, address)"
                        " select %(at)s, s.customer_id, s.campaign_id, s.channel, k.tags, k.counts, s.send_at,"
                        f" %(shard)s, %(pending)s, s.batch_id, s.seq, s.person_id, s.address from ({eng.selected_sql()}) s"
                        " join _campaigns k on k.campaign_id = s.campaign_id"
                        " order by s.customer_id, s.campaign_id, s.channel",  # in the unique index's order
                        {**key, "pending": MessageStatus.PENDING},
                    ).rowcount
                )

            # shards decide at the same pace: odd shards store in the other order, so that two
            # shards do not insert into the same index pages at the same time
            steps = [("decisions", store_decisions), ("outbox", store_outbox)]
            stored: dict[str, int] = {}
            for step, store in steps if shard % 2 == 0 else steps[::-1]:
                stored[step] = store()
                now = time.perf_counter()
                stats.timings[f"store {step}"] = now - started
                started = now
            messages = stored["outbox"]
            summary = eng.summary()
            for _cid, _ch, outcome, _reason, n in summary:
                stats.outcomes[outcome] = stats.outcomes.get(outcome, 0) + int(n)
            stats.alternatives = sum(stats.outcomes.values())
            if stats.outcomes.get("selected", 0) != messages:
                raise RuntimeError(
                    f"cycle {at.isoformat()} shard {shard}: {stats.outcomes.get('selected', 0)}"
                    f" selected but {messages} outbox rows"
                )
            rows = [
                {"campaign_id": c, "channel": ch, "outcome": o, "reason": rs, "n": int(n)}
                for c, ch, o, rs, n in summary
            ]
            # a cycle decided meanwhile keeps what it decided (its outbox exists): the update waits
            # for a commit in progress and then finds the cycle decided
            mine = tx.execute(
                "update cycles set shard_outcomes = shard_outcomes || jsonb_build_object(%(shard_key)s::text,"
                " %(rows)s::jsonb) where cycle_at = %(at)s and status <> 'decided' returning 1",
                {**key, "shard_key": str(shard), "rows": Jsonb(rows)},
            ).fetchone()
            if mine is None:
                log.info(
                    "cycle %s was decided meanwhile: shard %s keeps the committed decisions",
                    at.isoformat(),
                    shard,
                )
                tx.rollback()
                return None
            eng.drop_work()
        stats.timings["summary, commit"] = time.perf_counter() - started
        eng.log_stats(stats, shards)
        return stats


def what_if_unlinked(
    engine: Engine, at: datetime, policy: Policy, campaigns: Iterable[Campaign]
) -> list[tuple[str, str, str]]:
    """What a decided cycle ``at`` would have selected had every profile been a person of its own:
    ``(customer_id, campaign_id, channel)`` of each selected alternative.  Decided again from the
    cycle's batches with the same engine, in a transaction that is rolled back (nothing is stored);
    the cycle's own messages are left out of the history, as they were when it decided."""
    with transaction(engine) as tx:
        row = tx.execute("select batch_ids from cycles where cycle_at = %(at)s", {"at": at}).fetchone()
        if row is None:
            raise RuntimeError(f"cycle {at.isoformat()} has not run")
        _candidates_view(tx, list(row[0]))
        nobody = "select null::text as customer_id, null::text as person_id where false"
        eng = CycleEngine(tx.conn, at, policy, campaigns, live=True, persons_sql=nobody)
        eng.decide_shard(0, 1, count=False)
        selected = [
            (str(c), str(k), str(ch))
            for c, k, ch, *_rest in tx.execute(f"select * from ({eng.selected_sql()}) s").fetchall()
        ]
        tx.rollback()
    return selected


@dataclass
class CommitResult:
    """What :func:`commit_cycle` published: counts of alternatives, selections, messages and outcomes
    (``already_decided`` when an earlier run had published the cycle)."""

    cycle_at: datetime
    already_decided: bool
    alternatives: int = 0
    selected: int = 0
    messages: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


def commit_cycle(engine: Engine, at: datetime, policy: Policy, campaigns: Iterable[Campaign]) -> CommitResult:
    """Atomically publish cycle ``at``: decided batches, summary, status (and with it the outbox
    rows its shards wrote).  ``policy`` and ``campaigns`` are those the shards decided with."""
    del policy, campaigns  # the shards stored everything; kept for the callers' symmetry
    key = {"at": at}
    with transaction(engine) as tx:
        tx.execute("select pg_advisory_xact_lock(%(k)s)", {"k": TOKEN_LOCK})
        row = tx.execute(
            "select status, shards, batch_ids from cycles where cycle_at = %(at)s for update", key
        ).fetchone()
        if row is None:
            raise RuntimeError(f"cycle {at.isoformat()} was not begun")
        status, shards, batch_ids = row
        if status == "decided":
            return CommitResult(at, True)
        batches = {**key, "batches": list(batch_ids), "shards": shards}
        done = {
            int(s)
            for (s,) in tx.execute(
                "select jsonb_object_keys(shard_outcomes) from cycles where cycle_at = %(at)s", key
            ).fetchall()
        }
        has_candidates = bool(
            tx.execute(
                "select exists (select 1 from candidates where batch_id = any(%(batches)s))", batches
            ).fetchone()[0]
        )
        missing = sorted(set(range(shards)) - done)
        if missing and has_candidates:
            # an empty shard writes no rows; only complain when some shard's people exist
            present = {
                s
                for (s,) in tx.execute(
                    "select distinct baton_shard(customer_id, %(shards)s) from candidates"
                    " where batch_id = any(%(batches)s)",
                    batches,
                ).fetchall()
            }
            undecided = sorted(present - done)
            if undecided:
                raise RuntimeError(
                    f"cycle {at.isoformat()}: shard(s) {undecided} have not decided yet"
                    " (if their decide_shard tasks succeeded, e.g. before a `baton db upgrade`"
                    " reset them, clear those tasks of this run so they decide again)"
                )
        tx.execute(
            "update candidate_batches set decided_cycle_at = %(at)s, status = 'decided'"
            " where batch_id = any(%(batches)s)",
            batches,
        )
        tx.execute("delete from cycle_outcomes where cycle_at = %(at)s", key)
        # the summary: the shards counted their decisions as they stored them
        tx.execute(
            "insert into cycle_outcomes (cycle_at, campaign_id, channel, outcome, reason, n)"
            " select c.cycle_at, x.campaign_id, x.channel, x.outcome, x.reason, sum(x.n)"
            " from cycles c cross join jsonb_each(c.shard_outcomes) s(shard, rows)"
            " cross join jsonb_to_recordset(s.rows) x(campaign_id text, channel text, outcome text, reason text,"
            " n int) where c.cycle_at = %(at)s and s.shard::int < %(shards)s group by 1, 2, 3, 4, 5",
            batches,
        )
        outcomes = dict(
            tx.execute(
                "select outcome, sum(n)::int from cycle_outcomes where cycle_at = %(at)s group by outcome",
                key,
            ).fetchall()
        )
        total = sum(outcomes.values())
        selected = messages = outcomes.get("selected", 0)  # each shard wrote one outbox row per selection
        tx.execute(
            "update cycles set status = 'decided', decided_at = now(), alternatives = %(total)s,"
            " selected = %(selected)s where cycle_at = %(at)s",
            {**key, "total": total, "selected": selected},
        )
        # the persons the cycle decided with live on in its decisions and messages (person_id)
        tx.execute("delete from cycle_persons where cycle_at = %(at)s", key)
    log.info(
        "cycle %s committed: %d alternatives, %d selected, %d outbox messages; %s",
        at.isoformat(),
        total,
        selected,
        messages,
        outcomes,
    )
    return CommitResult(at, False, total, selected, messages, outcomes)
