"""Problems found in campaign and policy files, each naming the file, the line and the field."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from baton.errors import SpecError

FILE_FIELD = "(file)"
"""The ``field`` of an issue about a whole file (unreadable, not YAML, not a mapping, …)."""


@dataclass(frozen=True)
class SpecIssue:
    """One problem: ``str(issue)`` is ``file:line: field: message`` (``file: field: message`` without a line)."""

    file: Path
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        file = shown_path(self.file)
        text = f"{self.field}: {self.message}".encode("utf-8", "backslashreplace").decode("utf-8")
        if self.line is None:
            return f"{file}: {text}"
        return f"{file}:{self.line}: {text}"


def shown_path(path: Path | str) -> str:
    """*path* as printable text: a file name that is not UTF-8 shows its odd bytes as ``\\xff``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


class SpecValidationError(SpecError):
    """One or more campaign or policy files are invalid; ``issues`` lists every problem."""

    def __init__(self, issues: Iterable[SpecIssue]) -> None:
        self.issues: list[SpecIssue] = list(issues)
        super().__init__("\n".join(str(issue) for issue in self.issues))

    def __str__(self) -> str:
        return "\n".join(str(issue) for issue in self.issues)

    def __reduce__(self) -> tuple[type[SpecValidationError], tuple[list[SpecIssue]]]:
        return (SpecValidationError, (self.issues,))
