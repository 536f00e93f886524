"""GET /api/v1/usage: what the ledger holds, per session and per time range, in the served OpenAPI."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.storage.test_ledger import one_turn, turn_done
from voice_server.app import create_app
from voice_server.ledger.api import router
from voice_server.ledger.writer import UsageLedger
from voice_server.settings import Settings
from voice_server.store import migrate


@dataclass
class Api:
    http: httpx.AsyncClient
    ledger: UsageLedger
    app: FastAPI


@pytest.fixture
async def api(engine: AsyncEngine) -> AsyncIterator[Api]:
    await migrate.ensure_schema(engine)
    ledger = UsageLedger(engine, instance="server-a", flush_interval_s=60)
    app = FastAPI()
    app.include_router(router)
    app.state.ledger = ledger
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        yield Api(http, ledger, app)
    await ledger.aclose()


async def test_a_sessions_usage_includes_what_is_still_buffered(api: Api) -> None:
    http, ledger = api.http, api.ledger
    for event in one_turn():
        ledger.observe("sess_a", event)
    ledger.observe("sess_a", turn_done())  # not flushed yet: the endpoint writes it first

    response = await http.get("/api/v1/usage/sessions/sess_a")
    assert response.status_code == 200
    body = response.json()
    assert body["session_id"] == "sess_a" and body["turns"] == {"done": 1}
    units = {(line["kind"], line["provider"], line["model"]): line["units"] for line in body["usage"]}
    assert units[("llm_completion_tokens", "llama-cpp", "smollm2")] == 12
    assert units[("tts_audio_ms", "piper", "joe-medium")] == 2900
    assert all(line["speculative"] is False for line in body["usage"])


async def test_an_unknown_session_is_a_404_in_the_servers_error_shape(api: Api) -> None:
    http = api.http
    response = await http.get("/api/v1/usage/sessions/sess_nobody")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_session"


async def test_usage_over_a_time_range(api: Api) -> None:
    http, ledger = api.http, api.ledger
    for session in ("sess_a", "sess_b"):
        for event in one_turn(session=session):
            ledger.observe(session, event)
    now = datetime.now(UTC)
    window = {
        "start": (now - timedelta(minutes=5)).isoformat(),
        "end": (now + timedelta(minutes=5)).isoformat(),
    }
    response = await http.get("/api/v1/usage", params=window)
    assert response.status_code == 200
    tokens = [line["units"] for line in response.json()["usage"] if line["kind"] == "llm_completion_tokens"]
    assert tokens == [24]
    backwards = {"start": window["end"], "end": window["start"]}
    assert (await http.get("/api/v1/usage", params=backwards)).status_code == 400


def test_the_served_openapi_documents_the_usage_endpoints(tmp_path: Path) -> None:
    app = create_app(Settings(storage={"data_dir": tmp_path}))  # type: ignore[arg-type]
    paths = app.openapi()["paths"]
    session_usage = paths["/api/v1/usage/sessions/{session_id}"]["get"]["responses"]
    assert session_usage["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/SessionUsage")
    assert "404" in session_usage
    assert "/api/v1/usage" in paths


async def test_with_a_price_table_each_line_and_the_session_have_a_cost(api: Api, tmp_path: Path) -> None:
    http, ledger = api.http, api.ledger
    (tmp_path / "prices.toml").write_text(
        'currency = "EUR"\n'
        '[[price]]\nprovider = "piper"\nmodel = "*"\nkind = "tts_audio_ms"\nminor_units = 1\nper = 1000\n'
        'rounding = "started_block"\n'
    )
    api.app.state.prices = Settings(
        billing={"price_table": tmp_path / "prices.toml"}  # type: ignore[arg-type]
    ).billing.load_prices()
    for event in one_turn():
        ledger.observe("sess_a", event)

    body = (await http.get("/api/v1/usage/sessions/sess_a")).json()
    cost = {line["kind"]: line["cost_minor_units"] for line in body["usage"]}
    assert cost["tts_audio_ms"] == 3 and cost["llm_completion_tokens"] is None  # 2900 ms: 3 started seconds
    assert body["cost"] == {"currency": "EUR", "total_minor_units": 3, "complete": False}


def test_a_price_table_that_does_not_load_stops_the_settings(tmp_path: Path) -> None:
    (tmp_path / "prices.toml").write_text('currency = "euro"\n')
    with pytest.raises(ValueError, match="cannot use the price table"):
        Settings(billing={"price_table": tmp_path / "prices.toml"})  # type: ignore[arg-type]
