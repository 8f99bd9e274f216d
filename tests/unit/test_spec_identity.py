"""The policy's ``identity:`` keys (SPEC.md §6): defaults, values, and errors naming file, line and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from baton.identity.normalize import DEFAULT_LINK_ON, DEFAULT_MAX_PROFILES_PER_VALUE, KINDS
from baton.identity.resolve import IdentitySettings
from baton.spec import IdentifierKind, IdentityPolicy, Policy, SpecValidationError, load_policy

pytestmark = pytest.mark.unit


def _policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_kinds_are_the_normalisation_kinds() -> None:
    assert tuple(k.value for k in IdentifierKind) == KINDS


def test_defaults() -> None:
    identity = Policy().identity
    assert identity == IdentityPolicy()
    assert tuple(str(k) for k in identity.link_on) == DEFAULT_LINK_ON == ("email", "phone", "login", "device")
    assert identity.max_profiles_per_value == DEFAULT_MAX_PROFILES_PER_VALUE == 10
    assert identity.blocked_values == ()
    assert IdentitySettings.of(Policy()) == IdentitySettings()


def test_identity_keys_load(tmp_path: Path) -> None:
    policy = load_policy(
        _policy(
            tmp_path,
            "identity:\n"
            "  link_on: [login, push_token]\n"
            "  max_profiles_per_value: 3\n"
            '  blocked_values: [test@example.com, "+1 555 000 0000"]\n',
        )
    )
    assert policy.identity.link_on == (IdentifierKind.login, IdentifierKind.push_token)
    assert IdentitySettings.of(policy) == IdentitySettings(
        ("login", "push_token"), 3, ("test@example.com", "+1 555 000 0000")
    )


def test_empty_link_on_links_no_one(tmp_path: Path) -> None:
    assert load_policy(_policy(tmp_path, "identity: {link_on: []}\n")).identity.link_on == ()


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        (
            "identity:\n  link_on: [email, mail]\n",
            2,
            "identity.link_on[1]",
            ["'mail'", "did you mean 'email'"],
        ),
        ("identity:\n  link_on: [email, phone, email]\n", 2, "identity.link_on[2]", ["twice", "link_on[0]"]),
        ("identity:\n  max_profiles_per_value: 0\n", 2, "identity.max_profiles_per_value", ["1 or greater"]),
        ('identity:\n  max_profiles_per_value: "3"\n', 2, "identity.max_profiles_per_value", []),
        ("identity:\n  max_profiles_per_value: 2.5\n", 2, "identity.max_profiles_per_value", []),
        ('identity:\n  blocked_values: [ok, ""]\n', 2, "identity.blocked_values[1]", ["empty"]),
        ("identity:\n  blocked_valus: [x]\n", 2, "identity.blocked_valus", ["did you mean 'blocked_values'"]),
    ],
)
def test_bad_identity_keys(tmp_path: Path, text: str, line: int, field: str, words: list[str]) -> None:
    with pytest.raises(SpecValidationError) as info:
        load_policy(_policy(tmp_path, text))
    issues = info.value.issues
    assert [(i.line, i.field) for i in issues] == [(line, field)]
    for word in words:
        assert word in str(issues[0])
