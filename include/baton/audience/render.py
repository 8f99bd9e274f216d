"""Render audience SQL so that every ``{{ expression }}`` becomes a bound parameter.

Jinja statements (``{% if %}``, ``{% for %}``) may shape the query; expressions never
become SQL text.  Rendering runs in Jinja's sandbox.  The result uses psycopg's
``%(name)s`` placeholders; literal ``%`` in the SQL (``like 'a%'``) is escaped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, TemplateError, Undefined
from jinja2.sandbox import SandboxedEnvironment

from baton.errors import AudienceError

_SENTINEL = "\x00baton_param_{}\x00"


@dataclass
class _Collector:
    params: dict[str, Any] = field(default_factory=dict)

    def __call__(self, value: Any) -> str:
        if isinstance(value, Undefined):
            str(value)  # StrictUndefined raises UndefinedError naming the variable
        name = f"p{len(self.params)}"
        self.params[name] = value
        return _SENTINEL.format(name)


@dataclass(frozen=True)
class RenderedSQL:
    """The statement (``%(name)s`` placeholders), its parameters, and the line of the template its
    first line comes from (leading blank lines are stripped)."""

    sql: str
    params: dict[str, Any]
    first_line: int = 1


def render_audience_sql(sql: str, context: dict[str, Any], *, source: str = "audience.sql") -> RenderedSQL:
    """Render ``sql`` with ``context``; every expression output becomes a parameter."""
    collector = _Collector()
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, finalize=collector)
    try:
        text = env.from_string(sql).render(**context)
    except TemplateError as exc:
        line = getattr(exc, "lineno", None)
        where = f" (line {line} of the query)" if line else ""
        raise AudienceError(f"{source}: cannot render the audience SQL{where}: {exc}") from exc
    text = text.replace("%", "%%")
    for name in collector.params:
        text = text.replace(_SENTINEL.format(name), f"%({name})s")
    stripped = text.lstrip()
    first_line = text[: len(text) - len(stripped)].count("\n") + 1
    return RenderedSQL(stripped.rstrip().rstrip(";"), collector.params, first_line)
