"""Fuzzing the shipped campaign and policy files: no input makes ``baton validate`` or a DagBag fail badly.

Each example takes one of ``dags/campaigns/*.yaml`` or ``dags/policy.yaml`` and mutates it
one to three times: lines deleted, duplicated or swapped; a value anywhere in the parsed
file replaced by a random YAML scalar or structure (null, bools, ints up to thousands of
digits, floats with inf/nan, dates and times, strings with special characters, ``!!binary``
bytes, sets), a key deleted or renamed; a value's text replaced by odd YAML (impossible
dates, ``!!float abc``, ``!!python/object``, anchors and aliases, unterminated quotes,
lone surrogates); bytes inserted, flipped or cut (invalid UTF-8, NUL bytes, truncation);
and nesting thousands of levels deep or aliases that expand exponentially.

Properties:

- ``baton validate <file>`` ends with exit status 0 or 1, prints no traceback, and never
  reaches the loaders' last-resort catch (which would mean an unclassified failure);
- a DagBag over a dags folder holding the mutated file has no import errors, has
  ``baton_arbitration`` (real, or the invalid-policy placeholder), and the real DAG of
  every untouched enabled campaign (with a mutated policy: every campaign's DAG, a
  placeholder only where the mutated policy's ``topics`` reject it).

Example counts come from a settings profile: ``fuzz-quick`` (the default, derandomized so
that ``make test`` is reproducible) or ``fuzz`` (``HYPOTHESIS_PROFILE=fuzz``, ``make fuzz``:
thousands of random examples).
"""

from __future__ import annotations

import itertools
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from baton.cli import app
from baton.spec import SpecValidationError, load_policy
from baton.spec.loader import INTERNAL_ERROR
from baton.spec.source import UNREADABLE
from fuzz_support import Draw, fuzz_settings, line_ops, lines_of
from parse_guard import guarded_dagbag

pytestmark = pytest.mark.fuzz

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
CAMPAIGN_FILES = sorted(p.name for p in (DAGS / "campaigns").glob("*.yaml"))
TARGETS = [f"campaigns/{name}" for name in CAMPAIGN_FILES] + ["policy.yaml"]
ORIGINAL: dict[str, bytes] = {target: (DAGS / target).read_bytes() for target in TARGETS}
ENABLED = sorted(
    name.removesuffix(".yaml")
    for name in CAMPAIGN_FILES
    if (yaml.safe_load(ORIGINAL[f"campaigns/{name}"]) or {}).get("enabled", True)
)
SPECS: dict[str, dict[str, Any]] = {
    name.removesuffix(".yaml"): (yaml.safe_load(ORIGINAL[f"campaigns/{name}"]) or {})
    for name in CAMPAIGN_FILES
}

# --------------------------------------------------------------------------- profiles

EXAMPLES = {"validate": (400, 5000), "dagbag": (100, 1000)}  # (make test, make fuzz)


def _settings(kind: str) -> settings:
    return fuzz_settings(*EXAMPLES[kind])


# --------------------------------------------------------------------------- raw material

SPECIAL_STRINGS = [
    "",
    " ",
    "\t",
    "é€𝄞 ünïcödé",
    "\u202etxt.exe",
    "\u2028",
    "a\nb",
    "{{ item_name }}",
    "{{ x.__class__.__mro__ }}",
    "{% if %}",
    "{{ " + "(" * 300 + "x" + ")" * 300 + " }}",
    "{% for x in y %}",
    "../../etc/passwd",
    "/abs/path.j2",
    "C:\\windows",
    "a" * 300,
    "@hourly",
    "61 * * * *",
    "* * * * * *",
    "0 0 31 2 *",
    "24h",
    "0h",
    "99999999999w",
    "1000000d",
    "21:00",
    "25:99",
    "America/New_Yrok",
    "opt_in",
    "email",
    "fax",
    "marketing",
    "promo",
    "campaign_frequency",
    "api_key",
    "0001-01-01T00:00:00+01:00",
    "9999-12-31T23:59:59-01:00",
    "2026-02-30",
    "%s%n",
    "'; drop table customers; --",
]

RAW_VALUES = [
    "~",
    "null",
    "true",
    "No",
    "on",
    "0",
    "-0",
    "0o17",
    "0o9",
    "0x1F",
    "0x",
    "0b101",
    "1_000",
    "+12",
    "1e400",
    "-1e400",
    ".inf",
    "-.Inf",
    ".nan",
    "1.5",
    "1:20",
    "190:20:30",
    "12:30:45",
    "2026-02-30",
    "2026-13-01",
    "2026-00-10",
    "2026-01-01 25:00:00",
    "2026-01-01t10:00:00.123456789z",
    "2026-01-01T10:00:00+99:00",
    "2026-01-01T10:00:00-23:59",
    "0001-01-01T00:00:00+01:00",
    "0000-01-01",
    "9999-12-31T23:59:59-01:00",
    "9" * 5000,
    "-" + "9" * 400,
    "9" * 400 + ".5",
    "!!float abc",
    "!!float ''",
    "!!int 0x",
    "!!int abc",
    "!!int 9e9",
    "!!bool maybe",
    "!!timestamp 2026-02-30",
    "!!timestamp hello",
    "!!binary AAAA",
    "!!binary not base64!",
    "!!binary ''",
    "!!str 1",
    "!!null x",
    "!!set {a, b}",
    "!!set [a]",
    "!!omap [a: 1, b: 2]",
    "!!omap {a: 1}",
    "!!pairs [a: 1]",
    "!!pairs [1]",
    "!!map [1]",
    "!!seq {a: 1}",
    "!!merge x",
    "!!value x",
    "!!python/object:os.system x",
    "!!python/object/apply:os.system [ls]",
    "!!python/name:os.system ''",
    "!custom x",
    "!<tag:example.com,2000:x> 1",
    "!<!> x",
    "&a 1",
    "*a",
    "*undefined",
    "&a [*a]",
    "&a {k: *a}",
    "{<<: 1}",
    "{<<: [1, 2]}",
    "{<<: {a: 1}, a: 2}",
    "[",
    "]",
    "{",
    "}",
    "'unterminated",
    '"unterminated',
    '"\\x00"',
    '"\\uD800"',
    '"\\udfff\\ud800"',
    '"\\U0010FFFF"',
    '"\\N\\_\\L\\P"',
    '"\\q"',
    "a: b: c",
    "- x",
    "? x",
    "? [1, 2]",
    "[[1, 2]]",
    "{[1]: 2}",
    "{{a: 1}: 2}",
    "{.nan: 1, .nan: 2}",
    "{null: 1, ~: 2}",
    "|\n  text",
    "|-\n  {{ x }",
    ">-\n  folded",
    "|9\n x",
    "@at",
    "`tick",
    "%percent",
    "{{ jinja }}",
    "a #comment",
    "'{{ x }'",
    "---",
    "...",
    "--- !!map\n",
    "%YAML 1.1",
    "%TAG ! tag:x,",
]

TIMEZONES = st.sampled_from(
    [None, UTC, timezone(timedelta(hours=23, minutes=59)), timezone(-timedelta(hours=5))]
)

HUGE_INTS = st.tuples(st.integers(1, 4300), st.sampled_from([1, -1])).map(lambda t: t[1] * int("9" * t[0]))
"""Integers of up to 4300 digits (the most Python converts to text; YAML text of more is in RAW_VALUES)."""

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    HUGE_INTS,
    st.floats(allow_nan=True, allow_infinity=True),
    st.dates(),
    st.datetimes(timezones=TIMEZONES),
    st.text(max_size=30),
    st.sampled_from(SPECIAL_STRINGS),
    st.binary(max_size=20),
)
VALUES = st.deferred(  # deferred: a short name in hypothesis' statistics instead of the whole tree
    lambda: st.recursive(
        SCALARS,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(st.one_of(st.text(max_size=10), st.integers(), st.booleans()), inner, max_size=4),
            st.frozensets(st.one_of(st.integers(), st.text(max_size=5)), max_size=3),
        ),
        max_leaves=8,
    )
)


# --------------------------------------------------------------------------- mutations


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield (*prefix, key)
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield (*prefix, i)
            yield from _paths(value, (*prefix, i))


def data_ops(draw: Draw, data: bytes) -> bytes:
    """Parse, change one value (replace, delete, rename its key, add a sibling), dump."""
    try:
        doc = yaml.safe_load(data)
    except Exception:
        return data  # not YAML any more: another kind of mutation
    try:  # aliases may repeat a value exponentially often, or nest it thousands of levels deep
        paths = list(itertools.islice(_paths(doc), 2000))
    except RecursionError:
        return data
    if not paths:
        doc = draw(VALUES)
    else:
        path = draw(st.sampled_from(paths))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        key = path[-1]
        op = draw(st.sampled_from(["replace", "replace", "replace", "delete", "rename", "add"]))
        if op == "replace":
            parent[key] = draw(VALUES)
        elif op == "delete":
            del parent[key]
        elif op == "rename" and isinstance(parent, dict):
            new_key = draw(st.one_of(st.text(max_size=12), st.integers(), st.sampled_from(SPECIAL_STRINGS)))
            parent[new_key] = parent.pop(key)
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(VALUES)
        elif op == "add" and isinstance(parent, list):
            parent.insert(key, draw(VALUES))
    try:
        text = yaml.dump(
            doc,
            Dumper=yaml.SafeDumper,
            default_flow_style=draw(st.sampled_from([False, True, None])),
            allow_unicode=draw(st.booleans()),
            sort_keys=False,
        )
    except (yaml.YAMLError, ValueError, RecursionError):  # an int too long for str(), a deep alias chain
        return data  # the textual mutations cover these
    return text.encode("utf-8", "surrogatepass")


_KEY_LINE = re.compile(rb"^([ \t]*(?:- )?[^\s:#][^:#\n]*:)([ \t]+)([^\n]*)$", re.MULTILINE)


def text_ops(draw: Draw, data: bytes) -> bytes:
    """Replace a value's text by odd YAML, or insert an odd line."""
    matches = list(_KEY_LINE.finditer(data))
    snippet = draw(st.sampled_from(RAW_VALUES)).encode("utf-8", "surrogatepass")
    if matches and draw(st.booleans()):
        m = draw(st.sampled_from(matches))
        return data[: m.start(3)] + snippet + data[m.end(3) :]
    lines = lines_of(data)
    i = draw(st.integers(0, len(lines)))
    indent = b" " * draw(st.sampled_from([0, 0, 2, 4, 1]))
    key = draw(st.sampled_from([b"", b"params: ", b"x: ", b"- ", b"topic: ", b"topics: ", b"<<: "]))
    lines.insert(i, indent + key + snippet + b"\n")
    return b"".join(lines)


BAD_BYTES = [
    b"\xff",
    b"\xfe\xff",
    b"\xc3\x28",
    b"\x80",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\x00",
    b"\x00\x00\x00",
    b"\xef\xbb\xbf",
    b"\r",
    b"\xc2\x85",
    b"\xe2\x80\xa8",
    b"\x1b[31m",
    b"\x07",
    b"\t",
    b"\x7f",
]


def byte_ops(draw: Draw, data: bytes) -> bytes:
    """Insert, flip or cut bytes."""
    op = draw(st.sampled_from(["insert", "insert_bad", "flip", "truncate", "empty", "binary"]))
    at = draw(st.integers(0, len(data)))
    if op == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    if op == "insert_bad":
        return data[:at] + draw(st.sampled_from(BAD_BYTES)) + data[at:]
    if op == "flip" and data:
        i = min(at, len(data) - 1)
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1 :]
    if op == "truncate":
        return data[:at]
    if op == "empty":
        return draw(st.sampled_from([b"", b"\n", b"# only a comment\n", b"---\n", b"---\n...\n", b"~\n"]))
    return draw(st.binary(min_size=1, max_size=200))


def nest_ops(draw: Draw, data: bytes) -> bytes:
    """Deep nesting, exponential aliases or a huge value, in place of a value (or appended)."""
    n = draw(st.sampled_from([1, 5, 31, 32, 33, 60, 200, 1000, 3000, 20000]))
    kind = draw(
        st.sampled_from(["flow_list", "flow_map", "block_list", "block_map", "aliases", "laughs", "huge"])
    )
    if kind == "flow_list":
        value = "[" * n + "1" + "]" * n
    elif kind == "flow_map":
        value = "{a: " * n + "1" + "}" * n
    elif kind == "block_list":
        value = (
            "\n"
            + "".join("  " * (i + 1) + "-\n" for i in range(min(n, 2000)))
            + "  " * (min(n, 2000) + 1)
            + "x"
        )
    elif kind == "block_map":
        value = (
            "\n"
            + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(min(n, 2000)))
            + "  " * (min(n, 2000) + 1)
            + "x"
        )
    elif kind == "aliases":  # a chain of aliases: shallow text, deep data
        value = "[&a0 [1]" + "".join(f", &a{i} [*a{i - 1}]" for i in range(1, min(n, 5000))) + "]"
    elif kind == "laughs":  # every level repeats the previous one ten times
        levels = min(max(n // 100, 2), 12)
        parts = ["&l0 [lol, lol]"] + [
            f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, levels)
        ]
        value = "[" + ", ".join(parts) + "]"
    else:
        value = "'" + "x" * draw(st.sampled_from([1000, 100_000, 1_100_000])) + "'"
    encoded = value.encode()
    matches = list(_KEY_LINE.finditer(data))
    if matches and draw(st.booleans()):
        m = draw(st.sampled_from(matches))
        return data[: m.start(3)] + encoded + data[m.end(3) :]
    return data + b"\nparams: " + encoded + b"\n"


MUTATIONS = [line_ops, data_ops, text_ops, byte_ops, nest_ops]


@st.composite
def mutated(draw: Draw) -> tuple[str, bytes]:
    """One shipped file (relative to dags/) and its mutated bytes."""
    target = draw(st.sampled_from(TARGETS))
    data = ORIGINAL[target]
    for _ in range(draw(st.integers(1, 3))):
        data = draw(st.sampled_from(MUTATIONS))(draw, data)
    return target, data


# --------------------------------------------------------------------------- the folder


@pytest.fixture(scope="module")
def dags_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of dags/ reused by every example: each one rewrites only its target file."""
    folder = tmp_path_factory.mktemp("fuzz") / "dags"
    shutil.copytree(DAGS, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def _write(folder: Path, target: str, data: bytes) -> Path:
    path = folder / target
    path.write_bytes(data)
    return path


def _restore(folder: Path, target: str) -> None:
    (folder / target).write_bytes(ORIGINAL[target])


def _check_validate_output(result: Any) -> None:
    exc = result.exception
    assert exc is None or (isinstance(exc, SystemExit) and exc.code in (0, 1)), (
        f"baton validate raised {exc!r}\n{result.output}"
    )
    assert result.exit_code in (0, 1), result.output
    assert "Traceback" not in result.output, result.output
    assert INTERNAL_ERROR not in result.output, result.output
    assert UNREADABLE not in result.output, result.output


@_settings("validate")
@given(example=mutated())
def test_validate_never_fails_badly(dags_copy: Path, example: tuple[str, bytes]) -> None:
    target, data = example
    path = _write(dags_copy, target, data)
    try:
        result = CliRunner().invoke(app, ["validate", str(path)], catch_exceptions=True)
    finally:
        _restore(dags_copy, target)
    _check_validate_output(result)
    if data == ORIGINAL[target]:
        assert result.exit_code == 0, result.output


def _policy_topics(path: Path) -> tuple[str, ...] | None:
    try:
        return load_policy(path).topics
    except SpecValidationError:  # an invalid policy: campaigns are not checked against it
        return None


@_settings("dagbag")
@given(example=mutated())
def test_dagbag_keeps_every_other_dag(dags_copy: Path, example: tuple[str, bytes]) -> None:
    target, data = example
    _write(dags_copy, target, data)
    try:
        bag = guarded_dagbag(dags_copy)
        topics = _policy_topics(dags_copy / "policy.yaml") if target == "policy.yaml" else None
    finally:
        _restore(dags_copy, target)
    assert bag.import_errors == {}
    assert "baton_arbitration" in bag.dag_ids
    arbitration = bag.dags["baton_arbitration"]
    if "invalid" in arbitration.tags:
        assert target == "policy.yaml"
        assert arbitration.get_task("invalid_policy_file").retries == 0
    for stem in ENABLED:
        if target == f"campaigns/{stem}.yaml":
            continue
        dag = bag.dags.get(f"campaign__{stem}")
        assert dag is not None, f"campaign__{stem} is missing"
        spec = SPECS[stem]
        rejected = (
            topics is not None
            and spec.get("category", "marketing") == "marketing"
            and spec.get("topic", stem) not in topics
        )
        assert ("invalid" in dag.tags) == rejected, dag.doc_md
    for dag in bag.dags.values():
        if "invalid" in (dag.tags or ()):
            assert INTERNAL_ERROR not in (dag.doc_md or ""), dag.doc_md
            assert UNREADABLE not in (dag.doc_md or ""), dag.doc_md
            assert "could not be built" not in (dag.doc_md or ""), dag.doc_md
