"""What the fuzz tests share: their hypothesis settings and the line mutation.

Example counts: a few hundred derandomized examples in ``make test`` (reproducible), thousands of
random ones under ``make fuzz`` (``HYPOTHESIS_PROFILE=fuzz``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

Draw = Callable[[st.SearchStrategy[Any]], Any]
FUZZING = os.environ.get("HYPOTHESIS_PROFILE") == "fuzz"
_SHARED: dict[str, Any] = {
    "deadline": None,
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
}
settings.register_profile("fuzz-quick", derandomize=True, **_SHARED)
settings.register_profile("fuzz", derandomize=False, **_SHARED)


def fuzz_settings(quick: int, full: int) -> settings:
    """*quick* derandomized examples in ``make test``, *full* random ones under ``make fuzz``."""
    profile = settings.get_profile("fuzz" if FUZZING else "fuzz-quick")
    return settings(profile, max_examples=full if FUZZING else quick)


def lines_of(data: bytes) -> list[bytes]:
    """The lines of *data*, with their ends (one empty line for no data)."""
    return data.splitlines(keepends=True) or [b""]


def line_ops(draw: Draw, data: bytes) -> bytes:
    """Delete, duplicate, swap or move lines."""
    lines = lines_of(data)
    i = draw(st.integers(0, len(lines) - 1))
    j = draw(st.integers(0, len(lines) - 1))
    op = draw(st.sampled_from(["delete", "duplicate", "swap", "move"]))
    if op == "delete":
        del lines[i]
    elif op == "duplicate":
        lines.insert(j, lines[i])
    elif op == "swap":
        lines[i], lines[j] = lines[j], lines[i]
    else:
        lines.insert(j, lines.pop(i))
    return b"".join(lines)
