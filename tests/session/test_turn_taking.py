"""Turn-taking through the whole pipeline, on scripted engines: when the turn ends is the turn
policy's decision, from a scripted completion score, the transcript's punctuation and whether the
tutor just asked a question. Silence here is audio time: frames are pushed at 10x real time."""

from __future__ import annotations

import asyncio

from pipelines.agent import TutorAgent
from pipelines.budgets import BudgetPolicy
from pipelines.config import PipelineConfig, TurnConfig
from pipelines.frames import (
    BudgetAction,
    BudgetMiss,
    BudgetStage,
    ReplyAudio,
    SpeechStarted,
    SpeechStopped,
    TranscriptFinal,
    TranscriptPartial,
    TurnDone,
    TurnPrompt,
    TurnThinking,
)
from pipelines.personas import PERSONAS
from pipelines.pipeline import Engines, Pipeline
from tests.fakes import LoudnessVAD, ScriptedLLM, ScriptedSTT, ScriptedTurn, ToneTTS

FALLBACK_MS = 1500  # the fixed silence that ends a turn when nothing else is known


def _speech(ms: int) -> bytes:
    return b"\x10\x00" * (16 * ms)


def _silence(ms: int) -> bytes:
    return bytes(32 * ms)


async def _make(
    score: float | None,
    *,
    text: str = "What is two plus two?",
    sentence_end: float | None = None,
    reply: str = "Four.",
    budgets: BudgetPolicy | None = None,
    lesson_plans: bool = False,
    stt_delay_s: float = 0.01,
    **turn: object,
) -> tuple[Pipeline, list]:
    events: list = []

    async def sink(event) -> None:
        events.append(event)

    model = ScriptedTurn(score) if score is not None else None
    stt = ScriptedSTT(text, delay_s=stt_delay_s, sentence_end=sentence_end)
    engines = Engines(LoudnessVAD(), stt, ScriptedLLM(reply, token_delay_s=0.001), ToneTTS(), turn=model)
    config = TurnConfig(end_of_turn_silence_ms=FALLBACK_MS, partial_interval_ms=0, **turn)  # type: ignore[arg-type]
    pipeline_config = PipelineConfig(turn=config, lesson_plans=lesson_plans, budgets=budgets or BudgetPolicy())
    return Pipeline(engines, TutorAgent(PERSONAS["maths"]), sink, pipeline_config), events


async def _stream(pipeline: Pipeline, pcm: bytes, chunk_ms: int = 30) -> None:
    step = 32 * chunk_ms
    for i in range(0, len(pcm), step):
        pipeline.push_audio(pcm[i : i + step])
        await asyncio.sleep(chunk_ms / 10_000)


async def _settle() -> None:
    await asyncio.sleep(0.15)


def _count(events: list, kind: type) -> int:
    return sum(isinstance(e, kind) for e in events)


async def test_a_complete_utterance_is_committed_well_before_the_fixed_fallback_silence():
    pipeline, events = await _make(score=0.9)
    await _stream(pipeline, _speech(600) + _silence(450))  # under a third of the fallback
    await _settle()
    assert _count(events, TranscriptFinal) == 1
    assert _count(events, TurnThinking) == 0
    assert pipeline.engines.turn.calls == 1  # scored once, at the pause
    await pipeline.aclose()


async def test_the_transcript_starts_early_in_a_pause_and_the_turn_model_hears_the_same_pause_as_before():
    # The transcript is on the answer's critical path, so it starts at the speculation silence.
    # The turn model was trained on speech followed by about 200 ms of silence: however early the
    # speculation, it scores the pause once that much silence is in.
    heard = {}
    for speculation_ms in (120, 200):
        pipeline, events = await _make(score=0.9, speculation_silence_ms=speculation_ms)
        await _stream(pipeline, _speech(600) + _silence(450))
        await _settle()
        stt, turn = pipeline.engines.stt, pipeline.engines.turn
        assert _count(events, TranscriptFinal) == 1 and stt.calls == turn.calls == 1
        heard[speculation_ms] = (stt.trailing_silence_s[0], turn.trailing_silence_s[0])
        await pipeline.aclose()
    assert heard[120][0] < heard[200][0]  # the transcript started earlier
    assert heard[120][1] == heard[200][1]  # the turn model heard the same audio
    assert TurnConfig().speculation_silence_ms < TurnConfig().completion_silence_ms


async def test_a_thinking_pause_is_waited_out_in_silence_and_the_turn_goes_on():
    pipeline, events = await _make(score=0.1, text="What is two plus")
    await _stream(pipeline, _speech(600) + _silence(2400))  # longer than any fixed silence used to be
    await _settle()
    thinking = [e for e in events if isinstance(e, TurnThinking)]
    assert len(thinking) == 1 and thinking[0].patience_ms == 3000
    assert _count(events, TranscriptFinal) == 0 and _count(events, ReplyAudio) == 0  # no reply, no filler
    await _stream(pipeline, _speech(500) + _silence(3200))  # the student goes on, then really stops
    await _settle()
    assert _count(events, SpeechStarted) == 1 and _count(events, TranscriptFinal) == 1
    await pipeline.aclose()


async def test_a_sentence_whisper_is_sure_has_ended_is_answered_before_the_patience_despite_the_turn_model():
    for sentence_end, answered in ((0.95, True), (0.5, False)):
        pipeline, events = await _make(score=0.1, text="I was waving my hat.", sentence_end=sentence_end)
        await _stream(pipeline, _speech(600) + _silence(1200))
        await _settle()
        assert _count(events, TranscriptFinal) == 0, "still waiting a little, in case the student goes on"
        await _stream(pipeline, _silence(450))  # 1.65 s of silence: past the shorter wait, short of 3 s
        await _settle()
        assert _count(events, TranscriptFinal) == int(answered), sentence_end
        thinking = [e for e in events if isinstance(e, TurnThinking)]
        assert [e.patience_ms for e in thinking] == [1500 if answered else 3000]
        await pipeline.aclose()


async def test_a_finished_sentence_the_turn_model_only_just_calls_finished_waits_a_little_longer():
    # A reader pausing inside a sentence at a place that sounds finished: the score sits near the
    # threshold. A sure score is answered at once; an unsure one after `unsure_commit_ms`.
    for score, waits in ((0.95, False), (0.6, True)):
        pipeline, events = await _make(score=score, text="The ache of his overstrained eyes.")
        await _stream(pipeline, _speech(600) + _silence(600))
        await _settle()
        assert _count(events, TranscriptFinal) == int(not waits), score
        await _stream(pipeline, _silence(600))  # 1.2 s: past the 1 s an unsure "finished" waits
        await _settle()
        assert _count(events, TranscriptFinal) == 1 and _count(events, TurnThinking) == 0, score
        await pipeline.aclose()


async def test_the_patience_ends_a_turn_nobody_finished():
    pipeline, events = await _make(score=0.1, text="What is two plus")
    await _stream(pipeline, _speech(600) + _silence(3150))
    await _settle()
    assert _count(events, TranscriptFinal) == 1
    await pipeline.aclose()


async def test_after_a_tutor_question_the_patience_is_longer_than_the_default():
    pipeline, events = await _make(score=0.1, text="Is it", reply="What is seven times eight?")
    await pipeline.submit_text("help me with times tables")
    for _ in range(500):
        if _count(events, TurnDone):
            break
        await asyncio.sleep(0.01)
    await _stream(pipeline, _speech(600) + _silence(600))
    await _settle()
    thinking = [e for e in events if isinstance(e, TurnThinking)]
    assert len(thinking) == 1
    assert thinking[0].patience_ms == TurnConfig().question_patience_ms > TurnConfig().patience_ms
    await pipeline.aclose()


async def test_when_the_patience_runs_out_the_declared_prompt_is_sent_and_the_tutor_keeps_listening():
    pipeline, events = await _make(
        score=0.1, text="What is two plus", patience_action="prompt", patience_ms=1000, max_silence_ms=2500
    )
    await _stream(pipeline, _speech(600) + _silence(1300))
    await _settle()
    prompts = [e for e in events if isinstance(e, TurnPrompt)]
    assert [p.text for p in prompts] == ["Take your time."]
    assert _count(events, TranscriptFinal) == 0
    await _stream(pipeline, _silence(1300))  # past the maximum silence: the turn ends
    await _settle()
    assert _count(events, TranscriptFinal) == 1 and _count(events, TurnPrompt) == 1
    await pipeline.aclose()


async def test_without_a_turn_model_whisper_punctuation_decides():
    finished, events = await _make(score=None, text="Fifty six.")
    await _stream(finished, _speech(600) + _silence(450))
    await _settle()
    assert _count(events, TranscriptFinal) == 1
    await finished.aclose()
    unfinished, events = await _make(score=None, text="Fifty")
    await _stream(unfinished, _speech(600) + _silence(1800))
    await _settle()
    assert _count(events, TranscriptFinal) == 0 and _count(events, TurnThinking) == 1
    await unfinished.aclose()


async def test_the_speculative_answer_is_reused_at_the_policys_commit():
    pipeline, events = await _make(score=0.9)
    await _stream(pipeline, _speech(600) + _silence(450))
    await _settle()
    assert _count(events, TranscriptFinal) == 1
    assert pipeline.engines.stt.calls == 1  # transcribed in the pause, confirmed, not redone
    assert len(pipeline.engines.llm.requests) == 1
    await pipeline.aclose()


async def test_after_a_thinking_wait_the_answer_is_due_from_the_commit_so_no_filler_goes_before_it():
    # The voice-to-voice budget is shorter than the wait itself (3 s of audio pass in 0.3 s here):
    # counted from the last word it would have fired at the commit, in front of a ready answer.
    budget = BudgetPolicy.only(BudgetStage.VOICE_TO_VOICE, 250, BudgetAction.FILLER)
    pipeline, events = await _make(score=0.1, text="What is two plus", budgets=budget)
    await _stream(pipeline, _speech(600) + _silence(3300))
    for _ in range(500):
        if _count(events, TurnDone):
            break
        await asyncio.sleep(0.01)
    assert _count(events, TurnThinking) == 1 and _count(events, TurnDone) == 1
    assert not [e for e in events if isinstance(e, BudgetMiss) and e.stage is BudgetStage.VOICE_TO_VOICE]
    done = next(e for e in events if isinstance(e, TurnDone))
    assert done.latency_ms["voice_to_voice_ms"] >= 250  # the report still counts from the end of speech
    await pipeline.aclose()


async def test_the_right_answer_to_the_tutors_question_is_answered_at_once_however_unsure_the_audio_model():
    pipeline, events = await _make(score=0.1, text="Thirty five.", lesson_plans=True)
    await pipeline.submit_text("What is six times seven?")  # the plan asks: what is five times seven?
    for _ in range(500):
        if _count(events, TurnDone):
            break
        await asyncio.sleep(0.01)
    await _stream(pipeline, _speech(600) + _silence(600))  # far under the 5 s question patience
    await _settle()
    spoken = [e for e in events if isinstance(e, TranscriptFinal) and e.text == "Thirty five."]
    assert _count(events, TurnThinking) == 0 and len(spoken) == 1
    await pipeline.aclose()


class _CountingSTT(ScriptedSTT):
    """Tells partial transcriptions from final ones; a partial takes `partial_delay_s`."""

    def __init__(self, partial_delay_s: float = 0.0) -> None:
        super().__init__("What is two plus two?")
        self.partial_delay_s = partial_delay_s
        self.partials = 0
        self.partials_dropped = 0

    async def transcribe(self, audio, *, partial: bool = False):
        if partial:
            self.partials += 1
            try:
                await asyncio.sleep(self.partial_delay_s)
            except asyncio.CancelledError:
                self.partials_dropped += 1
                raise
        return await super().transcribe(audio, partial=partial)


class _PrefillCountingLLM(ScriptedLLM):
    def __init__(self) -> None:
        super().__init__("Four.", token_delay_s=0.001)
        self.prefills = 0

    async def prefill(self, messages) -> int:
        self.prefills += 1
        return 1


async def _partials_pipeline(stt: _CountingSTT, llm: ScriptedLLM, interval_ms: int) -> tuple[Pipeline, list]:
    events: list = []

    async def sink(event) -> None:
        events.append(event)

    engines = Engines(LoudnessVAD(), stt, llm, ToneTTS())
    config = TurnConfig(end_of_turn_silence_ms=FALLBACK_MS, partial_interval_ms=interval_ms)
    return Pipeline(engines, TutorAgent(PERSONAS["maths"]), sink, PipelineConfig(turn=config, lesson_plans=False)), events


async def test_live_captions_are_made_while_the_student_speaks_never_once_silence_begins():
    # Speech is detected ~150 ms in, so the first caption is due at ~600 ms: in the silence
    # after 450 ms of speech. The final transcript and the turn model need the cores then.
    stt = _CountingSTT()
    pipeline, events = await _partials_pipeline(stt, ScriptedLLM("Four."), interval_ms=450)
    await _stream(pipeline, _speech(450) + _silence(FALLBACK_MS + 300))
    await _settle()
    assert stt.partials == 0 and _count(events, TranscriptFinal) == 1
    await pipeline.aclose()

    stt = _CountingSTT()
    pipeline, events = await _partials_pipeline(stt, ScriptedLLM("Four."), interval_ms=450)
    await _stream(pipeline, _speech(1500) + _silence(FALLBACK_MS + 300))
    await _settle()
    assert stt.partials >= 2  # while voiced, captions come as before
    await pipeline.aclose()


async def test_a_caption_that_lands_after_the_pause_began_is_not_read_into_the_model():
    # Read into the model's cache while the student talks, the question heard so far saves time;
    # once a pause has begun the final words are on their way and that reading would only hold
    # the model the answer needs.
    stt, llm = _CountingSTT(partial_delay_s=0.3), _PrefillCountingLLM()
    pipeline, events = await _partials_pipeline(stt, llm, interval_ms=300)
    await _stream(pipeline, _speech(500) + _silence(250))  # a caption in flight, then a pause
    await asyncio.sleep(0.5)  # the caption lands during the pause
    assert stt.partials == 1 and llm.prefills == 0
    await pipeline.aclose()


async def test_a_caption_still_being_transcribed_when_the_pause_begins_is_dropped():
    # Its remaining steps would share the cores with the final transcript the answer waits for.
    stt = _CountingSTT(partial_delay_s=5)
    pipeline, events = await _partials_pipeline(stt, ScriptedLLM("Four."), interval_ms=300)
    await _stream(pipeline, _speech(1500) + _silence(FALLBACK_MS + 300))
    await _settle()
    assert stt.partials == stt.partials_dropped == 1 and _count(events, TranscriptPartial) == 0
    assert [e.text for e in events if isinstance(e, TranscriptFinal)] == ["What is two plus two?"]
    # The engine was given the caption's audio, so it is metered though its words never came.
    assert pipeline.usage_total.stt_partial_audio_ms > 0
    await pipeline.aclose()


async def test_speech_over_the_length_limit_ends_the_turn_once_and_the_rest_is_a_new_turn():
    # Nobody speaks that long without a breath (a fan or a television may): the turn ends at the
    # limit. What follows cannot continue it, since it is already as long as a turn may be; it is
    # the next turn, cut once and heard whole. Before, each breath after the limit cut the joined
    # audio again and sent all of it back to be transcribed.
    pipeline, events = await _make(score=0.9, max_utterance_ms=2000, stt_delay_s=0.5)
    await _stream(pipeline, _speech(3500) + _silence(900))
    await asyncio.sleep(1.2)
    started = [e.turn_id for e in events if isinstance(e, SpeechStarted)]
    stopped = [e.stream_ms for e in events if isinstance(e, SpeechStopped)]
    assert len(set(started)) == len(started) == 2
    assert stopped[0] == 2010 and len(stopped) == 2, stopped
    # The second turn barged in on the first, still being transcribed, as any speech does.
    finals = [e.turn_id for e in events if isinstance(e, TranscriptFinal)]
    assert finals == started[1:]
    await pipeline.aclose()
