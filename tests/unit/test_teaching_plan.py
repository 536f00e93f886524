"""The teaching move for each turn: sums checked and worked out with the student, never handed
over; the tutor's own questions judged; misconceptions corrected; off-topic steered back; every
teaching reply ends with a question."""

from __future__ import annotations

from fractions import Fraction

import pytest

from pipelines.pedagogy import Move, Plan, Teacher
from pipelines.pedagogy.checks import Failed, check, tidy
from pipelines.pedagogy.lessons import LESSONS_DIR, lessons_for
from pipelines.pedagogy.numbers import mentions
from pipelines.personas import PERSONAS
from pipelines.spoken import split_sentences


def said(plan: Plan) -> str:
    return " ".join(part for part in (plan.lead, plan.close) if part)


class Lesson:
    """A session's lesson, each reply heard before the next turn."""

    def __init__(self, persona: str = "maths") -> None:
        self.teacher = Teacher(PERSONAS[persona])
        self.heard: list[str] = []

    def turn(self, text: str, **kwargs) -> Plan:
        plan = self.teacher.plan(text, self.heard, **kwargs)
        self.heard.append(said(plan))
        self.teacher.commit(plan)
        return plan


def test_a_wrong_times_table_answer_is_never_called_right_and_the_answer_is_not_told():
    plan = Lesson().turn("Seven times eight is fifty four, right?")
    assert plan.move is Move.SUM_WRONG and not plan.model
    assert plan.lead.startswith("Not quite")
    assert not mentions(said(plan), Fraction(56))
    assert plan.close.endswith("?")


def test_a_right_answer_is_praised_and_followed_by_practice():
    plan = Lesson().turn("six times seven is forty two")
    assert plan.move is Move.SUM_RIGHT and "well done" in plan.lead
    assert plan.close.endswith("?") and plan.pending_sum is not None


def test_just_tell_me_the_answer_gets_the_first_step_not_the_answer():
    plan = Lesson().turn("Just tell me what 15 plus 27 is.")
    assert plan.move is Move.WORK_IT_OUT and not mentions(said(plan), Fraction(42))
    assert plan.close == "First, what is twenty seven plus ten?"


def test_a_sum_is_worked_out_over_several_turns_and_judged_at_each_step():
    lesson = Lesson()
    assert lesson.turn("What is six times seven?").close == "What is five times seven?"
    wrong = lesson.turn("Is it forty?")
    assert wrong.move is Move.STEP_WRONG and wrong.close == "What is five times seven?"
    assert lesson.turn("thirty five").move is Move.STEP_RIGHT
    done = lesson.turn("forty two?")
    assert done.move is Move.SUM_RIGHT and "six times seven is forty two" in done.lead


def test_a_stuck_student_gets_a_hint_then_the_step_shown_but_never_the_final_answer():
    lesson = Lesson()
    lesson.turn("What is nine times six?")
    hint = lesson.turn("I don't know.")
    assert hint.move is Move.STUCK and "count up in nines" in hint.lead.lower()
    shown = lesson.turn("I still don't know.")
    assert "forty five" in shown.lead and shown.close == "Now add one more nine: what do you get?"
    assert not any(mentions(line, Fraction(54)) for line in lesson.heard)


def test_the_same_hint_is_not_said_twice_in_a_row_to_a_wrong_answer():
    lesson = Lesson()
    lesson.turn("What is eight times seven?")
    first, second = lesson.turn("fifty"), lesson.turn("fifty one")
    assert first.lead != second.lead and second.close != first.close


def test_the_answer_to_the_tutors_own_card_question_is_judged():
    lesson = Lesson()
    asked = lesson.turn("What is a prime number?")
    assert asked.move is Move.EXPLAIN and asked.pending_card is not None and asked.pending_card.accept
    right = next(a for a in asked.pending_card.accept if not a.isdigit())
    assert lesson.turn(right).move is Move.CARD_RIGHT


def test_off_topic_chat_is_steered_back_to_the_subject_with_a_question():
    plan = Lesson("science").turn("What's your favourite football team?")
    assert plan.move is Move.OFF_TOPIC and "science" in plan.lead and plan.close.endswith("?")


def test_a_request_for_tools_is_declined_kindly_and_teaching_goes_on():
    plan = Lesson("history").turn("Send an email to my teacher.", no_tools=True)
    assert plan.move is Move.NO_TOOLS and not plan.model and "can't" in plan.lead and plan.close.endswith("?")


@pytest.mark.parametrize("persona", sorted(PERSONAS))
def test_a_topic_question_gives_the_model_a_vetted_fact_to_phrase_and_the_card_asks_next(persona):
    card = lessons_for(persona).cards[0]
    plan = Lesson(persona).turn(f"Can you explain {card.match[0]}?")
    assert plan.move in (Move.EXPLAIN, Move.MISCONCEPTION)
    if plan.move is Move.EXPLAIN:
        assert (
            plan.model
            and card.fact in plan.note
            and plan.fallback == card.fact
            and plan.close == card.question
        )


@pytest.mark.parametrize("persona", sorted(PERSONAS))
def test_every_persona_has_vetted_cards_that_read_as_spoken_sentences(persona):
    lessons = lessons_for(persona)
    assert (LESSONS_DIR / f"{persona}.toml").exists() and len(lessons.cards) >= 15
    for card in lessons.cards:
        assert card.question.endswith("?"), card.topic
        assert len(split_sentences(card.fact)) == 1 and len(split_sentences(card.hint)) == 1, card.topic
        # A card's own question is not answered by its hint.
        for answer in card.accept:
            if len(answer) > 2:
                assert f" {answer.lower()} " not in f" {card.hint.lower()} ", (card.topic, answer)


def test_every_deterministic_reply_is_at_most_two_sentences():
    lesson = Lesson()
    for text in [
        "What is six times seven?",
        "Is it forty?",
        "I don't know.",
        "thirty five",
        "forty two",
        "A triangle has four sides.",
        "What's your favourite football team?",
        "Just tell me the answer.",
    ]:
        plan = lesson.turn(text)
        if not plan.model:
            assert len(split_sentences(said(plan))) <= 2, said(plan)


def test_a_model_sentence_with_a_wrong_sum_an_answer_or_an_invented_word_fails_its_check():
    plan = Plan(Move.OPEN, model=True, grounding="maths", forbidden=(Fraction(56),))
    assert check("Six times seven is forty three.", plan) is Failed.WRONG_SUM
    assert check("The answer is fifty six.", plan) is Failed.GAVE_ANSWER
    assert check("This is called Fermat's Little Theorem.", plan) is Failed.RARE_WORD
    assert check("Quaternions are fun.", plan) is Failed.RARE_WORD
    assert check("Six times seven is forty two.", plan) is None
    grounded = Plan(
        Move.EXPLAIN, model=True, grounding="photosynthesis", fact="Plants make food by photosynthesis."
    )
    assert check("Plants use photosynthesis to make their food.", grounded) is None
    assert check("Plants are green and grow tall.", grounded) is Failed.OFF_FACT


def test_a_stock_opener_says_nothing_and_is_dropped():
    assert tidy("A wise question!") == ""
    assert tidy("In simple words, a fraction is a part.") == "A fraction is a part."


def test_the_model_never_says_the_lead_again_after_the_plan_said_it():
    # Heard in the benchmark: "Right, let's see: Ah, let's see: you're welcome to try ..."
    assert tidy("Ah, let's see: you're welcome to try.") == "You're welcome to try."
    assert tidy("Hmm, let me think. ") == ""
    assert tidy("Let's see, seven tens make seventy.") == "Seven tens make seventy."
    assert tidy("Let's see what happens when we add them.") == "Let's see what happens when we add them."


def test_a_child_who_sounds_unhappy_gets_a_kind_word_and_a_grown_up_not_a_cheerful_back_to_work():
    plan = Lesson("science").turn("i feel sad today because my friend was mean")
    assert plan.move is Move.CHECK_IN and "grown-up" in plan.close and not plan.model


@pytest.mark.parametrize(
    "said",
    [
        "The cut on his chest is still dripping blood.",
        "i fell over and my knee is bleeding",
        "I think I broke my finger",
    ],
)
def test_someone_hurt_gets_care_and_a_grown_up_before_any_lesson(said):
    # Heard in the benchmark: the first of these got "the place of a digit tells you its value".
    plan = Lesson("maths").turn(said)
    assert plan.move is Move.CHECK_IN and "grown-up" in plan.close and not plan.model


def test_a_lesson_about_the_body_is_not_taken_for_an_injury():
    assert Lesson("science").turn("how does blood flow through the heart").move is not Move.CHECK_IN


def test_news_from_the_students_day_is_thanked_and_the_lesson_goes_on():
    plan = Lesson("history").turn("I got a new puppy yesterday")
    assert plan.move is Move.OFF_TOPIC and "history" in plan.lead and plan.close.endswith("?")


@pytest.mark.parametrize("words", ["He seems pretty adaptable.", "the film ends with a hint of romance"])
def test_a_statement_that_touches_no_subject_is_thanked_and_steered_back_without_the_model(words):
    # Asked to answer such words, a 135M model said "I'm afraid of him." (benchmark, held-out speech).
    plan = Lesson("maths").turn(words)
    assert plan.move is Move.OFF_TOPIC and not plan.model and "maths" in plan.lead
    assert plan.close.endswith("?") and plan.pending_card is not None


def test_a_statement_off_the_subject_while_a_question_waits_gets_that_question_again_once():
    lesson = Lesson("science")
    asked = lesson.turn("What is the water cycle?")
    assert asked.pending_card is not None and asked.pending_card.accept
    plan = lesson.turn("my brother went to the cinema with his friends on saturday")
    assert plan.move is Move.OFF_TOPIC and not plan.model
    assert plan.close == asked.close and plan.pending_card is asked.pending_card
    # The same question a third time is not a conversation: another one instead.
    plan = lesson.turn("the film had a dragon in it that breathed out fire")
    assert plan.move is Move.OFF_TOPIC and not plan.model
    assert plan.close.endswith("?") and plan.close != asked.close


def test_words_after_the_tutor_asked_for_the_students_own_thoughts_are_their_answer_not_a_change_of_subject():
    lesson = Lesson("history")
    lesson.turn("hello we are doing the vikings")
    opened = lesson.turn("why did they have long ships")
    assert opened.move is Move.OPEN and opened.pending_card is None and opened.close.endswith("?")
    answer = lesson.turn("i think so they could row up rivers fast")
    assert answer.move is Move.OPEN and answer.model


def test_a_request_off_the_subject_is_not_thanked_as_news():
    plan = Lesson("language").turn("Teach me a magic trick with cards")
    assert plan.move is Move.OFF_TOPIC and not plan.lead.startswith("Thanks")


@pytest.mark.parametrize("words", ["is it a hour or an hour", "what rhymes with purple"])
def test_a_question_without_its_question_mark_is_not_taken_for_a_statement(words):
    assert Lesson("language").turn(words).move is not Move.OFF_TOPIC


def test_a_question_off_the_lesson_cards_still_gets_the_models_answer():
    # Questions keep the model: "what does gregarious mean?" is the language tutor's to answer,
    # though no lesson card or its words cover it.
    plan = Lesson("language").turn("What does gregarious mean?")
    assert plan.move is Move.OPEN and plan.model


def test_a_greeting_is_answered_by_the_tutor_by_name():
    plan = Lesson("language").turn("hello!")
    assert plan.move is Move.GREETING and "Lee" in plan.lead and plan.close.endswith("?")


def test_a_question_of_the_students_own_is_never_taken_as_an_answer_to_the_tutors():
    lesson = Lesson("science")
    asked = lesson.turn("What is the water cycle?")
    assert asked.pending_card is not None and asked.pending_card.accept
    word = next(a for a in asked.pending_card.accept if len(a) > 3)
    assert lesson.turn(f"why is {word} important?").move not in (Move.CARD_RIGHT, Move.CARD_WRONG)


def test_a_number_nobody_gave_the_model_is_not_heard():
    plan = Plan(Move.OPEN, model=True, grounding="how old was tutankhamun")
    assert check("Tutankhamun was born in 1285 BC.", plan) is Failed.INVENTED_NUMBER
    assert check("He was only a boy when he became king.", plan) is None


def test_and_adds_when_the_child_claims_a_total():
    plan = Lesson().turn("so two thirds and one third makes one whole, right?")
    assert plan.move is Move.SUM_RIGHT


def test_a_goodbye_gets_a_warm_goodbye_not_a_new_question():
    plan = Lesson().turn("can we do more next time?")
    assert plan.move is Move.GOODBYE and not plan.model and not plan.close


def test_the_right_answer_to_the_tutors_question_is_heard_as_a_finished_turn():
    lesson = Lesson()
    assert lesson.turn("What is six times seven?").close == "What is five times seven?"
    hears = lesson.teacher.hears_right_answer
    assert hears("Thirty five.") and hears("is it 35?") and hears("thirty five, right?")
    assert hears("forty two")  # the whole sum's answer is finished too
    # A start that may go on, a wrong number, or a new sum is not a finished answer.
    assert not hears("Thirty") and not hears("thirty five and") and not hears("thirty six")
    assert not hears("what is thirty five plus one?") and not hears("5 times 7 is 35")


def test_the_right_answer_to_a_card_question_is_heard_as_finished_and_nothing_is_without_a_question():
    lesson = Lesson()
    assert not lesson.teacher.hears_right_answer("fifty six")  # nothing asked yet
    asked = lesson.turn("What is a prime number?")
    right = next(a for a in asked.pending_card.accept if not a.isdigit())
    assert lesson.teacher.hears_right_answer(right)
    assert not lesson.teacher.hears_right_answer(f"I was thinking that maybe it could be {right} or")
