"""A teacher's guidance note reaches the tutor's next turn as context, and is never said: the
reply screen refuses a sentence that reads it out, as it refuses any run of the instructions."""

from __future__ import annotations

from pipelines.agent import TutorAgent
from pipelines.frames import SafetyCategory
from pipelines.personas import PERSONAS
from pipelines.safety.guard import ReplyGuard

NOTE = "They are working on fractions and find common denominators hard; slow down."


def _agent() -> TutorAgent:
    return TutorAgent(persona=next(iter(PERSONAS.values())))


def test_the_note_is_in_the_system_prompt_of_every_later_turn() -> None:
    agent = _agent()
    assert NOTE not in agent.messages_for("What is a half of ten?")[0].content
    agent.guidance = NOTE
    for question in ("What is a half of ten?", "And a quarter?"):
        messages = agent.messages_for(question)
        assert messages[0].role == "system" and NOTE in messages[0].content
        assert all(NOTE not in m.content for m in messages[1:])  # context, not the student's words


def test_a_reply_that_reads_the_note_out_is_replaced_before_anyone_hears_it() -> None:
    agent = _agent()
    agent.guidance = NOTE
    screen = ReplyGuard().output(agent.messages_for("Can you help me?"))
    fine = screen.check("Fractions need the same bottom number before we add them.")
    assert fine.category is None
    leak = ReplyGuard().output(agent.messages_for("Can you help me?")).check(
        "My teacher says they are working on fractions and find common denominators hard."
    )
    assert leak.category is SafetyCategory.PROMPT_LEAK and "common denominators hard" not in leak.text
