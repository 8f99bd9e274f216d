"""Turning pydantic validation errors into :class:`SpecIssue` lines that say what is wrong and what to do.

Each error's ``loc`` is mapped to a dotted field (``caps[1].window``) and to the line
of that key in the file, or of its nearest parent when the key is missing.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from baton.spec.enums import Category, Channel, ConsentMode, Period
from baton.spec.issues import SpecIssue
from baton.spec.models import ERROR_TYPE, SECRET_HOW, looks_like_secret, number_text
from baton.spec.source import LineIndex, dotted, shorten

_EXPECTED: dict[str, str] = {
    "string_type": "a string",
    "int_type": "an integer",
    "bool_type": "true or false",
    "float_type": "a number",
    "model_type": "a mapping of keys (key: value)",
    "model_attributes_type": "a mapping of keys (key: value)",
    "dict_type": "a mapping of keys (key: value)",
    "tuple_type": "a list, e.g. [a, b]",
    "list_type": "a list, e.g. [a, b]",
}

_ENUM_NOUNS: dict[frozenset[str], tuple[str, tuple[str, ...]]] = {
    frozenset(e.value for e in enum): (noun, tuple(e.value for e in enum))
    for enum, noun in (
        (Channel, "channel"),
        (Category, "category"),
        (ConsentMode, "consent mode"),
        (Period, "period"),
    )
}

_MISSING_EXAMPLE: dict[tuple[str, str], str] = {
    ("Campaign", "id"): "id: <the file name without .yaml>",
    ("Campaign", "name"): "name: Abandoned cart reminder",
    ("Campaign", "owner"): "owner: crm-team",
    ("Campaign", "schedule"): 'schedule: "@hourly"',
    ("Campaign", "start_date"): "start_date: 2026-01-01",
    ("Campaign", "channels"): "channels: [email]",
    ("Campaign", "audience"): "audience: {sql: select customer_id from ...}",
    ("Campaign", "message"): "message: one block per channel, e.g. {email: {subject: ..., template: ...}}",
    ("Audience", "sql"): "sql: select customer_id from ...",
    ("Cap", "name"): "name: daily_total",
    ("Cap", "limit"): "limit: 2",
    ("QuietHours", "start"): 'start: "21:00"',
    ("QuietHours", "end"): 'end: "09:00"',
}


def describe(value: Any) -> str:
    """A short description of a YAML value for error messages (``the string 'high'``)."""
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"the integer {number_text(value)}"
    if isinstance(value, float):
        return f"the number {value:g}"
    if isinstance(value, str):
        return f"the string {shorten(value, 40)!r}"
    if isinstance(value, bytes):
        return "binary data (!!binary)"
    if isinstance(value, datetime | date):
        return f"the date {value.isoformat()}"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


def _unwrap(annotation: Any) -> Any:
    """Strip ``Annotated`` and ``X | None`` from *annotation*."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            rest = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(rest) != 1:
                return annotation
            annotation = rest[0]
        else:
            return annotation


def model_at(root: type[BaseModel], path: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model class that validates the mapping at *path* below *root*, if any."""
    current: Any = root
    for part in path:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return None
            current = info.annotation
            continue
        origin = typing.get_origin(current)
        args = typing.get_args(current)
        if origin in (tuple, list) and args:
            current = args[0]
        elif origin is dict and len(args) == 2:
            current = args[1]
        else:
            return None
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return current
    return None


def _type_message(kind: str, value: Any) -> str:
    expected = _EXPECTED[kind]
    message = f"must be {expected}, not {describe(value)}"
    if kind == "string_type" and isinstance(value, int | float | date | datetime):
        message += ": put the value in quotes"
    elif (
        kind in ("int_type", "float_type")
        and isinstance(value, str)
        and re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", value)
    ):
        message += ": remove the quotes"
    elif kind == "int_type" and isinstance(value, float):
        message += ": use a whole number"
    elif kind == "float_type" and isinstance(value, int) and not isinstance(value, bool):
        message = f"{number_text(value)} is too large: write a number of at most 15 digits"
    elif kind == "bool_type":
        message += ": write true or false without quotes"
    if value is None:
        message += ": write a value after the colon (or remove the key to use its default, where it has one)"
    return message


def _enum_message(err: Any, value: Any) -> str:
    expected = str((err.get("ctx") or {}).get("expected", ""))
    values = frozenset(re.findall(r"'([^']*)'", expected))
    noun, choices = _ENUM_NOUNS.get(values, ("value", tuple(sorted(values))))
    close = difflib.get_close_matches(value, choices, n=1) if isinstance(value, str) else []
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    shown = repr(shorten(value)) if isinstance(value, str) else describe(value)
    return f"unknown {noun} {shown}: use one of {', '.join(choices)}{hint}"


def _unknown_key_message(root: type[BaseModel], path: tuple[str | int, ...]) -> str:
    key = path[-1]
    shown = repr(shorten(key)) if isinstance(key, str) else repr(key)
    if looks_like_secret(key):
        return f"{shown} looks like a secret: {SECRET_HOW}"
    model = model_at(root, path[:-1])
    if model is None:
        return f"unknown key {shown}: remove it"
    allowed = list(model.model_fields)
    close = difflib.get_close_matches(str(key), allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {shown}{hint}: allowed keys are {', '.join(allowed)}"


def _jinja_line(index: LineIndex, path: tuple[str | int, ...], template_line: int) -> int:
    node = index.value_node(path)
    if isinstance(node, yaml.ScalarNode) and node.style == "|":
        # a literal block starts on the line after its indicator and keeps every line break
        return int(node.start_mark.line) + 1 + template_line
    if isinstance(node, yaml.ScalarNode):
        return int(node.start_mark.line) + 1
    return index.line_of(path)


def issues_from_error(
    exc: ValidationError, file: Path, index: LineIndex, root: type[BaseModel]
) -> list[SpecIssue]:
    """One :class:`SpecIssue` per error of *exc*, raised while validating *root* from *file*."""
    issues: list[SpecIssue] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        is_key = bool(loc) and loc[-1] == "[key]"
        path: tuple[str | int, ...] = tuple(p for p in loc if p != "[key]")
        value = err.get("input")
        kind = err["type"]
        ctx = err.get("ctx") or {}
        line: int | None = None
        if kind == ERROR_TYPE:
            path = (*path, *tuple(ctx.get("at", ())))
            message = str(ctx.get("message", err["msg"]))
            template_line = ctx.get("template_line")
            if isinstance(template_line, int):
                line = _jinja_line(index, path, template_line)
        elif kind == "value_error":
            message = str(ctx.get("error", err["msg"]))
        elif kind == "extra_forbidden":
            message = _unknown_key_message(root, path)
        elif kind == "missing":
            key = path[-1] if path else "?"
            parent = model_at(root, path[:-1])
            example = _MISSING_EXAMPLE.get((parent.__name__ if parent else "", str(key)), f"{key}: ...")
            message = f"required key {key!r} is missing: add {example}"
        elif kind == "enum":
            if is_key and looks_like_secret(path[-1] if path else None):
                message = f"{path[-1]!r} looks like a secret: {SECRET_HOW}"
            else:
                message = _enum_message(err, value)
        elif kind in _EXPECTED:
            message = _type_message(kind, value)
        else:
            message = f"{err['msg']}: fix the value"
        if line is None:
            line = index.line_of(path)
        issues.append(SpecIssue(file, line, shorten(dotted(path), 200), clip(message)))
    return issues


MAX_MESSAGE = 1000
"""The longest message of an issue; a longer one (a huge value quoted in it) loses its middle."""


def clip(message: str) -> str:
    """*message* cut to :data:`MAX_MESSAGE` characters, keeping its start (what is wrong) and end (what to do)."""
    if len(message) <= MAX_MESSAGE:
        return message
    return message[: MAX_MESSAGE * 2 // 3] + " [...] " + message[-(MAX_MESSAGE // 3) :]


def sort_issues(issues: list[SpecIssue]) -> list[SpecIssue]:
    """*issues* by line (issues without a line first), keeping the order of equal lines, and only the first
    of several about one field on one line (the reader's ``21:00 is read by YAML as the base-60 number
    1260`` says it; the model's ``bad time 1260`` after it would say it again)."""
    first: dict[tuple[object, int | None, str], SpecIssue] = {}
    for issue in issues:
        first.setdefault((issue.file, issue.line, issue.field), issue)
    return sorted(first.values(), key=lambda issue: issue.line or 0)
