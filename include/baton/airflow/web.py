"""The FastAPI app that the Baton plugin mounts at ``/baton`` in the Airflow API server.

``GET /baton/unsubscribe/{token}`` shows a confirmation page with a button;
``POST /baton/unsubscribe/{token}`` (the page's button, or a mail client's RFC 8058
one-click POST with ``List-Unsubscribe=One-Click``) records the opt-out.  A forged or
altered token gets 400 and changes nothing.
"""

from __future__ import annotations

import html
import logging
from typing import Any

log = logging.getLogger(__name__)


def create_app() -> Any:
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import HTMLResponse

    app = FastAPI(title="Baton", docs_url=None, redoc_url=None)

    def _claim(token: str) -> Any:
        from baton.delivery.unsubscribe import secret_from_env, verify_token
        from baton.errors import ConfigError

        try:
            return verify_token(secret_from_env(), token)
        except ConfigError as exc:
            log.error("unsubscribe is not configured: %s", exc)
            raise HTTPException(503, "unsubscribe is not configured on this server") from None
        except ValueError:
            raise HTTPException(400, "this unsubscribe link is not valid") from None

    @app.get("/unsubscribe/{token}", response_class=HTMLResponse)
    def confirm(token: str) -> str:
        claim = _claim(token)
        what = html.escape(f"{claim.channel} messages about {claim.topic}")
        return (
            "<!doctype html><html><body style='font-family:sans-serif;max-width:32em;margin:3em auto'>"
            f"<h1>Unsubscribe</h1><p>Stop {what}?</p>"
            f"<form method='post'><button type='submit'>Unsubscribe</button></form></body></html>"
        )

    @app.post("/unsubscribe/{token}", response_class=HTMLResponse)
    def unsubscribe(token: str) -> str:
        from baton.airflow.hooks.store import store_engine
        from baton.delivery.feedback import record_unsubscribe

        claim = _claim(token)
        record_unsubscribe(store_engine(), claim)
        return "<!doctype html><html><body><p>You are unsubscribed.</p></body></html>"

    return app
