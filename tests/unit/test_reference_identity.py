"""The arbitration reference (tests/reference_arbitration.py) against SPEC.md §6, by hand.

The hand-worked cases live in tests/identity_cases.py so that the SQL engine is held to the very
same rows (tests/integration/test_identity_cases.py); here they check the reference itself, with
a few direct checks of the resolution and properties of any correct output.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings

from baton.arbitration.scenario import Scenario
from identity_cases import CASES, IdentityCase, T, expected_rows, ident, prof, rows, scen
from reference_arbitration import check_invariants, decide_reference, resolve_persons
from strategies import identity_scenarios

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("case", CASES, ids=str)
def test_identity_case(case: IdentityCase) -> None:
    decisions = decide_reference(case.scenario, case.at)
    assert rows(decisions) == expected_rows(case), case.spec
    check_invariants(case.scenario, case.at, decisions)


def test_cases_cover_every_rule() -> None:
    """One case (at least) per rule of SPEC §6 and per outcome-changing interpretation."""
    names = " ".join(c.name for c in CASES)
    for word in (
        "spellings",
        "punctuation",
        "junk",
        "blocked_values",
        "link_on",
        "max_profiles_per_value",
        "first_seen",
        "exclusions",
        "person_id_smallest",
        "one_ranking",
        "dedup_tie",
        "unknown_customer",
        "fallback",
        "opt_out_on_any",
        "opt_in_only",
        "timezone",
        "period",
        "control_groups",
        "caps_count_history",
        "nothing_links",
    ):
        assert word in names, word


# ------------------------------------------------------------------ the resolution


def test_resolve_persons_components_and_linking_values() -> None:
    s = scen(
        [],
        [prof("b", email="X@y.test"), prof("a", email="x@y.test "), prof("c", phone="+1 (555) 1"), prof("d")],
        [],
        identifiers=[ident("d", "phone", "15551"), ident("ghost", "phone", "15551")],
    )
    identity = resolve_persons(s, T)
    assert identity.person_of == {"a": "a", "b": "a", "c": "c", "d": "c"}
    assert identity.profiles_of == {"a": ("a", "b"), "c": ("c", "d")}
    assert identity.linking == {("email", "x@y.test"): {"a", "b"}, ("phone", "15551"): {"c", "d"}}


def test_resolve_persons_depends_on_T() -> None:
    s = scen(
        [], [prof("a"), prof("b")], [], identifiers=[ident("a", "device", "d"), ident("b", "device", "d", T)]
    )
    assert resolve_persons(s, T - timedelta(seconds=1)).person_of == {"a": "a", "b": "b"}
    assert resolve_persons(s, T).person_of == {"a": "a", "b": "a"}


# ------------------------------------------------------------------------ properties

PROPERTY = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(case=identity_scenarios())
def test_reference_invariants_with_identity(case: tuple[Scenario, datetime]) -> None:
    s, at = case
    decisions = decide_reference(s, at)
    check_invariants(s, at, decisions)
    assert decide_reference(s, at) == decisions  # deterministic


@PROPERTY
@given(case=identity_scenarios())
def test_order_of_profiles_identifiers_and_exclusions_does_not_matter(
    case: tuple[Scenario, datetime],
) -> None:
    """Persons are sets: shuffling customers, identifiers, exclusions, consents, suppressions and
    history (not candidates: their order is the tie-break) changes no decision."""
    s, at = case
    rng = random.Random(7)

    def shuffled(items: tuple[object, ...]) -> tuple[object, ...]:
        out = list(items)
        rng.shuffle(out)
        return tuple(out)

    other = dataclasses.replace(
        s,
        customers=shuffled(s.customers),  # type: ignore[arg-type]
        identifiers=shuffled(s.identifiers),  # type: ignore[arg-type]
        exclusions=shuffled(s.exclusions),  # type: ignore[arg-type]
        consents=shuffled(s.consents),  # type: ignore[arg-type]
        suppressions=shuffled(s.suppressions),  # type: ignore[arg-type]
        history=shuffled(s.history),  # type: ignore[arg-type]
    )
    assert rows(decide_reference(other, at)) == rows(decide_reference(s, at))


@PROPERTY
@given(case=identity_scenarios())
def test_persons_are_independent(case: tuple[Scenario, datetime]) -> None:
    """A person's decisions depend on its own rows only: deciding with the candidates of one person
    alone gives that person exactly the same decisions (identifiers and profiles kept whole, as
    they decide who is linked)."""
    s, at = case
    identity = resolve_persons(s, at)
    decisions = rows(decide_reference(s, at))
    for person_id, profiles in identity.profiles_of.items():
        alone = dataclasses.replace(s, candidates=tuple(c for c in s.candidates if c.customer_id in profiles))
        mine = [r for r in decisions if r[6] == person_id]
        assert rows(decide_reference(alone, at)) == mine
