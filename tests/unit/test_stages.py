"""Each stage on its own: frames in, frames out, no engines, no sockets."""

from __future__ import annotations

import asyncio

import pytest

from models.base import EngineInfo
from pipelines.budgets import BudgetPolicy
from pipelines.control import AttemptEnded, Mark, ModelSetAside, Out, ReplyDone, Usage
from pipelines.frames import (
    BudgetAction,
    BudgetMiss,
    BudgetStage,
    DataFrame,
    Interrupt,
    InterruptReason,
    SystemFrame,
    TranscriptFinal,
    TranscriptSource,
    TurnDone,
    TurnStatus,
    UsageKind,
    UsageMetric,
)
from pipelines.processor import Broadcast, Stage
from pipelines.stages.budget_watch import BudgetWatch
from pipelines.stages.gate import SpeculationGate
from pipelines.stages.metering import MeteringStage
from pipelines.turn import Attempt, SpokenPiece, Turns

LLM = EngineInfo("llm", "fake", "scripted")


class Recorder(Stage):
    """The end of a test chain: remembers every frame it is given."""

    name = "recorder"

    def __init__(self) -> None:
        super().__init__()
        self.data: list[DataFrame] = []
        self.system: list[SystemFrame] = []

    def on_system(self, frame: SystemFrame) -> None:
        self.system.append(frame)

    async def process(self, frame: DataFrame) -> None:
        self.data.append(frame)


def _wire(*stages: Stage) -> Broadcast:
    broadcast = Broadcast(stages)
    for stage, following in zip(stages, [*stages[1:], None], strict=True):
        stage.start(following, broadcast)
    return broadcast


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


class Stuck(Stage):
    """A stage whose data work never ends (a model call that hangs)."""

    name = "stuck"

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[SystemFrame] = []

    def on_system(self, frame: SystemFrame) -> None:
        self.seen.append(frame)

    async def process(self, frame: DataFrame) -> None:
        await asyncio.Event().wait()


async def test_system_frames_jump_the_queue_of_a_busy_stage():
    stuck, end = Stuck(), Recorder()
    broadcast = _wire(stuck, end)
    stuck.enqueue(TranscriptFinal("turn-1", "hello", TranscriptSource.TEXT))  # blocks the stage
    await _settle()
    broadcast(Interrupt(InterruptReason.BARGE_IN))
    assert stuck.seen == [Interrupt(InterruptReason.BARGE_IN)] and end.system == stuck.seen
    assert end.data == []  # the data frame is still waiting behind the stuck work


async def test_a_frame_broadcast_while_another_is_delivered_waits_its_turn():
    order: list[str] = []

    class Echo(Stage):
        def on_system(self, frame: SystemFrame) -> None:
            order.append(f"{self.name}:{type(frame).__name__}")
            if isinstance(frame, Interrupt) and self.name == "a":
                self.push(BudgetMiss("t", BudgetStage.STT, 1, 2, BudgetAction.NONE))

    first, second = Echo(), Echo()
    first.name, second.name = "a", "b"
    _wire(first, second)(Interrupt(InterruptReason.CANCEL))
    # Every stage sees the interrupt before any stage sees what it caused.
    assert order == ["a:Interrupt", "b:Interrupt", "a:BudgetMiss", "b:BudgetMiss"]


def _turns(broadcast: list) -> Turns:
    return Turns(broadcast.append, clock=lambda: 0.0)


async def test_the_gate_holds_a_speculative_answer_until_its_turn_is_confirmed():
    gate, end = SpeculationGate(), Recorder()
    broadcast = _wire(gate, end)
    turns = Turns(broadcast, clock=lambda: 0.0)
    kept, dropped = turns.new_attempt(turns.new_listening()), turns.new_attempt(turns.new_listening())
    for attempt in (kept, dropped):
        gate.enqueue(Out(attempt, TranscriptFinal(attempt.turn_id, "hi", TranscriptSource.SPEECH)))
    await _settle()
    assert end.data == []  # nothing reaches the student while the turn may still go on
    turns.discard(dropped)
    turns.commit(kept)
    gate.enqueue(ReplyDone(kept, TurnStatus.COMPLETED))
    await _settle()
    assert [getattr(f, "attempt", None) for f in end.data] == [kept, kept]


async def test_a_missed_deadline_acts_once_at_the_moment_it_passes():
    metering = MeteringStage("s")
    policy = BudgetPolicy.only(BudgetStage.LLM_FIRST_TOKEN, 50, BudgetAction.FALLBACK)
    clock = asyncio.get_running_loop().time
    watch = BudgetWatch(policy, Turns(lambda f: None, clock), metering.marks, clock)
    end = Recorder()
    broadcast = _wire(metering, watch, end)
    turns = Turns(broadcast, clock)
    attempt = turns.new_attempt(turn_id="turn-1")
    broadcast(Mark(attempt, "transcript", clock()))
    turns.commit(attempt)
    await asyncio.sleep(0.02)
    assert not attempt.call("llm").switch.is_set()
    await asyncio.sleep(0.08)
    misses = [f for f in end.system if isinstance(f, BudgetMiss)]
    assert [(m.stage, m.action) for m in misses] == [(BudgetStage.LLM_FIRST_TOKEN, BudgetAction.FALLBACK)]
    assert attempt.call("llm").switch.is_set()  # the engine chain moves on to its next provider
    broadcast(Mark(attempt, "llm_first_token", clock()))
    await asyncio.sleep(0.06)
    assert len([f for f in end.system if isinstance(f, BudgetMiss)]) == 1


@pytest.mark.parametrize("set_aside", ["before its commit", "after its commit", "never"])
async def test_a_model_set_aside_by_the_reply_cannot_stall_the_turn(set_aside: str):
    # A lesson reply stops waiting for a model that missed its deadline and says vetted lines
    # instead; a speculative reply can do so before the turn is even committed. Only a model the
    # reply still waits for is a stall.
    clock = asyncio.get_running_loop().time
    metering = MeteringStage("s")
    watch = BudgetWatch(BudgetPolicy(stall_ms=100), Turns(lambda f: None, clock), metering.marks, clock)
    broadcast = _wire(metering, watch, Recorder())
    turns = Turns(broadcast, clock)
    attempt = turns.new_attempt(turn_id="turn-1")
    broadcast(Mark(attempt, "transcript", clock()))
    if set_aside == "before its commit":
        broadcast(ModelSetAside(attempt))
    turns.commit(attempt)
    if set_aside == "after its commit":
        await asyncio.sleep(0.05)
        broadcast(ModelSetAside(attempt))
    await asyncio.sleep(0.2)
    assert attempt.gave_up == (BudgetStage.LLM_FIRST_TOKEN if set_aside == "never" else None)


async def test_a_stage_already_late_when_confirmed_is_recorded_without_action():
    clock = asyncio.get_running_loop().time
    metering = MeteringStage("s")
    watch = BudgetWatch(BudgetPolicy.only(BudgetStage.STT, 10, BudgetAction.FILLER), Turns(lambda f: None, clock), metering.marks, clock)
    end = Recorder()
    broadcast = _wire(metering, watch, end)
    turns = Turns(broadcast, clock)
    attempt = turns.new_attempt(turn_id="turn-1")
    now = clock()
    broadcast(Mark(attempt, "end_of_turn", now - 0.5))
    broadcast(Mark(attempt, "transcript", now))
    turns.commit(attempt)
    misses = [f for f in end.system if isinstance(f, BudgetMiss)]
    assert [(m.stage, m.action, m.elapsed_ms) for m in misses] == [(BudgetStage.STT, BudgetAction.NONE, 500)]


async def test_usage_is_published_as_running_totals_and_thrown_away_work_stays_apart():
    metering, end = MeteringStage("sess"), Recorder()
    broadcast = _wire(metering, end)
    turns = Turns(broadcast, clock=lambda: 0.0)
    listening = turns.new_listening()
    speculation, answer = turns.new_attempt(listening), turns.new_attempt(listening)
    for attempt, tokens in ((speculation, 7), (answer, 5), (answer, 6)):
        broadcast(Usage(listening.id, attempt, UsageKind.LLM_COMPLETION_TOKENS, tokens, LLM))
    turns.discard(speculation)
    turns.commit(answer)
    turns.complete(answer, TurnStatus.COMPLETED)
    await asyncio.sleep(0.01)
    metrics = [f for f in end.system if isinstance(f, UsageMetric)]
    # Each record carries the key's total so far: replaying one never counts twice.
    assert [(m.attempt, m.amount, m.speculative) for m in metrics] == [(1, 7, False), (2, 5, False), (2, 11, False), (1, 7, True)]
    await _settle()
    done = next(f.event for f in end.data if isinstance(f, Out) and isinstance(f.event, TurnDone))
    assert done.usage.llm_completion_tokens == 11 and done.usage.speculative.llm_completion_tokens == 7
    assert metering.session_total.llm_completion_tokens == 11
    # A call that lands after its turn was reported still counts for the session, apart.
    broadcast(Usage(listening.id, answer, UsageKind.STT_AUDIO_MS, 900, EngineInfo("stt", "fake", "x")))
    assert metering.session_total.speculative.stt_audio_ms == 900
    assert any(isinstance(f, AttemptEnded) for f in end.system)


def test_heard_text_leaves_out_audio_the_student_has_not_heard_yet():
    attempt = Attempt("turn-1", 1)
    attempt.pieces = [SpokenPiece("One two three.", 1000, 1000), SpokenPiece("Four five six.", 1000, 1000)]
    attempt.play_end = 10.5  # half a second of what was sent is still to play at t=10
    assert attempt.heard_text(now=10.0) == "One two three. Four five"
    assert attempt.heard_text(now=11.0) == "One two three. Four five six."
