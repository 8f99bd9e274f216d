"""Batches waiting for a cycle that never ran are reported (``baton status`` and the cycle's log),
never silently left behind."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from baton.arbitration.status import stranded_batches

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
T = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


def _stranded_store(engine: Engine) -> None:
    """Cycle T-1h never ran; T-2h and T ran.  ``promo`` and ``cart`` fed T-1h; ``news`` fed T-2h."""
    with engine.begin() as conn:
        for at, status in ((T - timedelta(hours=2), "decided"), (T, "decided")):
            conn.execute(
                sa.text("insert into cycles (cycle_at, status, decided_at) values (:at, :s, now())"),
                {"at": at, "s": status},
            )
        for campaign, at, rows, decided in (
            ("promo", T - timedelta(hours=1), 7, None),
            ("cart", T - timedelta(hours=1), 3, None),
            ("news", T - timedelta(hours=2), 5, T - timedelta(hours=2)),
            ("late", T + timedelta(hours=1), 2, None),  # feeds the next cycle: waits normally
        ):
            conn.execute(
                sa.text(
                    "insert into candidate_batches (campaign_id, cycle_at, data_interval_start,"
                    " data_interval_end, row_count, decided_cycle_at) values (:c, :at, :s, :at, :n, :d)"
                ),
                {"c": campaign, "at": at, "s": at - timedelta(hours=1), "n": rows, "d": decided},
            )


def test_stranded_batches_are_found(fresh_store: Engine) -> None:
    _stranded_store(fresh_store)
    found = stranded_batches(fresh_store)
    assert [(s.campaign_id, s.cycle_at, s.rows) for s in found] == [
        ("cart", T - timedelta(hours=1), 3),
        ("promo", T - timedelta(hours=1), 7),
    ]
    assert stranded_batches(fresh_store, before=T - timedelta(hours=1)) == []


def test_baton_status_reports_them_with_the_backfill_to_run(fresh_store: Engine) -> None:
    _stranded_store(fresh_store)
    env = dict(os.environ, BATON_DATABASE_URL=fresh_store.url.render_as_string(hide_password=False))
    proc = subprocess.run(
        [sys.executable, "-m", "baton", "status", "--dags", str(ROOT / "dags")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    text = " ".join(proc.stdout.split())
    assert "promo: 7 candidate row(s) wait for cycle 2026-03-02T11:00:00+00:00, which never ran" in text
    assert "cart: 3 candidate row(s)" in text
    # the cycle run deciding T-1h has the logical date T-2h (its interval's start)
    assert (
        "--dag-id baton_arbitration --from-date 2026-03-02T10:00:00+00:00 --to-date 2026-03-02T10:00:00+00:00"
        in text
    )


@pytest.fixture()
def airflow_store(fresh_store: Engine, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """The store as tasks see it.  Resolved once here, in the test's setup: Airflow configures logging
    (replacing the root logger's handlers) the first time a connection is looked up, which inside the
    test would remove pytest's log capture."""
    from baton.airflow.hooks.store import store_engine

    monkeypatch.setenv("BATON_DATABASE_URL", fresh_store.url.render_as_string(hide_password=False))
    store_engine()
    return fresh_store


def test_the_cycles_log_names_them(airflow_store: Engine, caplog) -> None:  # type: ignore[no-untyped-def]
    from baton.airflow.tasks import cycle

    _stranded_store(airflow_store)
    at = T + timedelta(hours=1)
    context = {"data_interval_start": T, "data_interval_end": at}
    with caplog.at_level(logging.WARNING, logger="baton.airflow.tasks.cycle"):
        cycle.begin(ROOT / "dags", {"expected": [], "late": []}, context)
    text = " ".join(caplog.text.split())
    assert "batches wait for cycles that never ran" in text
    assert "promo: 7 candidate row(s) wait for cycle 2026-03-02T11:00:00+00:00" in text
