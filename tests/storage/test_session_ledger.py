"""A session on scripted engines writes its usage to the ledger as its turns run."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.session.conftest import new_session, send
from voice_server.ledger import repository
from voice_server.ledger.records import TurnState
from voice_server.ledger.writer import UsageLedger
from voice_server.store import migrate


@pytest.fixture
async def ledger(engine: AsyncEngine) -> AsyncIterator[UsageLedger]:
    await migrate.ensure_schema(engine)
    ledger = UsageLedger(engine, instance="server-a", flush_interval_s=0.01)
    await ledger.start()
    yield ledger
    await ledger.aclose()


async def test_a_typed_turn_lands_in_the_ledger_with_the_usage_the_client_was_told(
    ledger: UsageLedger,
) -> None:
    session, wire = new_session(ledger=ledger)
    await session.start()
    await send(session, type="session.start")
    await send(session, type="input.text", text="What is two plus two?")
    done = await wire.until("turn.done")
    await send(session, type="session.end")
    ended = await wire.until("session.ended")

    session_id = ended["session_id"]
    totals = await repository.session_totals(ledger.engine, session_id)
    answered = {t.kind.value: t.units for t in totals if not t.speculative}
    told = {kind: units for kind, units in ended["usage"].items() if isinstance(units, int) and units}
    assert answered == told and told["llm_completion_tokens"] > 0, (answered, told)
    assert await repository.session_turns(ledger.engine, session_id) == {done["turn_id"]: TurnState.DONE}
