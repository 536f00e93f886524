"""WebSocket transport: WebSocket messages to ProtocolSession calls and back. Nothing more."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from voice_server.admission import Admission
from voice_server.classrooms.live import ClassroomLive
from voice_server.engines import EngineHub
from voice_server.ledger.caps import SharedCaps
from voice_server.ledger.records import Attribution
from voice_server.ledger.writer import UsageLedger
from voice_server.metrics import VoiceMetrics
from voice_server.protocol import EndReason
from voice_server.session import ProtocolSession, fatal_error
from voice_server.settings import Settings

log = logging.getLogger(__name__)

CLOSE_POLICY_VIOLATION = 1008
CLOSE_TRY_AGAIN_LATER = 1013


async def serve_websocket(
    websocket: WebSocket,
    settings: Settings,
    hub: EngineHub,
    admission: Admission,
    metrics: VoiceMetrics,
    *,
    ledger: UsageLedger | None = None,
    who: Attribution | None = None,
    shared_caps: SharedCaps | None = None,
    classrooms: ClassroomLive | None = None,
) -> None:
    await websocket.accept()
    send_lock = asyncio.Lock()

    async def send_text(text: str) -> None:
        async with send_lock:
            if websocket.application_state is WebSocketState.CONNECTED:
                await websocket.send_text(text)

    async def send_bytes(data: bytes) -> None:
        async with send_lock:
            if websocket.application_state is WebSocketState.CONNECTED:
                await websocket.send_bytes(data)

    async def hang_up(code: int = 1000) -> None:
        if websocket.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close(code=code)

    async def on_expired() -> None:
        await session.abort("session_start_timeout", "No session.start arrived in time; closing.")
        await hang_up(CLOSE_POLICY_VIOLATION)  # the pending receive then sees the disconnect

    slot = admission.admit("websocket", on_expired=on_expired)
    if slot is None:
        await send_text(fatal_error("server_busy", "Too many sessions; try again later."))
        await hang_up(CLOSE_TRY_AGAIN_LATER)
        return

    session = ProtocolSession(
        settings, hub, send_text, send_bytes, observe=metrics.observe, on_started=slot.session_started,
        ledger=ledger, who=who, shared_caps=shared_caps, classrooms=classrooms, hang_up=hang_up,
    )
    reason: EndReason = "client"
    try:
        await session.start()
        while not session.ended:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            if (text := message.get("text")) is not None:
                await session.on_text(text)
            elif (data := message.get("bytes")) is not None:
                await session.on_bytes(data)
    except WebSocketDisconnect:
        pass
    except Exception:
        if websocket.application_state is WebSocketState.CONNECTED:
            reason = "error"
            log.exception("websocket session failed")
        # else: we hung up (start timeout) and Starlette refuses the socket from then on
    finally:
        slot.release()
        with contextlib.suppress(Exception):
            await session.close(reason)
        await hang_up()
