"""Conversation memory: bounded by tokens, forgetting in big steps, remembering what was heard."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipelines.agent import TutorAgent, estimate_tokens
from pipelines.personas import PERSONAS


@given(st.lists(st.tuples(st.text(max_size=3000), st.text(max_size=600)), max_size=30))
def test_history_never_exceeds_its_token_budget(exchanges):
    agent = TutorAgent(PERSONAS["maths"], max_history_tokens=300)
    for user, reply in exchanges:
        agent.remember(user, reply)
        assert len(agent.history) == 1 or agent.history_tokens() <= agent.max_history_tokens
        assert agent.history_tokens() <= agent.max_history_tokens + estimate_tokens("x" * 600) + 8


def test_forgetting_happens_in_big_steps_so_the_cached_prompt_start_stays_the_same():
    agent = TutorAgent(PERSONAS["maths"], max_history_tokens=200)
    starts = []
    for turn in range(12):
        question = f"question number {turn} about fractions and halves"
        agent.remember(question, f"Reply {turn}: what is half of {turn}?")
        starts.append(agent.history[0].user)
    changes = sum(a != b for a, b in zip(starts, starts[1:], strict=False))
    assert changes <= 3  # dropped a few at a time, not one per turn


def test_the_prompt_holds_the_persona_then_the_exchanges_then_the_question():
    agent = TutorAgent(PERSONAS["science"])
    agent.remember("why is the sky blue", "What colour does sunlight split into?")
    messages = agent.messages_for("a rainbow")
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0].content == PERSONAS["science"].system_prompt
    assert messages[-1].content == "a rainbow"


def test_a_re_engaging_question_is_never_one_the_student_just_heard():
    agent = TutorAgent(PERSONAS["maths"])
    first = agent.re_engage([])
    second = agent.re_engage([first])
    assert first != second and second.endswith("?")
