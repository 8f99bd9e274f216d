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


class IdentifierKind(StrEnum):
    """A kind of identifier seen on a profile (SPEC §6); the same list as ``baton.identity.normalize.KINDS``."""

    email = "email"
    phone = "phone"
    login = "login"
    cookie = "cookie"
    device = "device"
    push_token = "push_token"


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


OUTCOME_MEANING: dict[Outcome, str] = {
    Outcome.unknown_customer: "The customer does not exist.",
    Outcome.expired: "The candidate's `expires_at` is at or before the decision time T.",
    Outcome.unreachable: (
        "The person has no address for the channel (email: an email address; sms: a phone number; "
        "push: a push token; audience: the email, or the phone where there is no email; "
        "direct_mail: a postal address)."
    ),
    Outcome.suppressed: (
        "That address is on the channel's suppression list (hard bounce, complaint); email addresses "
        "compare case-insensitively, after trimming."
    ),
    Outcome.no_consent: (
        "Marketing only: the person opted out of the channel (for every topic, or for the campaign's "
        "topic); or the channel is `opt_in` and there is no opt-in for the channel or for the channel "
        "and the campaign's topic."
    ),
    Outcome.quiet_hours: (
        "Marketing only: T falls in the channel's quiet hours in the person's local time, and those quiet "
        "hours end later than the candidate's `expires_at`."
    ),
    Outcome.holdout_global: "Marketing only: the person is in the global control group.",
    Outcome.holdout_campaign: "Marketing only: the person is in the campaign's holdout.",
    Outcome.channel_alternative: (
        "An earlier channel of the same campaign, in the campaign's order, passed every check above "
        "for this person."
    ),
    Outcome.capped: "A cap has no room left; `reason` is the cap's name.",
    Outcome.selected: "The message goes: `send_at` is T, or the end of the quiet hours T falls in.",
}
"""What each outcome means, one line each, in check order (SPEC §3; shown in docs/reference/outcomes.md)."""


DEFAULT_CONSENT: dict[Channel, ConsentMode] = {
    Channel.email: ConsentMode.opt_out,
    Channel.sms: ConsentMode.opt_in,
    Channel.push: ConsentMode.opt_out,
    Channel.audience: ConsentMode.opt_out,
    Channel.direct_mail: ConsentMode.opt_out,
}
"""Consent mode of each channel when the policy does not set one (SPEC §2)."""
