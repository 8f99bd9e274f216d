"""House rules of the product's SQL, checked on the source: named parameters only, and
message statuses spelled by the enum (DESIGN.md, "One owner of transactions")."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from baton.store import schema
from baton.store.status import MessageStatus

pytestmark = pytest.mark.unit

PRODUCT = Path(__file__).resolve().parents[2] / "include" / "baton"
SQL = re.compile(r"\b(select|insert\s+into|update\s+\w+\s+set|delete\s+from|where|returning|copy)\b", re.I)
POSITIONAL = re.compile(r"(?<!%)%[sbt](?![A-Za-z0-9_(])")  # psycopg's positional %s (and %b, %t)
QMARK = re.compile(
    r"(=|\(|,|\bin|\bvalues)\s*\?\s*(,|\)|$|\s+(and|or|limit|where|returning|order|group)\b)", re.I
)  # qmark style
LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical", "log"}


def _strings(tree: ast.AST) -> list[tuple[int, str]]:
    """Every string literal of a module (f-strings with ``{}`` for their fields), except docstrings,
    logging format strings and the left side of ``"..." % x`` (Python formatting, not SQL)."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                skip.add(id(body[0].value))
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in LOG_METHODS
        ):
            for arg in node.args:
                skip.add(id(arg))
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
            skip.add(id(node.left))
        if isinstance(node, ast.JoinedStr):
            skip.update(id(v) for v in node.values)
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            out.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            out.append((node.lineno, str(text)))
    return out


def _sql_strings() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(PRODUCT.rglob("*.py")):
        for line, text in _strings(ast.parse(path.read_text(encoding="utf-8"))):
            if SQL.search(text):
                found.append((str(path.relative_to(PRODUCT)), line, text))
    return found


def test_the_scan_sees_the_products_sql() -> None:
    files = {f for f, _, _ in _sql_strings()}
    assert {"delivery/outbox.py", "arbitration/cycle.py", "audience/load.py", "seed.py"} <= files


def test_the_products_sql_takes_named_parameters_only() -> None:
    offenders = [
        f"{f}:{line}: {text[:100]!r}"
        for f, line, text in _sql_strings()
        if POSITIONAL.search(text) or QMARK.search(text)
    ]
    assert offenders == [], "positional placeholders (use %(name)s and a mapping):\n" + "\n".join(offenders)


@pytest.mark.parametrize(
    ("text", "positional"),
    [
        ("select * from t where a = %s", True),
        ("insert into t values (%s, %b)", True),
        ("update t set a = ? where b = 1", True),
        ("select * from t where a = %(a)s and b like 'x%%s'", False),
        ("select payload ? 'key' from t where a = %(a)s", False),
    ],
)
def test_the_placeholder_patterns(text: str, positional: bool) -> None:
    assert bool(POSITIONAL.search(text) or QMARK.search(text)) is positional


def test_message_statuses_are_the_enum_and_the_check_constraint_is_built_from_it() -> None:
    assert [s.value for s in MessageStatus] == [
        "pending",
        "sending",
        "sent",
        "failed",
        "expired",
        "cancelled",
    ]
    [check] = [c for c in schema.messages.constraints if getattr(c, "name", None) == "ck_messages_status"]
    assert set(re.findall(r"'(\w+)'", str(check.sqltext))) == {s.value for s in MessageStatus}  # type: ignore[attr-defined]


def test_delivery_names_message_statuses_only_through_the_enum() -> None:
    """No status literal in the SQL of the outbox and the cycle: they bind MessageStatus values."""
    statuses = "|".join(s.value for s in MessageStatus)
    literal = re.compile(rf"status\s*(=|<>|in)\s*\(?\s*'({statuses})'")
    for name in ("delivery/outbox.py", "arbitration/cycle.py"):
        hits = [
            (line, text[:80])
            for line, text in _strings(ast.parse((PRODUCT / name).read_text(encoding="utf-8")))
            if literal.search(text) or re.search(rf"set status = '({statuses})'", text)
        ]
        assert hits == [], f"{name}: {hits}"
