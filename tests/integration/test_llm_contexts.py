"""The embedded language model keeps each conversation's prompt warm, and reads a question
heard so far ahead of time."""

from __future__ import annotations

import asyncio

import pytest

from models.base import GenerationRequest
from models.scheduling import Priority, Urgency, work_scope
from pipelines.agent import TutorAgent
from pipelines.personas import PERSONAS

pytestmark = pytest.mark.models


async def _answer(llm, agent: TutorAgent, question: str) -> str:
    request = GenerationRequest(agent.messages_for(question), max_tokens=12)
    text = "".join([piece async for piece in llm.stream(request)])
    agent.remember(question, text.strip())
    return text


async def test_a_question_heard_so_far_is_read_once_and_only_its_new_words_later(real_engines):
    llm = real_engines.llm
    agent = TutorAgent(PERSONAS["maths"])
    # A question no other test asks, so no context holds it already.
    first = await llm.prefill(agent.messages_for("Why does a magnet pull on the"))
    again = await llm.prefill(agent.messages_for("Why does a magnet pull on the"))
    longer = await llm.prefill(agent.messages_for("Why does a magnet pull on the fridge door but not on wood"))
    assert first > 0
    assert again == 0  # nothing new was heard
    assert 0 < longer <= 10  # only the six new words, not the prompt again
    assert (await _answer(llm, agent, "Why does a magnet pull on the fridge door but not on wood?")).strip()


async def test_two_conversations_answer_at_once_without_mixing(real_engines):
    llm = real_engines.llm
    maths, history = TutorAgent(PERSONAS["maths"]), TutorAgent(PERSONAS["history"])
    with work_scope(Priority(Urgency.NOW)):
        answers = await asyncio.gather(
            _answer(llm, maths, "What is two plus two?"),
            _answer(llm, history, "Who built the pyramids?"),
        )
    assert all(a.strip() for a in answers)
    # Each conversation's next turn still works on top of its own history.
    follow_ups = await asyncio.gather(
        _answer(llm, maths, "And three plus three?"), _answer(llm, history, "When was that?")
    )
    assert all(a.strip() for a in follow_ups)
