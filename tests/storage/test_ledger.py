"""The usage ledger: exact units, idempotent under any replay, settled (never lost) after a crash."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from pipelines.frames import TurnDone, TurnStatus, TurnUsage, UsageKind, UsageMetric
from voice_server import cli
from voice_server.ledger import repository
from voice_server.ledger.records import TurnState, UsageRecord
from voice_server.ledger.writer import UsageLedger
from voice_server.store import migrate
from voice_server.store.engine import create_engine


def metric(
    amount: int,
    *,
    turn: str = "turn_1",
    attempt: int = 1,
    kind: UsageKind = UsageKind.LLM_COMPLETION_TOKENS,
    session: str = "sess_a",
    provider: str = "llama-cpp",
    model: str = "smollm2",
    speculative: bool = False,
) -> UsageMetric:
    return UsageMetric(session, turn, attempt, kind, provider, model, amount, speculative)


def turn_done(turn: str = "turn_1") -> TurnDone:
    return TurnDone(turn, TurnStatus.COMPLETED, "question", "answer", {}, TurnUsage())


def one_turn(session: str = "sess_a", turn: str = "turn_1") -> list[UsageMetric]:
    """What metering reports for a turn: running totals per key, in order."""
    whisper: dict[str, Any] = {
        "provider": "faster-whisper",
        "model": "tiny.en",
        "session": session,
        "turn": turn,
    }
    piper: dict[str, Any] = {"provider": "piper", "model": "joe-medium", "session": session, "turn": turn}
    return [
        metric(320, kind=UsageKind.STT_PARTIAL_AUDIO_MS, attempt=0, **whisper),
        metric(640, kind=UsageKind.STT_PARTIAL_AUDIO_MS, attempt=0, **whisper),
        metric(1500, kind=UsageKind.STT_AUDIO_MS, **whisper),
        metric(212, kind=UsageKind.LLM_PROMPT_TOKENS, session=session, turn=turn),
        *(metric(n, session=session, turn=turn) for n in (1, 2, 3, 7, 12)),
        metric(40, kind=UsageKind.TTS_CHARS, **piper),
        metric(2900, kind=UsageKind.TTS_AUDIO_MS, **piper),
    ]


EXPECTED_TURN = {
    ("stt_partial_audio_ms", "faster-whisper"): 640,
    ("stt_audio_ms", "faster-whisper"): 1500,
    ("llm_prompt_tokens", "llama-cpp"): 212,
    ("llm_completion_tokens", "llama-cpp"): 12,
    ("tts_chars", "piper"): 40,
    ("tts_audio_ms", "piper"): 2900,
}


async def totals(engine: AsyncEngine, session: str = "sess_a") -> dict[tuple[str, str], int]:
    return {(t.kind.value, t.provider): t.units for t in await repository.session_totals(engine, session)}


@pytest.fixture
async def ledger(engine: AsyncEngine) -> AsyncIterator[UsageLedger]:
    await migrate.ensure_schema(engine)
    ledger = UsageLedger(engine, instance="server-a", flush_interval_s=60)
    yield ledger
    await ledger.aclose()


async def test_a_turn_is_recorded_as_exact_units_per_kind_provider_and_model(ledger: UsageLedger) -> None:
    for event in one_turn():
        ledger.observe("sess_a", event)
    ledger.observe("sess_a", turn_done())
    await ledger.flush()
    assert await totals(ledger.engine) == EXPECTED_TURN
    assert await repository.session_turns(ledger.engine, "sess_a") == {"turn_1": TurnState.DONE}


async def test_replaying_any_record_or_a_whole_turn_changes_no_total(ledger: UsageLedger) -> None:
    records = one_turn()
    for event in records:
        ledger.observe("sess_a", event)
    await ledger.flush()
    for event in reversed(records):  # the turn again, the oldest (smallest) totals last
        ledger.observe("sess_a", event)
        await ledger.flush()
        assert await totals(ledger.engine) == EXPECTED_TURN
    for event in random.Random(7).sample(records, len(records)):  # and in one batch, in any order
        ledger.observe("sess_a", event)
    await ledger.flush()
    assert await totals(ledger.engine) == EXPECTED_TURN


async def test_work_thrown_away_is_kept_apart_and_stays_thrown_away(ledger: UsageLedger) -> None:
    ledger.observe("sess_a", metric(9, attempt=1))
    ledger.observe("sess_a", metric(9, attempt=1, speculative=True))  # the attempt was discarded
    ledger.observe("sess_a", metric(5, attempt=2))
    await ledger.flush()
    ledger.observe("sess_a", metric(9, attempt=1))  # a replay of the older report
    await ledger.flush()
    lines = {(t.speculative, t.units) for t in await repository.session_totals(ledger.engine, "sess_a")}
    assert lines == {(True, 9), (False, 5)}


async def test_usage_is_written_as_the_turn_runs_not_at_session_end(engine: AsyncEngine) -> None:
    await migrate.ensure_schema(engine)
    ledger = UsageLedger(engine, instance="server-a", flush_interval_s=0.01)
    await ledger.start()
    try:
        ledger.observe("sess_a", metric(3))
        for _ in range(500):
            if await totals(engine):
                break
            await asyncio.sleep(0.01)
        assert await totals(engine) == {("llm_completion_tokens", "llama-cpp"): 3}
        assert await repository.session_turns(engine, "sess_a") == {"turn_1": TurnState.IN_FLIGHT}
    finally:
        await ledger.aclose()


async def test_a_turn_left_in_flight_by_a_crash_is_settled_on_restart_with_its_units(
    database_url: str,
) -> None:
    first = create_engine(database_url)
    await migrate.ensure_schema(first)
    crashed = UsageLedger(first, instance="server-a")
    for event in one_turn(turn="turn_1"):
        crashed.observe("sess_a", event)
    crashed.observe("sess_a", turn_done("turn_1"))
    crashed.observe("sess_a", metric(4, turn="turn_2"))
    await crashed.flush()
    await first.dispose()  # the process dies: no session end, no shutdown

    engine = create_engine(database_url)
    try:
        restarted = UsageLedger(engine, instance="server-a")
        assert await restarted.recover() == 1
        turns = await repository.session_turns(engine, "sess_a")
        assert turns == {"turn_1": TurnState.DONE, "turn_2": TurnState.SETTLED}
        expected = EXPECTED_TURN | {("llm_completion_tokens", "llama-cpp"): 12 + 4}
        assert await totals(engine) == expected
        assert await restarted.recover() == 0  # settling twice changes nothing
        assert await totals(engine) == expected
    finally:
        await engine.dispose()


async def test_a_restart_settles_only_its_own_turns_not_a_live_replicas(ledger: UsageLedger) -> None:
    replica = UsageLedger(ledger.engine, instance="server-b")
    replica.observe("sess_b", metric(2, session="sess_b"))
    await replica.flush()
    assert await ledger.recover() == 0
    assert await repository.session_turns(ledger.engine, "sess_b") == {"turn_1": TurnState.IN_FLIGHT}


async def test_ending_a_session_settles_its_unreported_turns_and_writes_everything(
    ledger: UsageLedger,
) -> None:
    ledger.observe("sess_a", metric(5, turn="turn_1"))
    ledger.observe("sess_a", turn_done("turn_1"))
    ledger.observe("sess_a", metric(6, turn="turn_2"))  # cut off by the session's end
    await ledger.end_session("sess_a")
    turns = await repository.session_turns(ledger.engine, "sess_a")
    assert turns == {"turn_1": TurnState.DONE, "turn_2": TurnState.SETTLED}
    assert await totals(ledger.engine) == {("llm_completion_tokens", "llama-cpp"): 11}


async def test_a_late_report_neither_reopens_a_finished_turn_nor_is_lost(ledger: UsageLedger) -> None:
    ledger.observe("sess_a", metric(5))
    ledger.observe("sess_a", turn_done())
    await ledger.flush()
    ledger.observe(
        "sess_a", metric(1, kind=UsageKind.STT_AUDIO_MS, provider="faster-whisper", model="tiny.en")
    )
    await ledger.end_session("sess_a")
    assert await repository.session_turns(ledger.engine, "sess_a") == {"turn_1": TurnState.DONE}
    assert await totals(ledger.engine) == {
        ("llm_completion_tokens", "llama-cpp"): 5,
        ("stt_audio_ms", "faster-whisper"): 1,
    }


async def test_a_failed_write_is_retried_not_lost_nor_doubled(
    ledger: UsageLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger.observe("sess_a", metric(5))
    real_write = repository.write

    async def unavailable(*args: object, **kwargs: object) -> None:
        raise ConnectionError("database down")

    monkeypatch.setattr(repository, "write", unavailable)
    with pytest.raises(ConnectionError):
        await ledger.flush()
    ledger.observe("sess_a", metric(8))  # the turn goes on while the database is away
    monkeypatch.setattr(repository, "write", real_write)
    await ledger.flush()
    assert await totals(ledger.engine) == {("llm_completion_tokens", "llama-cpp"): 8}


async def test_usage_in_a_time_range_sums_every_session(ledger: UsageLedger) -> None:
    from datetime import UTC, datetime, timedelta

    for session in ("sess_a", "sess_b"):
        for event in one_turn(session=session):
            ledger.observe(session, event)
    await ledger.flush()
    now = datetime.now(UTC)
    summary = await repository.totals_between(
        ledger.engine, now - timedelta(hours=1), now + timedelta(hours=1)
    )
    assert {(t.kind.value, t.provider): t.units for t in summary} == {
        k: 2 * v for k, v in EXPECTED_TURN.items()
    }
    assert (
        await repository.totals_between(ledger.engine, now + timedelta(hours=1), now + timedelta(hours=2))
        == []
    )


def test_records_merge_to_the_largest_total_in_any_order() -> None:
    a = UsageRecord.from_metric(metric(3))
    b = UsageRecord.from_metric(metric(7, speculative=True))
    assert a.merged(b) == b.merged(a) == UsageRecord(a.key, 7, True)


async def test_a_slow_database_never_holds_up_a_session(
    ledger: UsageLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reports are buffered and coalesced by key while a write is stuck; none waits for it."""
    stuck, release = asyncio.Event(), asyncio.Event()
    real_write = repository.write

    async def slow_write(*args: Any, **kwargs: Any) -> None:
        stuck.set()
        await release.wait()
        await real_write(*args, **kwargs)

    monkeypatch.setattr(repository, "write", slow_write)
    ledger.observe("sess_a", metric(1))
    flushing = asyncio.create_task(ledger.flush())
    await stuck.wait()
    for amount in range(2, 2002):  # a long answer, token by token, while the database is stuck
        ledger.observe("sess_a", metric(amount))
    assert ledger.pending_keys == 1  # one key, its latest running total
    release.set()
    await flushing
    await ledger.flush()
    assert await totals(ledger.engine) == {("llm_completion_tokens", "llama-cpp"): 2001}


async def test_turns_of_a_server_that_never_comes_back_are_settled_by_name(
    ledger: UsageLedger, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replica replaced under a new name cannot settle its predecessor's turns; an operator can."""
    gone = UsageLedger(ledger.engine, instance="pod-7f9c")
    gone.observe("sess_b", metric(4, session="sess_b"))
    await gone.flush()
    monkeypatch.setenv("CONVERGIO_STORAGE__URL", database_url)
    monkeypatch.setenv("CONVERGIO_ENGINES__TURN", "none")

    assert await asyncio.to_thread(cli.main, ["db", "settle", "--instance", "pod-7f9c"]) == 0
    assert await repository.session_turns(ledger.engine, "sess_b") == {"turn_1": TurnState.SETTLED}
    assert await totals(ledger.engine, "sess_b") == {("llm_completion_tokens", "llama-cpp"): 4}


async def test_the_background_writer_retries_until_the_database_is_back(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    await migrate.ensure_schema(engine)
    ledger = UsageLedger(engine, instance="server-a", flush_interval_s=0.01)
    real_write = repository.write
    failures = 0

    async def flaky_write(*args: Any, **kwargs: Any) -> None:
        nonlocal failures
        if failures < 3:
            failures += 1
            raise ConnectionError("database restarting")
        await real_write(*args, **kwargs)

    monkeypatch.setattr(repository, "write", flaky_write)
    await ledger.start()
    try:
        ledger.observe("sess_a", metric(5))
        for _ in range(300):
            if await totals(engine):
                break
            await asyncio.sleep(0.01)
        assert failures == 3 and await totals(engine) == {("llm_completion_tokens", "llama-cpp"): 5}
        assert "units stay buffered" in caplog.text
    finally:
        await ledger.aclose()


async def test_a_write_whose_caller_is_cancelled_still_completes_and_the_next_one_follows_it(
    ledger: UsageLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A session's task cancelled at shutdown mid-write: cut off inside its transaction, the
    # connection could keep SQLite's write lock and the server's last write would fail.
    started, release = asyncio.Event(), asyncio.Event()
    real_write = repository.write

    finished: list[bool] = []

    async def slow(*args: Any, **kwargs: Any) -> None:
        started.set()
        await release.wait()  # "inside the transaction": a cancel arriving here must not cut it off
        await real_write(*args, **kwargs)
        finished.append(True)

    monkeypatch.setattr(repository, "write", slow)
    for record in one_turn():
        ledger.observe("sess_a", record)
    caller = asyncio.create_task(ledger.flush())
    await started.wait()
    caller.cancel()
    ledger.observe("sess_a", metric(13))  # reported while the cancelled write is still running
    release.set()
    await ledger.aclose()  # waits for that write, then writes the rest
    assert finished == [True, True]  # the cancelled caller's write ran to its end, then the last one
    assert await totals(ledger.engine) == {**EXPECTED_TURN, ("llm_completion_tokens", "llama-cpp"): 13}
