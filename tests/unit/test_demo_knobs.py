"""The demo's environment knobs mean what a user reads them to mean (issue #9): ``BATON_DEMO_EXIT=0``
keeps the UI up, ``1`` stops after printing, anything else is an error naming the variable — never a
silent guess; a numeric knob that is not a number is an error too."""

from __future__ import annotations

import pytest

from baton_dev.demo import env_flag, env_number

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "on", " Yes "])
def test_true_words_are_true(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("BATON_DEMO_EXIT", raw)
    assert env_flag("BATON_DEMO_EXIT") is True


@pytest.mark.parametrize("raw", ["0", "false", "False", "no", "off", ""])
def test_false_words_are_false(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("BATON_DEMO_EXIT", raw)
    assert env_flag("BATON_DEMO_EXIT", default=True) is False


def test_unset_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BATON_DEMO_EXIT", raising=False)
    assert env_flag("BATON_DEMO_EXIT") is False
    assert env_flag("BATON_DEMO_EXIT", default=True) is True


@pytest.mark.parametrize("raw", ["2", "y", "exit", "nope"])
def test_anything_else_is_an_error_naming_the_variable(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("BATON_DEMO_EXIT", raw)
    with pytest.raises(SystemExit) as err:
        env_flag("BATON_DEMO_EXIT")
    assert "BATON_DEMO_EXIT" in str(err.value) and repr(raw) in str(err.value)


def test_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_DEMO_PORT", "9090")
    assert env_number("BATON_DEMO_PORT", 8080) == 9090
    monkeypatch.setenv("BATON_DEMO_PORT", " ")
    assert env_number("BATON_DEMO_PORT", 8080) == 8080
    monkeypatch.setenv("BATON_DEMO_PORT", "eighty")
    with pytest.raises(SystemExit, match="BATON_DEMO_PORT='eighty' is not a number"):
        env_number("BATON_DEMO_PORT", 8080)
