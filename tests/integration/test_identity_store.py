"""Identity in the store (SPEC §6): loading identifiers, resolving persons (in full and
incrementally), excluding a value, explaining a person."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from baton.identity.admin import exclude, load_identifiers, show
from baton.identity.resolve import IdentitySettings, persons_as_of
from baton.identity.store import cycle_persons, refresh, resolve
from baton.store.tx import transaction

pytestmark = pytest.mark.integration

SETTINGS = IdentitySettings()
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _customers(engine: Engine, *rows: tuple[str, str | None, str | None, int]) -> None:
    """(customer_id, email, phone, days after T0 it was created)."""
    with engine.begin() as conn:
        for cid, email, phone, days in rows:
            conn.execute(
                sa.text(
                    "insert into customers (customer_id, email, phone, created_at) values (:c, :e, :p, :t)"
                ),
                {"c": cid, "e": email, "p": phone, "t": T0 + timedelta(days=days)},
            )


def _persons(engine: Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("select customer_id, person_id from identity_persons")).all())


def _behind_the_watermarks(conn: sa.Connection) -> None:
    """Everything stored so far lies behind the watermarks, as some time after a resolve."""
    conn.execute(
        sa.text(
            "update baton_meta set value = value || jsonb_build_object('links_watermark',"
            " (now() - interval '1 second')::text, 'persons_watermark', (now() - interval '1 second')::text)"
            " where key = 'identity'"
        )
    )
    conn.execute(sa.text("update identifiers set added_at = now() - interval '1 hour'"))
    conn.execute(sa.text("update customers set updated_at = now() - interval '1 hour'"))
    conn.execute(sa.text("update identity_exclusions set created_at = now() - interval '1 hour'"))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "identifiers.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_resolve_links_other_spellings_and_names_the_earliest_profile(fresh_store: Engine) -> None:
    _customers(
        fresh_store,
        ("guest-1", " Ann.Lee@Example.com", None, 5),
        ("acct-9", "ann.lee@example.com", "+1 (555) 010-0199", 3),
        ("app-3", None, "15550100199", 7),
        ("junk-1", "null", "0000000", 1),
        ("junk-2", "NULL", "000-0000", 2),
        ("solo", "solo@example.com", None, 0),
    )
    result = resolve(fresh_store, SETTINGS)
    assert result.full
    # acct-9 was created first among the three: it names the person; junk values link no one
    assert _persons(fresh_store) == {"guest-1": "acct-9", "acct-9": "acct-9", "app-3": "acct-9"}


def test_incremental_resolve_touches_only_what_is_new(fresh_store: Engine, tmp_path: Path) -> None:
    _customers(
        fresh_store,
        ("a", "a@x.com", None, 1),
        ("b", "a@x.com", None, 2),
        ("c", "c@x.com", None, 3),
        ("d", "d@x.com", None, 4),
    )
    resolve(fresh_store, SETTINGS)
    assert _persons(fresh_store) == {"a": "a", "b": "a"}
    # what was stored so far is behind the watermarks (as it is some time after a resolve)
    with fresh_store.begin() as conn:
        conn.execute(
            sa.text(
                "update baton_meta set value = value || jsonb_build_object('links_watermark', now()::text,"
                " 'persons_watermark', now()::text) where key = 'identity'"
            )
        )
    loaded = load_identifiers(
        fresh_store, _write(tmp_path, "customer_id,kind,value\nc,login,u-42\nd,login, u-42 \n")
    )
    assert (loaded.stored, loaded.rejected) == (2, [])
    result = resolve(fresh_store, SETTINGS)
    assert not result.full
    assert result.affected_profiles == 2  # c and d: a and b are untouched
    assert _persons(fresh_store) == {"a": "a", "b": "a", "c": "c", "d": "c"}


def test_exclude_splits_the_person_at_the_next_resolve(fresh_store: Engine) -> None:
    _customers(
        fresh_store,
        ("a", "shop@front.desk", None, 1),
        ("b", "shop@front.desk", "+1 555 0100", 2),
        ("c", None, "15550100", 3),
    )
    resolve(fresh_store, SETTINGS)
    assert _persons(fresh_store) == {"a": "a", "b": "a", "c": "a"}
    assert exclude(fresh_store, "email", " SHOP@front.desk", reason="the shop's front-desk address") == 2
    assert _persons(fresh_store) == {"a": "a", "b": "a", "c": "a"}  # until the next resolve
    resolve(fresh_store, SETTINGS)
    assert _persons(fresh_store) == {"b": "b", "c": "b"}


def test_over_shared_and_blocked_values_link_no_one(fresh_store: Engine) -> None:
    _customers(
        fresh_store,
        *[(f"p{i}", "family@tablet.example", None, i) for i in range(4)],
        ("q1", "test@test.com", None, 1),
        ("q2", "test@test.com", None, 2),
    )
    resolve(fresh_store, IdentitySettings(max_profiles_per_value=3, blocked_values=("TEST@test.com",)))
    assert _persons(fresh_store) == {}
    resolve(fresh_store, IdentitySettings(max_profiles_per_value=4))  # settings changed: resolved in full
    assert set(_persons(fresh_store)) == {"p0", "p1", "p2", "p3", "q1", "q2"}


def test_load_rejects_bad_rows_with_their_reason_and_stores_the_rest(
    fresh_store: Engine, tmp_path: Path
) -> None:
    _customers(fresh_store, ("a", None, None, 1))
    future = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    path = _write(
        tmp_path,
        "customer_id,kind,value,first_seen\n"
        "a,email,A@X.com,2026-02-01T10:00:00Z\n"
        "a,fax,123,\n"
        "a,cookie,,\n"
        f"a,device,{'x' * 600},\n"
        "a,login,u1,yesterday\n"
        f"a,login,u2,{future}\n"
        "ghost,login,u3,\n"
        "a,login,u1,2026-01-05\n",
    )
    result = load_identifiers(fresh_store, path)
    assert result.rows == 8 and result.stored == 2
    reasons = dict(result.rejected)
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8]
    assert "unknown kind 'fax'" in reasons[3]
    assert reasons[4] == "value is empty"
    assert "longer than 512" in reasons[5]
    assert "'yesterday' is not a time" in reasons[6]
    assert "lies in the future" in reasons[7]
    assert "'ghost' is no profile" in reasons[8]
    with fresh_store.connect() as conn:
        rows = conn.execute(
            sa.text("select kind, value, norm, first_seen, source from identifiers order by kind")
        ).all()
    assert [(r.kind, r.value, r.norm, r.source) for r in rows] == [
        ("email", "A@X.com", "a@x.com", "identifiers.csv"),
        ("login", "u1", "u1", "identifiers.csv"),
    ]
    # a second observation of a stored value keeps the earliest first_seen
    load_identifiers(
        fresh_store, _write(tmp_path, "customer_id,kind,value,first_seen\na, email ,a@x.com,2025-12-01\n")
    )
    with fresh_store.connect() as conn:
        first = conn.execute(sa.text("select first_seen from identifiers where kind = 'email'")).scalar()
    assert first == datetime(2025, 12, 1, tzinfo=UTC)


def test_a_malformed_file_stores_nothing(fresh_store: Engine, tmp_path: Path) -> None:
    from baton.errors import InputError

    _customers(fresh_store, ("a", None, None, 1))
    with pytest.raises(InputError, match="header must be customer_id,kind,value"):
        load_identifiers(fresh_store, _write(tmp_path, "customer,kind,value\na,login,u1\n"))
    with pytest.raises(InputError, match="identifiers.csv:3: is not valid CSV"):
        load_identifiers(fresh_store, _write(tmp_path, 'customer_id,kind,value\na,login,u1\na,login,"u2\n'))
    with fresh_store.connect() as conn:
        assert conn.execute(sa.text("select count(*) from identifiers")).scalar() == 0


def test_odd_rows_are_rejected_with_their_first_line(fresh_store: Engine, tmp_path: Path) -> None:
    """Found by tests/fuzz/test_fuzz_scenarios.py: a NUL character failed the whole load with a
    psycopg.DataError, a first_seen out of range in UTC with an OverflowError, and a row spanning
    lines was reported on its last line."""
    _customers(fresh_store, ("a", None, None, 1))
    path = _write(tmp_path, "")
    path.write_bytes(
        b"customer_id,kind,value,first_seen\n"
        b"a,login,u\x001,\n"
        b'a,fax,"two\nlines",\n'
        b"a,login,u2,0001-01-01T00:00:00+01:00\n"
        b'a,login,"u3\n",\n'
    )
    result = load_identifiers(fresh_store, path)
    assert result.rows == 4 and result.stored == 1
    reasons = dict(result.rejected)
    assert sorted(reasons) == [2, 3, 5]
    assert "NUL character" in reasons[2]
    assert "unknown kind 'fax'" in reasons[3]
    assert "'0001-01-01T00:00:00+01:00' is not a time" in reasons[5]
    with fresh_store.connect() as conn:
        assert conn.execute(sa.text("select value from identifiers")).scalars().all() == ["u3\n"]


def test_show_explains_the_chain_and_what_does_not_link(fresh_store: Engine, tmp_path: Path) -> None:
    _customers(
        fresh_store,
        ("acct", "ann@x.com", None, 1),
        ("guest", "Ann@X.com ", "+1 555 0100", 2),
        ("app", None, None, 3),
    )
    load_identifiers(
        fresh_store, _write(tmp_path, "customer_id,kind,value\napp,phone,15550100\napp,cookie,null\n")
    )
    resolve(fresh_store, SETTINGS)
    view = show(fresh_store, "15550100", SETTINGS)
    assert view is not None and view.person_id == "acct"
    assert [p["customer_id"] for p in view.profiles] == ["acct", "app", "guest"]
    assert view.chains["app"] == [
        ("acct", "email", "ann@x.com", "guest"),
        ("guest", "phone", "15550100", "app"),
    ]
    status = {(o.customer_id, o.kind): o.status for o in view.observations}
    assert status[("app", "cookie")] == "blocked"
    assert status[("guest", "email")] == "links"
    assert show(fresh_store, "nobody@nowhere", SETTINGS) is None


def _cli(engine: Engine, *args: str) -> tuple[int, str]:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, BATON_DATABASE_URL=engine.url.render_as_string(hide_password=False))
    proc = subprocess.run(
        [sys.executable, "-m", "baton", *args], capture_output=True, text=True, env=env, cwd=root, check=False
    )
    assert "Traceback" not in proc.stderr + proc.stdout
    return proc.returncode, " ".join((proc.stdout + proc.stderr).split())


def test_the_identity_commands(fresh_store: Engine, tmp_path: Path) -> None:
    _customers(
        fresh_store, ("acct", "ann@x.com", None, 1), ("guest", "ANN@x.com", None, 2), ("app", None, None, 3)
    )
    path = _write(tmp_path, "customer_id,kind,value\napp,device,d-1\nguest,device,d-1\napp,fax,1\n")
    code, text = _cli(fresh_store, "identity", "load", str(path))
    assert code == 1 and f"{path}:4: unknown kind 'fax'" in text and "2 identifier(s) stored" in text
    code, text = _cli(fresh_store, "identity", "resolve")
    assert code == 0 and "3 profiles in 1 persons" in text
    code, text = _cli(fresh_store, "identity", "show", "d-1")
    assert code == 0 and "person acct" in text and "device d-1 (app)" in text
    code, text = _cli(fresh_store, "identity", "exclude", "fax", "1")
    assert code == 2 and "unknown identifier kind 'fax'" in text
    code, text = _cli(fresh_store, "identity", "exclude", "device", " d-1 ", "--reason", "shared tablet")
    assert code == 0 and "2 profile(s) hold it" in text
    assert _cli(fresh_store, "identity", "resolve")[0] == 0
    assert _persons(fresh_store) == {"acct": "acct", "guest": "acct"}
    code, text = _cli(fresh_store, "person", "export", "app", "--out", str(tmp_path / "app.json"))
    assert code == 0 and (tmp_path / "app.json").read_text().count('"customer_id": "app"') >= 1
    code, text = _cli(fresh_store, "person", "forget", "ann@x.com", "--yes")
    assert code == 0 and "forgot person acct (2 profile(s))" in text
    code, text = _cli(fresh_store, "identity", "show", "guest")
    assert code == 1 and "no profile" in text


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_resolve_equals_a_full_one(fresh_store: Engine, seed: int) -> None:
    """Rounds of random changes — new identifiers (some in other spellings, some over-shared), new
    profiles, changed emails and phones, exclusions — each followed by an incremental resolve: the
    persons it stores equal those of a full resolve of the same store, every round."""
    import random

    rng = random.Random(seed)
    emails = [f"u{i}@x.com" for i in range(12)]
    phones = [f"+1 555 {i:04d}" for i in range(8)]
    logins = [f"login-{i}" for i in range(10)]
    profiles = [f"p{i:02d}" for i in range(30)]
    _customers(
        fresh_store,
        *[
            (p, rng.choice([*emails, None]), rng.choice([*phones, None, None]), i)
            for i, p in enumerate(profiles)
        ],
    )
    resolve(fresh_store, SETTINGS, full=True)
    for round_ in range(6):
        with fresh_store.begin() as conn:
            _behind_the_watermarks(conn)
        with fresh_store.begin() as conn:
            for _ in range(rng.randint(1, 6)):
                value = rng.choice(logins)
                conn.execute(
                    sa.text(
                        "insert into identifiers (customer_id, kind, value, norm, first_seen, source)"
                        " values (:c, 'login', :v, :v, :t, 'test') on conflict do nothing"
                    ),
                    {"c": rng.choice(profiles), "v": value, "t": T0},
                )
            if rng.random() < 0.5:
                new = f"n{round_}"
                profiles.append(new)
                conn.execute(
                    sa.text("insert into customers (customer_id, email, created_at) values (:c, :e, :t)"),
                    {"c": new, "e": rng.choice(emails).upper(), "t": T0 + timedelta(days=40 + round_)},
                )
            if rng.random() < 0.6:
                conn.execute(
                    sa.text("update customers set email = :e, phone = :p where customer_id = :c"),
                    {
                        "c": rng.choice(profiles),
                        "e": rng.choice([*emails, None]),
                        "p": rng.choice([*phones, None]),
                    },
                )
        if rng.random() < 0.3:
            exclude(fresh_store, "login", rng.choice(logins), reason="test")
        incremental = resolve(fresh_store, SETTINGS)
        assert not incremental.full
        got = _persons(fresh_store)
        resolve(fresh_store, SETTINGS, full=True)
        assert got == _persons(fresh_store), f"round {round_}"


def test_a_long_chain_is_one_person_named_by_its_earliest_profile(fresh_store: Engine) -> None:
    """Twelve profiles in a chain (each shares a login with the next), the earliest-created one in the
    middle and the ranks falling towards both ends: labels need several rounds to travel the chain, and
    the whole chain — and only it — becomes one person named by the earliest profile."""
    order = [11, 9, 7, 5, 3, 1, 0, 2, 4, 6, 8, 10]  # days after T0 each profile was created, along the chain
    _customers(
        fresh_store, *[(f"k{i:02d}", None, None, d) for i, d in enumerate(order)], ("alone", None, None, 0)
    )
    with fresh_store.begin() as conn:
        for i in range(len(order) - 1):
            for cid in (f"k{i:02d}", f"k{i + 1:02d}"):
                conn.execute(
                    sa.text(
                        "insert into identifiers (customer_id, kind, value, norm, first_seen, source)"
                        " values (:c, 'login', :v, :v, :t, 'test')"
                    ),
                    {"c": cid, "v": f"link-{i}", "t": T0},
                )
    result = resolve(fresh_store, SETTINGS, full=True)
    assert result.persons.rounds >= 3
    assert _persons(fresh_store) == {f"k{i:02d}": "k06" for i in range(len(order))}


def _cycle_persons_compared(
    engine: Engine, at: datetime, settings: IdentitySettings
) -> tuple[str, dict, dict]:
    """(how the cycle found its persons, the persons it stored, the persons as of *at* from scratch)."""
    with transaction(engine) as tx:
        refresh(tx)
        stats = cycle_persons(tx, at, settings)
        got = dict(
            tx.execute(
                "select customer_id, person_id from cycle_persons where cycle_at = %(at)s", {"at": at}
            ).fetchall()
        )
        tx.execute("delete from cycle_persons where cycle_at = %(at)s", {"at": at})
    with transaction(engine) as tx:
        persons_as_of(tx.raw, at, settings, table="_expected")
        expected = dict(tx.execute("select customer_id, person_id from _expected").fetchall())
        tx.execute("drop table _expected")
    return stats.source, got, expected


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_a_cycle_takes_its_persons_from_the_current_ones_as_of_its_time(
    fresh_store: Engine, seed: int
) -> None:
    """Rounds of random changes (identifiers first seen over ten days, some over-shared, new and changed
    profiles, exclusions); after each, cycles at random decision times before, inside and after those
    days: the persons a cycle decides with — taken from the current persons, brought up to date, with
    only the profiles holding later values recomputed — equal the persons as of its time computed from
    scratch, and the current persons the cycle updated equal a full resolve's."""
    import random

    rng = random.Random(seed)
    settings = IdentitySettings(max_profiles_per_value=3)
    emails = [f"u{i}@x.com" for i in range(10)]
    logins = [f"login-{i}" for i in range(12)]
    profiles = [f"p{i:02d}" for i in range(30)]
    _customers(fresh_store, *[(p, rng.choice([*emails, None]), None, rng.randint(0, 5)) for p in profiles])
    resolve(fresh_store, settings, full=True)
    sources = []
    for round_ in range(5):
        with fresh_store.begin() as conn:
            _behind_the_watermarks(conn)
            for _ in range(rng.randint(2, 8)):
                conn.execute(
                    sa.text(
                        "insert into identifiers (customer_id, kind, value, norm, first_seen, source)"
                        " values (:c, 'login', :v, :v, :t, 'test') on conflict do nothing"
                    ),
                    {
                        "c": rng.choice(profiles),
                        "v": rng.choice(logins),
                        "t": T0 + timedelta(hours=rng.randint(0, 240)),
                    },
                )
            if rng.random() < 0.5:
                profiles.append(new := f"n{round_}")
                conn.execute(
                    sa.text("insert into customers (customer_id, email, created_at) values (:c, :e, :t)"),
                    {"c": new, "e": rng.choice(emails).upper(), "t": T0 + timedelta(days=rng.randint(0, 10))},
                )
            if rng.random() < 0.5:
                conn.execute(
                    sa.text("update customers set email = :e where customer_id = :c"),
                    {"c": rng.choice(profiles), "e": rng.choice([*emails, None])},
                )
        if rng.random() < 0.3:
            exclude(fresh_store, "login", rng.choice(logins), reason="test")
        for hours in sorted(rng.sample(range(-24, 264), 3)):
            at = T0 + timedelta(hours=hours)
            source, got, expected = _cycle_persons_compared(fresh_store, at, settings)
            assert got == expected, f"round {round_}, T = {at}"
            sources.append(source)
        current = _persons(fresh_store)
        resolve(fresh_store, settings, full=True)
        assert current == _persons(fresh_store), f"round {round_}"
    # every cycle took the current persons (a few dozen profiles are far below the fall-back limit)
    assert all(s.startswith("current persons updated") for s in sources), sources
    assert any(not s.endswith(" 0 profile(s) recomputed as of T") for s in sources), sources


def test_the_first_cycle_resolves_the_current_persons_in_full(fresh_store: Engine) -> None:
    """Before any ``baton identity resolve``, the first cycle stores the current persons in full (what
    the Marketing view reads) and decides with those of its time: a profile whose shared value was first
    seen after T is its own person in that cycle, and one of the person in the next."""
    _customers(fresh_store, ("a", "ann@x.com", None, 0), ("b", "Ann@X.com", None, 1), ("c", None, None, 0))
    with fresh_store.begin() as conn:
        conn.execute(
            sa.text(
                "insert into identifiers (customer_id, kind, value, norm, first_seen, source)"
                " values ('c', 'email', 'ann@x.com', 'ann@x.com', :t, 'test')"
            ),
            {"t": T0 + timedelta(days=5)},
        )
    assert _persons(fresh_store) == {}
    source, got, expected = _cycle_persons_compared(fresh_store, T0 + timedelta(days=2), SETTINGS)
    assert source == "current persons computed in full, 3 profile(s) recomputed as of T"
    assert got == expected == {"a": "a", "b": "a"}
    assert _persons(fresh_store) == {"a": "a", "b": "a", "c": "a"}
    source, got, expected = _cycle_persons_compared(fresh_store, T0 + timedelta(days=6), SETTINGS)
    assert source.startswith("current persons updated for") and source.endswith(
        " 0 profile(s) recomputed as of T"
    )
    assert got == expected == {"a": "a", "b": "a", "c": "a"}


def test_a_backfill_far_behind_the_observations_computes_its_persons_in_full(
    fresh_store: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More than a quarter of the linked profiles (and more than REUSE_MIN) hold values first seen after
    T: the cycle computes its persons as of T from every shared value, with the same result."""
    import baton.identity.store as store

    monkeypatch.setattr(store, "REUSE_MIN", 1)
    _customers(
        fresh_store, ("a", "ann@x.com", None, 0), ("b", "Ann@X.com", None, 1), ("c", "bo@x.com", None, 0)
    )
    with fresh_store.begin() as conn:
        conn.execute(
            sa.text(
                "insert into identifiers (customer_id, kind, value, norm, first_seen, source)"
                " values ('c', 'login', 'bo', 'bo', :t, 'test'), ('b', 'login', 'bo', 'bo', :t, 'test')"
            ),
            {"t": T0 + timedelta(days=5)},
        )
    resolve(fresh_store, SETTINGS, full=True)
    source, got, expected = _cycle_persons_compared(fresh_store, T0 + timedelta(days=2), SETTINGS)
    assert source == "as of T" and got == expected == {"a": "a", "b": "a"}
