"""Benchmark: delivery throughput of one worker process through the whole outbox path.

N messages per channel wait in the outbox; one worker (this process) runs
``deliver_shard``: claim (with lease) → render (sandboxed Jinja) → send → record, each
message's outcome committed on its own.  The receivers — an aiosmtpd SMTP server and the
Twilio/FCM-shaped HTTP provider emulator — run in a separate process on loopback, so
the figures are the worker's.  Prints messages per second per channel.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

from baton.delivery.channels import adapter_for
from baton.delivery.outbox import DeliverySettings, deliver_shard
from baton.spec import Campaign
from baton.store import engine as store_engine
from baton.store.migrate import upgrade
from baton_dev.sinks import ProviderEmulator, SmtpSink

console = Console()
ROOT = Path(__file__).resolve().parents[1]

SERVERS = """
import sys, time, tempfile
from baton_dev.sinks import SmtpSink, ProviderEmulator
d = tempfile.mkdtemp()
smtp = SmtpSink(maildir=d + "/maildir"); smtp.start()
http = ProviderEmulator(); http.start()
print(smtp.port, http.port, flush=True)
sys.stdin.read()
"""


def _campaign() -> Campaign:
    return Campaign.model_validate(
        {
            "id": "bench",
            "name": "Bench",
            "owner": "bench",
            "schedule": "@hourly",
            "start_date": "2026-01-01",
            "channels": ["email", "sms", "push"],
            "audience": {"sql": "select 1"},
            "message": {
                "email": {
                    "subject": "{{ first_name }}, {{ item_name }} is waiting",
                    "html": "<h1>Hi {{ first_name }}</h1><p>{{ item_name }} is back in stock.</p>"
                    "<p><a href='{{ unsubscribe_url }}'>unsubscribe</a></p>",
                },
                "sms": {"text": "{{ item_name }} is back, {{ first_name }}"},
                "push": {"title": "Back in stock", "body": "{{ item_name }}"},
            },
        }
    )


def main(messages: int = 3000) -> None:
    base = store_engine.server_url()
    name = f"baton_bench_{uuid.uuid4().hex[:8]}"
    url = base.set(database=name)
    store_engine.ensure_database(url)
    engine = sa.create_engine(url)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(ROOT / p) for p in ("include", "dev")))
    servers = subprocess.Popen(
        [sys.executable, "-c", SERVERS], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        upgrade(engine)
        assert servers.stdout is not None
        smtp_port, http_port = (int(x) for x in servers.stdout.readline().split())
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "insert into customers (customer_id, email, phone, push_token, first_name)"
                f" select 'p' || i, 'p' || i || '@example.com', '+1555' || lpad(i::text, 7, '0'), 'tok' || i, 'N' || i"
                f" from generate_series(1, {messages}) i"
            )
            for ch in ("email", "sms", "push"):
                conn.execute(
                    sa.text(
                        "insert into messages (cycle_at, customer_id, campaign_id, channel, send_at, payload)"
                        " select :at, 'p' || i, 'bench', :ch, :at, jsonb_build_object('item_name', 'Boots ' || i)"
                        " from generate_series(1, :n) i"
                    ),
                    {"at": now, "ch": ch, "n": messages},
                )
        smtp_conn = SmtpSink(port=smtp_port).connection()
        emu = ProviderEmulator(port=http_port)
        conns = {"email": smtp_conn, "sms": emu.sms_connection(), "push": emu.push_connection()}
        settings = DeliverySettings(
            max_send_delay=timedelta(hours=2), batch_size=500, unsubscribe_secret=b"bench-secret-" + b"x" * 32
        )
        table = Table(title=f"delivery, one worker process, {messages:,} messages per channel")
        for col in ("channel", "sent", "seconds", "messages/s"):
            table.add_column(col, justify="right" if col != "channel" else "left")
        for ch in ("email", "sms", "push"):
            adapter = adapter_for(ch, conns[ch])
            t0 = time.perf_counter()
            stats = deliver_shard(
                engine,
                channel=ch,
                shard=0,
                shards=1,
                campaigns={"bench": _campaign()},
                adapter=adapter,
                templates_dir=ROOT / "dags" / "templates",
                settings=settings,
            )
            took = time.perf_counter() - t0
            table.add_row(ch, f"{stats.sent:,}", f"{took:.1f}", f"{stats.sent / took:,.0f}")
        console.print(table)
    finally:
        if servers.stdin:
            servers.stdin.close()
        servers.terminate()
        engine.dispose()
        store_engine.drop_database(url)
