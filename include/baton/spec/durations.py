"""Durations as written in campaign and policy files: an integer and a unit (``90m``, ``24h``, ``7d``, ``2w``)."""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"([0-9]+)([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_MINUTES = {"m": 1, "h": 60, "d": 1440, "w": 10080}
MAX_MINUTES = 36500 * 1440
"""The longest duration, 36500 days: far beyond any window or wait, and safe to add to any decision time."""
MAX_TEXT = "36500d"
HOW = "use an integer and a unit m, h, d or w (90m, 24h, 7d, 2w)"


def parse_duration(text: str) -> timedelta:
    """Parse ``"90m"``, ``"24h"``, ``"7d"`` or ``"2w"`` into a positive :class:`~datetime.timedelta`.

    Raises :class:`ValueError` with a message saying how to write a duration when *text*
    is anything else (including a number without a unit, a fraction, zero, or more than
    36500 days).
    """
    if not isinstance(text, str):
        raise ValueError(f"bad duration {text!r}: {HOW}")
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"bad duration {text!r}: {HOW}")
    digits = match.group(1).lstrip("0") or "0"
    amount = int(digits) if len(digits) <= 12 else MAX_MINUTES + 1
    if amount <= 0:
        raise ValueError(f"bad duration {text!r}: a duration must be greater than zero; {HOW}")
    unit = match.group(2)
    if amount * _MINUTES[unit] > MAX_MINUTES:
        raise ValueError(f"bad duration {text!r}: a duration may be at most {MAX_TEXT} (about 100 years)")
    return timedelta(**{_UNITS[unit]: amount})


def format_duration(value: timedelta) -> str:
    """The shortest ``<integer><unit>`` spelling of *value* (the inverse of :func:`parse_duration`)."""
    seconds = int(value.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
