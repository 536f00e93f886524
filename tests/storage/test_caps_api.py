"""GET/PUT/DELETE /api/v1/caps: caps read and set at run time, kept in the database, on SQLite and
PostgreSQL. A cap set through the API is what the next session gets, counted at the engine, and
it outlives a restart; a session already running keeps the caps it started with."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from pipelines.caps import UsageCaps
from pipelines.frames import UsageKind
from pipelines.quota import ScopeCaps
from tests.session.conftest import scripted_engines
from voice_server.app import create_app
from voice_server.auth.tokens import Role
from voice_server.ledger import cap_store
from voice_server.ledger.caps import SharedCaps
from voice_server.ledger.records import Attribution
from voice_server.ledger.writer import UsageLedger
from voice_server.settings import BillingSettings, Settings
from voice_server.store import migrate

SECRET = "caps-api-tests-secret-" + "0123456789abcdef" * 3
PRICES = (
    'currency = "EUR"\n[[price]]\nprovider = "fake"\nmodel = "*"\nkind = "llm_completion_tokens"\n'
    'minor_units = 1\nper = 100\nrounding = "pro_rata_up"\n'
)


def _app(database_url: str, tmp_path: Path, **settings: Any) -> FastAPI:
    """A real app on the test's database, its engines scripted (the LLM's requests are counted)."""
    app = create_app(
        Settings(
            lesson_plans=False,
            storage={"url": database_url, "data_dir": tmp_path},  # type: ignore[arg-type]
            auth={"secret": SECRET},  # type: ignore[arg-type]
            **settings,
        )
    )
    hub = app.state.hub

    async def scripted() -> None:
        hub.engines = scripted_engines()
        hub._ready.set()

    hub.load = scripted
    return app


def _bearer(app: FastAPI, role: Role, subject: str, classroom: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.state.auth.issuer.mint(role, subject, classroom=classroom)}"}


def _until(ws: Any, kind: str) -> list[dict[str, Any]]:
    """Every message up to the first `kind`, that one included (audio frames skipped)."""
    seen = []
    while True:
        text = ws.receive().get("text")
        if text is not None:
            seen.append(json.loads(text))
            if seen[-1]["type"] == kind:
                return seen


def _typed_turn(http: TestClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    with http.websocket_connect("/v1/ws", headers=headers) as ws:
        assert ws.receive_json()["type"] == "server.hello"
        ws.send_json({"type": "session.start"})
        started = ws.receive_json()
        assert started["type"] == "session.started", started
        ws.send_json({"type": "input.text", "text": "What is two plus two?"})
        seen = _until(ws, "turn.done")
        ws.send_json({"type": "session.end"})
        _until(ws, "session.ended")
    return seen


def _llm_calls(app: FastAPI) -> int:
    return len(app.state.hub.engines.llm.requests)


def test_caps_are_read_set_and_unset_and_each_says_where_it_comes_from(database_url: str, tmp_path: Path):
    app = _app(database_url, tmp_path, billing={"student_caps": {"llm_tokens": 5000, "period": "day"}})
    admin = _bearer(app, Role.ADMIN, "adm_1")
    with TestClient(app, base_url="http://127.0.0.1:8765") as http:
        def call(method: str, path: str, body: object = None, headers: dict[str, str] = admin) -> Any:
            return http.request(method, path, json=body, headers=headers)

        caps = call("GET", "/api/v1/caps").json()
        assert caps["currency"] is None
        assert caps["session"] == {
            "caps": {"stt_audio_ms": None, "llm_tokens": None, "tts_chars": None},
            "source": "settings", "updated_at": None, "updated_by": None,
        }
        assert caps["student"]["caps"]["llm_tokens"] == 5000 and caps["student"]["caps"]["period"] == "day"
        assert caps["student"]["source"] == "settings" and caps["student"]["owners"] == []

        scope = call("PUT", "/api/v1/caps/classroom", {"llm_tokens": 2000})
        assert scope.status_code == 200, scope.text
        assert scope.json()["source"] == "scope" and scope.json()["updated_by"] == "adm_1"
        assert scope.json()["caps"] == {
            "stt_audio_ms": None, "llm_tokens": 2000, "tts_chars": None, "cost_minor": None,
            "period": "month",
        }
        # One classroom's own caps replace the scope's whole: no token cap for it, a TTS cap instead.
        own = call("PUT", "/api/v1/caps/classroom/cls_4b", {"tts_chars": 100, "period": "day"}).json()
        assert (own["scope"], own["owner_id"], own["source"]) == ("classroom", "cls_4b", "owner")
        assert own["caps"]["tts_chars"] == 100 and own["caps"]["llm_tokens"] is None
        teacher = _bearer(app, Role.TEACHER, "tch_1", classroom="cls_4b")
        assert call("GET", "/api/v1/caps/classroom/cls_4b", headers=teacher).json() == own
        assert call("GET", "/api/v1/caps/classroom/cls_9z", headers=teacher).status_code == 403
        other = call("GET", "/api/v1/caps/classroom/cls_9z").json()
        assert other["source"] == "scope" and other["caps"]["llm_tokens"] == 2000
        assert call("GET", "/api/v1/caps/student/stu_1").json()["source"] == "settings"
        session = call("PUT", "/api/v1/caps/session", {"llm_tokens": 300}).json()
        assert session["source"] == "scope" and session["caps"]["llm_tokens"] == 300

        caps = call("GET", "/api/v1/caps").json()
        assert caps["session"] == session
        assert caps["classroom"]["source"] == "scope" and caps["classroom"]["owners"] == [own]

        # Refused: what the settings' models refuse (named, in the server's error shape) and a
        # cap in cost on a server with no price table.
        for path, body in [
            ("/api/v1/caps/session", {"period": "day"}),  # a session has no period...
            ("/api/v1/caps/session", {"cost_minor": 5}),  # ...nor a cost cap
            ("/api/v1/caps/classroom", {"llm_tokens": -1}),
            ("/api/v1/caps/classroom", {"llm_tokens": "many"}),
            ("/api/v1/caps/student/stu_1", {"period": "week"}),
            ("/api/v1/caps/planet", {"llm_tokens": 1}),
            ("/api/v1/caps/session/anyone", {"llm_tokens": 1}),
        ]:
            refused = call("PUT", path, body)
            assert refused.status_code == 422, (path, body, refused.text)
            assert refused.json()["error"]["code"] == "invalid_request"
        no_prices = call("PUT", "/api/v1/caps/classroom/cls_4b", {"cost_minor": 500})
        assert no_prices.status_code == 400
        assert no_prices.json()["error"]["code"] == "cost_cap_needs_prices"
        assert "CONVERGIO_BILLING__PRICE_TABLE" in no_prices.json()["error"]["message"]
        assert call("GET", "/api/v1/caps/classroom/cls_4b").json() == own  # nothing changed

        unset = call("DELETE", "/api/v1/caps/classroom/cls_4b").json()
        assert unset["source"] == "scope" and unset["caps"]["llm_tokens"] == 2000
        assert call("DELETE", "/api/v1/caps/classroom/cls_4b").json()["error"]["code"] == "no_stored_caps"
        assert call("DELETE", "/api/v1/caps/classroom").json()["source"] == "settings"
        assert call("DELETE", "/api/v1/caps/session").json()["source"] == "settings"
        assert call("DELETE", "/api/v1/caps/session").status_code == 404
        assert call("GET", "/api/v1/caps").json()["classroom"]["owners"] == []


def test_with_a_price_table_a_cost_cap_is_accepted_in_its_currency(database_url: str, tmp_path: Path):
    (tmp_path / "prices.toml").write_text(PRICES)
    app = _app(database_url, tmp_path, billing={"price_table": tmp_path / "prices.toml"})
    with TestClient(app, base_url="http://127.0.0.1:8765") as http:
        admin = _bearer(app, Role.ADMIN, "adm_1")
        put = http.put("/api/v1/caps/classroom/cls_1", json={"cost_minor": 500}, headers=admin)
        assert put.status_code == 200 and put.json()["caps"]["cost_minor"] == 500
        assert http.get("/api/v1/caps", headers=admin).json()["currency"] == "EUR"


def test_a_cap_set_through_the_api_is_what_the_next_session_gets_and_it_outlives_a_restart(
    database_url: str, tmp_path: Path
):
    app = _app(database_url, tmp_path)
    with TestClient(app, base_url="http://127.0.0.1:8765") as http:
        admin = _bearer(app, Role.ADMIN, "adm_1")
        student = _bearer(app, Role.STUDENT, "stu_capped", classroom="cls_1")
        assert [m["status"] for m in _typed_turn(http, student) if m["type"] == "turn.done"] == ["completed"]
        body = {"llm_tokens": 0, "period": "day"}
        set_ = http.put("/api/v1/caps/student/stu_capped", json=body, headers=admin)
        assert set_.status_code == 200, set_.text

    # A restart: a new app on the same database.
    app = _app(database_url, tmp_path)
    with TestClient(app, base_url="http://127.0.0.1:8765") as http:
        admin = _bearer(app, Role.ADMIN, "adm_1")
        kept = http.get("/api/v1/caps/student/stu_capped", headers=admin).json()
        assert (kept["source"], kept["caps"]["llm_tokens"], kept["updated_by"]) == ("owner", 0, "adm_1")

        seen = _typed_turn(http, _bearer(app, Role.STUDENT, "stu_capped", classroom="cls_1"))
        [reached] = [m for m in seen if m["type"] == "usage.cap_reached"]
        assert (reached["scope"], reached["kind"], reached["limit"]) == ("student", "llm", 0)
        assert seen[-1]["status"] == "cap_reached"
        assert _llm_calls(app) == 0  # the model got no call
        # Another student of the same classroom is not capped.
        free = _typed_turn(http, _bearer(app, Role.STUDENT, "stu_free", classroom="cls_1"))
        calls = _llm_calls(app)
        assert free[-1]["status"] == "completed" and calls > 0

        # Every session's own cap, set now, applies to the next session of anyone.
        assert http.put("/api/v1/caps/session", json={"llm_tokens": 0}, headers=admin).status_code == 200
        seen = _typed_turn(http, _bearer(app, Role.STUDENT, "stu_free", classroom="cls_1"))
        assert [m["scope"] for m in seen if m["type"] == "usage.cap_reached"] == ["session"]
        assert seen[-1]["status"] == "cap_reached" and _llm_calls(app) == calls


# ------------------------------------------------------------------- under the API: SharedCaps


@pytest.fixture
async def ledger(engine: AsyncEngine) -> AsyncIterator[UsageLedger]:
    await migrate.ensure_schema(engine)
    ledger = UsageLedger(engine, instance="server-a", flush_interval_s=60)
    yield ledger
    await ledger.aclose()


async def test_a_changed_cap_applies_to_sessions_started_after_it_and_a_running_one_keeps_its_own(
    ledger: UsageLedger,
):
    billing = BillingSettings(session_caps={"tts_chars": 900})  # type: ignore[arg-type]
    shared = SharedCaps(billing, None, ledger)
    who = Attribution(student_id="stu_a", classroom_id="cls_1")
    first = await shared.open(who)
    assert first.session == UsageCaps(tts_chars=900) and first.quotas["llm"] == []  # the settings'

    await cap_store.put(ledger.engine, "student", None, ScopeCaps(llm_tokens=1000, period="day"), by="adm_1")
    await cap_store.put(ledger.engine, "session", None, UsageCaps(tts_chars=50), by="adm_1")
    second = await shared.open(who)
    [running] = second.quotas["llm"]
    assert second.session == UsageCaps(tts_chars=50) and running.caps.llm_tokens == 1000

    await cap_store.put(ledger.engine, "student", "stu_a", ScopeCaps(llm_tokens=10, period="day"), by="adm_1")
    third = await shared.open(who)
    [lowered] = third.quotas["llm"]
    assert lowered.caps.llm_tokens == 10 and running.caps.llm_tokens == 1000  # the running one keeps its own
    # ...and both count one use: what the running session used counts against the new cap too.
    line = (UsageKind.LLM_COMPLETION_TOKENS, "fake", "scripted")
    running.charge(line, 8)
    assert lowered.units("llm") == 8 and lowered.refusal({line: 3}) is not None
    assert running.refusal({line: 3}) is None
    # Another student: the scope's cap, not stu_a's.
    [other] = (await shared.open(Attribution(student_id="stu_b"))).quotas["llm"]
    assert (other.owner, other.caps.llm_tokens, other.units("llm")) == ("stu_b", 1000, 0)


async def test_a_stored_cost_cap_on_a_server_with_no_price_table_stops_the_session_start(ledger: UsageLedger):
    # Stored while the server had a price table; it restarted without one. Capping nothing would
    # be silent: the session does not start (the session turns this into `server_not_ready`).
    await cap_store.put(ledger.engine, "classroom", "cls_1", ScopeCaps(cost_minor=5), by="adm_1")
    shared = SharedCaps(BillingSettings(), None, ledger)
    with pytest.raises(RuntimeError, match="no price table"):
        await shared.open(Attribution(student_id="stu_a", classroom_id="cls_1"))
    assert (await shared.open(Attribution(student_id="stu_a", classroom_id="cls_2"))).quotas["llm"] == []


def test_the_served_openapi_documents_the_caps_routes(database_url: str, tmp_path: Path):
    app = _app(database_url, tmp_path)
    spec = app.openapi()
    paths = spec["paths"]
    assert set(paths["/api/v1/caps/{scope}/{owner_id}"]) == {"get", "put", "delete"}
    assert set(paths["/api/v1/caps/{scope}"]) == {"put", "delete"}
    session_body = paths["/api/v1/caps/session"]["put"]["requestBody"]["content"]["application/json"]
    session_body = session_body["schema"]
    owner_body = paths["/api/v1/caps/{scope}/{owner_id}"]["put"]["requestBody"]["content"]["application/json"]
    # (FastAPI may name them UsageCaps-Input, ScopeCaps-Input where a response uses them too)
    assert "/UsageCaps" in session_body["$ref"] and "/ScopeCaps" in owner_body["schema"]["$ref"]
    assert paths["/api/v1/caps"]["get"]["responses"]["200"]["content"]["application/json"]["schema"][
        "$ref"
    ].endswith("/CapsInForce")
    for path, operations in paths.items():
        if path.startswith("/api/v1/caps"):
            for method, operation in operations.items():
                assert operation["security"] == [{"bearerAuth": []}], f"{method} {path}"
