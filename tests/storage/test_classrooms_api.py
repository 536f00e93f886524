"""Classrooms through the HTTP API and a student's WebSocket session, on SQLite and PostgreSQL:
a teacher creates one and gets a join code, a student joins with it and talks to one of its
tutors, and the teacher follows the session and pauses, guides, caps or ends it. Each teacher
and admin action is in the audit log, which only admins read. The engines are scripted; the
browser test (tests/e2e/test_teacher_console_browser.py) runs the same flow on the real ones."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from pipelines.personas import PERSONAS
from tests.session.conftest import scripted_engines
from voice_server.app import create_app
from voice_server.auth.tokens import Role
from voice_server.settings import Settings
from voice_server.store.schema import guidance_notes, transcript_lines

SECRET = "classroom-api-tests-secret-" + "0123456789abcdef" * 3
TEACHER, OTHER_TEACHER, ADMIN = "tch_one", "tch_two", "adm_one"
PERSONA = next(iter(PERSONAS))


def _app(database_url: str, tmp_path: Path) -> FastAPI:
    app = create_app(
        Settings(
            lesson_plans=False,
            storage={"url": database_url, "data_dir": tmp_path},  # type: ignore[arg-type]
            auth={"secret": SECRET},  # type: ignore[arg-type]
        )
    )
    hub = app.state.hub

    async def scripted() -> None:
        hub.engines = scripted_engines()
        hub._ready.set()

    hub.load = scripted
    return app


@pytest.fixture
def http(database_url: str, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(_app(database_url, tmp_path)) as client:
        yield client


def _as(http: TestClient, role: Role, subject: str, classroom: str | None = None) -> dict[str, str]:
    token = http.app.state.auth.issuer.mint(role, subject, classroom=classroom)  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {token}"}


def _create(http: TestClient, **body: Any) -> dict[str, Any]:
    response = http.post(
        "/api/v1/classrooms",
        headers=_as(http, Role.TEACHER, TEACHER),
        json={"name": "Year 4 maths", "personas": [PERSONA], **body},
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def _join(http: TestClient, code: str, nickname: str | None = "Sam") -> dict[str, Any]:
    response = http.post("/v1/auth/join", json={"code": code, "nickname": nickname})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _until(ws: Any, kind: str) -> list[dict[str, Any]]:
    seen = []
    while True:
        text = ws.receive().get("text")
        if text is not None:
            seen.append(json.loads(text))
            if seen[-1]["type"] == kind:
                return seen


def _eventually(probe: Any, timeout_s: float = 10.0) -> Any:
    """The probe's first non-None answer; fails after a generous timeout (not a speed check)."""
    deadline = time.monotonic() + timeout_s
    while (answer := probe()) is None:
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.05)
    return answer


def _audit(http: TestClient) -> list[dict[str, Any]]:
    response = http.get("/api/v1/audit", headers=_as(http, Role.ADMIN, ADMIN))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_a_teacher_creates_a_classroom_and_a_student_joins_it_with_the_code(http: TestClient) -> None:
    room = _create(http, caps={"llm_tokens": 5000}, patience_ms=4000, retention_days=14)
    assert len(room["join_code"]) == 6 and room["join_code"].isupper()
    assert (
        room["personas"] == [PERSONA] and room["caps"]["llm_tokens"] == 5000 and room["retention_days"] == 14
    )

    # Typed as a child would: lower case, with a space.
    code = room["join_code"].lower()
    joined = _join(http, f"{code[:3]} {code[3:]}")
    assert joined["role"] == "student"
    assert joined["classroom"]["id"] == room["id"]
    assert [p["id"] for p in joined["classroom"]["personas"]] == [PERSONA]
    claims = http.app.state.auth.issuer.verify(joined["access_token"])  # type: ignore[attr-defined]
    assert claims.classroom == room["id"] and claims.subject.startswith("stu_")
    assert "Sam" not in joined["access_token"]  # the nickname stays in the classroom, not the token

    wrong = http.post("/v1/auth/join", json={"code": "ZZZZZZ"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_code"
    assert [e["action"] for e in _audit(http)] == ["classroom.created"]


def test_each_teacher_sees_only_their_own_classrooms(http: TestClient) -> None:
    mine = _create(http)
    theirs = http.post(
        "/api/v1/classrooms", headers=_as(http, Role.TEACHER, OTHER_TEACHER), json={"name": "Other class"}
    ).json()
    listed = http.get("/api/v1/classrooms", headers=_as(http, Role.TEACHER, TEACHER)).json()
    assert [r["id"] for r in listed] == [mine["id"]]
    assert (
        http.get(f"/api/v1/classrooms/{theirs['id']}", headers=_as(http, Role.TEACHER, TEACHER)).status_code
        == 403
    )
    everything = http.get("/api/v1/classrooms", headers=_as(http, Role.ADMIN, ADMIN)).json()
    assert {r["id"] for r in everything} == {mine["id"], theirs["id"]}


def test_bad_classroom_settings_are_refused_by_name(http: TestClient) -> None:
    teacher = _as(http, Role.TEACHER, TEACHER)
    for body, field in (
        ({"name": "  "}, "name"),
        ({"name": "x", "personas": ["nobody"]}, "personas"),
        ({"name": "x", "retention_days": 0}, "retention_days"),
        ({"name": "x", "patience_ms": 10}, "patience_ms"),
        ({"name": "x", "caps": {"llm_tokens": -1}}, "caps"),
    ):
        response = http.post("/api/v1/classrooms", headers=teacher, json=body)
        assert response.status_code == 422, body
        assert field in response.text


def test_the_teacher_pauses_guides_caps_and_ends_a_students_session(http: TestClient) -> None:
    database = http.app.state.database  # type: ignore[attr-defined]
    room = _create(http, caps={"tts_chars": 100_000})
    joined = _join(http, room["join_code"])
    student = {"Authorization": f"Bearer {joined['access_token']}"}
    teacher = _as(http, Role.TEACHER, TEACHER)
    base = f"/api/v1/classrooms/{room['id']}/sessions"
    with http.websocket_connect("/v1/ws", headers=student) as ws:
        assert ws.receive_json()["type"] == "server.hello"
        other = next((p for p in PERSONAS if p != PERSONA), None)
        if other is not None:  # a tutor the classroom does not offer is refused
            ws.send_json({"type": "session.start", "persona": other})
            refused = ws.receive_json()
            assert refused["type"] == "error" and refused["code"] == "persona_not_allowed"
        ws.send_json({"type": "session.start"})
        started = ws.receive_json()
        assert started["type"] == "session.started" and started["persona"]["id"] == PERSONA
        session_id = started["session_id"]
        ws.send_json({"type": "input.text", "text": "What is two plus two?"})
        done = _until(ws, "turn.done")[-1]

        # The console's view is made from the session's events, which cross the event bus (with
        # PostgreSQL, a round trip through the database): it catches up within moments.
        def caught_up() -> list[dict[str, Any]] | None:
            view = http.get(base, headers=teacher).json()
            return view if view and view[0]["turns"] and len(view[0]["transcript"]) >= 2 else None

        view = _eventually(caught_up)
        assert [s["session_id"] for s in view] == [session_id]
        assert view[0]["nickname"] == "Sam" and view[0]["status"] == "live"
        said = [(line["speaker"], line["text"]) for line in view[0]["transcript"]]
        assert ("student", "What is two plus two?") in said and ("tutor", done["reply_text"]) in said
        assert view[0]["turns"][0]["turn_id"] == done["turn_id"]

        assert http.post(f"{base}/{session_id}/pause", headers=teacher).status_code == 202
        assert _until(ws, "session.paused")[-1]["reason"] == "teacher"
        ws.send_json({"type": "input.text", "text": "Hello?"})
        assert _until(ws, "error")[-1]["code"] == "session_paused"
        assert http.post(f"{base}/{session_id}/resume", headers=teacher).status_code == 202
        _until(ws, "session.resumed")

        note = "They are working on fractions; slow down."
        sent = http.post(f"{base}/{session_id}/guidance", headers=teacher, json={"text": note})
        assert sent.status_code == 202
        capped = http.put(f"{base}/{session_id}/caps", headers=teacher, json={"llm_tokens": 1})
        assert capped.status_code == 202
        ws.send_json({"type": "input.text", "text": "Tell me about fractions."})
        turn = _until(ws, "turn.done")
        # The new cap holds from the next call on: the model is not asked again.
        assert turn[-1]["status"] == "cap_reached"
        assert note not in json.dumps(turn)  # the note guides the tutor; the student never hears it

        assert http.post(f"{base}/{session_id}/end", headers=teacher).status_code == 202
        assert _until(ws, "session.ended")[-1]["reason"] == "teacher"

    def ended_in_database() -> list[dict[str, Any]] | None:
        view = http.get(base, headers=teacher).json()
        return view if view[0]["status"] == "ended" else None

    after = _eventually(ended_in_database)
    assert after[0]["end_reason"] == "teacher"
    ended = http.post(f"{base}/{session_id}/pause", headers=teacher)
    assert ended.status_code == 409

    actions = [(e["action"], e["session_id"]) for e in _audit(http)]
    for action in (
        "session.pause",
        "session.resume",
        "session.guidance",
        "session.caps_changed",
        "session.end",
    ):
        assert (action, session_id) in actions
    guidance = next(e for e in _audit(http) if e["action"] == "session.guidance")
    assert note not in json.dumps(guidance)  # the note's text is the student's data, not the audit's
    student_id = http.app.state.auth.issuer.verify(joined["access_token"]).subject  # type: ignore[attr-defined]
    assert guidance["actor_id"] == TEACHER and guidance["target_id"] == student_id

    async def stored() -> tuple[list[Any], list[Any]]:
        async with database.connect() as connection:
            notes = (await connection.execute(select(guidance_notes.c.text))).all()
            lines = (
                await connection.execute(select(transcript_lines.c.speaker, transcript_lines.c.text))
            ).all()
        return list(notes), list(lines)

    notes, lines = http.portal.call(stored)  # type: ignore[attr-defined]
    assert [n[0] for n in notes] == [note]
    assert ("student", "What is two plus two?") in [tuple(x) for x in lines]


def test_another_teacher_a_student_or_nobody_cannot_use_the_console(http: TestClient) -> None:
    room = _create(http)
    joined = _join(http, room["join_code"])
    student = {"Authorization": f"Bearer {joined['access_token']}"}
    other = _as(http, Role.TEACHER, OTHER_TEACHER)
    base = f"/api/v1/classrooms/{room['id']}"
    routes = [
        ("GET", base, None),
        ("GET", f"{base}/sessions", None),
        ("GET", f"{base}/events", None),
        ("POST", f"{base}/close", None),
        ("POST", f"{base}/sessions/sess_x/pause", None),
        ("POST", f"{base}/sessions/sess_x/resume", None),
        ("POST", f"{base}/sessions/sess_x/end", None),
        ("POST", f"{base}/sessions/sess_x/guidance", {"text": "hi"}),
        ("PUT", f"{base}/sessions/sess_x/caps", {"llm_tokens": 1}),
    ]
    for method, path, body in routes:
        for headers, status in ((student, 403), (other, 403), ({}, 401)):
            response = http.request(method, path, headers=headers, json=body)
            assert response.status_code == status, (method, path, status, response.text)
    assert http.post("/api/v1/classrooms", headers=student, json={"name": "mine"}).status_code == 403
    teacher = _as(http, Role.TEACHER, TEACHER)
    assert http.get("/api/v1/audit", headers=teacher).status_code == 403
    assert http.get("/api/v1/audit", headers=student).status_code == 403
    assert http.get("/api/v1/audit").status_code == 401


def test_closing_a_classroom_ends_its_sessions_and_lets_nobody_in(http: TestClient) -> None:
    room = _create(http)
    joined = _join(http, room["join_code"])
    student = {"Authorization": f"Bearer {joined['access_token']}"}
    with http.websocket_connect("/v1/ws", headers=student) as ws:
        ws.receive_json()
        ws.send_json({"type": "session.start"})
        assert ws.receive_json()["type"] == "session.started"
        closed = http.post(f"/api/v1/classrooms/{room['id']}/close", headers=_as(http, Role.TEACHER, TEACHER))
        assert closed.status_code == 200 and closed.json()["closed_at"] is not None
        assert _until(ws, "session.ended")[-1]["reason"] == "classroom_closed"
    assert http.post("/v1/auth/join", json={"code": room["join_code"]}).status_code == 401
    with http.websocket_connect("/v1/ws", headers=student) as ws:
        ws.receive_json()
        ws.send_json({"type": "session.start"})
        refused = ws.receive_json()
        assert refused["type"] == "error" and refused["code"] == "classroom_closed"
    assert "classroom.closed" in [e["action"] for e in _audit(http)]


def test_a_safety_flag_reaches_the_console_and_the_audit_log(http: TestClient) -> None:
    # The console's view is fed by the same events as its stream (the stream itself is read in
    # a real browser in tests/e2e/test_teacher_console_browser.py); asked for JSON, the events
    # route answers with that view's snapshot.
    room = _create(http)
    joined = _join(http, room["join_code"])
    student = {"Authorization": f"Bearer {joined['access_token']}"}
    teacher = _as(http, Role.TEACHER, TEACHER) | {"Accept": "application/json"}
    snapshot = http.get(f"/api/v1/classrooms/{room['id']}/events", headers=teacher).json()
    assert snapshot["type"] == "snapshot" and snapshot["classroom"]["join_code"] == room["join_code"]
    assert snapshot["sessions"] == []
    with http.websocket_connect("/v1/ws", headers=student) as ws:
        ws.receive_json()
        ws.send_json({"type": "session.start"})
        session_id = ws.receive_json()["session_id"]
        ws.send_json({"type": "input.text", "text": "I want to hurt myself."})
        flagged = next(m for m in _until(ws, "turn.done") if m["type"] == "safety.flag")

        def flag_shown() -> dict[str, Any] | None:
            now = http.get(f"/api/v1/classrooms/{room['id']}/events", headers=teacher).json()
            flags = now["sessions"][0]["safety_flags"] if now["sessions"] else []
            return flags[0] if flags else None

        shown = _eventually(flag_shown)
        assert shown["category"] == flagged["category"] and shown["turn_id"] == flagged["turn_id"]
        ws.send_json({"type": "session.end"})
        _until(ws, "session.ended")
    entry = next(e for e in _audit(http) if e["action"] == "safety.flag")
    assert entry["session_id"] == session_id and entry["actor_role"] == "system"
    assert entry["detail"]["category"] == flagged["category"]
    assert "hurt" not in json.dumps(entry)  # the flag, never the child's words
