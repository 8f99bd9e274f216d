"""``baton seed``: deterministic, realistic, and topped up without duplicates."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from baton.errors import ConfigError
from baton.seed import EVENT_TYPES, SEEDED_TABLES, run_seed, very_active_shopper
from conftest import _fresh_database

pytestmark = pytest.mark.integration

N = 2_000
DAYS = 5
UNTIL = "2026-03-10T12:00:00Z"
EVENT_COLS = "customer_id, type, ts, product_id, item_name, category, price, cart_value, order_id, properties"


@pytest.fixture()
def other_store() -> Iterator[Engine]:
    """A second fresh database, to compare with ``fresh_store``."""
    yield from _fresh_database("baton_t")


def table_hashes(engine: Engine) -> dict[str, str]:
    """md5 of every seeded table's rows (all columns but ``added_at``, when the row was stored), in a
    stable order."""
    out = {}
    with engine.connect() as conn:
        for table in SEEDED_TABLES:
            out[table] = conn.execute(
                sa.text(
                    "select md5(coalesce(string_agg(r::text, E'\\n' order by r::text), ''))"
                    f" from (select to_jsonb(t) - 'added_at' as r from {table} t) x"
                )
            ).scalar_one()
    return out


def events_hash(engine: Engine) -> tuple[int, str]:
    """Count and md5 of the events without the surrogate event_id."""
    with engine.connect() as conn:
        return tuple(
            conn.execute(
                sa.text(
                    f"select count(*), md5(coalesce(string_agg(r::text, E'\\n' order by r::text), '')) "
                    f"from (select {EVENT_COLS} from events) r"
                )
            ).one()
        )


def scalar(engine: Engine, sql: str, **params: object) -> object:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar_one()


def test_same_arguments_give_identical_tables(fresh_store: Engine, other_store: Engine) -> None:
    a = run_seed(fresh_store, customers=N, days=DAYS, seed=7, until=UNTIL)
    b = run_seed(other_store, customers=N, days=DAYS, seed=7, until=UNTIL)
    assert a.mode == b.mode == "rebuild"
    assert a.events > 1_000 and a.customers == N
    first = table_hashes(fresh_store)
    assert first == table_hashes(other_store)
    # a reset rebuild of the same store writes the very same rows again (event ids too)
    run_seed(fresh_store, customers=N, days=DAYS, seed=7, until=UNTIL, reset=True)
    assert table_hashes(fresh_store) == first


def test_different_seed_gives_different_data(fresh_store: Engine, other_store: Engine) -> None:
    run_seed(fresh_store, customers=N, days=DAYS, seed=7, until=UNTIL)
    run_seed(other_store, customers=N, days=DAYS, seed=8, until=UNTIL)
    a, b = table_hashes(fresh_store), table_hashes(other_store)
    for table in SEEDED_TABLES:
        assert a[table] != b[table], table
    # different parameters on a seeded store rebuild it without --reset
    stats = run_seed(fresh_store, customers=N, days=DAYS, seed=8, until=UNTIL)
    assert stats.mode == "rebuild"
    assert table_hashes(fresh_store) == b


def test_top_up_appends_only_new_events(fresh_store: Engine, other_store: Engine) -> None:
    first = run_seed(fresh_store, customers=N, days=DAYS, seed=3, until="2026-03-10T12:00:00Z")
    customers_before = table_hashes(fresh_store)
    with fresh_store.connect() as conn:
        max_id_before = conn.execute(sa.text("select max(event_id) from events")).scalar_one()
        old_hash = conn.execute(
            sa.text(
                f"select md5(string_agg(r::text, E'\\n' order by r::text)) from (select event_id, {EVENT_COLS} "
                f"from events) r"
            )
        ).scalar_one()

    # two top-ups, the first ending in the middle of a day
    mid = run_seed(fresh_store, customers=N, days=DAYS, seed=3, until="2026-03-11T19:07:00Z")
    last = run_seed(fresh_store, customers=N, days=DAYS, seed=3, until="2026-03-12T12:00:00Z")
    assert (mid.mode, last.mode) == ("top_up", "top_up")
    assert mid.customers == 0 and mid.events > 0 and last.events > 0
    assert mid.window_start == "2026-03-10T12:00:00Z" and mid.window_end == "2026-03-11T19:07:00Z"
    again = run_seed(fresh_store, customers=N, days=DAYS, seed=3, until="2026-03-12T12:00:00Z")
    assert again.mode == "up_to_date" and again.events == 0

    after = table_hashes(fresh_store)
    for table in ("customers", "identifiers", "consents", "suppressions"):
        assert after[table] == customers_before[table], table
    # the first run's events are untouched, the new ones all lie after its end
    with fresh_store.connect() as conn:
        assert (
            conn.execute(
                sa.text(
                    f"select md5(string_agg(r::text, E'\\n' order by r::text)) from (select event_id, {EVENT_COLS} "
                    f"from events where event_id <= :m) r"
                ),
                {"m": max_id_before},
            ).scalar_one()
            == old_hash
        )
        assert (
            conn.execute(
                sa.text("select count(*) from events where event_id > :m and ts <= '2026-03-10T12:00:00Z'"),
                {"m": max_id_before},
            ).scalar_one()
            == 0
        )
    assert first.events + mid.events + last.events == events_hash(fresh_store)[0]

    # ... and equal one run over the combined window
    single = run_seed(other_store, customers=N, days=DAYS + 2, seed=3, until="2026-03-12T12:00:00Z")
    assert single.window_start == first.window_start
    assert events_hash(other_store) == events_hash(fresh_store)
    single_hashes = table_hashes(other_store)
    for table in ("customers", "identifiers", "consents", "suppressions"):
        assert single_hashes[table] == after[table], table


def test_shape_is_realistic(fresh_store: Engine) -> None:
    stats = run_seed(fresh_store, customers=N, days=DAYS, seed=11, until=UNTIL)
    q = lambda sql, **p: scalar(fresh_store, sql, **p)  # noqa: E731

    # ids
    assert q("select min(customer_id) from customers") == "c0000001"
    assert q("select max(customer_id) from customers") == f"c{N:07d}"

    # timezones: mostly valid, some missing, some invalid
    missing_tz = q("select count(*) from customers where timezone is null")
    invalid_tz = q(
        "select count(*) from customers where timezone is not null "
        "and timezone not in (select name from pg_timezone_names)"
    )
    assert 0.01 * N < missing_tz < 0.06 * N
    assert 0.002 * N < invalid_tz < 0.03 * N
    assert q("select count(distinct timezone) from customers") >= 30

    # contact points (profiles: app installs and cookies have no email or phone of their own)
    no_email = q("select count(*) from customers where email is null")
    assert 0.08 * N < no_email < 0.28 * N
    assert q("select count(*) from customers where email <> lower(trim(email))") > 0
    assert q("select count(*) from customers where email <> trim(email)") > 0
    assert 0.45 * N < q("select count(*) from customers where phone is not null") < 0.8 * N
    # E.164, except junk (0000000) and a guest checkout's phone written another way (the account's digits)
    odd = q("select count(*) from customers where phone !~ '^\\+[1-9][0-9]{7,14}$'")
    assert odd > 0
    assert (
        q(
            "select count(*) from customers g where g.phone !~ '^\\+[1-9][0-9]{7,14}$' and g.phone <> '0000000' and not exists"
            " (select 1 from customers a where a.phone = '+' || regexp_replace(g.phone, '[^0-9]', '', 'g'))"
        )
        == 0
    )
    assert 0.3 * N < q("select count(*) from customers where push_token is not null") < 0.55 * N
    assert 0.4 * N < q("select count(*) from customers where postal_address is not null") < 0.7 * N
    assert q("select count(*) from customers where first_name is null or last_name is null") == 0
    assert (
        q(
            "select count(*) from customers where attributes ? 'loyalty_tier' "
            "and attributes ? 'lifetime_value' and attributes ? 'preferred_category'"
        )
        == N
    )
    assert (
        q(
            "select count(*) from identifiers i join customers c using (customer_id) "
            "where i.kind = 'email' and i.value <> lower(trim(c.email))"
        )
        == 0
    )
    assert q("select count(*) from identifiers where kind = 'cookie'") >= N

    # one person across profiles (SPEC §6): about one person in eight has two to four profiles; junk
    # values and a shared family tablet are there too
    from baton.identity.resolve import IdentitySettings
    from baton.identity.store import resolve

    resolve(fresh_store, IdentitySettings(blocked_values=("test@test.com",)))
    linked = q("select count(*) from identity_persons")
    multi = q("select count(distinct person_id) from identity_persons")
    persons = N - linked + multi
    assert 0.08 < multi / persons < 0.2, (multi, persons)
    sizes = q("select max(n) from (select count(*) as n from identity_persons group by person_id) x")
    assert 2 <= sizes <= 8
    assert q("select count(*) from customers where lower(email) in ('null', 'test@test.com')") > 0
    assert q("select count(*) from identifiers where kind = 'device' and norm like 'tablet-%'") > 0
    assert q("select count(*) from identifiers where kind = 'login'") > 0

    # consents: SMS opt-ins only where there is a phone, opt-outs by topic and channel
    sms_in = q("select count(*) from consents where channel = 'sms' and status = 'opt_in' and topic = ''")
    with_phone = q("select count(*) from customers where phone is not null")
    assert 0.25 * with_phone < sms_in < 0.45 * with_phone
    assert (
        q(
            "select count(*) from consents k join customers c using (customer_id) "
            "where k.channel = 'sms' and c.phone is null"
        )
        == 0
    )
    assert (
        q(
            "select count(*) from consents k join customers c using (customer_id) "
            "where k.channel = 'email' and c.email is null"
        )
        == 0
    )
    assert (
        q(
            "select count(*) from consents k join customers c using (customer_id) "
            "where k.channel = 'push' and c.push_token is null"
        )
        == 0
    )
    assert (
        q("select count(*) from consents where channel = 'email' and topic = '' and status = 'opt_out'") > 0
    )
    assert (
        q(
            "select count(*) from consents where channel = 'email' and topic = 'promotions' "
            "and status = 'opt_out'"
        )
        > 0
    )
    assert (
        q(
            "select count(*) from consents where channel = 'email' and topic = 'newsletter' "
            "and status = 'opt_out'"
        )
        > 0
    )

    # suppressions: lower-cased, trimmed, and belong to real customers
    assert 0 < q("select count(*) from suppressions where channel = 'email'") < 0.03 * N
    assert (
        q("select count(*) from suppressions where channel = 'email' and address <> lower(trim(address))")
        == 0
    )
    assert (
        q(
            "select count(*) from suppressions s where channel = 'email' and not exists "
            "(select 1 from customers c where lower(trim(c.email)) = s.address)"
        )
        == 0
    )

    # events: every type, inside the window, plausible volumes
    types = {r[0] for r in fresh_store.connect().execute(sa.text("select distinct type from events"))}
    assert types == set(EVENT_TYPES)
    assert stats.events == q("select count(*) from events")
    assert (
        q("select count(*) from events where ts <= '2026-03-05T12:00:00Z' or ts > '2026-03-10T12:00:00Z'")
        == 0
    )
    assert (
        q(
            "select count(*) from events e where not exists "
            "(select 1 from customers c where c.customer_id = e.customer_id)"
        )
        == 0
    )
    daily_active = q(
        "select avg(n)::float from (select count(distinct customer_id) n from events "
        "where type in ('browse', 'product_view') and ts >= '2026-03-06' and ts < '2026-03-10' "
        "group by date_trunc('day', ts)) d"
    )
    assert 0.025 * N < daily_active < 0.07 * N
    purchases = q("select count(*) from events where type = 'purchase'")
    assert 0.01 * daily_active * DAYS < purchases < 0.05 * daily_active * DAYS
    assert (
        q("select count(*) from events where type = 'purchase' and (order_id is null or cart_value is null)")
        == 0
    )
    assert q("select count(distinct order_id) from events where type = 'purchase'") == purchases
    assert (
        q(
            "select count(*) from events where type in ('add_to_cart', 'cart_abandoned') "
            "and (cart_value is null or cart_value < price)"
        )
        == 0
    )
    # the population's carts (the very active shopper abandons every cart she fills, on purpose)
    shopper = very_active_shopper(N, 11)
    assert shopper is not None
    hers = list(shopper.profiles)
    carts = q(
        "select count(*) from (select distinct customer_id, date_trunc('hour', ts) from events "
        "where type = 'add_to_cart' and customer_id <> all(:hers)) c",
        hers=hers,
    )
    abandoned = q(
        "select count(*) from events where type = 'cart_abandoned' and customer_id <> all(:hers)", hers=hers
    )
    assert 0.08 * carts < abandoned < 0.4 * carts
    assert (
        q(
            "select count(*) from events where type in ('product_view', 'purchase', 'review_due', "
            "'price_drop', 'back_in_stock') and (product_id is null or item_name is null or price is null)"
        )
        == 0
    )
    assert (
        q(
            "select count(*) from events where type = 'price_drop' "
            "and (properties->>'previous_price')::numeric <= price"
        )
        == 0
    )
    # a review is due 3-7 days (give or take two hours) after its purchase
    assert (
        q(
            "select count(*) from events r join events p on p.order_id = r.order_id and p.type = 'purchase' "
            "where r.type = 'review_due' and (r.ts - p.ts < interval '70 hours' "
            "or r.ts - p.ts > interval '7 days 2 hours')"
        )
        == 0
    )
    # shopping follows the customer's local clock: more at 19-21h than at 3-5h local
    evening, night = (
        fresh_store.connect()
        .execute(
            sa.text(
                "select count(*) filter (where h between 19 and 21), count(*) filter (where h between 3 and 5) "
                "from (select extract(hour from e.ts at time zone c.timezone) h from events e "
                "join customers c using (customer_id) where e.type = 'product_view' "
                "and c.timezone in (select name from pg_timezone_names)) x"
            )
        )
        .one()
    )
    assert evening > 5 * night


def test_refuses_to_replace_foreign_data_without_reset(fresh_store: Engine) -> None:
    with fresh_store.begin() as conn:
        conn.execute(sa.text("insert into customers (customer_id, email) values ('real-1', 'a@example.com')"))
    with pytest.raises(ConfigError, match="--reset"):
        run_seed(fresh_store, customers=10, days=1, seed=1, until=UNTIL)
    stats = run_seed(fresh_store, customers=10, days=1, seed=1, until=UNTIL, reset=True)
    assert stats.mode == "rebuild"
    assert scalar(fresh_store, "select count(*) from customers") == 10


def test_bad_until_is_a_clear_error(fresh_store: Engine) -> None:
    with pytest.raises(ConfigError, match="ISO 8601"):
        run_seed(fresh_store, customers=10, days=1, seed=1, until="yesterday")
