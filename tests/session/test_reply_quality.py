"""Reply quality in the pipeline, with scripted models: spoken style, sentence limit, seeds, and
what happens when a model repeats an earlier reply."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np

from models.base import SynthesizedAudio, VoiceSettings
from models.silence_tts import SilenceTTS
from pipelines.agent import TutorAgent
from pipelines.config import PipelineConfig
from pipelines.frames import ReplyAudio, ReplySentence, ReplyTextDelta, TurnDone
from pipelines.personas import PERSONAS
from pipelines.pipeline import Engines, Pipeline
from pipelines.spoken import has_markdown
from tests.fakes import LoudnessVAD, ScriptedLLM, ScriptedSTT, ToneTTS

COLLAPSE = "That's a great example of how Abi can use her words to add humour. Here's a revised version:"


async def _make(llm: ScriptedLLM) -> tuple[Pipeline, list]:
    events: list = []

    async def sink(event) -> None:
        events.append(event)

    engines = Engines(LoudnessVAD(), ScriptedSTT(), llm, SilenceTTS())
    return Pipeline(engines, TutorAgent(PERSONAS["maths"]), sink, PipelineConfig(lesson_plans=False)), events


async def _ask(pipeline: Pipeline, events: list, text: str) -> tuple[TurnDone, list[str], str]:
    turn_id = await pipeline.submit_text(text)
    for _ in range(1000):
        done = next((e for e in events if isinstance(e, TurnDone) and e.turn_id == turn_id), None)
        if done:
            captions = [e.text for e in events if isinstance(e, ReplySentence) and e.turn_id == turn_id]
            mine = [e for e in events if isinstance(e, ReplyTextDelta) and e.turn_id == turn_id]
            deltas = "".join(e.delta for e in mine)
            return done, captions, deltas
        await asyncio.sleep(0.01)
    raise AssertionError("no turn.done")


async def test_markdown_lists_and_line_breaks_never_reach_captions_text_or_memory():
    llm = ScriptedLLM("Let's do it in steps:\n1. Add **the tens**\n2. Add the ones")
    pipeline, events = await _make(llm)
    done, captions, deltas = await _ask(pipeline, events, "how do I add 23 and 45")
    await pipeline.aclose()
    assert captions and not any(has_markdown(c) for c in captions)
    assert not has_markdown(deltas) and not has_markdown(done.reply_text)
    assert done.reply_text == "Let's do it in steps: Add the tens. Add the ones"
    assert pipeline.agent.history[-1].assistant == done.reply_text  # memory holds what was spoken


async def test_a_reply_stops_after_two_sentences_whatever_the_model_writes():
    llm = ScriptedLLM("Nice try. Count the tens first. Then the ones. Then add them all up.")
    pipeline, events = await _make(llm)
    done, _, _ = await _ask(pipeline, events, "is it 50")
    await pipeline.aclose()
    assert done.reply_text == "Nice try. Count the tens first."


async def test_a_repeated_reply_is_drawn_again_once_then_replaced_by_a_question():
    llm = ScriptedLLM(COLLAPSE)
    pipeline, events = await _make(llm)
    first, _, _ = await _ask(pipeline, events, "is this funny")
    second, captions, _ = await _ask(pipeline, events, "what about this one")
    await pipeline.aclose()
    assert first.reply_text == COLLAPSE
    assert len(llm.requests) == 3  # the first turn, then the repeat and its redraw
    assert llm.requests[1].seed != llm.requests[2].seed  # a redraw is a different draw
    assert second.reply_text in PERSONAS["maths"].re_engage
    assert captions == [second.reply_text]  # nothing of the repeating draws was shown or spoken
    assert second.usage.llm_completion_tokens > 0  # the discarded draws are still metered


async def test_each_turn_has_its_own_reproducible_seed():
    llm = ScriptedLLM("What do you think?")
    pipeline, events = await _make(llm)
    await _ask(pipeline, events, "one")
    llm.reply = "Can you count them for me?"
    await _ask(pipeline, events, "two")
    await pipeline.aclose()
    seeds = [r.seed for r in llm.requests]
    assert None not in seeds and len(set(seeds)) == 2


async def test_a_model_that_says_nothing_still_gets_the_student_an_answer():
    pipeline, events = await _make(ScriptedLLM(""))
    done, captions, _ = await _ask(pipeline, events, "hello")
    await pipeline.aclose()
    assert done.reply_text in PERSONAS["maths"].re_engage and captions == [done.reply_text]


async def test_a_short_reply_said_again_word_for_word_is_a_repeat_too():
    llm = ScriptedLLM("No, you don't know.")
    pipeline, events = await _make(llm)
    await _ask(pipeline, events, "I don't know.")
    second, _, _ = await _ask(pipeline, events, "Oh, forty two?")
    await pipeline.aclose()
    assert second.reply_text in PERSONAS["maths"].re_engage


async def test_a_reply_that_opens_with_an_earlier_replys_sentence_is_drawn_again():
    llm = ScriptedLLM("That's a great question! Where does the water go?")
    pipeline, events = await _make(llm)
    await _ask(pipeline, events, "why do puddles dry up")
    llm.reply = "That's a great question! What happens to ice in the sun?"
    second, captions, _ = await _ask(pipeline, events, "why does ice melt")
    await pipeline.aclose()
    assert len(llm.requests) == 3
    assert not second.reply_text.startswith("That's a great question!")
    assert captions == [second.reply_text]


class _QuietOnsetTTS(ToneTTS):
    """Every piece starts with 50 ms of near-silence, as a voice model's does."""

    async def synthesize(self, text: str, voice: VoiceSettings) -> AsyncIterator[SynthesizedAudio]:
        async for audio in super().synthesize(text, voice):
            yield SynthesizedAudio(bytes(2 * 16 * 50) + audio.pcm16, audio.sample_rate)


async def test_the_answer_starts_with_its_first_sound_and_later_pieces_keep_their_own_rhythm():
    events: list = []

    async def sink(event) -> None:
        events.append(event)

    llm = ScriptedLLM("Nice try. Count the tens first.")
    engines = Engines(LoudnessVAD(), ScriptedSTT(), llm, _QuietOnsetTTS())
    pipeline = Pipeline(engines, TutorAgent(PERSONAS["maths"]), sink, PipelineConfig(lesson_plans=False))
    await _ask(pipeline, events, "is it 50")
    await pipeline.aclose()
    audio = b"".join(e.pcm16 for e in events if isinstance(e, ReplyAudio))
    samples = np.frombuffer(audio, dtype="<i2")
    loud = np.flatnonzero(samples)
    assert loud[0] == 10 * 16  # 10 ms of the 50 ms kept: the onset is not clipped
    assert 50 * 16 <= np.diff(loud).max() - 1  # the second piece's own quiet start is still there
