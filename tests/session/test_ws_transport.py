"""The WebSocket transport in-process (Starlette's test client, no network): it only adapts, and
it takes and gives back slots of the one admission point."""

from __future__ import annotations

import pytest
from fastapi import FastAPI, WebSocket
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.session.conftest import FakeHub, scripted_engines
from voice_server.admission import Admission
from voice_server.metrics import VoiceMetrics
from voice_server.settings import Settings
from voice_server.transports.ws import serve_websocket


def _app(admission: Admission) -> FastAPI:
    app = FastAPI()
    hub = FakeHub(scripted_engines())

    @app.websocket("/v1/ws")
    async def endpoint(websocket: WebSocket) -> None:
        await serve_websocket(websocket, Settings(lesson_plans=False), hub, admission, VoiceMetrics())  # type: ignore[arg-type]

    return app


def test_a_typed_turn_over_the_websocket_and_the_slot_is_given_back():
    admission = Admission(1)
    with TestClient(_app(admission)) as client, client.websocket_connect("/v1/ws") as ws:
        assert ws.receive_json()["type"] == "server.hello"
        assert admission.active == 1
        ws.send_json({"type": "session.start"})
        assert ws.receive_json()["type"] == "session.started"
        ws.send_bytes(b"\x00\x01\x02")
        assert ws.receive_json()["code"] == "invalid_audio_frame"
        ws.send_json({"type": "input.text", "text": "What is two plus two?"})
        while (message := ws.receive())["type"] == "websocket.send" and "turn.done" not in (
            message.get("text") or ""
        ):
            pass
        assert ws.receive_json()["type"] == "usage.updated"  # the session's running usage, after each turn
        ws.send_json({"type": "session.end"})
        assert ws.receive_json()["type"] == "session.ended"
    assert admission.active == 0


def test_a_full_server_refuses_with_server_busy_and_1013():
    admission = Admission(1)
    taken = None
    with TestClient(_app(admission)) as client:
        with client.websocket_connect("/v1/ws") as first:
            first.receive_json()
            with client.websocket_connect("/v1/ws") as second:
                error = second.receive_json()
                assert error["code"] == "server_busy" and error["fatal"] is True
                with pytest.raises(WebSocketDisconnect) as closed:
                    second.receive_json()
                taken = closed.value.code
    assert taken == 1013 and admission.active == 0


def test_a_connection_that_never_starts_a_session_is_told_and_closed():
    admission = Admission(1, start_timeout_s=0.2)
    with TestClient(_app(admission)) as client, client.websocket_connect("/v1/ws") as ws:
        assert ws.receive_json()["type"] == "server.hello"
        error = ws.receive_json()
        assert error["code"] == "session_start_timeout" and error["fatal"] is True
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1008
        assert admission.active == 0
