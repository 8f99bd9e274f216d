"""Run real decision cycles on a store without Airflow (tests, benchmarks): for each decision time,
every campaign expected to feed it loads its batch with its real audience SQL, the cycle begins,
decides its shards and commits (the functions the DAG's tasks call), and delivery hands the due
messages to fake adapters (optionally with some terminal failures, so messages have events).

Used by the Marketing view's tests and its benchmark to get a store whose calendar, funnels and
timelines hold what production would hold.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import Engine

from baton.arbitration.cycle import begin_cycle, commit_cycle, decide_shard, expected_campaigns
from baton.audience.load import load_batch
from baton.delivery.base import ConnectionInfo
from baton.delivery.channels import adapter_for
from baton.delivery.outbox import DeliverySettings, deliver_shard
from baton.identity.resolve import IdentitySettings
from baton.spec import load_deployment
from baton.spec.schedule import previous_at

_US = timedelta(microseconds=1)


@dataclass
class CycleRun:
    """What one cycle did."""

    cycle_at: datetime
    batches: dict[str, int] = field(default_factory=dict)  # campaign -> candidate rows
    alternatives: int = 0
    selected: int = 0
    delivered: dict[str, int] = field(default_factory=dict)  # channel -> sent


def _clock(t: datetime) -> Callable[[], datetime]:
    return lambda: t


def run_cycles(
    engine: Engine,
    dags: Path,
    cycles: Iterable[datetime],
    *,
    shards: int = 2,
    deliver: bool = True,
    failure_rate: float = 0.0,
    run_id_prefix: str = "manual__",
) -> list[CycleRun]:
    """Decide (and deliver) each cycle of *cycles*, in order, with the deployment of *dags*."""
    policy, campaigns = load_deployment(dags)
    by_id = {c.id: c for c in campaigns}
    out = []
    for at in cycles:
        run = CycleRun(at)
        for cid, end in expected_campaigns(campaigns, policy, at).items():
            campaign = by_id[cid]
            start = previous_at(campaign.schedule, end - _US)
            result = load_batch(
                engine,
                campaign,
                data_interval_start=start,
                data_interval_end=end,
                cycle_at=at,
                run_id=f"{run_id_prefix}{end.isoformat()}",
            )
            run.batches[cid] = result.row_count
        start_ = begin_cycle(
            engine,
            at,
            campaigns,
            shards=shards,
            run_id=f"{run_id_prefix}{at.isoformat()}",
            expected=sorted(run.batches),
            identity=IdentitySettings.of(policy),
        )
        for shard in range(start_.shards):
            decide_shard(engine, at, policy, campaigns, shard)
        committed = commit_cycle(engine, at, policy, campaigns)
        run.alternatives, run.selected = committed.alternatives, committed.selected
        if deliver:
            channels = sorted({ch.value for c in campaigns for ch in c.channels} & {"email", "sms", "push"})
            settings = DeliverySettings(
                max_send_delay=policy.cycle.max_send_delay, unsubscribe_secret=b"x" * 32
            )
            for channel in channels:
                extra: dict[str, object] = {"fake": True, "seed": 7}
                if failure_rate:
                    extra["terminal_rate"] = failure_rate
                adapter = adapter_for(channel, ConnectionInfo(f"baton_{channel}", extra=extra))
                stats = deliver_shard(
                    engine,
                    channel=channel,
                    shard=0,
                    shards=1,
                    campaigns=by_id,
                    adapter=adapter,
                    templates_dir=dags / "templates",
                    settings=settings,
                    now_fn=_clock(at + timedelta(minutes=2)),
                )
                run.delivered[channel] = stats.sent
        out.append(run)
    return out
