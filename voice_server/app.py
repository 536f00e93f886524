"""HTTP application: health, readiness, the published protocol and the WebSocket endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI, WebSocket
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from voice_server import __version__
from voice_server.engines import EngineHub
from voice_server.metrics import VoiceMetrics
from voice_server.protocol import protocol_schema
from voice_server.settings import Settings
from voice_server.ws_transport import SessionCounter, serve_websocket

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, on_ready: Callable[[], None] | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = VoiceMetrics()
    hub = EngineHub(settings, on_fallback=metrics.fallback)
    counter = SessionCounter(settings.limits.max_sessions)
    schema = protocol_schema()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
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
        try:
            yield
        finally:
            loader.cancel()
            await hub.aclose()

    app = FastAPI(title="Convergio Voice", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.hub = hub
    app.state.metrics = metrics

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

    @app.websocket("/v1/ws")
    async def websocket_endpoint(websocket: WebSocket) -> None:
        await serve_websocket(websocket, settings, hub, counter, metrics)

    return app
