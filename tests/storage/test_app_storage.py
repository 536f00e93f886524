"""The server's lifespan owns the database: created on start, the ledger flushed on shutdown."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi.testclient import TestClient

from tests.storage.test_ledger import metric
from voice_server.app import create_app
from voice_server.auth.tokens import Role
from voice_server.ledger import repository
from voice_server.ledger.records import TurnState
from voice_server.settings import Settings
from voice_server.store.engine import create_engine


async def _no_models() -> None:
    """The lifespan's model loading, skipped: these tests are about storage."""


def test_the_server_creates_its_database_and_writes_usage_left_in_the_buffer_at_shutdown(
    database_url: str, tmp_path: Path
) -> None:
    app = create_app(Settings(storage={"url": database_url, "flush_interval_s": 10}))  # type: ignore[arg-type]
    app.state.hub.load = _no_models
    with TestClient(app) as http:
        admin = {"Authorization": f"Bearer {app.state.auth.issuer.mint(Role.ADMIN, 'adm_test')}"}
        assert http.get("/api/v1/usage/sessions/sess_a", headers=admin).status_code == 404
        ledger = app.state.ledger
        ledger.observe("sess_a", metric(7))  # a session cut off by the shutdown, its turn in flight
    # After shutdown: written, and the open turn settled rather than left in flight.

    async def stored() -> tuple[dict[str, TurnState], int]:
        engine = create_engine(database_url)
        try:
            turns = await repository.session_turns(engine, "sess_a")
            totals = await repository.session_totals(engine, "sess_a")
            return turns, sum(t.units for t in totals)
        finally:
            await engine.dispose()

    assert asyncio.run(stored()) == ({"turn_1": TurnState.SETTLED}, 7)
