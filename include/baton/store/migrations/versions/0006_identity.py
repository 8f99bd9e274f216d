"""identity (SPEC §6): identifiers as observations, shared values, exclusions, persons; person_id on
decisions and messages

* ``identifiers`` becomes one observation per (profile, kind, normalised value): the raw value as
  first seen, the normalised value, when it was first seen, where it came from (``source``) and
  when Baton stored it (``added_at``: what an incremental resolve looks at).  Kinds are SPEC §6's;
  the earlier ``external`` kind becomes ``login``.  Observations whose normalised values collapse
  into one keep the earliest.
* ``customers.updated_at`` (set by a trigger when email, phone or push_token change; existing rows
  start at ``-infinity``: the first resolve reads everything anyway) and indexes on the normalised
  email, phone and push token, so a resolve finds every holder of a value by index.
* ``identity_links``: observations of values two or more profiles hold (what links can come from).
* ``identity_exclusions``: values that link no one (``baton identity exclude``).
* ``identity_persons``: the current persons with two or more profiles (every other profile is a
  person of its own).
* ``cycle_persons``: the persons a cycle that is deciding decides with (as of its decision time).
* ``cycle_decisions.person_id`` and ``messages.person_id``: the person a decision was made for (as
  of its cycle); nullable, so adding them rewrites nothing.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
KINDS = ("email", "phone", "login", "cookie", "device", "push_token")
WS = r"E' \t\n\r\f\x0b'"  # \v is no escape in PostgreSQL: \x0b
#: the normalisation of SPEC §6 as SQL functions (baton.identity.normalize.norm_sql calls them):
#: immutable one-expression SQL functions, which PostgreSQL inlines, and whose names keep the
#: expression indexes readable (and comparable with the schema)
FUNCTIONS = {
    "baton_norm_email": f"lower(btrim(v, {WS}))",
    "baton_norm_phone": "regexp_replace(v, '[^0-9]', '', 'g')",
    "baton_norm_trim": f"btrim(v, {WS})",
}
NORM = {"email": "baton_norm_email", "phone": "baton_norm_phone"}


def _norm(kind: str, value: str) -> str:
    return f"{NORM.get(kind, 'baton_norm_trim')}({value})"


# the view decisions of revision 0003, with the person at the end (0003's letters and their meanings)
_CHANNELS = {"e": "email", "s": "sms", "p": "push", "a": "audience", "d": "direct_mail"}
_CODES = {
    "k": "unknown_customer",
    "e": "expired",
    "u": "unreachable",
    "p": "suppressed",
    "n": "no_consent",
    "q": "quiet_hours",
    "g": "holdout_global",
    "h": "holdout_campaign",
    "a": "channel_alternative",
    "c": "capped",
    "s": "selected",
}
_CHANNEL = "case a.ch " + " ".join(f"when '{k}' then '{v}'" for k, v in _CHANNELS.items()) + " end"
_DECODE = "case a.code " + " ".join(f"when '{k}' then '{v}'" for k, v in _CODES.items()) + " end"


def _decisions_view(person: bool) -> str:
    return (
        f"create view decisions as select d.cycle_at, d.customer_id, d.campaign_id, {_CHANNEL} as channel,"
        f" d.batch_id, d.seq, d.shard, {_DECODE} as outcome,"
        " coalesce(nullif(a.reason, ''), case when a.code = 'a' then 'first surviving channel: ' || d.channel end)"
        " as reason, case when a.code = 's' then d.send_at end as send_at, d.priority, d.score"
        + (", d.person_id" if person else "")
        + " from cycle_decisions d cross join lateral unnest(string_to_array(d.channels, null),"
        " string_to_array(d.outcomes, null), coalesce(string_to_array(d.reasons, E'\\x1f'), '{}'))"
        " as a(ch, code, reason)"
    )


_DECISIONS_OF = (
    "create function baton_decisions_of(person text) returns setof decisions language sql stable as $$"
    " select d.* from cycles c cross join lateral (select * from decisions v where v.cycle_at = c.cycle_at"
    " and v.customer_id = person) d order by d.cycle_at, d.campaign_id, d.channel $$"
)


def _digest(expr: str) -> str:
    return f"encode(sha256(convert_to({expr}, 'UTF8')), 'hex')"


#: a profile written with an address of a forgotten person: suppress that address on its channels
ERASED_TRIGGER_FUNCTION = f"""
create function baton_suppress_erased() returns trigger language plpgsql as $$
declare
    v_email text := lower(btrim(new.email, {WS}));
    v_phone text := btrim(new.phone, {WS});
begin
    if not exists (select 1 from erasures) then
        return new;
    end if;
    if new.email is not null and exists (select 1 from erasures
            where kind = 'email' and digest = {_digest("baton_norm_email(new.email)")}) then
        insert into suppressions (channel, address, reason) values ('email', v_email, 'erased person'),
            ('audience', v_email, 'erased person') on conflict do nothing;
    end if;
    if new.phone is not null and exists (select 1 from erasures
            where kind = 'phone' and digest = {_digest("baton_norm_phone(new.phone)")}) then
        insert into suppressions (channel, address, reason) values ('sms', v_phone, 'erased person'),
            ('audience', v_phone, 'erased person') on conflict do nothing;
    end if;
    if new.push_token is not null and exists (select 1 from erasures
            where kind = 'push_token' and digest = {_digest("baton_norm_trim(new.push_token)")}) then
        insert into suppressions (channel, address, reason)
            values ('push', btrim(new.push_token, {WS}), 'erased person') on conflict do nothing;
    end if;
    if new.postal_address is not null and exists (select 1 from erasures
            where kind = 'postal_address' and digest = {_digest("baton_norm_email(new.postal_address)")}) then
        insert into suppressions (channel, address, reason)
            values ('direct_mail', btrim(new.postal_address, {WS}), 'erased person') on conflict do nothing;
    end if;
    return new;
end $$
"""


def _replace_view(person: bool) -> None:
    op.execute("drop function baton_decisions_of(text)")
    op.execute("drop view decisions")
    op.execute(_decisions_view(person))
    op.execute(_DECISIONS_OF)


def upgrade() -> None:
    for name, body in FUNCTIONS.items():
        op.execute(
            f"create function {name}(v text) returns text language sql immutable parallel safe return {body}"
        )
    # identifiers: observations
    op.execute("update identifiers set kind = 'login' where kind = 'external'")
    op.drop_constraint("identifiers_pkey", "identifiers", type_="primary")
    op.add_column(
        "identifiers", sa.Column("norm", sa.Text(), nullable=True, comment="the normalised value (SPEC §6)")
    )
    op.add_column(
        "identifiers", sa.Column("source", sa.Text(), nullable=True, comment="where it was observed")
    )
    op.add_column(
        "identifiers",
        sa.Column(
            "added_at", TS, server_default=sa.text("now()"), nullable=False, comment="when Baton stored it"
        ),
    )
    op.execute(
        "update identifiers set norm = case kind when 'email' then "
        + _norm("email", "value")
        + " when 'phone' then "
        + _norm("phone", "value")
        + " else "
        + _norm("other", "value")
        + " end"
    )
    op.execute(
        "delete from identifiers i using identifiers j where i.customer_id = j.customer_id and i.kind = j.kind"
        " and i.norm = j.norm and (i.first_seen, i.ctid) > (j.first_seen, j.ctid)"
    )
    op.execute(f"delete from identifiers where kind not in ({', '.join(repr(k) for k in KINDS)})")
    op.alter_column("identifiers", "norm", nullable=False)
    op.alter_column("identifiers", "kind", comment="email, phone, login, cookie, device, push_token")
    op.alter_column("identifiers", "value", comment="the raw value as first observed")
    op.create_primary_key("identifiers_pkey", "identifiers", ["customer_id", "kind", "norm"])
    op.create_table_comment(
        "identifiers", "identifiers as observations: one row per (profile, kind, normalised value)"
    )
    op.create_check_constraint(
        "ck_identifiers_kind", "identifiers", "kind in (" + ", ".join(f"'{k}'" for k in KINDS) + ")"
    )
    op.drop_index("ix_identifiers_customer", table_name="identifiers")
    op.create_index("ix_identifiers_value", "identifiers", ["kind", "norm"])
    op.create_index("ix_identifiers_added", "identifiers", ["added_at"])

    # customers: when the identifying columns changed, and their normalised values by index
    op.add_column(
        "customers",
        sa.Column(
            "updated_at",
            TS,
            server_default=sa.text("'-infinity'::timestamptz"),
            nullable=False,
            comment="when email, phone or push_token last changed (a trigger keeps it)",
        ),
    )
    op.alter_column("customers", "updated_at", server_default=sa.text("now()"))
    op.execute(
        "create function baton_customers_touched() returns trigger language plpgsql as $$"
        " begin new.updated_at := now(); return new; end $$"
    )
    op.execute(
        "create trigger customers_touched before update of email, phone, push_token on customers"
        " for each row when (old.email is distinct from new.email or old.phone is distinct from new.phone"
        " or old.push_token is distinct from new.push_token) execute function baton_customers_touched()"
    )
    for column in ("email", "phone", "push_token"):
        op.execute(
            f"create index ix_customers_{column}_norm on customers (({_norm(column, column)}))"
            f" where {column} is not null"
        )

    op.create_table(
        "identity_links",
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("norm", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("first_seen", TS, nullable=False),
        sa.PrimaryKeyConstraint("kind", "norm", "customer_id"),
        comment="observations of the values two or more profiles hold: where links come from",
    )
    op.create_index("ix_identity_links_customer", "identity_links", ["customer_id"])
    op.create_table(
        "identity_exclusions",
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("norm", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False, comment="as the user wrote it"),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("kind", "norm"),
        comment="values that link no one (baton identity exclude)",
    )
    op.create_table(
        "identity_persons",
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("person_id", sa.Text(), nullable=False),
        sa.Column("resolved_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("customer_id"),
        comment="the current persons with two or more profiles; any other profile is a person of its own",
    )
    op.create_index("ix_identity_persons_person", "identity_persons", ["person_id"])
    op.create_table(
        "cycle_persons",
        sa.Column("cycle_at", TS, nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("person_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("cycle_at", "customer_id"),
        comment="the persons of several profiles a deciding cycle decides with (as of its T); removed at commit",
    )
    op.add_column(
        "cycle_decisions",
        sa.Column("person_id", sa.Text(), nullable=True, comment="the person decided for (as of the cycle)"),
    )
    op.add_column(
        "messages",
        sa.Column(
            "person_id", sa.Text(), nullable=True, comment="the person the message went to (as of its cycle)"
        ),
    )
    op.add_column(
        "messages",
        sa.Column(
            "address",
            postgresql.JSONB(),
            nullable=True,
            comment="addresses the decision took from another profile of the person (SPEC §6); null: the profile's own",
        ),
    )
    _replace_view(person=True)
    # forgotten persons (GDPR art. 17): only a digest of each address is kept; a profile imported
    # later with such an address has it suppressed at once, so it is not messaged by accident
    op.create_table(
        "erasures",
        sa.Column("kind", sa.Text(), nullable=False, comment="email, phone, push_token or postal_address"),
        sa.Column("digest", sa.Text(), nullable=False, comment="hex SHA-256 of the normalised value"),
        sa.Column("erased_at", TS, server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("kind", "digest"),
        comment="digests of the addresses of forgotten persons (baton person forget)",
    )
    op.execute(ERASED_TRIGGER_FUNCTION)
    op.execute(
        "create trigger customers_erased before insert or update of email, phone, push_token, postal_address"
        " on customers for each row execute function baton_suppress_erased()"
    )


def downgrade() -> None:
    op.execute("drop trigger customers_erased on customers")
    op.execute("drop function baton_suppress_erased()")
    op.drop_table("erasures")
    _replace_view(person=False)
    op.drop_column("messages", "address")
    op.drop_column("messages", "person_id")
    op.drop_column("cycle_decisions", "person_id")
    op.drop_table("cycle_persons")
    op.drop_index("ix_identity_persons_person", table_name="identity_persons")
    op.drop_table("identity_persons")
    op.drop_table("identity_exclusions")
    op.drop_index("ix_identity_links_customer", table_name="identity_links")
    op.drop_table("identity_links")
    for column in ("email", "phone", "push_token"):
        op.execute(f"drop index ix_customers_{column}_norm")
    op.execute("drop trigger customers_touched on customers")
    op.execute("drop function baton_customers_touched()")
    op.drop_column("customers", "updated_at")
    op.drop_index("ix_identifiers_added", table_name="identifiers")
    op.drop_index("ix_identifiers_value", table_name="identifiers")
    op.drop_constraint("ck_identifiers_kind", "identifiers", type_="check")
    op.drop_constraint("identifiers_pkey", "identifiers", type_="primary")
    op.drop_table_comment("identifiers")
    # back to one profile per (kind, value): the earliest observation keeps it
    op.execute(
        "delete from identifiers i using identifiers j where i.kind = j.kind and i.value = j.value"
        " and (i.first_seen, i.ctid) > (j.first_seen, j.ctid)"
    )
    op.drop_column("identifiers", "added_at")
    op.drop_column("identifiers", "source")
    op.drop_column("identifiers", "norm")
    op.create_primary_key("identifiers_pkey", "identifiers", ["kind", "value"])
    op.create_index("ix_identifiers_customer", "identifiers", ["customer_id"])
    op.alter_column("identifiers", "kind", comment="email, phone, cookie, device, external")
    op.alter_column("identifiers", "value", comment=None)
    for name in FUNCTIONS:
        op.execute(f"drop function {name}(text)")
