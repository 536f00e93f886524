"""The in-process event bus (one server process, SQLite): what every bus promises, on LocalBus.
The same promises across processes, on PostgreSQL, are in tests/storage/test_pg_event_bus.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from voice_server.classrooms.bus import (
    MAX_PAYLOAD_BYTES,
    LocalBus,
    PostgresBus,
    Subscription,
    asyncpg_dsn,
    bus_for,
)

WAIT_S = 5  # only so a broken bus fails instead of hanging; nothing here waits that long


async def next_message(sub: Subscription) -> dict[str, Any]:
    return await asyncio.wait_for(anext(sub), WAIT_S)


async def rest(sub: Subscription) -> list[dict[str, Any]]:
    """What a subscription still holds once it has ended."""
    return await asyncio.wait_for(_collect(sub), WAIT_S)


async def _collect(sub: Subscription) -> list[dict[str, Any]]:
    return [message async for message in sub]


@pytest.fixture
async def bus() -> AsyncIterator[LocalBus]:
    bus = LocalBus(queue_size=8)
    await bus.start()
    yield bus
    await bus.aclose()


async def test_every_subscriber_of_a_channel_gets_every_message_in_order_the_publishers_own_included(
    bus: LocalBus,
) -> None:
    async with bus.subscribe("classroom_events") as console, bus.subscribe("classroom_events") as other:
        async with bus.subscribe("session_commands") as commands:
            for n in range(3):
                await bus.publish("classroom_events", {"type": "transcript", "n": n})
            await bus.publish("session_commands", {"type": "pause", "session_id": "s1"})

            assert [await next_message(console) for _ in range(3)] == [
                {"type": "transcript", "n": n} for n in range(3)
            ]
            assert [(await next_message(other))["n"] for _ in range(3)] == [0, 1, 2]
            # Only its own channel's messages.
            assert await next_message(commands) == {"type": "pause", "session_id": "s1"}


async def test_a_subscriber_that_leaves_gets_nothing_more(bus: LocalBus) -> None:
    async with bus.subscribe("classroom_events") as staying:
        async with bus.subscribe("classroom_events") as leaving:
            await bus.publish("classroom_events", {"n": 1})
        await bus.publish("classroom_events", {"n": 2})

        # Its iteration ends after what came while it was subscribed.
        assert await rest(leaving) == [{"n": 1}]
        assert [await next_message(staying) for _ in range(2)] == [{"n": 1}, {"n": 2}]


async def test_a_slow_subscriber_loses_its_oldest_messages_counted_and_never_holds_up_the_publisher(
    bus: LocalBus,
) -> None:
    async with bus.subscribe("classroom_events") as slow, bus.subscribe("classroom_events") as keeping_up:
        received = []
        for n in range(20):  # the queue holds 8
            await bus.publish("classroom_events", {"n": n})  # returns at once although `slow` reads nothing
            received.append(await next_message(keeping_up))

        assert received == [{"n": n} for n in range(20)]
        assert slow.dropped == 12 and keeping_up.dropped == 0
        assert bus.dropped == 12
        assert [(await next_message(slow))["n"] for _ in range(8)] == list(range(12, 20))


async def test_each_subscriber_gets_its_own_copy_of_a_message(bus: LocalBus) -> None:
    message = {"type": "usage", "usage": {"llm_tokens": 3}}
    async with bus.subscribe("classroom_events") as one, bus.subscribe("classroom_events") as two:
        await bus.publish("classroom_events", message)
        first = await next_message(one)
        first["usage"]["llm_tokens"] = 99

        assert await next_message(two) == {"type": "usage", "usage": {"llm_tokens": 3}}
        assert message == {"type": "usage", "usage": {"llm_tokens": 3}}


async def test_messages_are_json_as_they_would_be_on_postgresql(bus: LocalBus) -> None:
    async with bus.subscribe("classroom_events") as sub:
        await bus.publish("classroom_events", {"turn_id": 4, "flags": ("a", "b"), "text": "très bien"})

        assert await next_message(sub) == {"turn_id": 4, "flags": ["a", "b"], "text": "très bien"}


@pytest.mark.parametrize(
    ("channel", "message", "why"),
    [
        ("classroom_events", {"text": "x" * MAX_PAYLOAD_BYTES}, "bytes"),
        # Bytes, not characters: 4000 accented letters are 8000 bytes in UTF-8.
        ("classroom_events", {"text": "é" * 4000}, "bytes"),
        ("classroom_events", {"at": object()}, "not JSON"),
        ("classroom_events", ["not", "an", "object"], "JSON objects"),
        ("Classroom-Events", {}, "identifier"),
        ("", {}, "identifier"),
        ("x" * 54, {}, "identifier"),
    ],
)
async def test_what_notify_would_refuse_is_refused_here_too(
    bus: LocalBus, channel: str, message: Any, why: str
) -> None:
    async with bus.subscribe("classroom_events") as sub:
        with pytest.raises(ValueError, match=why):
            await bus.publish(channel, message)
        await bus.publish("classroom_events", {"next": True})

        assert await next_message(sub) == {"next": True}  # nothing of the refused one arrived


async def test_a_message_just_under_the_limit_is_sent(bus: LocalBus) -> None:
    overhead = len('{"text":""}')
    async with bus.subscribe("classroom_events") as sub:
        await bus.publish("classroom_events", {"text": "x" * (MAX_PAYLOAD_BYTES - 1 - overhead)})

        assert len((await next_message(sub))["text"]) == MAX_PAYLOAD_BYTES - 1 - overhead


def test_a_channel_name_is_checked_when_subscribing(bus: LocalBus) -> None:
    with pytest.raises(ValueError, match="identifier"):
        bus.subscribe("classroom events")


async def test_closing_the_bus_ends_every_subscription_after_what_it_already_holds() -> None:
    bus = LocalBus()
    await bus.start()
    async with bus.subscribe("classroom_events") as sub:
        await bus.publish("classroom_events", {"n": 1})
        await bus.aclose()

        assert await rest(sub) == [{"n": 1}]
        with pytest.raises(RuntimeError, match="closed"):
            await bus.publish("classroom_events", {"n": 2})


async def test_a_bus_is_started_before_use() -> None:
    bus = LocalBus()
    with pytest.raises(RuntimeError, match="start"):
        await bus.publish("classroom_events", {})
    with pytest.raises(RuntimeError, match="start"):
        async with bus.subscribe("classroom_events"):
            pass


def test_postgresql_gets_the_cross_process_bus_and_anything_else_the_local_one() -> None:
    url = "postgresql+asyncpg://app:s3cret@db.example:5433/convergio"
    assert isinstance(bus_for(url), PostgresBus)  # nothing connects before start()
    assert isinstance(bus_for("sqlite+aiosqlite:///data/convergio.db"), LocalBus)
    assert asyncpg_dsn(url) == "postgresql://app:s3cret@db.example:5433/convergio"
