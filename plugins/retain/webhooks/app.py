"""The receiver as a FastAPI app; ``retain_plugin.py`` mounts it on Airflow's api-server at ``/retain``.

Airflow does not authenticate plugin apps: every route here checks the provider's signature before it
reads anything, and stores the events (one ledger transaction each) before it answers 2xx.

    POST /webhooks/sendgrid         SendGrid Event Webhook (JSON array, ECDSA-signed)
    POST /webhooks/twilio/status    Twilio status callbacks (form, X-Twilio-Signature)
    POST /webhooks/twilio/inbound   Twilio inbound messages: STOP / START keywords
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from retain.ledger.store import Ledger
from retain.webhooks import sendgrid, twilio
from retain.webhooks.errors import Rejected
from retain.webhooks.settings import WebhookSettings

log = logging.getLogger(__name__)

URL_PREFIX = "/retain"
MAX_BODY_BYTES = 32 * 1024 * 1024  # SendGrid batches stay far below this; anything larger is refused
SETTINGS_TTL_S = 60.0


class _Lazy:
    """Open the ledger and read the settings on first use, not at import: the plugin module is imported
    by every Airflow process, most of which never receive a webhook."""

    def __init__(
        self,
        ledger: Ledger | Callable[[], Ledger] | None,
        settings: WebhookSettings | Callable[[], WebhookSettings] | None,
        airflow_connections: bool,
    ) -> None:
        self._ledger = ledger
        self._settings = settings
        self._airflow_connections = airflow_connections
        self._lock = threading.Lock()
        self._cached: tuple[float, WebhookSettings] | None = None

    def ledger(self) -> Ledger:
        with self._lock:
            if not isinstance(self._ledger, Ledger):
                self._ledger = self._ledger() if callable(self._ledger) else Ledger.open()
            return self._ledger

    def settings(self) -> WebhookSettings:
        if isinstance(self._settings, WebhookSettings):
            return self._settings
        if callable(self._settings):
            return self._settings()
        now = time.monotonic()
        cached = self._cached
        if cached is None or now - cached[0] > SETTINGS_TTL_S:
            try:
                fresh = WebhookSettings.from_environment(airflow_connections=self._airflow_connections)
            except ValueError as exc:  # names the variable or connection, never a secret
                raise Rejected(503, f"webhook configuration error: {exc}") from None
            cached = (now, fresh)
            self._cached = cached
        return cached[1]


async def _body(request: Request) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise Rejected(413, f"body larger than {MAX_BODY_BYTES} bytes")
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise Rejected(413, f"body larger than {MAX_BODY_BYTES} bytes")
    return body


def _refuse(route: str, exc: Rejected) -> JSONResponse:
    level = logging.ERROR if exc.status >= 500 else logging.WARNING
    log.log(level, "retain webhook %s refused %s: %s", route, exc.status, exc.reason)
    return JSONResponse({"detail": exc.reason}, status_code=exc.status)


def _storage_failed(route: str, exc: Exception) -> JSONResponse:
    # The provider retries a non-2xx answer; events already stored replay as no-ops.
    log.error(
        "retain webhook %s: ledger unavailable (%s), asking the provider to retry", route, type(exc).__name__
    )
    return JSONResponse(
        {"detail": "events could not be stored; retry later"}, status_code=503, headers={"Retry-After": "60"}
    )


def _twilio_url(request: Request, settings: WebhookSettings) -> str:
    return twilio.public_url(
        str(request.url),
        request.scope.get("root_path", ""),
        request.url.path,
        request.url.query,
        settings.public_base_url,
    )


def create_app(
    *,
    ledger: Ledger | Callable[[], Ledger] | None = None,
    settings: WebhookSettings | Callable[[], WebhookSettings] | None = None,
    airflow_connections: bool = False,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The receiver. ``ledger``: a Ledger or a factory (default ``Ledger.open()`` on first request);
    ``settings``: fixed settings or a factory (default: the environment, re-read every minute);
    ``airflow_connections``: also look connections up through Airflow (inside the api-server)."""
    lazy = _Lazy(ledger, settings, airflow_connections)
    app = FastAPI(
        title="Retain provider webhooks",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.retain = lazy

    @app.post("/webhooks/sendgrid")
    async def sendgrid_events(request: Request) -> Response:
        route = "sendgrid"
        try:
            body = await _body(request)
            cfg = await run_in_threadpool(lazy.settings)  # may ask Airflow's database once a minute
            sendgrid.verify(
                body,
                request.headers.get(sendgrid.SIGNATURE_HEADER),
                request.headers.get(sendgrid.TIMESTAMP_HEADER),
                cfg.sendgrid_public_key,
                now=clock(),
                max_age_s=cfg.max_age_s,
                max_skew_s=cfg.max_skew_s,
            )
        except Rejected as exc:
            return _refuse(route, exc)
        try:
            events = sendgrid.parse(body)
        except Rejected as exc:
            # Signed by SendGrid, so resending it would not make it readable: acknowledge and report.
            log.error("retain webhook sendgrid: signed body not usable, nothing stored: %s", exc.reason)
            return JSONResponse(
                {"stored": 0, "replayed": 0, "rejected": [{"index": None, "reason": exc.reason}]},
                status_code=200,
            )
        try:
            result = await run_in_threadpool(lambda: sendgrid.handle_batch(lazy.ledger(), events))
        except SQLAlchemyError as exc:
            return _storage_failed(route, exc)
        for problem in result.rejected:
            log.warning(
                "retain webhook sendgrid: event %s not stored: %s", problem["index"], problem["reason"]
            )
        log.info(
            "retain webhook sendgrid: %s events, %s stored, %s replayed, %s rejected, suppressions +%s -%s",
            len(events),
            result.stored,
            result.replayed,
            len(result.rejected),
            result.suppressions_added,
            result.suppressions_removed,
        )
        # 2xx even when some (or all) events were unusable: SendGrid resends any non-2xx batch for up to
        # 24 hours, and resending would not make them usable. Only a storage failure (503) asks for that.
        return JSONResponse(result.as_json(), status_code=200)

    async def _twilio(
        request: Request, route: str, work: Callable[[Any], Any]
    ) -> tuple[Any, Response | None]:
        try:
            body = await _body(request)
            cfg = await run_in_threadpool(lazy.settings)
            params = twilio.verify(
                _twilio_url(request, cfg),
                body,
                request.headers.get(twilio.SIGNATURE_HEADER),
                request.headers.get(twilio.SETTINGS_HEADER),
                cfg.twilio_auth_token,
            )
            return await run_in_threadpool(lambda: work(params)), None
        except Rejected as exc:
            return None, _refuse(route, exc)
        except SQLAlchemyError as exc:
            return None, _storage_failed(route, exc)

    @app.post("/webhooks/twilio/status")
    async def twilio_status(request: Request) -> Response:
        hint = request.query_params.get("delivery_id")
        applied, refused = await _twilio(
            request, "twilio/status", lambda p: twilio.apply_status(lazy.ledger(), p, hint)
        )
        if refused is not None:
            return refused
        log.info("retain webhook twilio/status: %s", twilio.summary(applied))
        return Response(status_code=204)

    @app.post("/webhooks/twilio/inbound")
    async def twilio_inbound(request: Request) -> Response:
        applied, refused = await _twilio(
            request, "twilio/inbound", lambda p: twilio.apply_inbound(lazy.ledger(), p)
        )
        if refused is not None:
            return refused
        log.info("retain webhook twilio/inbound: %s", twilio.summary(applied))
        return Response(twilio.EMPTY_TWIML, status_code=200, media_type="text/xml")

    return app
