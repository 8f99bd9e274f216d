"""Check a campaign against the store before anything runs: its audience query and the variables
its message templates use.

A typo in the audience SQL or in a template variable used to validate and then fail at run time —
the SQL when the campaign's run loads its batch, the variable message by message at send time.
:func:`check_campaign` finds both up front, in ``baton validate --store`` and in every campaign run
before it writes its batch:

* the audience query is rendered (bound parameters, as a run does) and prepared against the store
  in a read-only transaction that is rolled back (``select * from (<query>) q limit 0``): a SQL
  error becomes a ``file:line`` issue pointing at the query's line in the YAML file;
* every variable that a message template uses (inline fields, template files and the templates they
  include) must exist when the message renders: a customer column, a key of ``customers.attributes``
  that some customer has, a column the audience query returns, or ``unsubscribe_url`` (marketing
  campaigns).  An unknown one is an issue, unless the template gives it a default (``{{ x |
  default('') }}``) or tests it (``{% if x is defined %}``).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml
from jinja2 import TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment
from sqlalchemy.engine import Engine

from baton.audience.load import RESERVED, audience_context
from baton.audience.render import render_audience_sql
from baton.errors import AudienceError
from baton.spec import Campaign, Policy, SpecIssue
from baton.spec.models import template_includes
from baton.spec.schedule import first_at_or_after, previous_at
from baton.spec.source import LineIndex, read_yaml
from baton.store.tx import Session, transaction

_DEFAULT_FILTERS = frozenset({"default", "d"})
_DEFINED_TESTS = frozenset({"defined", "undefined"})
_JINJA_GLOBALS = frozenset({"range", "dict", "lipsum", "cycler", "joiner", "namespace", "loop", "self"})
_US = timedelta(microseconds=1)


@dataclass(frozen=True)
class Variable:
    """A variable a message template needs: its name, the field and the line (of the template) it is used on."""

    name: str
    field: str  # e.g. "message.email.subject"
    template: str | None  # the template file, when it is used in one
    line: int


def _assigned(template: nodes.Template) -> set[str]:
    """Names *template* assigns: ``set``, loop variables, macro parameters, ``with`` and block sets."""
    assigned: set[str] = set()
    for node in template.find_all((nodes.Assign, nodes.For, nodes.Macro, nodes.With, nodes.AssignBlock)):
        for target in node.find_all(nodes.Name):
            if target.ctx in ("store", "param"):
                assigned.add(target.name)
    return assigned


def _guarded(template: nodes.Template) -> set[int]:
    """Ids of the name nodes read under ``| default`` or tested with ``is defined``/``is undefined``."""
    guarded: set[int] = set()
    for flt in template.find_all(nodes.Filter):
        if flt.name in _DEFAULT_FILTERS and isinstance(flt.node, nodes.Name):
            guarded.add(id(flt.node))
    for test in template.find_all(nodes.Test):
        if test.name in _DEFINED_TESTS:
            for name in test.node.find_all(nodes.Name):
                guarded.add(id(name))
            if isinstance(test.node, nodes.Name):
                guarded.add(id(test.node))
    return guarded


def _needed(template: nodes.Template) -> Iterator[tuple[str, int]]:
    """(name, line) of every variable read by *template* that it neither assigns nor defaults."""
    assigned = _assigned(template)
    guarded = _guarded(template)
    defined_somewhere = {n.name for n in template.find_all(nodes.Name) if id(n) in guarded}
    for name in template.find_all(nodes.Name):
        if name.ctx != "load" or id(name) in guarded:
            continue
        if name.name in assigned or name.name in _JINJA_GLOBALS or name.name in defined_somewhere:
            continue
        yield name.name, name.lineno


def template_variables(campaign: Campaign, templates_dir: Path) -> list[Variable]:
    """Every variable the campaign's message blocks need, with where it is used (no database)."""
    env = SandboxedEnvironment()
    found: list[Variable] = []
    for channel in campaign.channels:
        block = campaign.message.block(channel)
        if block is None:
            continue
        for name, value in block.model_dump(exclude_none=True).items():
            where = f"message.{channel.value}.{name}"
            if name == "template":
                found += _file_variables(env, templates_dir, str(value), where, set())
                continue
            try:
                tree = env.parse(str(value))
            except TemplateSyntaxError:
                continue  # reported by the spec's own validation
            found += [Variable(v, where, None, line) for v, line in _needed(tree)]
    return found


def _file_variables(
    env: SandboxedEnvironment, folder: Path, name: str, where: str, seen: set[str]
) -> list[Variable]:
    if name in seen:
        return []
    seen.add(name)
    try:
        tree = env.parse((folder / name).read_text(encoding="utf-8"), name=name)
    except (OSError, UnicodeDecodeError, TemplateSyntaxError):
        return []  # reported by the spec's own validation
    found = [Variable(v, where, name, line) for v, line in _needed(tree)]
    for included, _line in template_includes(tree):
        found += _file_variables(env, folder, included, where, seen)
    return found


@dataclass(frozen=True)
class StoreFacts:
    """What exists in the store for templates: the columns of ``customers`` (whether some customer has
    a given attribute key is asked per key)."""

    customer_columns: frozenset[str]


def store_facts(tx: Session) -> StoreFacts:
    """The store's customer columns."""
    cur = tx.execute("select * from customers limit 0")
    return StoreFacts(frozenset(d.name for d in cur.description or ()) - {"attributes"})


def _has_attribute(tx: Session, key: str) -> bool:
    row = tx.execute(
        "select exists (select 1 from customers where attributes ? %(key)s)", {"key": key}
    ).fetchone()
    return bool(row and row[0])


def sample_interval(
    campaign: Campaign, policy: Policy, now: datetime | None = None
) -> tuple[datetime, datetime, datetime]:
    """A representative run of *campaign*: its latest data interval before *now* and the cycle it feeds."""
    now = now or datetime.now(UTC)
    end = previous_at(campaign.schedule, now)
    start = previous_at(campaign.schedule, end - _US)
    return start, end, first_at_or_after(policy.cycle.schedule, end)


def _yaml_line(index: LineIndex | None, path: tuple[str, ...], line_in_value: int) -> int:
    """The file line of line *line_in_value* (1-based) of the string at *path* (exact for ``|`` blocks)."""
    if index is None:
        return 1
    node = index.value_node(path)
    if isinstance(node, yaml.ScalarNode) and node.style == "|":
        return int(node.start_mark.line) + 1 + line_in_value
    if isinstance(node, yaml.ScalarNode):
        return int(node.start_mark.line) + 1
    return index.line_of(path)


def _server_text(sql: str) -> str:
    """The statement text PostgreSQL receives for *sql* written with ``%(name)s`` placeholders (psycopg
    numbers each distinct name in order of first appearance), so an error position maps to a line."""
    numbers: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        if match.group(0) == "%%":
            return "%"
        return f"${numbers.setdefault(match.group(1), len(numbers) + 1)}"

    return re.sub(r"%%|%\((\w+)\)s", number, sql)


def check_campaign(
    engine: Engine,
    campaign: Campaign,
    policy: Policy,
    *,
    file: Path,
    templates_dir: Path,
    index: LineIndex | None = None,
) -> list[SpecIssue]:
    """Every problem of *campaign* (from *file*) against the store (see the module); empty when it is fine.

    Runs in one read-only transaction that is rolled back, so the query can change nothing.  *index*
    (the file's line index) is read from *file* when not given.
    """
    if index is None:
        document, _problems = read_yaml(file)
        index = document.index if document is not None else None
    sql_path = ("audience", "sql")
    start, end, cycle_at = sample_interval(campaign, policy)
    try:
        rendered = render_audience_sql(
            campaign.audience.sql, audience_context(campaign, start, end, cycle_at)
        )
    except AudienceError as exc:
        line = getattr(exc.__cause__, "lineno", None)
        return [SpecIssue(file, _yaml_line(index, sql_path, line or 1), "audience.sql", _after_colon(exc))]
    with transaction(engine) as tx:
        tx.execute("set transaction read only")
        statement = f"select * from ({rendered.sql}) q limit 0"
        try:
            cur = tx.execute(statement, rendered.params)
        except Exception as exc:  # a SQL error of the user's query
            tx.rollback()
            return [_sql_issue(exc, statement, rendered.first_line, file, index)]
        columns = [d.name for d in cur.description or ()]
        issues: list[SpecIssue] = []
        if "customer_id" not in columns:
            issues.append(
                SpecIssue(
                    file,
                    _yaml_line(index, sql_path, 1),
                    "audience.sql",
                    f"the audience query must return a customer_id column (it returns: {', '.join(columns) or 'none'})",
                )
            )
        known = {*store_facts(tx).customer_columns, *(c for c in columns if c not in RESERVED)}
        if campaign.category.value == "marketing":
            known.add("unsubscribe_url")
        issues += _variable_issues(tx, campaign, templates_dir, known, file, index)
        tx.rollback()
    return issues


def _variable_issues(
    tx: Session, campaign: Campaign, templates_dir: Path, known: set[str], file: Path, index: LineIndex | None
) -> list[SpecIssue]:
    issues: list[SpecIssue] = []
    answers: dict[str, bool] = {}
    attribute_keys: set[str] | None = None
    for var in template_variables(campaign, templates_dir):
        if var.name in known:
            continue
        if var.name not in answers:
            answers[var.name] = _has_attribute(tx, var.name)
        if answers[var.name]:
            continue
        if attribute_keys is None:
            attribute_keys = _attribute_keys(tx)
        close = difflib.get_close_matches(var.name, sorted(known | attribute_keys), n=1, cutoff=0.7)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        path = tuple(var.field.split("."))
        where = f" ({var.template}, line {var.line})" if var.template else ""
        line = _yaml_line(index, path, var.line) if var.template is None else _yaml_line(index, path, 1)
        issues.append(
            SpecIssue(
                file,
                line,
                var.field,
                f"unknown variable {var.name!r}{where}{hint}: a template can use the customer's columns, the keys "
                "of customers.attributes, the columns the audience query returns"
                + (" and unsubscribe_url" if "unsubscribe_url" in known else "")
                + f"; fix the name or give it a default, e.g. {{{{ {var.name} | default('') }}}}",
            )
        )
    return issues


def _attribute_keys(tx: Session, sample: int = 100_000) -> set[str]:
    """The keys of ``customers.attributes`` among the first *sample* customers (for "did you mean")."""
    cur = tx.execute(
        "select distinct k from (select attributes from customers limit %(n)s) c, jsonb_object_keys(c.attributes) k",
        {"n": sample},
    )
    return {str(r[0]) for r in cur.fetchall()}


def _sql_issue(
    exc: Exception, statement: str, first_line: int, file: Path, index: LineIndex | None
) -> SpecIssue:
    diag = getattr(exc, "diag", None)
    message = str(getattr(diag, "message_primary", None) or exc).strip()
    hint = getattr(diag, "message_hint", None)
    position = getattr(diag, "statement_position", None)
    line_in_query = 1
    if position:
        text = _server_text(statement)
        line_in_query = text[: int(position) - 1].count("\n") + 1
    line = _yaml_line(index, ("audience", "sql"), first_line + line_in_query - 1)
    what = f"{message} ({hint})" if hint else message
    if "read-only transaction" in message:
        what += ": an audience query only reads; it must not insert, update or delete"
    return SpecIssue(file, line, "audience.sql", f"the audience query fails in the store: {what}")


def _after_colon(exc: AudienceError) -> str:
    text = str(exc)
    return text.split(": ", 1)[1] if ": " in text else text


__all__ = ["StoreFacts", "Variable", "check_campaign", "sample_interval", "store_facts", "template_variables"]
