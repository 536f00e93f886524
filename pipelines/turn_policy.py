"""The turn policy: has the student finished, or are they thinking? Pure: evidence in, a decision
out, so every rule is tested without audio or engines.

Silence alone is a poor judge: a complete question deserves an answer in about 200 ms, a child
stopping mid-sentence to think deserves seconds. The evidence:
- a turn-completion score of the audio so far (an audio model such as Smart Turn), taken once
  the student pauses;
- Whisper's own punctuation of the speculative transcript (a sentence that ends without a full
  stop, or with a comma or an ellipsis, is not finished), and how sure Whisper was of that full
  stop;
- whether the tutor has just asked a question (finding an answer takes longer);
- whether the words so far are the right answer to the tutor's question: a child who has said
  it has finished, however short the audio and however unsure the audio model is of it.

Any known signal saying "not finished" wins: cutting a learner off costs more than a few hundred
milliseconds. One exception, short of a full commit: when only the audio model doubts a sentence
that Whisper closed with a full stop it was sure of, the turn is probably finished (the audio model
misreads the falling tone of some finished sentences), so it ends after a shorter wait than the
patience. Confidence grades the wait the other way too: a pause the audio model only just calls
finished is more often a reader's pause inside a sentence, so it waits a little longer than a
sure one. No verdict is reached while evidence that was asked for is still on its way (a busy
machine delays the score and the transcript): the answer cannot start before the words exist
anyway, so hearing them first costs the answer nothing, and a late score must not let a fixed
silence cut the learner off. Evidence that never comes is waited for up to the patience. With no
evidence coming at all (no turn model, no transcript) the fixed end-of-turn silence applies.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pipelines.config import TurnConfig


class Verdict(enum.Enum):
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    PENDING = "pending"  # evidence is on its way: wait for it
    LIKELY = "likely"  # only the audio model doubts a sentence the words say is whole
    UNKNOWN = "unknown"  # no evidence is coming


@dataclass(slots=True)
class Evidence:
    """What is known about the current pause."""

    completion: float | None = None  # P(finished) from a turn model; None: not (yet) scored
    transcript: str | None = None  # the speculative transcript of the utterance so far
    sentence_end: float | None = None  # the STT engine's P(a sentence ends after the last word)
    tutor_asked: bool = False  # the last reply the student heard ended with a question
    awaiting_transcript: bool = False  # the speculative transcript is on its way
    awaiting_completion: bool = False  # the turn model's score is on its way
    expects_answer: bool = False  # the lesson waits on an answer it can judge as right
    right_answer: bool = False  # the transcript is the right answer to the tutor's question


@dataclass(frozen=True, slots=True)
class Decision:
    verdict: Verdict
    commit_at_ms: int  # silence at which the turn ends
    thinking: bool  # waiting out a thinking pause: stay silent, tell the client
    prompt_at_ms: int | None = None  # silence at which to say the gentle prompt, if any


_FINISHED = (".", "?", "!")
_UNFINISHED = (",", "...", "…", "-", ";", ":")


def punctuation_verdict(text: str) -> Verdict:
    """Whisper punctuates what it hears: a full stop, question or exclamation mark ends a sentence;
    a comma, an ellipsis, a dash or no mark at all leaves it open."""
    words = text.strip().strip("\"'")
    if not words:
        return Verdict.UNKNOWN
    if words.endswith(_UNFINISHED):
        return Verdict.INCOMPLETE
    return Verdict.COMPLETE if words.endswith(_FINISHED) else Verdict.INCOMPLETE


class TurnPolicy:
    def __init__(self, config: TurnConfig) -> None:
        self.config = config

    def verdict(self, evidence: Evidence) -> Verdict:
        cfg = self.config
        if evidence.right_answer and evidence.transcript is not None:
            return Verdict.COMPLETE
        audio_vote = words_vote = None
        if evidence.completion is not None:
            complete = evidence.completion >= cfg.completion_threshold
            audio_vote = Verdict.COMPLETE if complete else Verdict.INCOMPLETE
        if cfg.use_punctuation and evidence.transcript is not None:
            words_vote = punctuation_verdict(evidence.transcript)
        votes = [vote for vote in (audio_vote, words_vote) if vote is not None]
        if evidence.expects_answer and evidence.awaiting_transcript:
            return Verdict.PENDING  # the words may be the answer: hear them before calling it thinking
        if Verdict.INCOMPLETE in votes:
            outvoted = audio_vote is Verdict.INCOMPLETE and words_vote is Verdict.COMPLETE
            return Verdict.LIKELY if outvoted and self._words_are_sure(evidence) else Verdict.INCOMPLETE
        if evidence.awaiting_completion or (cfg.use_punctuation and evidence.awaiting_transcript):
            return Verdict.PENDING
        return Verdict.COMPLETE if Verdict.COMPLETE in votes else Verdict.UNKNOWN

    def _words_are_sure(self, evidence: Evidence) -> bool:
        """The engine was sure a sentence ends after the last word, so the words may outvote a
        turn model that alone says "unfinished"."""
        cfg = self.config
        sure = evidence.sentence_end is not None and evidence.sentence_end >= cfg.sure_sentence_end
        return cfg.outvoted_share < 1.0 and sure

    def _unsure(self, evidence: Evidence) -> bool:
        """The turn model only just called a finished-sounding pause finished. The right answer
        to the tutor's question is finished however the audio sounds."""
        score = evidence.completion
        return not evidence.right_answer and score is not None and score < self.config.sure_completion

    def patience_ms(self, evidence: Evidence) -> int:
        cfg = self.config
        return cfg.question_patience_ms if evidence.tutor_asked else cfg.patience_ms

    def decide(self, evidence: Evidence) -> Decision:
        cfg = self.config
        if not cfg.adaptive:
            return Decision(Verdict.UNKNOWN, cfg.end_of_turn_silence_ms, thinking=False)
        verdict = self.verdict(evidence)
        if verdict is Verdict.COMPLETE:
            wait = cfg.commit_silence_ms
            if self._unsure(evidence):
                wait = max(wait, cfg.unsure_commit_ms)
            return Decision(verdict, min(wait, cfg.max_silence_ms), thinking=False)
        if verdict is Verdict.UNKNOWN:
            return Decision(verdict, min(cfg.end_of_turn_silence_ms, cfg.max_silence_ms), thinking=False)
        patience = min(self.patience_ms(evidence), cfg.max_silence_ms)
        if verdict is Verdict.PENDING:
            return Decision(verdict, max(patience, cfg.end_of_turn_silence_ms), thinking=False)
        if verdict is Verdict.LIKELY:
            wait = max(cfg.commit_silence_ms, round(patience * cfg.outvoted_share))
            return Decision(verdict, wait, thinking=True)
        if cfg.patience_action == "prompt" and patience < cfg.max_silence_ms:
            return Decision(verdict, cfg.max_silence_ms, thinking=True, prompt_at_ms=patience)
        return Decision(verdict, patience, thinking=True)
