"""Revoked tokens, served by a real app on each backend: a signed-out token, or every token of a
subject an admin revoked, is refused on HTTP, the WebRTC offer and the WebSocket.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from tests.auth.conftest import AuthApp, make_app
from voice_server.auth.revocation import Revocations
from voice_server.auth.tokens import Role

OFFER = {"type": "offer", "sdp": "not sdp"}


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[AuthApp]:
    app = make_app(tmp_path / "data", database_url=database_url)
    with TestClient(app, base_url="http://127.0.0.1:8765") as http:
        yield AuthApp(app, http)


def _ws_accepts(api: AuthApp, path: str = "/v1/ws", **headers: str) -> bool:
    headers.setdefault("host", "127.0.0.1:8765")
    try:
        with api.http.websocket_connect(path, headers=headers) as ws:
            return ws.receive_json()["type"] == "server.hello"
    except WebSocketDisconnect:
        return False


def test_a_signed_out_token_is_refused_on_http_webrtc_and_the_websocket(api: AuthApp):
    student = api.bearer(Role.STUDENT, subject="stu_a")
    other_tab = api.bearer(Role.STUDENT, subject="stu_a")
    ticket = api.http.post("/v1/auth/ws-ticket", headers=student).json()["ticket"]

    assert api.http.post("/v1/auth/sign-out", headers=student).status_code == 204
    refused = api.http.get("/v1/personas", headers=student)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
    assert api.http.post("/v1/webrtc/offer", headers=student, json=OFFER).status_code == 401
    assert not _ws_accepts(api, **student)
    # A ticket bought with the token before it was revoked is refused too.
    assert not _ws_accepts(api, f"/v1/ws?ticket={ticket}", origin="http://127.0.0.1:8765")
    assert api.http.post("/v1/auth/sign-out", headers=student).status_code == 401

    assert api.http.get("/v1/personas", headers=other_tab).status_code == 200  # only that one token
    assert _ws_accepts(api, **other_tab)


def test_an_admin_revokes_every_token_of_a_subject_and_later_sign_ins_work(api: AuthApp):
    # The revocation is dated a minute ago (the clock is injected), so a token signed now is later.
    a_minute_ago = datetime.now(UTC) - timedelta(minutes=1)
    api.app.state.auth.revocations = Revocations(api.app.state.database, clock=lambda: a_minute_ago)
    teacher = api.bearer(Role.TEACHER, subject="tch_gone", now=a_minute_ago - timedelta(minutes=5))
    assert api.http.post("/v1/auth/signin-links", headers=teacher).status_code == 200

    revoked = api.http.post("/api/v1/subjects/tch_gone/revoke", headers=api.bearer(Role.ADMIN))
    assert revoked.status_code == 200 and revoked.json()["subject_id"] == "tch_gone"
    assert datetime.fromisoformat(revoked.json()["not_before"]) == a_minute_ago.replace(microsecond=0)
    for call in (
        lambda: api.http.post("/v1/auth/signin-links", headers=teacher),
        lambda: api.http.post("/v1/webrtc/offer", headers=teacher, json=OFFER),
        lambda: api.http.get("/v1/personas", headers=teacher),
    ):
        response = call()
        assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_token"
    assert not _ws_accepts(api, **teacher)
    someone_else = api.bearer(Role.TEACHER, subject="tch_other")
    assert api.http.get("/v1/personas", headers=someone_else).status_code == 200

    signed_in_again = api.bearer(Role.TEACHER, subject="tch_gone")
    assert api.http.post("/v1/auth/signin-links", headers=signed_in_again).status_code == 200
    assert _ws_accepts(api, **signed_in_again)
