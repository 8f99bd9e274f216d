"""Fuzzing the loaders of user data files: ``baton simulate`` scenario folders and ``baton identity load``.

Scenario folders: each example takes the scenario of ``tests/unit/scenarios/basic`` (with an
``identifiers.csv`` and an ``exclusions.csv`` added) and mutates it one to three times: CSV lines
deleted, duplicated, swapped or moved; a cell replaced by an odd value (empty, blank, huge, beyond
the CSV field limit, unicode, NUL, quotes, commas, line breaks, numbers that are none or negative
or infinite, times that are no time or out of range, timezones that do not exist, unknown
channels, kinds and campaigns); header columns renamed, repeated, dropped, added or moved; the
file written with another quoting, unquoted (so that commas and line breaks in cells break the
rows) or with CRLF; bytes inserted, flipped or cut (invalid UTF-8, a byte-order mark, NUL,
binary, truncation, UTF-16); a file deleted, emptied, replaced by a folder or by a symlink (to
itself, to nothing, to a folder); unknown files and folders added, ``campaigns/`` or
``templates/`` replaced by a file.  The YAML and template files get the line and byte mutations
only (``test_fuzz_specs.py`` fuzzes campaign and policy YAML in depth).  A third of the examples
(two thirds of those run through the CLI) only replace one to three cells, mostly in columns of
free text, so that many still load and take odd values to the database.

Properties:

- ``load_scenario`` returns a scenario or raises :class:`~baton.errors.InputError` whose every
  line that names a path names one in the scenario folder, as ``path: problem`` or
  ``path:line: problem`` with a line the file has; nothing else escapes;
- a loaded scenario holds no NUL character (PostgreSQL's text cannot hold one: ``baton simulate``
  would fail in the database);
- ``baton simulate DIR`` ends with status 0 (and a decisions file) exactly when the folder loads,
  2 with the loader's message otherwise, and never prints a traceback.

Identifier files (``baton identity load``): the CSV of the module's store, mutated the same way.

- ``load_identifiers`` returns a :class:`~baton.identity.admin.LoadResult` or raises ``InputError``
  naming the file (and its line when it is about one); when it raises, the identifiers table is
  unchanged (checksum);
- on success every non-blank data row is counted, and either rejected with its line and a reason
  or stored (its customer, kind and normalised value are in the table afterwards); the table grew
  by at most ``stored`` rows;
- ``baton identity load FILE`` exits 0, 1 (rows rejected, each listed as ``FILE:line: reason``) or
  2 (an ``error:`` and the table unchanged), without a traceback.

Example counts come from a settings profile: ``fuzz-quick`` (the default, derandomized so that
``make test`` is reproducible) or ``fuzz`` (``HYPOTHESIS_PROFILE=fuzz``, ``make fuzz``).
"""

from __future__ import annotations

import csv
import io
import os
import random
import re
import shutil
import tempfile
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from baton.arbitration.scenario import Scenario, load_scenario
from baton.cli import app
from baton.errors import InputError
from baton.identity.admin import LoadResult, load_identifiers
from baton.identity.normalize import normalize
from fuzz_support import Draw, fuzz_settings, line_ops

pytestmark = pytest.mark.fuzz

ROOT = Path(__file__).resolve().parents[2]
BASIC = ROOT / "tests" / "unit" / "scenarios" / "basic"
AT = "2026-03-02T12:00:00Z"

# --------------------------------------------------------------------------- profiles

EXAMPLES = {"load": (250, 5000), "simulate": (12, 300), "identity": (40, 1000), "identity_cli": (8, 100)}


def _settings(kind: str) -> settings:
    return fuzz_settings(*EXAMPLES[kind])


# --------------------------------------------------------------------------- the valid files

IDENTIFIERS_CSV = (
    "customer_id,kind,value,first_seen\n"
    "c1,login, ann ,2026-02-01T10:00:00Z\n"
    "c2,phone,+1 (555) 010-0002,\n"
    "c3,device,dev-3,2026-03-01\n"
    "ghost,email,ghost@example.com,\n"
)
EXCLUSIONS_CSV = "kind,value\nemail,frontdesk@shop.test\nlogin,guest\n"


def _basic_files() -> dict[str, bytes]:
    files = {
        p.relative_to(BASIC).as_posix(): p.read_bytes()
        for p in sorted(BASIC.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }
    files["identifiers.csv"] = IDENTIFIERS_CSV.encode()
    files["exclusions.csv"] = EXCLUSIONS_CSV.encode()
    return files


BASE_FILES = _basic_files()
CSV_NAMES = sorted(name for name in BASE_FILES if name.endswith(".csv"))
TEXT_NAMES = sorted(name for name in BASE_FILES if not name.endswith(".csv"))  # YAML and templates
COLUMNS = sorted({c for name in CSV_NAMES for c in BASE_FILES[name].decode().splitlines()[0].split(",")})
COLUMNS += ["tags", "counts", "first_seen", "source"]

# --------------------------------------------------------------------------- cells

_RANDOM = random.Random(7)
INCOMPRESSIBLE = "".join(chr(_RANDOM.randint(0x4E00, 0x9FFF)) for _ in range(3000))
"""3000 random CJK characters (9000 bytes of UTF-8 that no compression shrinks)."""

CELLS = [
    # empty and blank
    "",
    " ",
    "\t",
    "   \t ",
    # unicode and control characters
    "é€𝄞 ünïcödé",
    "\u202ec1",
    "\u2028",
    "\u0085",
    "\ufeff",
    "\ufeffcustomer_id",
    "\ufffd",
    "c\u0301",
    "İ",
    "\x00",
    "c1\x00",
    "\x00c1",
    "\x1b[31m",
    "\x7f",
    "\x0b",
    "\x0c",
    # quotes, separators, line breaks (quoted or not, depending on how the row is written)
    '"',
    '""',
    'c1"',
    '"c1"',
    "a,b",
    ",",
    ";",
    "a;b; ;",
    "\n",
    "a\nb",
    "\r",
    "a\r\nb",
    "\\",
    "'",
    # huge
    "x" * 600,
    "d" * 512,
    "d" * 513,
    "ΐ" * 512,
    "x" * 5000,
    "9" * 5000,
    "x" * 140_000,  # beyond csv's field size limit
    "c" * 129,
    INCOMPRESSIBLE,
    INCOMPRESSIBLE[:512],
    INCOMPRESSIBLE[:128],
    # numbers that are none, or odd
    "abc",
    "0",
    "-0",
    "-5",
    "-1e308",
    "1e308",
    "1e400",
    "-1e400",
    "nan",
    "NaN",
    "inf",
    "-Infinity",
    "1_000",
    "0x1F",
    "1,5",
    "١٢٣",
    "½",
    "4.9e-324",
    # times
    "soon",
    "now",
    "yesterday",
    "2026-02-30",
    "2026-13-01T00:00:00Z",
    "2026-03-01T25:00:00Z",
    "2026-03-01T24:00:00Z",
    "2026-03-01T21:00:00ZZ",
    "2026-03-01T21:00:00+05",
    "2026-03-01T21:00:00+99:00",
    "2026-03-01T21:00:00+23:59:59.999999",
    "2026-03-01T21:00:00 Europe/Berlin",
    "2026-03-01 21:00",
    "20260301T210000Z",
    "2026-W09-1",
    "2026-060",
    "0001-01-01T00:00:00+01:00",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59-01:00",
    "9999-12-31T23:59:59.999999Z",
    "0000-01-01",
    "-2026-01-01",
    "2999-01-01T00:00:00Z",
    "２０２６-03-01",
    "T",
    "Z",
    # timezones
    "Mars/Olympus",
    "America/New_Yrok",
    "america/new_york",
    "UTC+5",
    "+05:00",
    "EST5EDT",
    "posix/Europe/Berlin",
    "localtime",
    "../../etc/passwd",
    "Europe/Berlin ",
    "Etc/GMT+14",
    "Etc/GMT-15",
    # channels, kinds, statuses, booleans, ids
    "email",
    "EMAIL",
    " sms ",
    "push",
    "postal",
    "fax",
    "email;sms",
    "login",
    "Login",
    "username",
    "phone",
    "cookie",
    "device",
    "push_token",
    "opt_in",
    "OPT_IN",
    "opt-out",
    "true",
    "True",
    "FALSE",
    "yes",
    "1",
    "c1",
    "c2",
    "c4",
    "ghost",
    "newsletter",
    "abandoned_cart",
    "order_confirmation",
    "promotions",
    "no_such_campaign",
    "null",
    "n/a",
    "0000",
    "'; drop table customers; --",
    "%s%n",
    "{{ x }}",
    "$(reboot)",
]

CELL = st.one_of(
    st.sampled_from(CELLS),
    st.sampled_from(COLUMNS),
    st.text(max_size=20),
    st.integers().map(str),
    st.floats().map(repr),
    st.datetimes().map(lambda d: d.isoformat()),
)


# --------------------------------------------------------------------------- a folder as data


@dataclass
class Tree:
    """A scenario folder: files (relative path -> bytes), extra empty folders and symlinks."""

    files: dict[str, bytes]
    dirs: set[str] = field(default_factory=set)
    links: dict[str, str] = field(default_factory=dict)  # relative path -> symlink target

    def copy(self) -> Tree:
        return Tree(dict(self.files), set(self.dirs), dict(self.links))

    def remove(self, name: str) -> None:
        """Remove an entry and everything below it."""
        for table in (self.files, self.links):
            for key in [k for k in table if k == name or k.startswith(name + "/")]:
                del table[key]
        self.dirs = {d for d in self.dirs if d != name and not d.startswith(name + "/")}

    def clear(self, name: str) -> None:
        """Make room for a new entry *name*: remove it, and any file or symlink where a parent folder goes."""
        self.remove(name)
        parts = name.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            self.files.pop(parent, None)
            self.links.pop(parent, None)

    def write(self, directory: Path) -> None:
        """Write the tree; where one name is a folder, a file and a symlink, the symlink wins, then the file."""
        directory.mkdir(parents=True)
        for name in sorted(self.dirs):
            (directory / name).mkdir(parents=True, exist_ok=True)
        for name, data in self.files.items():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            _make_room(directory / name)
            (directory / name).write_bytes(data)
        for name, target in self.links.items():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            _make_room(directory / name)
            os.symlink(target, directory / name)


def _make_room(path: Path) -> None:
    """Remove what is at *path* (a folder, a file or a symlink), if anything."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


BASE = Tree(dict(BASE_FILES))


# --------------------------------------------------------------------------- mutations


BAD_BYTES = [
    b"\xff",
    b"\xfe\xff",
    b"\xc3\x28",
    b"\x80",
    b"\xed\xa0\x80",
    b"\xf4\x90\x80\x80",
    b"\x00",
    b"\xef\xbb\xbf",
    b"\r",
    b"\n",
    b'"',
    b",",
    b"\xc2\x85",
    b"\xe2\x80\xa8",
    b"\x1b[31m",
    b"\t",
]


def byte_ops(draw: Draw, data: bytes) -> bytes:
    """Insert, flip or cut bytes; a byte-order mark, another encoding, binary or nothing at all."""
    op = draw(
        st.sampled_from(["insert", "insert_bad", "flip", "truncate", "empty", "bom", "encoding", "binary"])
    )
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
        return draw(st.sampled_from([b"", b"\n", b"\r\n", b" \n", b",,,\n", b"\xef\xbb\xbf", b"\x00"]))
    if op == "bom":
        return draw(st.sampled_from([b"\xef\xbb\xbf", b"\xef\xbb\xbf\xef\xbb\xbf", b"\xff\xfe"])) + data
    if op == "encoding":
        text = data.decode("utf-8", "replace") + "é"
        return text.encode(
            draw(st.sampled_from(["utf-16", "utf-16-be", "utf-32", "latin-1", "cp1252"])), "replace"
        )
    return draw(st.binary(min_size=1, max_size=200))


def _table(data: bytes) -> list[list[str]] | None:
    try:
        return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    except (UnicodeDecodeError, csv.Error):
        return None


def _render(draw: Draw, rows: list[list[str]]) -> bytes:
    style = draw(st.sampled_from(["minimal", "minimal", "all", "crlf", "raw"]))
    if style == "raw":  # no quoting: a comma, quote or line break in a cell changes the row
        text = "".join(",".join(row) + "\n" for row in rows)
    else:
        buf = io.StringIO(newline="")
        quoting = csv.QUOTE_ALL if style == "all" else csv.QUOTE_MINIMAL
        csv.writer(buf, quoting=quoting, lineterminator="\r\n" if style == "crlf" else "\n").writerows(rows)
        text = buf.getvalue()
    return text.encode("utf-8", "surrogatepass")


def cell_ops(draw: Draw, rows: list[list[str]]) -> None:
    """Replace one cell (a data cell mostly, a header cell sometimes) by an odd value."""
    r = draw(st.integers(0, len(rows) - 1)) if len(rows) > 1 and draw(st.booleans()) else len(rows) - 1
    if draw(st.integers(0, 9)) == 0:
        r = 0
    row = rows[r]
    if not row:
        row.append("")
    row[draw(st.integers(0, len(row) - 1))] = draw(CELL)


def header_ops(draw: Draw, rows: list[list[str]]) -> None:
    """Rename, repeat, drop, add or move a column (or change the header alone)."""
    header = rows[0]
    if not header:
        header.append("")
    width = len(header)
    i = draw(st.integers(0, width - 1))
    j = draw(st.integers(0, width - 1))
    op = draw(
        st.sampled_from(
            [
                "rename",
                "case",
                "repeat",
                "drop",
                "add",
                "swap",
                "drop_header_cell",
                "add_header_cell",
                "no_header",
            ]
        )
    )
    if op == "rename":
        header[i] = draw(st.one_of(st.sampled_from(COLUMNS), CELL))
    elif op == "case":
        header[i] = draw(
            st.sampled_from([header[i].upper(), header[i].title(), f" {header[i]} ", f'"{header[i]}"'])
        )
    elif op == "no_header":
        del rows[0]
        if not rows:
            rows.append([])
    else:
        for k, row in enumerate(rows):
            if op in ("drop_header_cell", "add_header_cell") and k > 0:
                break
            if op == "repeat" and i < len(row):
                row.insert(j, row[i])
            elif op in ("drop", "drop_header_cell") and i < len(row):
                del row[i]
            elif op in ("add", "add_header_cell"):
                row.insert(j, draw(st.sampled_from(COLUMNS)) if k == 0 else draw(CELL))
            elif op == "swap" and max(i, j) < len(row):
                row[i], row[j] = row[j], row[i]


def row_ops(draw: Draw, rows: list[list[str]]) -> None:
    """Delete, duplicate, swap, add, shorten or lengthen data rows."""
    op = draw(st.sampled_from(["delete", "duplicate", "swap", "add", "shorten", "lengthen", "blank"]))
    n = len(rows)
    i = draw(st.integers(1, n - 1)) if n > 1 else 0
    j = draw(st.integers(1, n)) if n > 1 else n
    if op == "delete" and n > 1:
        del rows[i]
    elif op == "duplicate":
        rows.insert(j, list(rows[i]))
    elif op == "swap" and n > 1:
        k = min(j, n - 1)
        rows[i], rows[k] = rows[k], rows[i]
    elif op == "add":
        rows.insert(j, draw(st.lists(CELL, min_size=0, max_size=len(rows[0]) + 2)))
    elif op == "shorten" and rows[i]:
        del rows[i][-1]
    elif op == "lengthen":
        rows[i].append(draw(CELL))
    elif op == "blank":
        rows.insert(j, [""] * draw(st.integers(0, 3)))


def csv_ops(draw: Draw, data: bytes) -> bytes:
    """A change to the parsed table (cell, header, rows), written back in some style."""
    rows = _table(data)
    if not rows:
        return byte_ops(draw, data)  # not CSV any more: another kind of mutation
    op = draw(st.sampled_from([cell_ops, cell_ops, cell_ops, header_ops, row_ops, row_ops]))
    op(draw, rows)
    return _render(draw, rows)


UNKNOWN_ENTRIES = [
    "consent.csv",
    "Customers.csv",
    "customers.csv.bak",
    "events.csv",
    "notes.txt",
    "decisions.csv",
    "campaigns.yaml",
    "policy.yml",
    ".DS_Store",
    ".hidden.csv",
    "campaigns/README.md",
    "campaigns/draft.yml",
    "campaigns/extra.yaml",
    "campaigns/.hidden.yaml",
    "campaigns/sub/x.yaml",
    "campaigns/newsletter.yml",
    "templates/other.html.j2",
    "templates/sub/x.j2",
]


def file_ops(draw: Draw, tree: Tree) -> Tree:
    """Delete, empty or replace a file (by a folder or a symlink); add an unknown entry; replace a folder."""
    tree = tree.copy()
    op = draw(
        st.sampled_from(["delete", "empty", "folder", "symlink", "unknown", "unknown", "replace_folder"])
    )
    names = sorted(tree.files) or ["customers.csv"]
    name = draw(st.sampled_from(names))
    if op == "delete":
        tree.remove(name)
    elif op == "empty":
        tree.files[name] = b""
    elif op == "folder":
        tree.clear(name)
        if draw(st.booleans()):
            tree.files[f"{name}/inner.csv"] = BASE_FILES["customers.csv"]
        else:
            tree.dirs.add(name)
    elif op == "symlink":
        tree.clear(name)
        depth = name.count("/")
        tree.links[name] = draw(
            st.sampled_from(
                [
                    Path(name).name,  # itself: a loop
                    "nowhere.csv",  # dangling
                    "../" * depth + "campaigns",  # a folder
                    "../" * depth + "customers.csv",
                    "/dev/null",
                ]
            )
        )
    elif op == "unknown":
        entry = draw(st.sampled_from(UNKNOWN_ENTRIES))
        tree.clear(entry)
        if draw(st.booleans()):
            tree.dirs.add(entry)
        else:
            tree.files[entry] = draw(st.sampled_from(list(BASE_FILES.values()) + [b"", b"\x00\xff"]))
    else:  # campaigns/ or templates/ becomes a file, or loses its content
        folder = draw(st.sampled_from(["campaigns", "templates"]))
        tree.clear(folder)
        if draw(st.booleans()):
            tree.files[folder] = BASE_FILES["policy.yaml"]
        else:
            tree.dirs.add(folder)
    return tree


def content_ops(draw: Draw, tree: Tree) -> Tree:
    """Mutate the bytes of one file: a CSV by table, line or byte mutations, YAML and templates by
    line or byte mutations."""
    tree = tree.copy()
    csv_names = [n for n in CSV_NAMES if n in tree.files]
    text_names = [n for n in TEXT_NAMES if n in tree.files]
    if csv_names and (not text_names or draw(st.integers(0, 3)) > 0):
        name = draw(st.sampled_from(csv_names))
        op = draw(st.sampled_from([csv_ops, csv_ops, csv_ops, line_ops, byte_ops]))
    elif text_names:
        name = draw(st.sampled_from(text_names))
        op = draw(st.sampled_from([line_ops, byte_ops]))
    else:
        return tree
    tree.files[name] = op(draw, tree.files[name])
    return tree


@st.composite
def mutated_scenario(draw: Draw) -> Tree:
    """The basic scenario, mutated one to three times (contents mostly, the folder sometimes)."""
    tree = BASE
    for _ in range(draw(st.integers(1, 3))):
        tree = draw(st.sampled_from([content_ops, content_ops, content_ops, file_ops]))(draw, tree)
    return tree


FREE_COLUMNS = frozenset(
    {"customer_id", "email", "phone", "push_token", "postal_address", "timezone", "score", "expires_at"}
    | {"topic", "address", "decided_at", "tags", "value", "first_seen"}
)
"""Columns where most text is valid (the others hold a channel, kind, status, campaign or boolean)."""


@st.composite
def valued_scenario(draw: Draw) -> Tree:
    """The basic scenario with one to three data cells of its CSV files replaced by odd values (mostly in
    columns of free text), written back quoted: many still load, and take their values to the database."""
    tree = BASE.copy()
    tables: dict[str, list[list[str]]] = {}
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(CSV_NAMES))
        rows = tables.setdefault(name, _table(BASE_FILES[name]) or [])
        assert len(rows) > 1, name
        row = rows[draw(st.integers(1, len(rows) - 1))]
        free = [i for i, column in enumerate(rows[0]) if column in FREE_COLUMNS]
        column = draw(st.sampled_from(free)) if free and draw(st.integers(0, 4)) else None
        row[draw(st.integers(0, len(row) - 1)) if column is None else column] = draw(CELL)
    for name, rows in tables.items():
        buf = io.StringIO(newline="")
        csv.writer(buf, lineterminator="\n").writerows(rows)
        tree.files[name] = buf.getvalue().encode("utf-8", "surrogatepass")
    return tree


# --------------------------------------------------------------------------- checks


def _line_count(path: Path) -> int:
    """An upper bound of the lines of *path* as the CSV and YAML readers count them."""
    try:
        text = path.read_bytes().decode("utf-8", "replace")
    except OSError:
        return 0
    return max(len(text.splitlines()), len(io.StringIO(text, newline="").readlines()), 1)


_NAMED = re.compile(r"^(?P<path>/[^\n:]*?)(?::(?P<line>\d+))?: (?P<rest>.*)$")


def check_error_names_file(message: str, root: Path) -> None:
    """Every line of *message* that starts with a path names a file or folder under *root*, as
    ``path: problem`` or ``path:line: problem`` with a line the file has; the first line does."""
    lines = message.splitlines()
    assert lines, "an empty error message"
    assert lines[0].startswith(str(root)), f"the error does not name a file of {root}:\n{message}"
    for text in lines:
        if not text.startswith("/"):
            continue
        m = _NAMED.match(text)
        assert m, f"not 'path: problem' or 'path:line: problem': {text!r}"
        path = Path(m["path"])
        assert path == root or root in path.parents, f"names {path}, outside the scenario {root}:\n{message}"
        assert m["rest"].strip(), f"no problem after the path: {text!r}"
        if m["line"] is not None:
            line = int(m["line"])
            assert 1 <= line <= _line_count(path) + 1, (
                f"line {line} but {path} has {_line_count(path)}: {text!r}"
            )


def _texts(value: Any) -> Iterator[str]:
    """Every string in a loaded scenario (rows, campaign ids, warnings)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, (tuple, list)):
        for item in value:
            yield from _texts(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _texts(key)
            if not hasattr(item, "model_fields"):
                yield from _texts(item)
    elif is_dataclass(value) and not isinstance(value, type):
        for f in fields(value):
            if f.name != "policy":
                yield from _texts(getattr(value, f.name))


def check_loaded(scenario: Scenario) -> None:
    for text in _texts(scenario):
        assert "\x00" not in text, f"a NUL character reached the scenario: {text!r}"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz_scenarios")


def _fresh_dir(workdir: Path) -> Path:
    return Path(tempfile.mkdtemp(dir=workdir))


def _loads(directory: Path) -> tuple[Scenario | None, str | None]:
    """The scenario, or the InputError's message; any other exception fails the test with its trace."""
    try:
        return load_scenario(directory), None
    except InputError as exc:
        return None, str(exc)
    except Exception as exc:  # the point: nothing else may escape
        pytest.fail(f"load_scenario raised {type(exc).__name__}: {exc}\n{traceback.format_exc()}")


def _outcome(message: str | None, root: Path) -> str:
    """The kind of an outcome, for hypothesis' statistics: ``loads`` or the file and problem, in short."""
    if message is None:
        return "loads"
    first = message.splitlines()[0].removeprefix(str(root)).lstrip("/")
    name, _, rest = first.partition(":")
    problem = re.sub(r"^\d+: ", "", rest.strip())
    words = re.sub(r"'[^']*'|\d+", "_", problem).split()[:3]
    return f"{name or '(folder)'}: {' '.join(words)}"


# --------------------------------------------------------------------------- scenario: in process


@pytest.mark.unit
@_settings("load")
@given(tree=st.one_of(mutated_scenario(), mutated_scenario(), valued_scenario()))
@example(
    tree=Tree(
        {
            **BASE_FILES,
            "history.csv": b"customer_id,campaign_id,channel,decided_at\nc1,x,email,0001-01-01T00:00:00+01:00\n",
        }
    )
)
@example(
    tree=Tree(
        {
            **BASE_FILES,
            "customers.csv": b"customer_id,email,phone,push_token,postal_address,timezone\nc\x001,,,,,\n",
        }
    )
)
@example(
    tree=Tree(
        {k: v for k, v in BASE_FILES.items() if k != "consents.csv"}, links={"consents.csv": "consents.csv"}
    )
)
def test_scenario_loads_or_names_the_problem(workdir: Path, tree: Tree) -> None:
    directory = _fresh_dir(workdir) / "scen"
    try:
        tree.write(directory)
        scenario, message = _loads(directory)
        event(_outcome(message, directory))
        if message is not None:
            check_error_names_file(message, directory)
        else:
            assert scenario is not None
            check_loaded(scenario)
        if tree == BASE:
            assert message is None, message
    finally:
        shutil.rmtree(directory.parent)


# --------------------------------------------------------------------------- the store


@pytest.fixture(scope="module")
def fuzz_store() -> Iterator[Engine]:
    """A store of its own with the basic scenario's customers (c1 to c4), for the CLI and identity load."""
    from conftest import _fresh_database

    for engine in _fresh_database("baton_fuzz"):
        with engine.begin() as conn:
            for cid in ("c1", "c2", "c3", "c4"):
                conn.execute(sa.text("insert into customers (customer_id) values (:c)"), {"c": cid})
        yield engine


def _cli(engine: Engine, *args: str) -> tuple[int, str, BaseException | None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BATON_DATABASE_URL", engine.url.render_as_string(hide_password=False))
        result = CliRunner().invoke(app, list(args), catch_exceptions=True)
    output = result.output + (result.stderr if result.stderr_bytes is not None else "")
    exc = result.exception
    if exc is not None and not isinstance(exc, SystemExit):
        output += "".join(traceback.format_exception(exc))
        return -1, output, exc
    return result.exit_code, output, None


# --------------------------------------------------------------------------- scenario: the CLI

WIDE_ID = "".join(chr(_RANDOM.randint(0x20000, 0x2A6DF)) for _ in range(127))
WIDE_VALUE = "".join(chr(_RANDOM.randint(0x20000, 0x2A6DF)) for _ in range(512))
"""The longest customer id and email a scenario accepts, of 4-byte characters that do not compress."""


def _with_customers(rows: str) -> Tree:
    tree = BASE.copy()
    tree.files["customers.csv"] = (
        BASE_FILES["customers.csv"].decode().splitlines(keepends=True)[0] + rows
    ).encode()
    return tree


@pytest.mark.integration
@_settings("simulate")
@given(tree=st.one_of(mutated_scenario(), valued_scenario(), valued_scenario()), out_inside=st.booleans())
@example(tree=_with_customers(f"{INCOMPRESSIBLE},,,,,\n"), out_inside=False)
@example(
    tree=_with_customers(f"c1,{INCOMPRESSIBLE[:600]},,,,\nc2,{INCOMPRESSIBLE[:600]},,,,\n"), out_inside=True
)
@example(
    tree=_with_customers(f"{WIDE_ID}1,{WIDE_VALUE},,,,\n{WIDE_ID}2,{WIDE_VALUE},,,,\n"), out_inside=False
)
def test_simulate_cli_exits_0_or_2(workdir: Path, fuzz_store: Engine, tree: Tree, out_inside: bool) -> None:
    base = _fresh_dir(workdir)
    directory = base / "scen"
    try:
        tree.write(directory)
        scenario, message = _loads(directory)
        out = (directory if out_inside and directory.is_dir() else base) / "decisions.out.csv"
        code, output, exc = _cli(fuzz_store, "simulate", str(directory), "--at", AT, "--out", str(out))
        event(f"exit {code}")
        assert exc is None, output
        assert "Traceback" not in output, output
        flat = " ".join(output.split())
        if out_inside and directory.is_dir():  # an output inside the scenario could overwrite an input
            assert code == 2, output
            assert "is inside the scenario folder" in flat, output
            assert not out.exists()
        elif message is None:
            assert code == 0, output
            header = out.read_text(encoding="utf-8").splitlines()[0]
            assert header == "customer_id,campaign_id,channel,outcome,reason,send_at,person_id"
        else:
            assert code == 2, output
            assert "error:" in output
            assert " ".join(message.splitlines()[0].split()) in flat, output
            assert not out.exists()
    finally:
        shutil.rmtree(base)


# --------------------------------------------------------------------------- identity load

IDENTITY_CSV = (
    b"customer_id,kind,value,first_seen,source\n"
    b"c1,email,Ann@Example.com,2026-01-01T10:00:00Z,crm\n"
    b"c2,phone,+1 555 0002,,\n"
    b"c3,login,carol,2026-02-01,app\n"
    b"c4,device,dev-4,,\n"
    b"c1,cookie,ck-1,2026-02-10T08:00:00+01:00,web\n"
    b"ghost,login,nobody,,\n"
)


@st.composite
def mutated_identifiers(draw: Draw) -> Tree:
    """``identifiers.csv`` mutated one to three times, or deleted, emptied, a folder or a symlink."""
    tree = Tree({"identifiers.csv": IDENTITY_CSV})
    for _ in range(draw(st.integers(1, 3))):
        if "identifiers.csv" in tree.files and draw(st.integers(0, 9)) > 0:
            data = tree.files["identifiers.csv"]
            tree.files["identifiers.csv"] = draw(st.sampled_from([csv_ops, csv_ops, line_ops, byte_ops]))(
                draw, data
            )
        else:
            tree = file_ops(draw, tree)
    return tree


def _snapshot(engine: Engine) -> tuple[int, str]:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "select count(*), coalesce(md5(string_agg(concat_ws('|', customer_id, kind, value, norm,"
                " first_seen, source), E'\\n' order by customer_id, kind, norm)), '') from identifiers"
            )
        ).one()
    return int(row[0]), str(row[1])


def _stored_keys(engine: Engine) -> set[tuple[str, str, str]]:
    with engine.connect() as conn:
        return {tuple(r) for r in conn.execute(sa.text("select customer_id, kind, norm from identifiers"))}  # type: ignore[misc]


def _data_rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    """The non-blank data rows of a file ``load_identifiers`` accepted, with their first line."""
    reader = csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"), newline=""), strict=True)
    header = [c.strip() for c in next(reader)]
    out = []
    last = reader.line_num
    for cells in reader:
        start, last = last + 1, reader.line_num
        if any(c.strip() for c in cells):
            out.append((start, dict(zip(header, cells, strict=False)) if len(cells) == len(header) else {}))
    return out


def check_load_result(engine: Engine, path: Path, result: LoadResult, before: tuple[int, str]) -> None:
    rows = _data_rows(path)
    assert result.rows == len(rows), (result, rows)
    lines = _line_count(path)
    rejected = dict(result.rejected)
    assert len(rejected) == len(result.rejected), f"a line rejected twice: {result.rejected}"
    for line, why in result.rejected:
        assert isinstance(why, str) and why.strip(), result.rejected
        assert 2 <= line <= lines + 1, (line, lines, result.rejected)
    first_lines = {line for line, _ in rows}
    assert set(rejected) <= first_lines, (sorted(rejected), sorted(first_lines))
    stored = _stored_keys(engine)
    for line, row in rows:
        if line in rejected:
            continue
        key = (row["customer_id"].strip(), row["kind"].strip(), normalize(row["kind"].strip(), row["value"]))
        assert key in stored, f"line {line} was neither rejected nor stored: {row}"
    after = _snapshot(engine)
    assert 0 <= after[0] - before[0] <= result.stored, (before, after, result)
    assert result.stored <= result.rows - len(result.rejected), result


def _identity_file(workdir: Path, tree: Tree) -> tuple[Path, Path]:
    base = _fresh_dir(workdir)
    tree.write(base / "d")
    return base, base / "d" / "identifiers.csv"


@pytest.mark.integration
@_settings("identity")
@given(tree=mutated_identifiers())
@example(tree=Tree({"identifiers.csv": b"customer_id,kind,value\nc1,login,a\x00b\n"}))
@example(
    tree=Tree(
        {"identifiers.csv": b"customer_id,kind,value,first_seen\nc1,login,x,0001-01-01T00:00:00+01:00\n"}
    )
)
@example(tree=Tree({"identifiers.csv": b'customer_id,kind,value\nc1,fax,"two\nlines"\nc1,login,x\n'}))
@example(tree=Tree({"customers.csv": b""}, dirs={"customers.csv"}))  # one name, two kinds of entry
@example(tree=Tree({"customers.csv": b""}, links={"customers.csv": "customers.csv"}))
def test_identity_load_stores_rejects_or_fails_whole(workdir: Path, fuzz_store: Engine, tree: Tree) -> None:
    base, path = _identity_file(workdir, tree)
    try:
        before = _snapshot(fuzz_store)
        try:
            result = load_identifiers(fuzz_store, path)
        except InputError as exc:
            event("fails whole")
            assert _snapshot(fuzz_store) == before, "a failed load changed the identifiers table"
            check_error_names_file(str(exc), path.parent)
            assert str(exc).startswith(str(path)), str(exc)
        except Exception as exc:  # the point: nothing else may escape
            changed = _snapshot(fuzz_store) != before
            pytest.fail(
                f"load_identifiers raised {type(exc).__name__} (table {'CHANGED' if changed else 'unchanged'}):"
                f" {exc}\n{traceback.format_exc()}"
            )
        else:
            event(f"loads, {'some' if result.rejected else 'no'} rows rejected")
            check_load_result(fuzz_store, path, result, before)
    finally:
        shutil.rmtree(base)


@pytest.mark.integration
@_settings("identity_cli")
@given(tree=mutated_identifiers())
def test_identity_load_cli_exits_0_1_or_2(workdir: Path, fuzz_store: Engine, tree: Tree) -> None:
    base, path = _identity_file(workdir, tree)
    try:
        before = _snapshot(fuzz_store)
        code, output, exc = _cli(fuzz_store, "identity", "load", str(path))
        event(f"exit {code}")
        assert exc is None, output
        assert "Traceback" not in output, output
        assert code in (0, 1, 2), output
        flat = " ".join(output.split())
        if code == 2:
            assert "error:" in output and str(path) in flat, output
            assert _snapshot(fuzz_store) == before
        else:
            assert "identifier(s) stored" in output, output
        if code == 1:
            assert f"{path}:" in flat, output
    finally:
        shutil.rmtree(base)
