"""Identifier kinds and normalisation (SPEC §6), in Python and as the same SQL.

Every comparison of identifiers uses the normalised value: ``email`` trimmed and lower-cased,
``phone`` reduced to its digits (``+1 (555) 010-0199`` is ``15550100199``), every other kind
trimmed.  A normalised value is **blocked** — it identifies no one — when it is empty, made only
of the characters ``0 - . x X``, one of the junk words (``null``, ``none``, ``unknown``,
``anonymous``, ``undefined``, ``n/a``, any case), or listed in the policy's
``identity.blocked_values`` (each listed value normalised as the identifier's kind, compared
case-insensitively).

Choices where SPEC §6 is silent (README, "Identity"): "trimmed" removes the ASCII whitespace
`` \\t\\n\\r\\f\\v`` (as the arbitration engine trims addresses); a phone keeps the ASCII digits
``0-9`` only.  :func:`normalize` and :func:`norm_sql` agree exactly; the tests check it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

KINDS: tuple[str, ...] = ("email", "phone", "login", "cookie", "device", "push_token")
"""The identifier kinds of SPEC §6."""

PROFILE_COLUMNS: tuple[str, ...] = ("email", "phone", "push_token")
"""The columns of ``customers`` that are identifiers of their profile too (and its addresses)."""

DEFAULT_LINK_ON: tuple[str, ...] = ("email", "phone", "login", "device")
DEFAULT_MAX_PROFILES_PER_VALUE = 10
JUNK_WORDS: tuple[str, ...] = ("null", "none", "unknown", "anonymous", "undefined", "n/a")
WS = " \t\n\r\f\v"
_ONLY_ZEROS = re.compile(r"^[0\-.xX]+$")
_NOT_DIGIT = re.compile(r"[^0-9]")
MAX_VALUE_LENGTH = 512
"""The longest identifier value accepted (longer ones are bad input, not identities)."""


def _lower(text: str) -> str:
    """Lower case one character at a time, as PostgreSQL's ``lower()`` does (simple case mapping:
    ``İ`` becomes ``i``, where Python's ``str.lower`` gives ``i`` and a combining dot)."""
    return "".join(c.lower()[:1] or c for c in text)


def normalize(kind: str, value: str) -> str:
    """The normalised form of *value* as an identifier of *kind*."""
    if kind == "email":
        return _lower(value.strip(WS))
    if kind == "phone":
        return _NOT_DIGIT.sub("", value)
    return value.strip(WS)


def is_junk(norm: str) -> bool:
    """Whether a normalised value is blocked by the built-in rules (empty, zeros and dashes, junk words)."""
    return not norm or bool(_ONLY_ZEROS.match(norm)) or norm.lower() in JUNK_WORDS


def blocked_set(kind: str, blocked_values: Iterable[str]) -> frozenset[str]:
    """The policy's ``blocked_values`` as the lower-cased normalised values of *kind* they block."""
    return frozenset(normalize(kind, v).lower() for v in blocked_values)


def is_blocked(kind: str, norm: str, blocked_values: Iterable[str] = ()) -> bool:
    """Whether the normalised value *norm* of *kind* identifies no one."""
    return is_junk(norm) or norm.lower() in blocked_set(kind, blocked_values)


def norm_sql(kind: str, value: str) -> str:
    """SQL: the normalised form of the text expression *value* as an identifier of the constant *kind*
    (the store's functions ``baton_norm_email``, ``baton_norm_phone``, ``baton_norm_trim``, created by
    migration 0006: one-expression SQL functions that PostgreSQL inlines)."""
    if kind == "email":
        return f"baton_norm_email({value})"
    if kind == "phone":
        return f"baton_norm_phone({value})"
    return f"baton_norm_trim({value})"


def norm_sql_any(kind_expr: str, value: str) -> str:
    """SQL: the normalised form of *value* for the kind in the text expression *kind_expr*."""
    return (
        f"case {kind_expr} when 'email' then {norm_sql('email', value)}"
        f" when 'phone' then {norm_sql('phone', value)} else {norm_sql('login', value)} end"
    )


def junk_sql(norm: str) -> str:
    """SQL: whether the normalised value expression *norm* is blocked by the built-in rules."""
    words = ", ".join(f"'{w}'" for w in JUNK_WORDS)
    return f"({norm} = '' or {norm} ~ '^[0\\-.xX]+$' or lower({norm}) in ({words}))"


__all__ = [
    "DEFAULT_LINK_ON",
    "DEFAULT_MAX_PROFILES_PER_VALUE",
    "JUNK_WORDS",
    "KINDS",
    "MAX_VALUE_LENGTH",
    "PROFILE_COLUMNS",
    "WS",
    "blocked_set",
    "is_blocked",
    "is_junk",
    "junk_sql",
    "norm_sql",
    "norm_sql_any",
    "normalize",
]
