"""Reading a YAML file into plain data plus the line of every key.

Parsing has ``yaml.safe_load`` semantics (no Python tags, no environment expansion): the
file is composed once into a node tree with a :class:`yaml.SafeLoader`, the tree is
indexed (key path -> 1-based line), and the same tree is then constructed into Python
data.  Duplicate keys, which ``safe_load`` silently resolves to the last one, are
reported.

Reading never raises: whatever is wrong with the file — not a file, unreadable, too
large, not UTF-8, binary, not YAML, a value YAML cannot construct (``2026-02-30``, an
integer of 5000 digits, ``!!float abc``), nesting too deep, aliases that contain
themselves or expand to too many values — becomes a :class:`SpecIssue` with a line (line
1 when there is no better one).  The limits (:data:`MAX_FILE_BYTES`, :data:`MAX_DEPTH`,
:data:`MAX_VALUES`) are far above any real campaign or policy file and keep everything
after reading (pydantic, Jinja, the DAG builders) away from Python's recursion limit and
from exponential alias expansion.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from baton.spec.issues import FILE_FIELD, SpecIssue

log = logging.getLogger(__name__)

PathKey = tuple[str | int, ...]

MAX_FILE_BYTES = 1024 * 1024
"""The largest campaign or policy file read (1 MiB; real files are a few kilobytes)."""

MAX_DEPTH = 32
"""The deepest nesting of mappings and lists, counted after aliases are expanded."""

UNREADABLE = "the file could not be read as YAML"
"""The start of the message of an unexpected failure while reading a file (a bug in Baton)."""

MAX_VALUES = 100_000
"""The most values (scalars, mappings and lists) a file may hold, counted after aliases are expanded."""

MAX_TEXT = 4 * 1024 * 1024
"""The most characters of text a file may hold, counted after aliases are expanded (a 600 kB string
repeated 100,000 times by an alias would be 60 GB bound into an audience query)."""


def dotted(path: Sequence[str | int]) -> str:
    """``("caps", 1, "window")`` -> ``"caps[1].window"``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or FILE_FIELD


def shorten(text: str, limit: int = 60) -> str:
    """*text* cut to *limit* characters (with ``...``), for quoting user input in messages."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


# --------------------------------------------------------------------------- reading the bytes


def _os_reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _line_at(text: str | bytes, position: int) -> int:
    """The 1-based line of *position* in *text*, with lines ending in LF, CRLF or a lone CR (as YAML reads)."""
    head = text[:position]
    if isinstance(head, bytes):
        head = head.decode("latin-1")
    return head.count("\n") + head.count("\r") - head.count("\r\n") + 1


def _utf16(data: bytes) -> bool:
    """Whether *data* looks like UTF-16 text: a byte-order mark, or ASCII with every other byte NUL."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return True
    head = data[: min(len(data), 64) // 2 * 2]
    if len(head) < 4:
        return False
    even, odd = head[0::2], head[1::2]
    return (not odd.strip(b"\x00") and b"\x00" not in even) or (
        not even.strip(b"\x00") and b"\x00" not in odd
    )


def _read_text(file: Path) -> tuple[str | None, SpecIssue | None]:
    """The text of *file*, or the issue that keeps it from being read."""
    try:
        info = os.stat(file)
    except FileNotFoundError:
        if os.path.islink(file):
            target = shorten(os.readlink(file), 200)
            return None, SpecIssue(
                file, 1, FILE_FIELD, f"is a link to {target}, which does not exist: fix the link or remove it"
            )
        return None, SpecIssue(file, None, FILE_FIELD, "file not found: check the path")
    except (OSError, ValueError) as exc:  # a link loop, a name too long, a NUL in the name, ...
        reason = _os_reason(exc) if isinstance(exc, OSError) else str(exc)
        return None, SpecIssue(
            file, 1, FILE_FIELD, f"cannot read the file ({reason}): check the path and its permissions"
        )
    if stat.S_ISDIR(info.st_mode):
        return None, SpecIssue(
            file,
            1,
            FILE_FIELD,
            "is a directory, not a YAML file: give a file (or rename the folder so that its name "
            "does not end in .yaml or .yml)",
        )
    if not stat.S_ISREG(info.st_mode):
        return None, SpecIssue(
            file,
            1,
            FILE_FIELD,
            "is not a regular file (a pipe, socket or device): replace it with a YAML file",
        )
    too_big = SpecIssue(
        file,
        1,
        FILE_FIELD,
        f"the file is larger than {MAX_FILE_BYTES // 1024 // 1024} MiB: campaign and policy files are "
        "a few kilobytes of YAML; check that this is the right file",
    )
    if info.st_size > MAX_FILE_BYTES:
        return None, too_big
    try:
        with open(file, "rb") as stream:
            data = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        how = (
            "make it readable by the user that runs Baton"
            if exc.errno in (errno.EACCES, errno.EPERM)
            else "check that it is a readable file"
        )
        return None, SpecIssue(file, 1, FILE_FIELD, f"cannot read the file ({_os_reason(exc)}): {how}")
    if len(data) > MAX_FILE_BYTES:
        return None, too_big
    if _utf16(data):
        return None, SpecIssue(
            file,
            1,
            FILE_FIELD,
            "the file is saved as UTF-16 (e.g. by PowerShell or Notepad): save it as UTF-8",
        )
    nul = data.find(b"\x00")
    if nul >= 0:
        line = _line_at(data, nul)
        return None, SpecIssue(
            file,
            line,
            FILE_FIELD,
            "the file holds NUL bytes, so it is binary, not YAML text: replace it with the YAML file",
        )
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        line = _line_at(data, exc.start)
        bad = data[exc.start : exc.start + 1].hex()
        return None, SpecIssue(
            file, line, FILE_FIELD, f"not UTF-8 text (byte 0x{bad} {exc.reason}): save the file as UTF-8"
        )


# --------------------------------------------------------------------------- parsing


class _TooDeep(yaml.YAMLError):  # type: ignore[misc]  # yaml has no type hints
    """Raised by :class:`_Loader` when the text nests deeper than :data:`MAX_DEPTH`."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


class _BadValue(yaml.YAMLError):  # type: ignore[misc]
    """A scalar that YAML resolved to a type (date, integer, ...) but cannot construct."""

    def __init__(self, node: yaml.Node, cause: Exception) -> None:
        super().__init__(str(cause))
        self.node = node
        self.cause = cause


class _Loader(yaml.SafeLoader):  # type: ignore[misc]
    """``yaml.SafeLoader`` that stops at :data:`MAX_DEPTH` and names the node of a value it cannot construct."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:  # PyYAML's constructors raise ValueError, OverflowError, TypeError, ...
            raise _BadValue(node, exc) from exc


_HOW_SYNTAX = (
    "fix the YAML syntax (check indentation and colons; quote values that start with "
    "{, [, @, *, & or % and values that contain ': ')"
)


def _yaml_issue(file: Path, text: str, exc: yaml.YAMLError) -> SpecIssue:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        if isinstance(exc, yaml.constructor.ConstructorError):
            if "unhashable key" in problem:
                return SpecIssue(
                    file,
                    line,
                    FILE_FIELD,
                    "a key is a list or a mapping: write plain keys (name: value); put a key that starts "
                    "with [ or { in quotes",
                )
            if "tag" in problem:
                return SpecIssue(
                    file,
                    line,
                    FILE_FIELD,
                    f"{problem.strip()}: YAML tags are not allowed here; write plain values",
                )
            return SpecIssue(
                file, line, FILE_FIELD, f"{shorten(problem.strip(), 200)}{context}: write plain values"
            )
        return SpecIssue(file, line, FILE_FIELD, f"invalid YAML: {problem}{context}: {_HOW_SYNTAX}")
    if isinstance(exc, yaml.reader.ReaderError):
        line = _line_at(text, exc.position)
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        return SpecIssue(
            file,
            line,
            FILE_FIELD,
            f"invalid character {char!r} (U+{ord(char):04X}) in the file ({exc.reason}): remove it",
        )
    return SpecIssue(file, 1, FILE_FIELD, f"invalid YAML: {shorten(str(exc), 200)}: {_HOW_SYNTAX}")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


_NON_PRINTABLE = yaml.reader.Reader.NON_PRINTABLE
"""What YAML refuses to read raw; written as an escape (``"\\0"``, ``"\\uD800"``) it would get through."""


def _field_of(index: LineIndex, node: yaml.Node) -> str:
    for path, value in index.values.items():
        if value is node:
            return shorten(dotted(path), 200)
    return FILE_FIELD


def _shape_issue(file: Path, root: yaml.Node, index: LineIndex) -> SpecIssue | None:
    """An alias that contains itself, nesting or alias expansion beyond the limits (iterative: any depth),
    or a text with a character YAML would not read raw (NUL, a lone surrogate, a control character)."""
    depth: dict[int, int] = {}
    size: dict[int, int] = {}
    text: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            on_path.discard(key)
            kids = _children(node)
            depth[key] = 1 + max((depth[id(k)] for k in kids), default=0)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            own = len(str(node.value)) if isinstance(node, yaml.ScalarNode) else 0
            text[key] = own + sum(text[id(k)] for k in kids)
            line = node.start_mark.line + 1
            if depth[key] > MAX_DEPTH:
                return SpecIssue(
                    file,
                    line,
                    FILE_FIELD,
                    f"the YAML nests more than {MAX_DEPTH} levels deep (counting what its aliases "
                    "repeat): simplify it",
                )
            if size[key] > MAX_VALUES:
                return SpecIssue(
                    file,
                    line,
                    FILE_FIELD,
                    f"the YAML holds more than {MAX_VALUES:,} values once its aliases (*name) are "
                    "expanded: write the values out or use fewer aliases",
                )
            if text[key] > MAX_TEXT:
                return SpecIssue(
                    file,
                    line,
                    FILE_FIELD,
                    f"the YAML holds more than {MAX_TEXT // 1024 // 1024} MiB of text once its aliases (*name) "
                    "are expanded: write the values out or use fewer aliases",
                )
            continue
        if key in size:
            continue
        if isinstance(node, yaml.ScalarNode):
            bad = _NON_PRINTABLE.search(str(node.value))
            if bad is not None:
                return SpecIssue(
                    file,
                    node.start_mark.line + 1,
                    _field_of(index, node),
                    f"the text holds the character {bad.group()!r} (U+{ord(bad.group()):04X}), which campaign "
                    "and policy files may not contain: remove it (it cannot be stored or shown)",
                )
        if key in on_path:
            return SpecIssue(
                file,
                node.start_mark.line + 1,
                FILE_FIELD,
                "an alias (*name) repeats a value that contains the alias itself, so the value never "
                "ends: remove the alias or point it at another value",
            )
        on_path.add(key)
        stack.append((node, True))
        stack.extend((kid, False) for kid in reversed(_children(node)) if id(kid) not in size)
    return None


def _index(root: yaml.Node, index: LineIndex, issues: list[SpecIssue], file: Path) -> None:
    """Record the line of every key and item; a value repeated by an alias is indexed where it is written."""
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, PathKey]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        index.values[path] = node
        if id(node) in seen:
            continue
        seen.add(id(node))
        below: list[tuple[yaml.Node, PathKey]] = []
        if isinstance(node, yaml.MappingNode):
            first: dict[str, int] = {}
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = str(key_node.value)
                line = key_node.start_mark.line + 1
                if key in first:
                    issues.append(
                        SpecIssue(
                            file,
                            line,
                            shorten(dotted((*path, key)), 200),
                            f"duplicate key {shorten(key)!r} (also on line {first[key]}): keep only one; "
                            "YAML would use the last",
                        )
                    )
                first[key] = line
                index.lines[(*path, key)] = line
                below.append((value_node, (*path, key)))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                index.lines[(*path, i)] = item.start_mark.line + 1
                below.append((item, (*path, i)))
        stack.extend(reversed(below))


_OCTAL = re.compile(r"[-+]?0[0-7_]+")
_STRUCTURE_TAGS = {
    "tag:yaml.org,2002:set": "a set (!!set)",
    "tag:yaml.org,2002:omap": "an ordered map (!!omap)",
    "tag:yaml.org,2002:pairs": "a list of pairs (!!pairs)",
    "tag:yaml.org,2002:binary": "binary data (!!binary)",
}
FREE_FORM = ("params",)
"""Top-level keys whose values are the author's own (bound into the audience query as written)."""


def _yaml11_issue(file: Path, path: PathKey, node: yaml.Node) -> SpecIssue | None:
    """A value that YAML 1.1 (PyYAML) reads differently from how it reads to a person, or from YAML 1.2."""
    where = shorten(dotted(path), 200)
    line = node.start_mark.line + 1
    if node.tag in _STRUCTURE_TAGS:
        return SpecIssue(
            file,
            line,
            where,
            f"{_STRUCTURE_TAGS[node.tag]} is not allowed: write a plain list [a, b], mapping or text",
        )
    if not isinstance(node, yaml.ScalarNode) or node.style is not None:  # quoted or block text
        return None
    value = str(node.value)
    if node.tag == "tag:yaml.org,2002:int" and _OCTAL.fullmatch(value):
        digits = value.lstrip("+-").lstrip("0_") or "0"
        return SpecIssue(
            file,
            line,
            where,
            f"{value} is read by YAML as the octal number {yaml.safe_load(value)}: write {digits} "
            f"without the leading zero, or put it in quotes ('{value}') if it is text such as a code",
        )
    if node.tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float") and ":" in value:
        return SpecIssue(
            file,
            line,
            where,
            f"{value} is read by YAML as the base-60 number {yaml.safe_load(value)}: put it in quotes "
            f"('{value}') if it is a time or text",
        )
    if (
        node.tag == "tag:yaml.org,2002:bool"
        and path[:1] == FREE_FORM
        and value.lower() not in ("true", "false")
    ):
        return SpecIssue(
            file,
            line,
            where,
            f"{value} is read by YAML as {str(yaml.safe_load(value)).lower()}: write true or false, "
            f"or put it in quotes ('{value}') if it is text (a country code such as NO, say)",
        )
    return None


def _yaml11_issues(file: Path, index: LineIndex) -> list[SpecIssue]:
    """Every value of the file that YAML 1.1 reads as something else than it looks: ``010`` (octal 8),
    ``1:20`` (base 60: 80), ``NO`` under ``params`` (false), and the tags that build sets, ordered maps,
    pairs and bytes."""
    found = (_yaml11_issue(file, path, node) for path, node in index.values.items())
    return [issue for issue in found if issue is not None]


_TAG_WORDS = {
    "timestamp": "a date or time",
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "binary": "binary data (base64)",
}


_TOO_MANY_DIGITS = "it has more than 4300 digits"


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "Exceeds the limit" in text and "integer string conversion" in text:
        return _TOO_MANY_DIGITS
    return shorten(text.split("\n")[0], 120) or type(exc).__name__


def _bad_value_issue(file: Path, index: LineIndex, exc: _BadValue) -> SpecIssue:
    node = exc.node
    where = next((path for path, n in index.values.items() if n is node), None)
    name = dotted(where) if where is not None else FILE_FIELD
    line = node.start_mark.line + 1
    kind = str(node.tag).rsplit(":", 1)[-1]
    shown = repr(shorten(str(node.value))) if isinstance(node, yaml.ScalarNode) else "the value"
    what = _TAG_WORDS.get(kind, f"a YAML {kind!r} value")
    reason = _reason(exc.cause)
    if kind == "timestamp":
        how = "write a real calendar date (2026-01-01) or date and time (2026-01-01T08:00:00Z)"
    elif reason == _TOO_MANY_DIGITS:
        how = "write a smaller number"
    elif kind in ("int", "float"):
        how = "write a plain number, or put text in quotes"
    else:
        how = "write a plain value (put text in quotes)"
    return SpecIssue(file, line, name, f"{shown} cannot be read as {what} ({reason}): {how}")


def read_yaml(file: Path) -> tuple[YamlDocument | None, list[SpecIssue]]:
    """Parse *file*; returns the document (None when it cannot be read or parsed) and the issues found.

    Never raises: every problem, down to a bug in a YAML constructor, is an issue of *file*.
    """
    text, problem = _read_text(file)
    if text is None:
        return None, [problem] if problem is not None else []
    try:
        return _parse(file, text)
    except RecursionError:
        return None, [SpecIssue(file, 1, FILE_FIELD, "the YAML nests too deeply: simplify it")]
    except Exception as exc:  # last resort: a file never escapes as a traceback
        log.debug("reading %s failed", file, exc_info=True)
        return None, [
            SpecIssue(
                file,
                1,
                FILE_FIELD,
                f"{UNREADABLE} ({type(exc).__name__}: {_reason(exc)}): "
                "simplify the unusual part and report this to the Baton maintainers",
            )
        ]


def _parse(file: Path, text: str) -> tuple[YamlDocument | None, list[SpecIssue]]:
    issues: list[SpecIssue] = []
    try:
        loader = _Loader(text)
    except yaml.YAMLError as exc:  # a character YAML does not allow
        return None, [_yaml_issue(file, text, exc)]
    index = LineIndex()
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(None, index), issues
        index.root_line = node.start_mark.line + 1
        _index(node, index, issues, file)
        issues.extend(_yaml11_issues(file, index))
        shape = _shape_issue(file, node, index)
        if shape is not None:
            return None, [shape]
        data = loader.construct_document(node)
    except _TooDeep as exc:
        return None, [
            SpecIssue(
                file, exc.line, FILE_FIELD, f"the YAML nests more than {MAX_DEPTH} levels deep: simplify it"
            )
        ]
    except _BadValue as exc:
        return None, [_bad_value_issue(file, index, exc)]
    except yaml.YAMLError as exc:
        return None, [_yaml_issue(file, text, exc)]
    finally:
        loader.dispose()
    return YamlDocument(data, index), issues
