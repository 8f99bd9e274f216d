"""The SQL engine and the reference agree where local wall times are skipped or repeated."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import Engine

from baton.arbitration.scenario import CandidateRow, CustomerRow, Scenario
from baton.arbitration.simulate import decide_scenario
from baton.spec import Campaign, Policy
from reference_arbitration import decide_reference

pytestmark = pytest.mark.integration


def _scenario(start: str, end: str) -> Scenario:
    policy = Policy.model_validate({"quiet_hours": {"push": {"start": start, "end": end}}})
    flash = Campaign.model_validate(
        {
            "id": "flash",
            "name": "Flash",
            "owner": "crm",
            "schedule": "@hourly",
            "start_date": "2026-01-01",
            "channels": ["push"],
            "audience": {"sql": "select 1"},
            "message": {"push": {"title": "t", "body": "b"}},
        }
    )
    return Scenario(
        policy=policy,
        campaigns={"flash": flash},
        customers=(CustomerRow("c1", push_token="tok", timezone="America/New_York"),),
        candidates=(CandidateRow(0, "flash", "c1"),),
    )


@pytest.mark.parametrize(
    ("at", "start", "end", "send_at"),
    [
        # 02:30 does not exist on 2026-03-08 in New York: read with the offset before the gap
        (datetime(2026, 3, 8, 6, 0, tzinfo=UTC), "00:30", "02:30", datetime(2026, 3, 8, 7, 30, tzinfo=UTC)),
        # 01:30 happens twice on 2026-11-01: the later (standard time) instant
        (
            datetime(2026, 11, 1, 4, 45, tzinfo=UTC),
            "00:30",
            "01:30",
            datetime(2026, 11, 1, 6, 30, tzinfo=UTC),
        ),
    ],
)
def test_quiet_hours_end_on_dst_days(
    store_engine: Engine, at: datetime, start: str, end: str, send_at: datetime
) -> None:
    s = _scenario(start, end)
    got = decide_scenario(store_engine, s, at)
    ref = decide_reference(s, at)
    assert [(d.outcome, d.send_at) for d in got] == [("selected", send_at)]
    assert [(d.outcome, d.send_at) for d in ref] == [("selected", send_at)]
