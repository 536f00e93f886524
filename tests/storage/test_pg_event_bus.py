"""The event bus across server processes: PostgreSQL LISTEN/NOTIFY on the real database the suite
starts (CONVERGIO_TEST_POSTGRES_URL). Two PostgresBus instances stand for two server processes:
each has its own listening connection, as separate processes would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from tests.storage.conftest import backend_url
from voice_server.classrooms.bus import LISTENER_NAME, PostgresBus, Subscription, asyncpg_dsn, bus_for
from voice_server.store.engine import create_engine

WAIT_S = 10  # only so a broken bus fails instead of hanging


async def next_message(sub: Subscription) -> dict[str, Any]:
    return await asyncio.wait_for(anext(sub), WAIT_S)


async def eventually(condition: Callable[[], bool]) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(poll(), WAIT_S)


@pytest.fixture
def pg_url(tmp_path: Path) -> str:
    return backend_url("postgresql", tmp_path)


@pytest.fixture
async def two_processes(pg_url: str) -> AsyncIterator[tuple[PostgresBus, PostgresBus]]:
    """One bus publishing through the application's engine (as `serve` wires it), one through
    its own small pool: both ways of publishing are in every test that uses the pair."""
    engine = create_engine(pg_url)
    first = bus_for(pg_url, engine)
    second = PostgresBus(pg_url)
    assert isinstance(first, PostgresBus)
    await first.start()
    await second.start()
    yield first, second
    await first.aclose()
    await second.aclose()
    await engine.dispose()


async def test_two_processes_see_each_others_messages_and_their_own_in_order(
    two_processes: tuple[PostgresBus, PostgresBus],
) -> None:
    one, two = two_processes
    async with one.subscribe("classroom_events") as on_one, two.subscribe("classroom_events") as on_two:
        for n in range(5):
            await one.publish("classroom_events", {"type": "transcript", "n": n, "from": "one"})
        for n in range(5, 10):
            await two.publish("classroom_events", {"type": "transcript", "n": n, "from": "two"})

        for sub in (on_one, on_two):
            messages = [await next_message(sub) for _ in range(10)]
            assert [m["n"] for m in messages] == list(range(10))
            assert messages[0] == {"type": "transcript", "n": 0, "from": "one"}


async def test_a_channel_reaches_only_its_own_subscribers(
    two_processes: tuple[PostgresBus, PostgresBus],
) -> None:
    one, two = two_processes
    async with one.subscribe("classroom_events") as events, two.subscribe("session_commands") as commands:
        await one.publish("session_commands", {"type": "pause", "session_id": "s1"})
        await one.publish("classroom_events", {"type": "classroom.closed", "classroom_id": "c1"})

        assert await next_message(commands) == {"type": "pause", "session_id": "s1"}
        assert await next_message(events) == {"type": "classroom.closed", "classroom_id": "c1"}


async def test_a_subscriber_that_leaves_gets_nothing_more_and_the_last_one_out_unlistens(
    two_processes: tuple[PostgresBus, PostgresBus],
) -> None:
    one, two = two_processes
    async with one.subscribe("classroom_events") as staying:
        async with two.subscribe("classroom_events") as leaving, two.subscribe("classroom_events") as second:
            assert await two.listening() == {"classroom_events"}  # one LISTEN for both
            await one.publish("classroom_events", {"n": 1})
            assert await next_message(leaving) == {"n": 1}
            assert await next_message(second) == {"n": 1}
        assert await two.listening() == set()

        await one.publish("classroom_events", {"n": 2})
        # `staying` has it, so it was delivered; `leaving` ended with nothing after its last.
        assert [await next_message(staying) for _ in range(2)] == [{"n": 1}, {"n": 2}]
        assert [m async for m in leaving] == []


async def test_the_listening_connection_comes_back_after_it_is_killed(
    two_processes: tuple[PostgresBus, PostgresBus], pg_url: str
) -> None:
    one, two = two_processes
    async with two.subscribe("classroom_events") as sub, two.subscribe("session_commands"):
        lost = two.listener_pid
        admin = await asyncpg.connect(asyncpg_dsn(pg_url))
        try:
            # It is named for operators, so it can be found in pg_stat_activity.
            name = await admin.fetchval("SELECT application_name FROM pg_stat_activity WHERE pid = $1", lost)
            assert name == LISTENER_NAME
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", lost)
        finally:
            await admin.close()

        await eventually(lambda: two.reconnects == 1)
        assert two.listener_pid not in (None, lost)
        assert await two.listening() == {"classroom_events", "session_commands"}
        await one.publish("classroom_events", {"after": "reconnect"})

        assert await next_message(sub) == {"after": "reconnect"}


async def test_an_oversized_payload_is_refused_and_nothing_is_sent(
    two_processes: tuple[PostgresBus, PostgresBus],
) -> None:
    one, two = two_processes
    async with two.subscribe("classroom_events") as sub:
        for publisher in (one, two):
            with pytest.raises(ValueError, match="8000"):
                await publisher.publish("classroom_events", {"text": "x" * 8000})
        await one.publish("classroom_events", {"text": "x" * 7900})

        assert len((await next_message(sub))["text"]) == 7900


async def test_a_notification_that_is_not_ours_is_ignored(
    two_processes: tuple[PostgresBus, PostgresBus], pg_url: str
) -> None:
    one, _ = two_processes
    async with one.subscribe("classroom_events") as sub:
        stranger = await asyncpg.connect(asyncpg_dsn(pg_url))
        try:
            await stranger.execute("NOTIFY convergio_classroom_events, 'not json'")
        finally:
            await stranger.close()
        await one.publish("classroom_events", {"n": 1})

        assert await next_message(sub) == {"n": 1}


async def test_closing_the_bus_ends_its_subscriptions(pg_url: str) -> None:
    bus = PostgresBus(pg_url)
    await bus.start()
    async with bus.subscribe("classroom_events") as sub, bus.subscribe("classroom_events") as witness:
        await bus.publish("classroom_events", {"n": 1})
        assert await next_message(witness) == {"n": 1}  # so `sub` has it too
        await bus.aclose()

        assert [m async for m in sub] == [{"n": 1}]
