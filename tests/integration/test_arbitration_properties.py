"""Property tests: the SQL engine decides exactly like the plain-Python reference (SPEC.md §3, §6).

Hypothesis draws small random scenarios (tests/strategies.py) — ties in priority and
score, duplicate candidates, unknown people and campaigns, mixed-case and padded
addresses, invalid timezones, quiet hours that wrap midnight, history on window and
period boundaries, decision times near DST changes — and every one is decided both by
``baton.arbitration.simulate.decide_scenario`` and by ``decide_reference``, person_id
included.  Independently of the reference, the engine's output must also respect the caps
and the global control group, per person.

Two families: ``scenarios()`` where nothing links (every person is one profile), and
``identity_scenarios()`` of overlapping profiles (SPEC §6: other spellings, junk and blocked
values, over-shared values, late identifiers, exclusions, ``identity:`` policy keys).
"""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from sqlalchemy.engine import Engine

from baton.arbitration.scenario import Decision, Scenario, decisions_key
from reference_arbitration import check_invariants, decide_reference
from strategies import identity_scenarios, scenarios

pytestmark = pytest.mark.integration

Row = tuple[str, str, str, str, str | None, datetime | None, str | None]

PROPERTY_SETTINGS = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def comparable(decisions: list[Decision]) -> list[Row]:
    """Rows to compare: the reason only for ``capped`` (the engine may add details elsewhere)."""
    rows = sorted(decisions, key=lambda d: (decisions_key(d), str(d.outcome)))
    return [
        (
            d.customer_id,
            d.campaign_id,
            str(d.channel),
            str(d.outcome),
            d.reason if str(d.outcome) == "capped" else None,
            d.send_at,
            d.person_id,
        )
        for d in rows
    ]


def _check(store_engine: Engine, s: Scenario, T: datetime) -> None:
    from baton.arbitration.simulate import decide_scenario

    engine = decide_scenario(store_engine, s, T)
    assert comparable(engine) == comparable(decide_reference(s, T))
    check_invariants(s, T, engine)
    assert comparable(decide_scenario(store_engine, s, T, shards=3)) == comparable(engine)


@PROPERTY_SETTINGS
@given(case=scenarios())
def test_engine_matches_reference(store_engine: Engine, case: tuple[Scenario, datetime]) -> None:
    s, T = case
    _check(store_engine, s, T)


@PROPERTY_SETTINGS
@given(case=identity_scenarios())
def test_engine_matches_reference_with_identity(
    store_engine: Engine, case: tuple[Scenario, datetime]
) -> None:
    s, T = case
    _check(store_engine, s, T)
