"""Caps shared by sessions, in running pipelines: every session of one student (or classroom, or
school key) is charged to one allowance. Calls are counted at the engines: once the shared cap is
reached no session's call reaches the engine, each session is told which scope was reached, and
the turn ends with the usual written and spoken notice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from models.base import GenerationRequest
from pipelines.agent import TutorAgent
from pipelines.caps import UsageCaps
from pipelines.config import PipelineConfig, TurnConfig
from pipelines.fillers import FillerCache
from pipelines.frames import CapReached, PipelineError, ReplyAudio, TurnDone, UsageUpdated
from pipelines.personas import PERSONAS
from pipelines.pipeline import Engines, Pipeline
from pipelines.quota import Quota, ScopeCaps
from tests.fakes import LoudnessVAD, ScriptedLLM, ScriptedSTT
from tests.session.conftest import QuickTTS, new_session, scripted_engines, send
from voice_server.ledger.prices import PriceTable
from voice_server.settings import Settings

REPLY = "Four is the answer and you did it well."  # nine tokens, one a word


class CountingLLM(ScriptedLLM):
    """Honours max_tokens, as real engines do, and counts the calls it gets."""

    def __init__(self) -> None:
        super().__init__(REPLY, token_delay_s=0.002)
        self.calls = 0

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        self.calls += 1
        made = 0
        async for piece in super().stream(request):
            yield piece
            made += 1
            if made >= request.max_tokens:
                return


async def _pipelines(quotas: dict, n: int = 2, caps: UsageCaps | None = None):
    fillers = FillerCache()
    tts = QuickTTS()
    await fillers.prepare(tts, [PERSONAS["maths"].voice])
    llm = CountingLLM()  # one engine, shared by the sessions as the server shares its engines
    engines = Engines(LoudnessVAD(), ScriptedSTT(), llm, tts, fillers)
    turn = TurnConfig(partial_interval_ms=0)
    config = PipelineConfig(turn=turn, caps=caps or UsageCaps(), playback_lead_ms=20, lesson_plans=False)
    sessions = []
    for i in range(n):
        events: list = []

        async def sink(event, events=events) -> None:
            events.append(event)

        pipeline = Pipeline(
            engines, TutorAgent(PERSONAS["maths"]), sink, config, session_id=f"s{i}", quotas=quotas
        )
        sessions.append((pipeline, events))
    return sessions, llm


async def _turn(pipeline: Pipeline, events: list, text: str) -> TurnDone:
    before = sum(isinstance(e, TurnDone) for e in events)
    await pipeline.submit_text(text)
    for _ in range(1000):
        done = [e for e in events if isinstance(e, TurnDone)]
        if len(done) > before:
            return done[-1]
        await asyncio.sleep(0.005)
    raise AssertionError("no turn.done")


def _tokens(pipeline: Pipeline) -> int:
    total = pipeline.usage_total
    spent = total.llm_prompt_tokens + total.llm_completion_tokens
    if total.speculative is not None:
        spent += total.speculative.llm_prompt_tokens + total.speculative.llm_completion_tokens
    return spent


async def test_two_sessions_of_one_student_share_the_cap_and_the_model_gets_no_call_past_it():
    student = Quota("student", "stu_a", ScopeCaps(llm_tokens=400, period="day"))
    sessions, llm = await _pipelines({"llm": [student]})
    statuses: list[str] = []
    for _ in range(12):  # both sessions ask at once, turn after turn
        done = await asyncio.gather(*(_turn(p, e, "What is two plus two?") for p, e in sessions))
        statuses += [d.status for d in done]
        assert sum(_tokens(p) for p, _ in sessions) <= student.units("llm") <= 400  # used, plus held
        if all(d.status == "cap_reached" for d in done):
            break
    assert "completed" in statuses and statuses[-2:] == ["cap_reached", "cap_reached"]
    calls = llm.calls
    for pipeline, events in sessions:  # neither session's next turn reaches the model
        assert (await _turn(pipeline, events, "Please?")).status == "cap_reached"
        reached = [e for e in events if isinstance(e, CapReached)]
        assert [(r.scope, r.kind, r.period, r.limit) for r in reached] == [("student", "llm", "day", 400)]
        notice = [e for e in events if isinstance(e, PipelineError) and e.code == "cap_reached"]
        assert notice  # written, and spoken from audio made at start-up:
        assert any(isinstance(e, ReplyAudio) and e.turn_id == notice[-1].turn_id for e in events)
    assert llm.calls == calls
    assert sum(_tokens(p) for p, _ in sessions) == student.units("llm") <= 400  # all of it, charged once
    for pipeline, _ in sessions:
        await pipeline.aclose()
    assert student.held == {}


async def test_a_cost_cap_stops_calls_once_the_price_table_says_the_money_is_spent():
    prices = PriceTable.model_validate(
        {"currency": "EUR", "price": [
            {"provider": "fake", "model": "*", "kind": "llm_prompt_tokens", "minor_units": 2, "per": 100,
             "rounding": "pro_rata_up"},
            {"provider": "fake", "model": "*", "kind": "llm_completion_tokens", "minor_units": 10, "per": 100,
             "rounding": "pro_rata_up"},
        ]}
    )
    classroom = Quota("classroom", "cls_a", ScopeCaps(cost_minor=3, period="month"), prices)
    [(pipeline, events)], llm = await _pipelines({"llm": [classroom]}, n=1)
    for _ in range(20):
        if (await _turn(pipeline, events, "What is two plus two?")).status == "cap_reached":
            break
    assert classroom.cost() <= 3
    calls = llm.calls
    assert (await _turn(pipeline, events, "And now?")).status == "cap_reached" and llm.calls == calls
    [reached] = [e for e in events if isinstance(e, CapReached)]
    assert (reached.scope, reached.unit, reached.limit, reached.currency) == ("classroom", "minor_units", 3, "EUR")
    updates = [e for e in events if isinstance(e, UsageUpdated)]
    [allowance] = updates[-1].allowances
    assert (allowance.scope, allowance.kind, allowance.unit, allowance.used) == (
        "classroom", None, "minor_units", classroom.cost(),
    )
    await pipeline.aclose()


async def test_the_session_cap_and_a_shared_cap_both_hold_and_the_lower_one_is_named():
    student = Quota("student", "stu_a", ScopeCaps(llm_tokens=100_000))
    [(pipeline, events)], llm = await _pipelines({"llm": [student]}, n=1, caps=UsageCaps(llm_tokens=150))
    for _ in range(10):
        if (await _turn(pipeline, events, "What is two plus two?")).status == "cap_reached":
            break
    assert [e.scope for e in events if isinstance(e, CapReached)] == ["session"]
    assert _tokens(pipeline) == student.units("llm") <= 150
    await pipeline.aclose()


async def test_usage_updated_tells_the_client_what_is_left_of_each_cap_in_the_published_schema():
    settings = Settings(lesson_plans=False, billing={"session_caps": {"tts_chars": 5000}})  # type: ignore[arg-type]
    session, wire = new_session(scripted_engines())
    session.settings = settings
    await session.start()
    await send(session, type="session.start")
    await send(session, type="input.text", text="What is two plus two?")
    updated = await wire.until("usage.updated")
    [left] = updated["allowances"]
    assert left["scope"] == "session" and left["kind"] == "tts" and left["unit"] == "chars"
    assert left["remaining"] == 5000 - updated["usage"]["tts_chars"] < 5000
    await send(session, type="session.end")
    await wire.until("session.ended")
    wire.assert_valid()


async def test_a_session_does_not_start_when_the_use_its_caps_start_from_cannot_be_read():
    class Unreadable:
        async def open(self, who):  # type: ignore[no-untyped-def]
            raise OSError("the database is away")

    session, wire = new_session(shared_caps=Unreadable())
    await session.start()
    await send(session, type="session.start")
    error = await wire.until("error")
    assert error["code"] == "server_not_ready" and not session.started  # fails closed
    wire.assert_valid()
