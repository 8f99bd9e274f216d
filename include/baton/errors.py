"""Baton's exception tree.

Every error a user can cause derives from :class:`BatonError` and carries a
message that says what is wrong and what to do; the CLI prints it without a
stack trace.
"""

from __future__ import annotations


class BatonError(Exception):
    """Base of every error Baton raises on purpose."""


class ConfigError(BatonError):
    """Configuration (environment, connections, paths) is missing or wrong: a user mistake,
    never retried."""


class ServiceUnavailableError(BatonError):
    """A service Baton depends on (the secrets backend, the store's database) cannot be
    reached right now: transient, so a task fails and Airflow retries it."""


class SpecError(BatonError):
    """A campaign or policy file is invalid (see baton.spec)."""


class InputError(BatonError):
    """A data file given to a command (CSV, scenario) is invalid."""


class AudienceError(BatonError):
    """A campaign's audience SQL failed to render or run, or returned the wrong shape."""


class DeliveryError(BatonError):
    """Base of delivery failures."""


class TransientDeliveryError(DeliveryError):
    """The channel may accept the message later: retry with backoff."""


class TerminalDeliveryError(DeliveryError):
    """The channel will never accept this message: record the reason, do not retry."""
