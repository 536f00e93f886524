"""The teaching plan in a running session (scripted model): what the model writes is checked
before anyone hears or sees it, sums never reach the model, and the lesson moves on only when a
reply was heard."""

from __future__ import annotations

import asyncio

from models.silence_tts import SilenceTTS
from pipelines.agent import TutorAgent
from pipelines.budgets import BudgetPolicy
from pipelines.config import PipelineConfig
from pipelines.frames import PipelineError, ReplySentence, ReplyTextDelta, TurnDone, TurnStatus
from pipelines.pedagogy.lessons import lessons_for
from pipelines.personas import PERSONAS
from pipelines.pipeline import Engines, Pipeline
from pipelines.spoken import split_sentences
from tests.fakes import LoudnessVAD, ScriptedLLM, ScriptedSTT


async def _make(llm: ScriptedLLM, persona: str = "maths") -> tuple[Pipeline, list]:
    events: list = []

    async def sink(event) -> None:
        events.append(event)

    engines = Engines(LoudnessVAD(), ScriptedSTT(), llm, SilenceTTS())
    return Pipeline(engines, TutorAgent(PERSONAS[persona]), sink), events


async def _ask(pipeline: Pipeline, events: list, text: str) -> tuple[TurnDone, list[str], str]:
    turn_id = await pipeline.submit_text(text)
    for _ in range(1000):
        done = next((e for e in events if isinstance(e, TurnDone) and e.turn_id == turn_id), None)
        if done:
            captions = [e.text for e in events if isinstance(e, ReplySentence) and e.turn_id == turn_id]
            deltas = "".join(
                e.delta for e in events if isinstance(e, ReplyTextDelta) and e.turn_id == turn_id
            )
            return done, captions, deltas
        await asyncio.sleep(0.01)
    raise AssertionError("no turn.done")


async def test_an_invented_fact_is_never_heard_and_the_vetted_fact_is_said_instead():
    llm = ScriptedLLM("A prime is called a quaternion, as Fermat's Little Theorem says.")
    pipeline, events = await _make(llm)
    card = lessons_for("maths").find("prime")
    done, captions, deltas = await _ask(pipeline, events, "What is a prime number?")
    await pipeline.aclose()
    request = llm.requests[0]
    # The model phrases the fact from the persona, the fact and the question alone.
    assert len(llm.requests) == 1 and [m.role for m in request.messages] == ["system", "user"]
    assert card.fact in request.messages[0].content and request.messages[1].content == "What is a prime number?"
    for shown in (done.reply_text, deltas, *captions):
        assert "quaternion" not in shown.lower() and "fermat" not in shown.lower()
    # After the lead ("Here's the idea:") the fact goes on in lower case.
    assert card.fact[1:] in done.reply_text and done.reply_text.endswith(card.question)
    assert len(split_sentences(done.reply_text)) <= 2


async def test_a_good_phrasing_of_the_fact_is_spoken_after_the_lead_and_before_the_question():
    card = lessons_for("maths").find("prime")
    llm = ScriptedLLM(f"Great question! {card.fact} What do you think?")
    pipeline, events = await _make(llm)
    done, captions, _ = await _ask(pipeline, events, "What is a prime number?")
    await pipeline.aclose()
    # The stock opener and the model's own question are dropped; the card asks instead.
    assert "Great question" not in done.reply_text and "What do you think" not in done.reply_text
    assert captions[-2].lower() == card.fact.lower() and captions[-1] == card.question


async def test_a_wrong_sum_from_the_model_is_never_heard():
    llm = ScriptedLLM("Six times seven is forty three, which is odd.")
    pipeline, events = await _make(llm)
    done, captions, _ = await _ask(pipeline, events, "Tell me something cool about odd numbers and sums")
    await pipeline.aclose()
    assert "forty three" not in done.reply_text and not any("forty three" in c for c in captions)
    assert done.reply_text.endswith("?")


async def test_sums_are_checked_and_worked_out_without_asking_the_model():
    llm = ScriptedLLM("Yes, that's right!")  # a model that agrees with everything
    pipeline, events = await _make(llm)
    wrong, _, _ = await _ask(pipeline, events, "Seven times eight is fifty four, right?")
    step, _, _ = await _ask(pipeline, events, "forty")
    final, _, _ = await _ask(pipeline, events, "fifty six")
    await pipeline.aclose()
    assert llm.requests == []
    assert wrong.reply_text.startswith("Not quite") and "fifty six" not in wrong.reply_text
    assert step.reply_text.endswith("Now add two more eights: what do you get?")
    assert "seven times eight is fifty six, well done" in final.reply_text


async def test_a_ten_turn_lesson_never_repeats_a_reply():
    llm = ScriptedLLM("Let's think about it together.")
    pipeline, events = await _make(llm)
    replies = []
    for text in [
        "What is six times seven?",
        "Is it forty?",
        "I don't know.",
        "I still don't know.",
        "forty",
        "forty two",
        "What is a prime number?",
        "seven",
        "What's your favourite game?",
        "Just tell me.",
    ]:
        done, _, _ = await _ask(pipeline, events, text)
        replies.append(done.reply_text)
    await pipeline.aclose()
    assert len(set(replies)) == len(replies), replies
    assert all(reply.endswith("?") for reply in replies), replies


async def test_a_model_too_slow_for_its_deadline_is_cut_off_and_the_vetted_fact_is_said():
    card = lessons_for("maths").find("prime")
    llm = ScriptedLLM("Primes are numbers with special friends that dance together.", token_delay_s=0.4)
    pipeline, events = await _make(llm)
    started = asyncio.get_running_loop().time()
    done, captions, _ = await _ask(pipeline, events, "What is a prime number?")
    took = asyncio.get_running_loop().time() - started
    await pipeline.aclose()
    assert card.fact[1:] in done.reply_text and "dance" not in done.reply_text
    assert llm.requests[0].cancel.is_set()  # the generation was stopped, not left running
    assert took < 5  # a deadline of about a second, not the model's eight slow words


async def test_a_draw_stopped_as_a_repeat_never_says_the_half_sentence_it_held():
    # The model's sentence is held until it is whole; a draw stopped midway (it began to repeat
    # an earlier reply) leaves a fragment ("I see you're going to the") that is never said.
    reply = "Ah, I see you're going to the right place with that, dear friend."
    llm = ScriptedLLM(reply)
    pipeline, events = await _make(llm, "language")
    await _ask(pipeline, events, "What does gregarious mean?")
    second, captions, deltas = await _ask(pipeline, events, "He might even have been made amiable himself.")
    await pipeline.aclose()
    assert len(llm.requests) >= 2  # the model was asked again and drew the same reply
    for shown in (second.reply_text, deltas, *captions):
        assert "going to the." not in shown and "you're." not in shown
    for sentence in split_sentences(second.reply_text):
        assert sentence.rstrip().endswith((".", "?", "!", ":")), sentence


async def test_the_fact_said_after_a_missed_deadline_starts_with_a_few_words_so_no_gap_opens():
    # The lead plays while the model writes; when the model misses its deadline the card's fact
    # is said instead, and its first words are synthesised alone: the student hears the fact
    # start while the rest of it is made, instead of a silence as long as the whole sentence.
    card = lessons_for("maths").find("prime")
    llm = ScriptedLLM("Numbers have special friends that dance together.", token_delay_s=0.4)
    pipeline, events = await _make(llm)
    done, captions, _ = await _ask(pipeline, events, "What is a prime number?")
    await pipeline.aclose()
    fact_pieces = captions[1:-1]  # after the lead, before the card's question
    assert 2 <= len(fact_pieces[0].split()) <= 4
    assert " ".join(fact_pieces).lower() == card.fact.lower()
    assert card.fact[1:] in done.reply_text


async def test_a_model_set_aside_at_its_deadline_is_no_stall_while_the_fact_is_heard():
    # The model never writes a word. Its deadline passes and the card's fact is said, which takes
    # longer to hear than the stall limit: the student hears all of it and the card's question,
    # with no apology, since after its deadline the reply was no longer waiting on the model.
    card = lessons_for("maths").find("prime")
    llm = ScriptedLLM("Never said.", token_delay_s=30)
    events: list = []

    async def sink(event) -> None:
        events.append(event)

    engines = Engines(LoudnessVAD(), ScriptedSTT(), llm, SilenceTTS(ms_per_char=25))
    config = PipelineConfig(budgets=BudgetPolicy(stall_ms=2000))
    pipeline = Pipeline(engines, TutorAgent(PERSONAS["maths"]), sink, config)
    done, _, _ = await _ask(pipeline, events, "What is a prime number?")
    await pipeline.aclose()
    assert done.status is TurnStatus.COMPLETED
    assert card.fact[1:] in done.reply_text and done.reply_text.endswith(card.question)
    assert not [e for e in events if isinstance(e, PipelineError)]

