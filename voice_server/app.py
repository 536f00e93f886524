"""HTTP application: health, readiness, the published protocol and the WebSocket endpoint.

Access (voice_server/auth/): public are /healthz, /readyz, the published specs (/v1/protocol.json,
/openapi.json, /docs) and the web client's static files; sign-in and link redemption take their own
credential. Everything else needs a bearer token: personas, the WebRTC offer and the WebSocket
for every role, /metrics for admins (or the scrape token), usage, caps, provider keys and revocation
for admins; a teacher also reads their own classroom's usage (its students' there) and caps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from fastapi import Depends, FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST

import web_client
from pipelines.personas import PERSONAS
from voice_server import __version__
from voice_server.admission import SESSION_START_TIMEOUT_S, Admission
from voice_server.auth import routes as auth_routes
from voice_server.auth.guard import Authenticator, AuthError, check_open_mode, require, require_metrics_reader
from voice_server.auth.revocation import Revocations
from voice_server.auth.tokens import Claims, Role
from voice_server.auth.websocket import admit_websocket
from voice_server.classrooms import routes as classroom_routes
from voice_server.classrooms.data_routes import router as classroom_data_router
from voice_server.classrooms.retention import RetentionJob
from voice_server.classrooms.bus import bus_for
from voice_server.classrooms.live import ClassroomLive
from voice_server.engines import EngineHub
from voice_server.http_errors import validation_error
from voice_server.keys.resolver import ProviderKeys
from voice_server.keys.routes import router as keys_router
from voice_server.keys.vault import server_secrets
from voice_server.ledger.api import owner_router as owner_usage_router
from voice_server.ledger.api import router as usage_router
from voice_server.ledger.caps import SharedCaps, attribution_of
from voice_server.ledger.caps_api import router as caps_router
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
# Declared public in the OpenAPI, so no route is left without a stated scheme.
_PUBLIC: dict[str, object] = {"security": []}


def create_app(settings: Settings | None = None, *, on_ready: Callable[[], None] | None = None) -> FastAPI:
    settings = settings or Settings()
    check_open_mode(settings.auth, settings.host)  # `serve` says so first; this guards embedding
    auth = Authenticator.from_settings(settings.auth)
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
    auth.revocations = Revocations(database)
    ledger = UsageLedger(
        database, instance=storage.instance, flush_interval_s=storage.flush_interval_s,
        max_pending=storage.max_pending,
    )
    prices = settings.billing.load_prices()
    # Caps per student, classroom and key, shared by their sessions in this process.
    shared_caps = SharedCaps(settings.billing, prices, ledger)
    # Classroom events and teachers' commands cross replicas through the database itself
    # (PostgreSQL LISTEN/NOTIFY); with SQLite there is one process, and they stay in it.
    bus = bus_for(storage.database_url, database)
    classrooms = ClassroomLive(database, bus, instance=storage.instance)
    retention = RetentionJob(database)  # transcripts past their classroom's period: at start, then hourly
    webrtc = WebRtcManager(
        settings, hub, metrics, admission, ledger=ledger, shared_caps=shared_caps, classrooms=classrooms
    )
    schema = protocol_schema()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # A new database gets its schema; an outdated one stops the start (`serve` says how to fix it).
        await ensure_schema(database)
        await ledger.start()
        await bus.start()
        await classrooms.start()
        await retention.start()
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
            await retention.aclose()
            await classrooms.aclose()
            await bus.aclose()
            await ledger.aclose()  # after the sessions closed: their last units are written
            await database.dispose()

    app = FastAPI(
        title="Convergio Voice", version=__version__, lifespan=lifespan, description=_API_DESCRIPTION
    )
    app.state.settings = settings
    app.state.auth = auth
    app.state.hub = hub
    app.state.metrics = metrics
    app.state.webrtc = webrtc
    app.state.admission = admission
    app.state.ledger = ledger
    app.state.database = database
    app.state.prices = prices
    app.state.shared_caps = shared_caps
    app.state.classrooms = classrooms
    app.state.retention = retention
    app.state.keys = ProviderKeys(
        database, lambda: server_secrets(settings.secrets, storage.data_dir),
        privacy_mode=settings.privacy.mode,
    )
    hub.resolve_key = app.state.keys.resolve  # an engine's `key_id` is a school's stored key

    # Who may call what (the module docstring); refusals in the server's usual error shape.
    anyone = require()
    any_role = [Depends(anyone)]
    admin_only = [Depends(require(Role.ADMIN))]

    app.add_exception_handler(RequestValidationError, validation_error)  # named, never echoed

    @app.exception_handler(AuthError)
    async def auth_error(_: Request, exc: AuthError) -> JSONResponse:
        response = _http_error(exc.status, exc.code, exc.message)
        if exc.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        response.headers.update(exc.headers)
        return response

    @app.get("/healthz", tags=["ops"], openapi_extra=_PUBLIC)
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", tags=["ops"], openapi_extra=_PUBLIC)
    async def readyz() -> JSONResponse:
        if hub.ready:
            return JSONResponse({"status": "ready"})
        state = "failed" if hub.error else "loading"
        body = {"status": state} | ({"error": hub.error} if hub.error else {})
        return JSONResponse(body, status_code=503)

    @app.get("/v1/protocol.json", tags=["protocol"], openapi_extra=_PUBLIC)
    async def protocol_json() -> JSONResponse:
        return JSONResponse(schema)

    @app.get("/metrics", tags=["ops"], dependencies=[Depends(require_metrics_reader)])
    async def metrics_endpoint() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/personas", tags=["protocol"], dependencies=any_role)
    async def personas() -> list[dict[str, str]]:
        return [{"id": p.id, "name": p.name, "subject": p.subject} for p in PERSONAS.values()]

    @app.post("/v1/webrtc/offer", tags=["webrtc"], dependencies=any_role)
    async def webrtc_offer(request: Request, claims: Claims = Depends(anyone)) -> JSONResponse:
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
            peer_id, answer = await webrtc.offer(sdp, None if auth.open else attribution_of(claims))
        except ServerBusy:
            return _http_error(503, "server_busy", "Too many sessions; try again later.")
        return JSONResponse({"type": "answer", "sdp": answer, "peer_id": peer_id})

    @app.websocket("/v1/ws")
    async def websocket_endpoint(websocket: WebSocket) -> None:
        claims = await admit_websocket(websocket, auth, bind_host=settings.host)
        if claims is None:
            return
        who = None if auth.open else attribution_of(claims)  # open mode: nobody signed in
        await serve_websocket(
            websocket, settings, hub, admission, metrics, ledger=ledger, who=who, shared_caps=shared_caps,
            classrooms=classrooms,
        )

    app.include_router(usage_router, dependencies=admin_only)
    # These check the role themselves: admins, and teachers for their own classroom only.
    app.include_router(owner_usage_router)
    app.include_router(caps_router)
    app.include_router(auth_routes.router)
    app.include_router(auth_routes.admin_router, dependencies=admin_only)
    app.include_router(keys_router, dependencies=admin_only)
    # Classrooms check roles themselves: teachers their own, admins all; joining is public.
    app.include_router(classroom_routes.router)
    app.include_router(classroom_data_router)

    @app.get("/privacy", tags=["ops"], openapi_extra=_PUBLIC, include_in_schema=True)
    async def privacy() -> Response:
        """The written retention statement: what is kept, for how long, and what never is."""
        return FileResponse(WEB_CLIENT_DIR / "privacy.html", media_type="text/html")

    # The browser client: static files, no build step, no CDN.
    app.mount("/", StaticFiles(directory=WEB_CLIENT_DIR, html=True), name="web_client")
    return app


_API_DESCRIPTION = """Every route but /healthz, /readyz, the published specs and sign-in needs
`Authorization: Bearer <access token>` (scheme bearerAuth). The WebSocket /v1/ws (not an HTTP route,
so not listed here) takes the same header, or from a browser `?ticket=<one-time ticket>` from
POST /v1/auth/ws-ticket; a page from a foreign Origin is refused."""


def _http_error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)
