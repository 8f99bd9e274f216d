"""The SQL engine on the hand-worked identity scenarios of tests/identity_cases.py (SPEC.md §6).

``baton.arbitration.simulate.decide_scenario`` must give exactly the rows worked out by hand —
the same rows the plain-Python reference gives (tests/unit/test_reference_identity.py) — with
one shard and with several.
"""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from identity_cases import CASES, IdentityCase, expected_rows, rows

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("case", CASES, ids=str)
def test_engine_on_identity_case(store_engine: Engine, case: IdentityCase) -> None:
    from baton.arbitration.simulate import decide_scenario

    assert rows(decide_scenario(store_engine, case.scenario, case.at)) == expected_rows(case), case.spec
    assert rows(decide_scenario(store_engine, case.scenario, case.at, shards=3)) == expected_rows(case)
