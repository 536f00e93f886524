"""The turn policy: finished or thinking, from the evidence of one pause."""

from __future__ import annotations

from pipelines.config import TurnConfig
from pipelines.turn_policy import Evidence, TurnPolicy, Verdict, punctuation_verdict

CONFIG = TurnConfig()
POLICY = TurnPolicy(CONFIG)


def test_a_finished_utterance_is_answered_after_a_short_silence():
    decision = POLICY.decide(Evidence(completion=0.9, transcript="What is seven times eight?"))
    assert decision.verdict is Verdict.COMPLETE and not decision.thinking
    assert decision.commit_at_ms == CONFIG.commit_silence_ms < CONFIG.end_of_turn_silence_ms


def test_a_thinking_pause_gets_the_patience_and_the_tutor_says_it_is_waiting():
    decision = POLICY.decide(Evidence(completion=0.1))
    assert decision.verdict is Verdict.INCOMPLETE and decision.thinking
    assert decision.commit_at_ms == CONFIG.patience_ms == 3000


def test_right_after_a_tutor_question_the_patience_is_longer():
    default = POLICY.decide(Evidence(completion=0.1)).commit_at_ms
    after_question = POLICY.decide(Evidence(completion=0.1, tutor_asked=True)).commit_at_ms
    assert after_question == CONFIG.question_patience_ms > default


def test_any_signal_saying_unfinished_wins_over_one_saying_finished():
    assert POLICY.verdict(Evidence(completion=0.9, transcript="I think it is, um,")) is Verdict.INCOMPLETE
    assert POLICY.verdict(Evidence(completion=0.2, transcript="Fifty six.")) is Verdict.INCOMPLETE


def test_words_the_engine_is_sure_end_a_sentence_outvote_a_doubting_turn_model_after_a_shorter_wait():
    sure = Evidence(completion=0.1, transcript="He was not an old young man.", sentence_end=0.9)
    decision = POLICY.decide(sure)
    assert decision.verdict is Verdict.LIKELY and decision.thinking, "still silent, and says it waits"
    assert CONFIG.commit_silence_ms < decision.commit_at_ms == 1500 == CONFIG.patience_ms // 2
    after_question = Evidence(completion=0.1, transcript="Fifty six.", sentence_end=0.9, tutor_asked=True)
    assert POLICY.decide(after_question).commit_at_ms == 2500 == CONFIG.question_patience_ms // 2


def test_the_words_do_not_outvote_when_the_engine_was_unsure_or_the_sentence_is_open():
    unsure = Evidence(completion=0.1, transcript="Mr. Quilter is the apostle.", sentence_end=0.5)
    no_probability = Evidence(completion=0.1, transcript="Fifty six.")  # an engine that cannot say
    open_ended = Evidence(completion=0.1, transcript="I think it is,", sentence_end=0.95)
    for evidence in (unsure, no_probability, open_ended):
        assert POLICY.decide(evidence).commit_at_ms == CONFIG.patience_ms, evidence
    # Nor can they overrule a thinking vote that is their own: an open sentence the model calls done.
    open_but_sure = Evidence(completion=0.9, transcript="and then", sentence_end=0.95)
    assert POLICY.verdict(open_but_sure) is Verdict.INCOMPLETE


def test_the_outvoting_wait_is_a_share_of_the_patience_and_can_be_turned_off():
    sure = Evidence(completion=0.1, transcript="Fifty six.", sentence_end=0.99)
    assert TurnPolicy(TurnConfig(patience_ms=6000)).decide(sure).commit_at_ms == 3000  # a patient classroom
    off = TurnPolicy(TurnConfig(outvoted_share=1.0)).decide(sure)
    assert off.verdict is Verdict.INCOMPLETE and off.commit_at_ms == CONFIG.patience_ms


def test_with_no_evidence_yet_the_fixed_silence_applies():
    decision = POLICY.decide(Evidence())
    assert decision.verdict is Verdict.UNKNOWN and decision.commit_at_ms == CONFIG.end_of_turn_silence_ms


def test_whisper_punctuation_alone_decides_when_there_is_no_turn_model():
    assert POLICY.verdict(Evidence(transcript="Fifty six.")) is Verdict.COMPLETE
    assert POLICY.verdict(Evidence(transcript="the answer is")) is Verdict.INCOMPLETE
    assert TurnPolicy(TurnConfig(use_punctuation=False)).verdict(Evidence(transcript="x.")) is Verdict.UNKNOWN


def test_punctuation_reads_open_endings_as_unfinished():
    assert punctuation_verdict("Is it eight?") is Verdict.COMPLETE
    assert punctuation_verdict('He said "stop."') is Verdict.COMPLETE
    for open_ended in ("Well, I think...", "Seven times eight is…", "First,", "and then -", "the"):
        assert punctuation_verdict(open_ended) is Verdict.INCOMPLETE, open_ended
    assert punctuation_verdict("  ") is Verdict.UNKNOWN


def test_a_pause_the_turn_model_only_just_calls_finished_waits_longer_than_a_sure_one():
    # A reader's pause inside a sentence: "The ache of his overstrained eyes." then 540 ms of
    # silence, Smart Turn 0.62, and the sentence goes on.
    unsure = POLICY.decide(Evidence(completion=0.62, transcript="The ache of his overstrained eyes."))
    sure = POLICY.decide(Evidence(completion=0.95, transcript="The ache of his overstrained eyes."))
    assert unsure.verdict is sure.verdict is Verdict.COMPLETE and not unsure.thinking
    assert sure.commit_at_ms == CONFIG.commit_silence_ms
    assert unsure.commit_at_ms == CONFIG.unsure_commit_ms == 1000
    # Still well short of the wait for a sentence only the audio model doubts, or for a thinker.
    assert unsure.commit_at_ms < POLICY.decide(
        Evidence(completion=0.1, transcript="Fifty six.", sentence_end=0.9)
    ).commit_at_ms < CONFIG.patience_ms
    assert POLICY.decide(Evidence(completion=CONFIG.sure_completion, transcript="Yes.")).commit_at_ms == 250


def test_the_right_answer_or_words_alone_are_not_held_back_as_unsure():
    answer = Evidence(completion=0.55, transcript="56", tutor_asked=True, right_answer=True)
    assert POLICY.decide(answer).commit_at_ms == CONFIG.commit_silence_ms
    no_turn_model = Evidence(transcript="Fifty six.")
    assert POLICY.decide(no_turn_model).commit_at_ms == CONFIG.commit_silence_ms
    off = TurnPolicy(TurnConfig(unsure_commit_ms=250))  # a session can turn the grading off
    assert off.decide(Evidence(completion=0.55, transcript="Fifty six.")).commit_at_ms == 250


def test_the_threshold_is_the_models_own_decision_point():
    assert CONFIG.completion_threshold == 0.5
    assert POLICY.verdict(Evidence(completion=0.5)) is Verdict.COMPLETE
    assert POLICY.verdict(Evidence(completion=0.49)) is Verdict.INCOMPLETE


def test_the_prompt_action_speaks_up_at_the_patience_and_waits_until_the_maximum_silence():
    policy = TurnPolicy(TurnConfig(patience_action="prompt", patience_ms=2000, max_silence_ms=6000))
    decision = policy.decide(Evidence(completion=0.1))
    assert decision.thinking and decision.prompt_at_ms == 2000 and decision.commit_at_ms == 6000


def test_no_pause_outlasts_the_maximum_silence():
    policy = TurnPolicy(TurnConfig(question_patience_ms=20_000, max_silence_ms=7000))
    assert policy.decide(Evidence(completion=0.0, tutor_asked=True)).commit_at_ms == 7000


def test_without_the_adaptive_policy_the_end_of_turn_is_a_fixed_silence():
    policy = TurnPolicy(TurnConfig(adaptive=False, end_of_turn_silence_ms=700))
    for evidence in (Evidence(completion=0.99), Evidence(completion=0.0)):
        decision = policy.decide(evidence)
        assert decision.commit_at_ms == 700 and not decision.thinking


def test_finished_waits_for_the_words_on_their_way_but_unfinished_does_not():
    waiting = Evidence(completion=0.9, awaiting_transcript=True)
    assert POLICY.verdict(waiting) is Verdict.PENDING  # the answer needs the words anyway
    assert POLICY.verdict(Evidence(completion=0.1, awaiting_transcript=True)) is Verdict.INCOMPLETE
    assert TurnPolicy(TurnConfig(use_punctuation=False)).verdict(waiting) is Verdict.COMPLETE


def test_a_late_score_is_waited_for_not_overtaken_by_the_fixed_silence():
    decision = POLICY.decide(Evidence(awaiting_completion=True, transcript="Fifty six."))
    assert decision.verdict is Verdict.PENDING and not decision.thinking
    assert decision.commit_at_ms == CONFIG.patience_ms > CONFIG.end_of_turn_silence_ms


def test_the_right_answer_to_the_tutors_question_is_finished_whatever_the_audio_model_says():
    # Short answers are where an audio turn model is least sure ("56" scored 0.44 here); the lesson
    # knows the answer it waits for, so a child who says it is answered at once, not after 5 s.
    evidence = Evidence(completion=0.2, transcript="56", tutor_asked=True, right_answer=True)
    decision = POLICY.decide(evidence)
    assert decision.verdict is Verdict.COMPLETE and decision.commit_at_ms == CONFIG.commit_silence_ms
    assert POLICY.decide(Evidence(completion=0.2, transcript="56", tutor_asked=True)).thinking


def test_while_the_words_that_may_be_the_answer_are_on_their_way_the_student_is_not_yet_thinking():
    waiting = Evidence(completion=0.2, tutor_asked=True, expects_answer=True, awaiting_transcript=True)
    decision = POLICY.decide(waiting)
    assert decision.verdict is Verdict.PENDING and not decision.thinking
