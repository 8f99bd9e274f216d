"""How a task reports Baton's errors to Airflow: a user mistake fails at once, without retries.

A wrong campaign or policy file, a broken audience query, a malformed connection: retrying
changes nothing and only delays the message to the operator.  Those errors become
``AirflowFailException`` (no retries); transient ones (a database or secrets backend that does
not answer) propagate as they are, so Airflow retries the task.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from baton.errors import AudienceError, ConfigError, InputError, SpecError

USER_MISTAKES: tuple[type[Exception], ...] = (ConfigError, SpecError, AudienceError, InputError)
"""Errors that no retry can fix."""


@contextmanager
def fail_fast_on_user_mistakes() -> Iterator[None]:
    """Turn a user mistake raised inside into ``AirflowFailException`` (the task fails without retries)."""
    from airflow.sdk.exceptions import AirflowFailException

    try:
        yield
    except USER_MISTAKES as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
