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
* ``cycle_decisions.person_id`` and ``messages.person_id``: the person a decision was made for (as
  of its cycle); nullable, so adding them rewrites nothing.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

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


def downgrade() -> None:
    op.drop_column("messages", "person_id")
    op.drop_column("cycle_decisions", "person_id")
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
