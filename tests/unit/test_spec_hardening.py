"""Loading never escapes: every way a campaign or policy file can be broken is a ``file:line: field: message``.

One test per class of input (values YAML cannot construct, bytes that are not UTF-8 text,
binary and empty files, entries that are no regular file, unreadable files, nesting and
alias expansion, huge files and values, characters that cannot be stored), each asserting
the exact lines ``baton validate`` prints and its exit status 1 — never a traceback.  The
last-resort catch around validation is tested by injecting a failure.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from baton.cli import app
from baton.spec import (
    Campaign,
    SpecValidationError,
    load_campaign,
    load_campaigns,
    load_policy,
    validate_paths,
)
from baton.spec.loader import INTERNAL_ERROR

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
VALID = Path(__file__).parent / "valid"
CART = (VALID / "campaigns" / "abandoned_cart.yaml").read_text(encoding="utf-8")
HOW_DATE = "write a real calendar date (2026-01-01) or date and time (2026-01-01T08:00:00Z)"


@pytest.fixture()
def dags(tmp_path: Path) -> Path:
    """A valid dags-like folder (policy, two campaigns, templates)."""
    folder = tmp_path / "dags"
    shutil.copytree(VALID, folder)
    return folder


def _validate(*paths: Path) -> tuple[int, list[str], str]:
    result = CliRunner().invoke(app, ["validate", *map(str, paths)], catch_exceptions=True)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.stdout.splitlines(), result.output


def _expect(path: Path, *lines: str) -> None:
    """``baton validate path`` prints exactly ``path:<line>`` for each of *lines* and exits 1."""
    code, out, output = _validate(path)
    assert code == 1, output
    assert out == [f"{path}:{line}" for line in lines], output


def _cart(dags: Path, replace: str, by: str) -> Path:
    """The valid abandoned_cart.yaml with *replace* (its first occurrence) replaced *by*."""
    text = CART.replace(replace, by, 1)
    assert text != CART
    path = dags / "campaigns" / "abandoned_cart.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _set(dags: Path, key: str, value: str) -> Path:
    """The valid abandoned_cart.yaml with the line of top-level *key* written ``key: value``."""
    line = next(line for line in CART.splitlines() if line.startswith(f"{key}:"))
    return _cart(dags, f"\n{line}\n", f"\n{key}: {value}\n")


def _line_of(path: Path, start: str) -> int:
    lines = path.read_bytes().split(b"\n")
    return next(i for i, line in enumerate(lines, 1) if line.startswith(start.encode()))


# --------------------------------------------------------------------------- values YAML cannot construct


@pytest.mark.parametrize(
    ("key", "written", "message"),
    [
        (
            "start_date",
            "2026-02-30",
            f"'2026-02-30' cannot be read as a date or time (day is out of range for month): {HOW_DATE}",
        ),
        (
            "start_date",
            "2026-01-01 25:00:00",
            f"'2026-01-01 25:00:00' cannot be read as a date or time (hour must be in 0..23): {HOW_DATE}",
        ),
        (
            "priority",
            "9" * 5000,
            "'" + "9" * 57 + "...' cannot be read as an integer (it has more than 4300 digits): "
            "write a smaller number",
        ),
        (
            "priority",
            "!!float abc",
            "'abc' cannot be read as a number (could not convert string to float: 'abc'): "
            "write a plain number, or put text in quotes",
        ),
        (
            "priority",
            "!!int 0x",
            "'0x' cannot be read as an integer (invalid literal for int() with base 16: ''): "
            "write a plain number, or put text in quotes",
        ),
    ],
    ids=["impossible_date", "impossible_time", "int_too_long", "float_tag_text", "int_tag_text"],
)
def test_value_yaml_cannot_construct(dags: Path, key: str, written: str, message: str) -> None:
    path = _set(dags, key, written)
    _expect(path, f"{_line_of(path, key + ':')}: {key}: {message}")


def test_unhashable_key_and_bad_binary(dags: Path) -> None:
    path = _cart(dags, "\npriority: 80\n", "\npriority: 80\n? [1, 2]\n: x\n")
    line = _line_of(path, "? [1, 2]")
    _expect(
        path,
        f"{line}: (file): a key is a list or a mapping: write plain keys (name: value); "
        "put a key that starts with [ or { in quotes",
    )
    path = _cart(dags, "\npriority: 80\n", "\npriority: 80\nparams: {a: !!binary 'not base64!'}\n")
    _expect(
        path,
        f"{_line_of(path, 'params:')}: (file): failed to decode base64 data: Invalid base64-encoded string: "
        "number of data characters (9) cannot be 1 more than a multiple of 4: write plain values",
    )


# --------------------------------------------------------------------------- bytes and files


def test_bytes_that_are_not_utf8(dags: Path) -> None:
    path = dags / "campaigns" / "abandoned_cart.yaml"
    path.write_bytes(CART.encode().replace(b"\nname: ", b"\nname: caf\xe9 ", 1))
    line = _line_of(path, "name:")
    _expect(
        path, f"{line}: (file): not UTF-8 text (byte 0xe9 invalid continuation byte): save the file as UTF-8"
    )


def test_binary_file(dags: Path) -> None:
    path = dags / "campaigns" / "abandoned_cart.yaml"
    path.write_bytes(b"id: abandoned_cart\n\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    _expect(
        path,
        "4: (file): the file holds NUL bytes, so it is binary, not YAML text: replace it with the YAML file",
    )


@pytest.mark.parametrize("content", [b"", b"\n\n", b"# nothing yet\n", b"---\n"])
def test_empty_campaign_file(dags: Path, content: bytes) -> None:
    path = dags / "campaigns" / "abandoned_cart.yaml"
    path.write_bytes(content)
    _expect(
        path,
        "1: (file): the file is empty: write a campaign (id, name, owner, schedule, start_date, channels, "
        "audience, message)",
    )


def test_directory_named_yaml_is_reported_not_skipped(dags: Path) -> None:
    folder = dags / "campaigns" / "later.yaml"
    folder.mkdir()
    message = (
        "1: (file): is a directory, not a YAML file: give a file (or rename the folder so that its name "
        "does not end in .yaml or .yml)"
    )
    code, out, output = _validate(dags)
    assert code == 1, output
    assert out == [f"{folder}:{message}"]
    campaigns, issues = load_campaigns(dags / "campaigns")
    assert [str(i) for i in issues] == [f"{folder}:{message}"]
    assert sorted(c.id for c in campaigns) == ["abandoned_cart", "order_confirmation"]


def test_dangling_link_is_reported_not_skipped(dags: Path) -> None:
    link = dags / "campaigns" / "gone.yaml"
    link.symlink_to(dags / "campaigns" / "deleted.yaml")
    message = f"1: (file): is a link to {dags / 'campaigns' / 'deleted.yaml'}, which does not exist: fix the link or remove it"
    code, out, output = _validate(dags)
    assert code == 1, output
    assert out == [f"{link}:{message}"]
    _expect(link, message)  # given alone, too
    loop = dags / "campaigns" / "loop.yaml"
    loop.symlink_to(loop)
    _expect(
        loop,
        "1: (file): cannot read the file (Too many levels of symbolic links): check the path and its permissions",
    )


def test_dangling_or_folder_policy_is_an_error_not_the_defaults(dags: Path) -> None:
    policy = dags / "policy.yaml"
    policy.unlink()
    policy.symlink_to(dags / "elsewhere.yaml")
    message = (
        f"1: (file): is a link to {dags / 'elsewhere.yaml'}, which does not exist: fix the link or remove it"
    )
    code, out, output = _validate(dags)
    assert code == 1, output
    assert out == [f"{policy}:{message}"]
    with pytest.raises(SpecValidationError):
        load_policy(policy)
    policy.unlink()
    policy.mkdir()
    with pytest.raises(SpecValidationError) as info:
        load_policy(policy)
    assert [i.line for i in info.value.issues] == [1]
    assert info.value.issues[0].message.startswith("is a directory, not a YAML file")


@contextmanager
def _unprivileged() -> Iterator[None]:
    """Run as user nobody when the tests run as root (root reads a chmod 000 file anyway)."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


def test_unreadable_file() -> None:
    # a folder everyone may enter, so that only the file's own permissions stop the reader
    folder = Path(tempfile.mkdtemp(prefix="baton-unreadable-"))
    try:
        folder.chmod(0o755)
        path = folder / "abandoned_cart.yaml"
        path.write_text(CART, encoding="utf-8")
        path.chmod(0o000)
        _validate(path)  # every module the command needs is imported before privileges drop
        with _unprivileged():
            assert not os.access(path, os.R_OK, effective_ids=True)
            code, out, output = _validate(path)
        assert code == 1, output
        assert out == [
            f"{path}:1: (file): cannot read the file (Permission denied): make it readable by the user that runs Baton"
        ]
    finally:
        shutil.rmtree(folder)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/mem is Linux's")
def test_file_that_fails_while_reading(tmp_path: Path) -> None:
    link = tmp_path / "campaigns" / "mem.yaml"
    link.parent.mkdir()
    link.symlink_to("/proc/self/mem")  # a regular file whose first bytes cannot be read: EIO
    _expect(link, "1: (file): cannot read the file (Input/output error): check that it is a readable file")


def test_file_name_that_is_not_utf8(dags: Path) -> None:
    name = os.fsdecode(b"caf\xe9.yaml")
    path = dags / "campaigns" / name
    path.write_text("", encoding="utf-8")
    code, out, output = _validate(dags)
    assert code == 1
    shown = f"{dags / 'campaigns'}/caf\\xe9.yaml"
    assert out == [
        f"{shown}:1: (file): the file is empty: write a campaign (id, name, owner, schedule, start_date, channels, audience, message)"
    ]


# --------------------------------------------------------------------------- nesting and aliases


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[" * 5000 + "]" * 5000, "(file): the YAML nests more than 32 levels deep: simplify it"),
        ("{a: " * 40 + "1" + "}" * 40, "(file): the YAML nests more than 32 levels deep: simplify it"),
        (
            "[&a0 [1]" + "".join(f", &a{i} [*a{i - 1}]" for i in range(1, 40)) + "]",
            "(file): the YAML nests more than 32 levels deep (counting what its aliases repeat): simplify it",
        ),
        (
            "[&l0 [lol, lol]"
            + "".join(f", &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 9))
            + "]",
            "(file): the YAML holds more than 100,000 values once its aliases (*name) are expanded: "
            "write the values out or use fewer aliases",
        ),
        (
            "&a [1, *a]",
            "(file): an alias (*name) repeats a value that contains the alias itself, so the value never "
            "ends: remove the alias or point it at another value",
        ),
        (
            "{s: &s '" + "x" * 200_000 + "', l: [" + ", ".join(["*s"] * 30) + "]}",
            "(file): the YAML holds more than 4 MiB of text once its aliases (*name) are expanded: "
            "write the values out or use fewer aliases",
        ),
    ],
    ids=["flow_5000", "mappings_40", "alias_chain", "billion_laughs", "recursive_alias", "text_amplified"],
)
def test_nesting_and_aliases(dags: Path, value: str, message: str) -> None:
    path = _cart(dags, "\nparams: {min_cart_value: 20}\n", f"\nparams: {value}\n")
    _expect(path, f"{_line_of(path, 'params:')}: {message}")


def test_block_nesting(dags: Path) -> None:
    deep = "".join("  " * (i + 1) + f"k{i}:\n" for i in range(40)) + "  " * 41 + "x\n"
    path = _cart(dags, "\nparams: {min_cart_value: 20}\n", f"\nparams:\n{deep}")
    # the 33rd level is the key k30 (a mapping is one level, its keys and values the next)
    _expect(
        path,
        f"{_line_of(path, '  ' * 31 + 'k30:')}: (file): the YAML nests more than 32 levels deep: simplify it",
    )


def test_deep_jinja_is_a_field_error(dags: Path) -> None:
    subject = "{{ " + "(" * 400 + "item_name" + ")" * 400 + " }}"
    path = _cart(dags, 'subject: "You left {{ item_name }} behind"', f'subject: "{subject}"')
    _expect(
        path,
        f"{_line_of(path, '  email:')}: message.email.subject: the template nests too deeply "
        "(brackets or blocks inside each other): simplify it",
    )


# --------------------------------------------------------------------------- huge files and values


def test_file_larger_than_1_mib(dags: Path) -> None:
    path = _set(dags, "description", "x" * (1024 * 1024))
    _expect(
        path,
        "1: (file): the file is larger than 1 MiB: campaign and policy files are a few kilobytes of YAML; "
        "check that this is the right file",
    )


def test_huge_values(dags: Path) -> None:
    path = _cart(dags, "\npriority: 80\n", "\npriority: " + "9" * 400 + "\n")
    _expect(
        path,
        f"{_line_of(path, 'priority:')}: priority: 999999999999... (400 digits) is out of range: use an integer from 0 to 100",
    )
    path = _cart(dags, "\nexpires_after: 24h\n", "\nexpires_after: 99999999999999w\n")
    _expect(
        path,
        f"{_line_of(path, 'expires_after:')}: expires_after: bad duration '99999999999999w': "
        "a duration may be at most 36500d (about 100 years)",
    )
    path = _cart(dags, "\nstart_date: 2026-01-01\n", "\nstart_date: 0001-01-01T00:00:00+01:00\n")
    _expect(
        path,
        f"{_line_of(path, 'start_date:')}: start_date: date 0001-01-01T00:00:00+01:00 is out of range: "
        "write a date between 0001-01-02 and 9999-12-30",
    )
    path = _cart(dags, "\ncategory: marketing\n", "\ncategory: " + "x" * 5000 + "\n")
    code, out, _ = _validate(path)
    assert code == 1
    assert out == [
        f"{path}:{_line_of(path, 'category:')}: category: unknown category '{'x' * 57}...': "
        "use one of marketing, transactional"
    ]


def test_characters_that_cannot_be_stored(dags: Path) -> None:
    for escape, char in (
        ("\\0", "'\\x00' (U+0000)"),
        ("\\uD800", "'\\ud800' (U+D800)"),
        ("\\e", "'\\x1b' (U+001B)"),
    ):
        path = _set(dags, "name", f'"x{escape}"')
        _expect(
            path,
            f"{_line_of(path, 'name:')}: name: the text holds the character {char}, which campaign and policy "
            "files may not contain: remove it (it cannot be stored or shown)",
        )


def test_airflow_limits_are_checked_by_the_spec(dags: Path) -> None:
    path = _cart(dags, "\ntags: [cart, promo]\n", "\ntags: [cart, " + "t" * 101 + "]\n")
    _expect(
        path,
        f"{_line_of(path, 'tags:')}: tags[1]: tag 'tttttttttttttttttttt'... is 101 characters long, more than 100: "
        "use a short label",
    )
    path = _set(dags, "owner", "o" * 201)
    _expect(
        path,
        f"{_line_of(path, 'owner:')}: owner: owner is 201 characters long, more than 200: shorten it (put details in description)",
    )


# --------------------------------------------------------------------------- the last resort


@pytest.mark.parametrize(
    ("raised", "message"),
    [
        (
            OverflowError("int too large to convert to float"),
            f"{INTERNAL_ERROR} (OverflowError: int too large to convert to float): simplify the unusual value, "
            "and report this to the Baton maintainers with the file",
        ),
        (RecursionError("maximum recursion depth exceeded"), "the file nests too deeply: simplify it"),
    ],
    ids=["bug", "recursion"],
)
def test_last_resort_reports_the_file(
    dags: Path, monkeypatch: pytest.MonkeyPatch, raised: BaseException, message: str
) -> None:
    def broken(*_a: object, **_k: object) -> Campaign:
        raise raised

    monkeypatch.setattr(Campaign, "model_validate", broken)
    path = dags / "campaigns" / "abandoned_cart.yaml"
    _expect(path, f"1: (file): {message}")
    with pytest.raises(SpecValidationError) as info:
        load_campaign(path)
    assert [str(i) for i in info.value.issues] == [f"{path}:1: (file): {message}"]
    campaigns, issues = load_campaigns(dags / "campaigns")
    assert campaigns == [] and {i.file.name for i in issues} == {
        "abandoned_cart.yaml",
        "order_confirmation.yaml",
    }


def test_every_shipped_file_is_valid() -> None:
    assert validate_paths([ROOT / "dags"]) == []
