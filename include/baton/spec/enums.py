"""Enumerations shared by the spec models and the rest of Baton.

All are :class:`enum.StrEnum`, so ``Channel.email == "email"`` and ``str(Channel.email)``
is ``"email"``: they can be written to the store and to CSV files as they are.
"""

from __future__ import annotations

from enum import StrEnum


class Channel(StrEnum):
    """A delivery channel, in the order used when Baton lists them."""

    email = "email"
    sms = "sms"
    push = "push"
    audience = "audience"
    direct_mail = "direct_mail"


class Category(StrEnum):
    """Marketing messages obey consent, quiet hours, holdouts and caps; transactional ones do not."""

    marketing = "marketing"
    transactional = "transactional"


class ConsentMode(StrEnum):
    """``opt_in``: a person needs an explicit opt-in; ``opt_out``: allowed unless opted out."""

    opt_in = "opt_in"
    opt_out = "opt_out"


class Period(StrEnum):
    """A calendar period in the customer's local time (weeks start on Monday)."""

    day = "day"
    week = "week"
    month = "month"


class Outcome(StrEnum):
    """The outcome of one alternative, in the order the checks run (SPEC §3)."""

    unknown_customer = "unknown_customer"
    expired = "expired"
    unreachable = "unreachable"
    suppressed = "suppressed"
    no_consent = "no_consent"
    quiet_hours = "quiet_hours"
    holdout_global = "holdout_global"
    holdout_campaign = "holdout_campaign"
    channel_alternative = "channel_alternative"
    capped = "capped"
    selected = "selected"


DEFAULT_CONSENT: dict[Channel, ConsentMode] = {
    Channel.email: ConsentMode.opt_out,
    Channel.sms: ConsentMode.opt_in,
    Channel.push: ConsentMode.opt_out,
    Channel.audience: ConsentMode.opt_out,
    Channel.direct_mail: ConsentMode.opt_out,
}
"""Consent mode of each channel when the policy does not set one (SPEC §2)."""
