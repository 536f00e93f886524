"""WebSocket transport: adapts WebSocket messages to a ProtocolSession and back. Nothing more."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from voice_server import protocol
from voice_server.engines import EngineHub
from voice_server.metrics import VoiceMetrics
from voice_server.session import ProtocolSession
from voice_server.settings import Settings

log = logging.getLogger(__name__)

CLOSE_TRY_AGAIN_LATER = 1013


class SessionCounter:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0


async def serve_websocket(
    websocket: WebSocket,
    settings: Settings,
    hub: EngineHub,
    counter: SessionCounter,
    metrics: VoiceMetrics,
) -> None:
    await websocket.accept()
    send_lock = asyncio.Lock()

    async def send_json(message: dict[str, Any]) -> None:
        async with send_lock:
            if websocket.application_state is WebSocketState.CONNECTED:
                await websocket.send_json(message)

    async def send_bytes(data: bytes) -> None:
        async with send_lock:
            if websocket.application_state is WebSocketState.CONNECTED:
                await websocket.send_bytes(data)

    if counter.active >= counter.limit:
        await send_json(
            protocol.ErrorMsg(
                code="server_busy", message="Too many sessions; try again later.", fatal=True
            ).model_dump(mode="json")
        )
        await websocket.close(code=CLOSE_TRY_AGAIN_LATER)
        return

    counter.active += 1
    metrics.active_sessions.inc()
    session = ProtocolSession(settings, hub, send_json, send_bytes, observe=metrics.observe)
    reason = "client"
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
        reason = "error"
        log.exception("websocket session failed")
    finally:
        counter.active -= 1
        metrics.active_sessions.dec()
        with contextlib.suppress(Exception):
            await session.close(reason)
        if websocket.application_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close()
