"""HTTP application: health, readiness, the published protocol and the WebSocket endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST

import web_client
from pipelines.personas import PERSONAS
from voice_server import __version__
from voice_server.admission import SESSION_START_TIMEOUT_S, Admission
from voice_server.engines import EngineHub
from voice_server.ledger.api import router as usage_router
from voice_server.ledger.writer import UsageLedger
from voice_server.loop_monitor import watch_loop_lag
from voice_server.metrics import VoiceMetrics
from voice_server.protocol import protocol_schema
from voice_server.settings import Settings
from voice_server.store.engine import create_engine
from voice_server.store.migrate import ensure_schema
from voice_server.transports.webrtc import SdpError, ServerBusy, WebRtcManager, validate_offer
from voice_server.transports.ws import serve_websocket

log = logging.getLogger(__name__)

WEB_CLIENT_DIR = Path(web_client.__file__).resolve().parent


def create_app(settings: Settings | None = None, *, on_ready: Callable[[], None] | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = VoiceMetrics()
    hub = EngineHub(settings, on_fallback=metrics.fallback)
    # Every WebSocket session and WebRTC peer holds one of the same max_sessions slots.
    admission = Admission(
        settings.limits.max_sessions,
        start_timeout_s=getattr(settings.limits, "session_start_timeout_s", SESSION_START_TIMEOUT_S),
        gauge=metrics.active_sessions,
    )
    storage = settings.storage
    database = create_engine(storage.database_url)  # connects on first use, in the lifespan
    ledger = UsageLedger(
        database, instance=storage.instance, flush_interval_s=storage.flush_interval_s,
        max_pending=storage.max_pending,
    )
    webrtc = WebRtcManager(settings, hub, metrics, admission, ledger=ledger)
    schema = protocol_schema()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # A new database gets its schema; an outdated one stops the start (`serve` says how to fix it).
        await ensure_schema(database)
        await ledger.start()
        async def load() -> None:
            try:
                await hub.load()
            except Exception:
                log.exception("engines failed to load; /readyz stays 503")
                return
            if on_ready:
                on_ready()

        # Load in the background so /healthz answers while models load; /readyz says when done.
        loader = asyncio.create_task(load())
        lag_watch = asyncio.create_task(watch_loop_lag(metrics.loop_lag))
        try:
            yield
        finally:
            loader.cancel()
            lag_watch.cancel()
            await webrtc.aclose()
            await hub.aclose()
            await ledger.aclose()  # after the sessions closed: their last units are written
            await database.dispose()

    app = FastAPI(title="Convergio Voice", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.hub = hub
    app.state.metrics = metrics
    app.state.webrtc = webrtc
    app.state.admission = admission
    app.state.ledger = ledger
    app.state.prices = settings.billing.load_prices()

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> JSONResponse:
        if hub.ready:
            return JSONResponse({"status": "ready"})
        state = "failed" if hub.error else "loading"
        body = {"status": state} | ({"error": hub.error} if hub.error else {})
        return JSONResponse(body, status_code=503)

    @app.get("/v1/protocol.json", tags=["protocol"])
    async def protocol_json() -> JSONResponse:
        return JSONResponse(schema)

    @app.get("/metrics", tags=["ops"])
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/personas", tags=["protocol"])
    async def personas() -> list[dict[str, str]]:
        return [{"id": p.id, "name": p.name, "subject": p.subject} for p in PERSONAS.values()]

    @app.post("/v1/webrtc/offer", tags=["webrtc"])
    async def webrtc_offer(request: Request) -> JSONResponse:
        limit = settings.webrtc.max_sdp_bytes + 1024
        if int(request.headers.get("content-length") or 0) > limit:
            return _http_error(400, "sdp_too_large", f"The offer is larger than {limit} bytes.")
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                return _http_error(400, "sdp_too_large", f"The offer is larger than {limit} bytes.")
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError
        except ValueError:
            return _http_error(400, "invalid_json", 'Send {"type": "offer", "sdp": "..."} as JSON.')
        try:
            sdp = validate_offer(
                data.get("sdp"), data.get("type"), max_bytes=settings.webrtc.max_sdp_bytes,
                allowed_networks=settings.webrtc.allowed_candidate_networks,
            )
        except SdpError as exc:
            return _http_error(400, "invalid_sdp", str(exc))
        if not hub.ready:
            return _http_error(503, "server_not_ready", "Models are still loading; try again shortly.")
        try:
            peer_id, answer = await webrtc.offer(sdp)
        except ServerBusy:
            return _http_error(503, "server_busy", "Too many sessions; try again later.")
        return JSONResponse({"type": "answer", "sdp": answer, "peer_id": peer_id})

    @app.websocket("/v1/ws")
    async def websocket_endpoint(websocket: WebSocket) -> None:
        await serve_websocket(websocket, settings, hub, admission, metrics, ledger=ledger)

    app.include_router(usage_router)

    # The browser client: static files, no build step, no CDN.
    app.mount("/", StaticFiles(directory=WEB_CLIENT_DIR, html=True), name="web_client")
    return app


def _http_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
