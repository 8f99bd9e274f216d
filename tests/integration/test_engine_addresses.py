"""Addresses are trimmed of blanks only: a leading or trailing ``v`` is part of the address.

(The engine once trimmed with ``E' \\t\\n\\r\\f\\v'``, but ``\\v`` is no escape in PostgreSQL: it
trimmed the letter v, so ``era@x.com`` counted as suppressed by a bounce of ``vera@x.com``.)
"""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from baton.arbitration.scenario import CandidateRow, CustomerRow, Scenario, SuppressionRow, parse_at
from baton.arbitration.simulate import decide_scenario
from baton.spec import Campaign, Policy
from reference_arbitration import decide_reference

pytestmark = pytest.mark.integration

AT = parse_at("2026-03-02T12:00:00Z")


def test_addresses_keep_their_letters(store_engine: Engine) -> None:
    promo = Campaign.model_validate(
        {
            "id": "promo",
            "name": "Promo",
            "owner": "crm",
            "schedule": "@hourly",
            "start_date": "2026-01-01",
            "channels": ["email", "sms"],
            "audience": {"sql": "select 1"},
            "message": {"email": {"subject": "s", "html": "h"}, "sms": {"text": "t"}},
        }
    )
    scenario = Scenario(
        policy=Policy.model_validate({"channels": {"sms": {"consent": "opt_out"}}}),
        campaigns={"promo": promo},
        customers=(
            CustomerRow("c1", email="era@x.com"),
            CustomerRow("c2", email="\x0bvera@x.com\x0b"),  # a vertical tab is blank
            CustomerRow("c3", email="v", phone="v"),
        ),
        candidates=(
            CandidateRow(0, "promo", "c1"),
            CandidateRow(1, "promo", "c2"),
            CandidateRow(2, "promo", "c3"),
        ),
        suppressions=(SuppressionRow("email", "vera@x.com"),),
    )
    got = {(d.customer_id, d.channel): d.outcome for d in decide_scenario(store_engine, scenario, AT)}
    assert got == {
        ("c1", "email"): "selected",
        ("c1", "sms"): "unreachable",
        ("c2", "email"): "suppressed",
        ("c2", "sms"): "unreachable",
        ("c3", "email"): "selected",
        ("c3", "sms"): "channel_alternative",
    }
    expected = {(d.customer_id, d.channel): d.outcome for d in decide_reference(scenario, AT)}
    assert got == expected
