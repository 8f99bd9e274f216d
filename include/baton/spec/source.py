"""Reading a YAML file into plain data plus the line of every key.

Parsing has ``yaml.safe_load`` semantics (no Python tags, no environment expansion): the
file is composed once into a node tree with :class:`yaml.SafeLoader`, the tree is
indexed (key path -> 1-based line), and the same tree is then constructed into Python
data.  Duplicate keys, which ``safe_load`` silently resolves to the last one, are
reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from baton.spec.issues import FILE_FIELD, SpecIssue

PathKey = tuple[str | int, ...]


def dotted(path: Sequence[str | int]) -> str:
    """``("caps", 1, "window")`` -> ``"caps[1].window"``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or FILE_FIELD


@dataclass
class LineIndex:
    """The 1-based line of every key (mapping entries) and item (sequence entries) of a document."""

    root_line: int = 1
    lines: dict[PathKey, int] = field(default_factory=dict)
    values: dict[PathKey, yaml.Node] = field(default_factory=dict)

    def line_of(self, path: Sequence[str | int]) -> int:
        """The line of *path*, or of its nearest ancestor present in the file."""
        key = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.root_line

    def value_node(self, path: Sequence[str | int]) -> yaml.Node | None:
        """The YAML node holding the value at *path*, if the file has one."""
        return self.values.get(tuple(path))


@dataclass
class YamlDocument:
    """A parsed file: its data (``None`` for an empty file) and its line index."""

    data: Any
    index: LineIndex


def _index(
    node: yaml.Node, path: PathKey, index: LineIndex, issues: list[SpecIssue], file: Path, stack: set[int]
) -> None:
    if id(node) in stack:  # a recursive alias
        return
    stack = stack | {id(node)}
    index.values[path] = node
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                issues.append(
                    SpecIssue(
                        file,
                        line,
                        dotted((*path, key)),
                        f"duplicate key {key!r} (also on line {seen[key]}): keep only one; YAML would use the last",
                    )
                )
            seen[key] = line
            index.lines[(*path, key)] = line
            _index(value_node, (*path, key), index, issues, file, stack)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            index.lines[(*path, i)] = item.start_mark.line + 1
            _index(item, (*path, i), index, issues, file, stack)


def _yaml_issue(file: Path, text: str, exc: yaml.YAMLError) -> SpecIssue:
    how = (
        "fix the YAML syntax (check indentation and colons; quote values that start with "
        "{, [, @, *, & or % and values that contain ': ')"
    )
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or "invalid YAML"
        if isinstance(exc, yaml.constructor.ConstructorError) and "tag" in problem:
            return SpecIssue(
                file,
                line,
                FILE_FIELD,
                f"{problem.strip()}: YAML tags are not allowed here; write plain values",
            )
        context = f" ({exc.context})" if exc.context else ""
        return SpecIssue(file, line, FILE_FIELD, f"invalid YAML: {problem}{context}: {how}")
    if isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        return SpecIssue(file, line, FILE_FIELD, f"invalid character in the file ({exc.reason}): remove it")
    return SpecIssue(file, None, FILE_FIELD, f"invalid YAML: {exc}: {how}")


def read_yaml(file: Path) -> tuple[YamlDocument | None, list[SpecIssue]]:
    """Parse *file*; returns the document (None when it cannot be read or parsed) and the issues found."""
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [SpecIssue(file, None, FILE_FIELD, "file not found: check the path")]
    except IsADirectoryError:
        return None, [SpecIssue(file, None, FILE_FIELD, "is a directory, not a YAML file: give a file")]
    except UnicodeDecodeError as exc:
        return None, [
            SpecIssue(file, None, FILE_FIELD, f"not UTF-8 text ({exc.reason}): save the file as UTF-8")
        ]
    except OSError as exc:
        return None, [
            SpecIssue(file, None, FILE_FIELD, f"cannot read the file ({exc.strerror}): check its permissions")
        ]
    issues: list[SpecIssue] = []
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:  # a character YAML does not allow
        return None, [_yaml_issue(file, text, exc)]
    try:
        node = loader.get_single_node()
        index = LineIndex()
        if node is None:
            return YamlDocument(None, index), issues
        index.root_line = node.start_mark.line + 1
        _index(node, (), index, issues, file, set())
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        return None, [_yaml_issue(file, text, exc)]
    except RecursionError:
        return None, [SpecIssue(file, None, FILE_FIELD, "the YAML nests too deeply: simplify it")]
    finally:
        loader.dispose()
    return YamlDocument(data, index), issues
