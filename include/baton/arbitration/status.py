"""What the store says about the cycles and the outbox right now (``baton status``).

Among others: candidate batches that wait for a cycle that never ran.  A campaign run feeds the
first cycle at or after its interval's end; when that cycle's run never happened (the scheduler
was down, the arbitration DAG was paused), the batch waits until someone backfills that cycle —
later cycles do not take it, because deciding it late could send what should have expired.  Such
batches are reported here and in every cycle's log, never silently left behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from baton.store.status import DUE, sql_in


@dataclass(frozen=True)
class StrandedBatch:
    """A candidate batch whose cycle never ran (no row in ``cycles``)."""

    campaign_id: str
    cycle_at: datetime
    batches: int
    rows: int


@dataclass(frozen=True)
class CycleRow:
    """One cycle as ``cycles`` records it."""

    cycle_at: datetime
    status: str
    decided_at: datetime | None
    alternatives: int
    selected: int
    late_campaigns: list[str]


@dataclass(frozen=True)
class Status:
    """The state ``baton status`` prints."""

    cycles: list[CycleRow]
    stranded: list[StrandedBatch]
    outbox: list[tuple[str, str, int]]  # (channel, status, messages)


def stranded_batches(engine: Engine, before: datetime | None = None) -> list[StrandedBatch]:
    """Batches not yet decided whose cycle has no row in ``cycles`` and lies before *before*
    (default: before the latest cycle that ran), grouped per campaign and cycle."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select b.campaign_id, b.cycle_at, count(*) as batches, sum(b.row_count)::bigint as rows"
                " from candidate_batches b where b.decided_cycle_at is null"
                " and b.cycle_at < coalesce(cast(:before as timestamptz), (select max(cycle_at) from cycles))"
                " and not exists (select 1 from cycles c where c.cycle_at = b.cycle_at)"
                " group by b.campaign_id, b.cycle_at order by b.cycle_at, b.campaign_id"
            ),
            {"before": before},
        ).all()
    return [StrandedBatch(r.campaign_id, r.cycle_at, int(r.batches), int(r.rows or 0)) for r in rows]


def read_status(engine: Engine, *, cycles: int = 10) -> Status:
    """The last *cycles* cycles, the stranded batches and the outbox per channel and status."""
    with engine.connect() as conn:
        recent = conn.execute(
            sa.text(
                "select cycle_at, status, decided_at, alternatives, selected, late_campaigns from cycles"
                " order by cycle_at desc limit :n"
            ),
            {"n": cycles},
        ).all()
        outbox = conn.execute(
            sa.text(
                "select channel, status, count(*)::bigint as n from messages"
                f" where status in {sql_in(*DUE)} or updated_at > now() - interval '24 hours'"
                " group by channel, status order by channel, status"
            )
        ).all()
    return Status(
        cycles=[
            CycleRow(r.cycle_at, r.status, r.decided_at, r.alternatives, r.selected, list(r.late_campaigns))
            for r in recent
        ],
        stranded=stranded_batches(engine),
        outbox=[(r.channel, r.status, int(r.n)) for r in outbox],
    )


def stranded_advice(stranded: list[StrandedBatch], cycle_schedule: str) -> str:
    """One line per stranded (campaign, cycle) and what to do: the backfill command of those cycles
    (a cycle run's logical date is the start of its interval, the previous schedule time)."""
    from baton.spec.schedule import previous_at

    lines = [
        f"{s.campaign_id}: {s.rows} candidate row(s) wait for cycle {s.cycle_at.isoformat()}, which never ran"
        for s in stranded
    ]
    first, last = (
        previous_at(cycle_schedule, t - timedelta(microseconds=1))
        for t in (min(s.cycle_at for s in stranded), max(s.cycle_at for s in stranded))
    )
    lines.append(
        "backfill those cycles to decide them (their messages expire if older than max_send_delay): "
        f"airflow backfill create --dag-id baton_arbitration --from-date {first.isoformat()} "
        f"--to-date {last.isoformat()}"
    )
    return "\n".join(lines)
