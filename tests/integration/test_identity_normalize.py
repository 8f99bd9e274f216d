"""Identifier normalisation (SPEC §6): Python and the store's SQL functions agree on every string."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine

from baton.identity.normalize import KINDS, is_junk, junk_sql, norm_sql, normalize

pytestmark = pytest.mark.integration

EXAMPLES = [
    ("email", "  Ann.Lee@Example.COM \t", "ann.lee@example.com"),
    ("email", "İSTANBUL@ÄÖ.de", "istanbul@äö.de"),  # one character at a time, as lower() does
    ("phone", "+1 (555) 010-0199", "15550100199"),
    ("phone", "٣٤٥ 12", "12"),  # only the ASCII digits count
    ("login", " u-42 ", "u-42"),
    ("cookie", "\nck-1\r", "ck-1"),
]


@pytest.mark.parametrize(("kind", "raw", "norm"), EXAMPLES)
def test_examples(store_engine: Engine, kind: str, raw: str, norm: str) -> None:
    assert normalize(kind, raw) == norm
    with store_engine.connect() as conn:
        assert conn.execute(sa.text(f"select {norm_sql(kind, ':v')}"), {"v": raw}).scalar() == norm


@pytest.mark.parametrize(
    ("norm", "junk"),
    [
        ("", True),
        ("0000000", True),
        ("0-0.x", True),
        ("X", True),
        ("NULL", True),
        ("N/A", True),
        ("Undefined", True),
        ("anonymous", True),
        ("test@test.com", False),
        ("100", False),
        ("nul", False),
    ],
)
def test_junk(store_engine: Engine, norm: str, junk: bool) -> None:
    assert is_junk(norm) is junk
    with store_engine.connect() as conn:
        assert conn.execute(sa.text(f"select {junk_sql(':v')}"), {"v": norm}).scalar() is junk


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    raw=st.text(alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\x00")),
)
def test_python_and_sql_agree(store_engine: Engine, kind: str, raw: str) -> None:
    with store_engine.connect() as conn:
        sql_norm, sql_junk = conn.execute(
            sa.text(f"select n, {junk_sql('n')} from (select {norm_sql(kind, ':v')} as n) x"), {"v": raw}
        ).one()
    assert sql_norm == normalize(kind, raw)
    assert sql_junk is is_junk(normalize(kind, raw))
