"""Who used what, and caps that outlive a session: on SQLite and PostgreSQL.

Every ledger row of a signed-in session carries the opaque subject and classroom of its token
(never a name; NULL in open mode) and the school key of the engine that did the work. A student's,
classroom's or key's cap starts each period from what the ledger holds, so a second session, in
this process or after a restart, starts with the first one's use counted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

import voice_server.app as app_module
from pipelines.pipeline import Engines
from tests.fakes import ScriptedLLM
from tests.session.conftest import new_session, scripted_engines, send
from voice_server.app import create_app
from voice_server.auth.tokens import Role
from voice_server.ledger import repository
from voice_server.ledger.caps import SharedCaps
from voice_server.ledger.records import Attribution
from voice_server.ledger.writer import UsageLedger
from voice_server.settings import BillingSettings, Settings
from voice_server.store import migrate
from voice_server.store.engine import create_engine
from voice_server.store.schema import usage_records

SECRET = "shared-caps-tests-secret-" + "0123456789abcdef" * 3


class KeyedLLM(ScriptedLLM):
    """An engine a school's key pays for (issue 12 gives real engines a key id)."""

    key_id = "key_school_1"

    def __init__(self) -> None:
        super().__init__("Four. Well done.", token_delay_s=0.001)
        self.calls = 0

    async def stream(self, request):  # type: ignore[no-untyped-def]
        self.calls += 1
        async for piece in super().stream(request):
            yield piece


@pytest.fixture
async def ledger(engine: AsyncEngine) -> AsyncIterator[UsageLedger]:
    await migrate.ensure_schema(engine)
    ledger = UsageLedger(engine, instance="server-a", flush_interval_s=0.01)
    await ledger.start()
    yield ledger
    await ledger.aclose()


async def _owners(engine: AsyncEngine, session_id: str) -> set[tuple[str, str | None, str | None, str | None]]:
    c = usage_records.c
    query = select(c.kind, c.student_id, c.classroom_id, c.key_id).where(c.session_id == session_id).distinct()
    async with engine.connect() as connection:
        return {tuple(row) for row in await connection.execute(query)}  # type: ignore[misc]


async def _one_typed_session(ledger: UsageLedger, shared: SharedCaps, who: Attribution, engines: Engines, turns=1):
    session, wire = new_session(engines, ledger=ledger, who=who, shared_caps=shared)
    await session.start()
    await send(session, type="session.start")
    for i in range(turns):
        await send(session, type="input.text", text="What is two plus two?")
        await _nth(wire, "turn.done", i + 1)
    await send(session, type="session.end")
    ended = await wire.until("session.ended")
    wire.assert_valid()
    return ended["session_id"], wire


async def _nth(wire, kind: str, n: int) -> None:
    for _ in range(2000):
        if len(wire.of_type(kind)) >= n:
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"fewer than {n} {kind} in {wire.log}")


async def _llm_tokens(engine: AsyncEngine, column: repository.ScopeColumn, owner: str) -> int:
    totals = await repository.scope_totals(engine, column, owner, None)
    return sum(t.units for t in totals if t.kind.value.startswith("llm_"))


async def test_a_students_second_session_starts_with_the_first_sessions_use_counted(ledger: UsageLedger):
    who = Attribution(student_id="stu_3kZ", classroom_id="cls_7")
    generous = BillingSettings(student_caps={"llm_tokens": 1_000_000, "period": "day"})  # type: ignore[arg-type]
    first_id, _ = await _one_typed_session(ledger, SharedCaps(generous, None, ledger), who, scripted_engines())
    used = await _llm_tokens(ledger.engine, "student_id", "stu_3kZ")
    assert used > 0 and await _owners(ledger.engine, first_id) >= {("llm_completion_tokens", "stu_3kZ", "cls_7", None)}

    # Another process (a restart, or before this one knew the student): the cap leaves 5 tokens,
    # less than any call needs, so the second session's first call is never made.
    tight = BillingSettings(student_caps={"llm_tokens": used + 5, "period": "day"})  # type: ignore[arg-type]
    engines = scripted_engines()
    llm = engines.llm
    before = len(llm.requests)  # type: ignore[attr-defined]
    _, wire = await _one_typed_session(ledger, SharedCaps(tight, None, ledger), who, engines)
    [reached] = wire.of_type("usage.cap_reached")
    assert (reached["scope"], reached["kind"], reached["used"], reached["period"]) == ("student", "llm", used, "day")
    assert wire.of_type("turn.done")[0]["status"] == "cap_reached"
    assert len(llm.requests) == before  # type: ignore[attr-defined]

    # Another student of the same classroom starts from nothing: the cap is per student.
    quotas = await SharedCaps(tight, None, ledger).for_session(Attribution(student_id="stu_9Qp", classroom_id="cls_7"))
    [quota] = quotas["llm"]
    assert (quota.scope, quota.owner, quota.units("llm")) == ("student", "stu_9Qp", 0)


async def test_an_engine_on_a_school_key_is_capped_by_the_key_and_its_rows_name_the_key(ledger: UsageLedger):
    engines = scripted_engines()
    llm = KeyedLLM()
    engines = Engines(engines.vad, engines.stt, llm, engines.tts)
    keys = BillingSettings(key_caps={"llm_tokens": 200, "period": "month"})  # type: ignore[arg-type]
    shared = SharedCaps(keys, None, ledger)
    who = Attribution(student_id="stu_a1", classroom_id=None)
    session_id, wire = await _one_typed_session(ledger, shared, who, engines, turns=8)
    statuses = [m["status"] for m in wire.of_type("turn.done")]
    assert statuses[0] == "completed" and statuses[-1] == "cap_reached"
    [reached] = wire.of_type("usage.cap_reached")
    assert reached["scope"] == "key" and reached["kind"] == "llm"
    calls = llm.calls
    # A second student on the same key: the key has nothing left for them either.
    _, wire = await _one_typed_session(ledger, shared, Attribution(student_id="stu_b2"), engines)
    assert wire.of_type("turn.done")[0]["status"] == "cap_reached" and llm.calls == calls
    assert await _llm_tokens(ledger.engine, "key_id", "key_school_1") <= 200
    owners = await _owners(ledger.engine, session_id)
    assert ("llm_prompt_tokens", "stu_a1", None, "key_school_1") in owners
    assert all(key is None for kind, _, _, key in owners if not kind.startswith("llm_"))  # speech: no key


# ------------------------------------------------------------------------- through the real app


def _app(database_url: str, tmp_path: Path, **settings: object) -> FastAPI:
    app = create_app(
        Settings(
            lesson_plans=False,
            storage={"url": database_url, "data_dir": tmp_path},  # type: ignore[arg-type]
            **({"auth": {"secret": SECRET}} | settings),  # type: ignore[arg-type]
        )
    )
    hub = app.state.hub

    async def scripted() -> None:
        hub.engines = scripted_engines()
        hub._ready.set()

    hub.load = scripted
    return app


def _session_over_websocket(http: TestClient, headers: dict[str, str]) -> str:
    with http.websocket_connect("/v1/ws", headers=headers) as ws:
        assert ws.receive_json()["type"] == "server.hello"
        ws.send_json({"type": "session.start"})
        started = ws.receive_json()
        assert started["type"] == "session.started", started
        ws.send_json({"type": "input.text", "text": "What is two plus two?"})
        _until(ws, "usage.updated")
        ws.send_json({"type": "session.end"})
        _until(ws, "session.ended")
    return str(started["session_id"])


def _until(ws, kind: str) -> dict:  # type: ignore[no-untyped-def]
    while True:  # reply audio arrives as binary frames between the messages
        text = ws.receive().get("text")
        if text is not None and (message := json.loads(text))["type"] == kind:
            return message  # type: ignore[no-any-return]


def _owners_now(database_url: str, session_id: str) -> set:
    async def read() -> set:
        engine = create_engine(database_url)
        try:
            return await _owners(engine, session_id)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_every_row_of_a_signed_in_session_carries_its_subject_and_classroom(database_url, tmp_path):
    app = _app(database_url, tmp_path)
    issuer = app.state.auth.issuer
    student = issuer.mint(Role.STUDENT, "stu_Xy12", classroom="cls_42")
    # A teacher trying the page is recorded under their own opaque subject, with no classroom.
    teacher = issuer.mint(Role.TEACHER, "tch_Ab34")
    with TestClient(app, base_url="http://127.0.0.1:8765") as http:
        sessions = [_session_over_websocket(http, {"Authorization": f"Bearer {t}"}) for t in (student, teacher)]
    # Read after the server stopped: its last units are written by then.
    owners = _owners_now(database_url, sessions[0])
    assert owners and {(s, c, k) for _, s, c, k in owners} == {("stu_Xy12", "cls_42", None)}
    assert {(s, c) for _, s, c, _ in _owners_now(database_url, sessions[1])} == {("tch_Ab34", None)}


def test_the_webrtc_offer_hands_the_peer_its_callers_ids(database_url, tmp_path, monkeypatch):
    app = _app(database_url, tmp_path)
    seen = []

    async def offer(sdp, who=None):
        seen.append(who)
        return "peer_1", "v=0\r\n"

    monkeypatch.setattr(app_module, "validate_offer", lambda sdp, kind, **_: sdp)
    app.state.webrtc.offer = offer
    token = app.state.auth.issuer.mint(Role.STUDENT, "stu_Rt56", classroom="cls_9")
    with TestClient(app, base_url="http://127.0.0.1:8765") as http:
        response = http.post(
            "/v1/webrtc/offer", json={"type": "offer", "sdp": "v=0"}, headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200, response.text
    assert seen == [Attribution(student_id="stu_Rt56", classroom_id="cls_9")]


def test_in_open_mode_nobody_signed_in_so_the_rows_name_nobody(database_url, tmp_path):
    app = _app(database_url, tmp_path, auth={"mode": "open"})
    with TestClient(app, base_url="http://127.0.0.1:8765") as http:
        session_id = _session_over_websocket(http, {})
    owners = _owners_now(database_url, session_id)
    assert owners and {(s, c, k) for _, s, c, k in owners} == {(None, None, None)}
