"""How one session's pipeline behaves: turn-taking and output pacing. The one definition of these
defaults and limits; server settings nest these models and sessions override them validated."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipelines.allowance import UsageCaps
from pipelines.budgets import BudgetPolicy

# Silence that ends the student's turn: the learner's patience. Shared by settings, protocol and CLI.
EndOfTurnMs = Annotated[int, Field(ge=150, le=5000, description="Silence that ends the student's turn (ms)")]


class TurnConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # The silence that ends the turn while nothing tells a finished utterance from a thinking
    # pause (no turn model, no transcript yet); with `adaptive` off, the only rule.
    end_of_turn_silence_ms: EndOfTurnMs = 600
    # At this much silence the turn has probably ended: transcribe and start answering, held back
    # until the end of the turn is confirmed. Never later than the end of turn itself. The
    # transcript is on the answer's critical path, so it starts early; a pause that turns out
    # shorter costs a discarded transcription (on 49 dev clips: 86 pauses at 120 ms, 72 at 200 ms,
    # the 49 real ends included).
    speculation_silence_ms: int = Field(120, ge=90, le=5000)
    partial_interval_ms: int = Field(1200, ge=0, le=10_000)  # 0 turns partial transcripts off
    speculative_reply: bool = True  # off: only transcribe early, answer after the end of turn
    prefill: bool = True  # read each partial transcript into the LLM's cache while the student talks
    frame_ms: int = 30
    start_window_frames: int = Field(8, ge=1)
    start_voiced_frames: int = Field(5, ge=1)  # 5 voiced of the last 8 frames (~150 ms of speech) starts a turn
    preroll_ms: int = Field(300, ge=0)  # audio kept from before the detected start, so first syllables survive
    # After a pause, this many consecutive voiced frames resume the turn; a lone noisy frame doesn't.
    resume_voiced_frames: int = Field(3, ge=1)
    tail_ms: int = Field(210, ge=0)  # silence kept after the last voiced frame; whisper likes a little
    # A frame this many dB below the student's own speech level neither starts nor resumes speech,
    # whatever the VAD says: a browser's gain control lifts the silence after speech until webrtcvad
    # hears it as talk (pipelines/speech_level.py). 0: the VAD alone.
    quiet_gate_db: float = Field(25.0, ge=0.0, le=60.0)
    # In a pause's first moments the VAD alone decides, and then a wider margin holds for a while: a
    # breath drawn before going on is quiet too (25-30 dB below speech), and it says the student goes
    # on. Heard as silence, a 180 ms pause became 660 ms and the sentence was answered half-way. The
    # hiss starts lower and builds over seconds, so the narrow margin is needed only later.
    quiet_gate_after_ms: int = Field(300, ge=0, le=5000)
    quiet_gate_breath_db: float = Field(35.0, ge=0.0, le=60.0)
    quiet_gate_breath_ms: int = Field(1000, ge=0, le=10_000)
    max_utterance_ms: int = Field(45_000, ge=1000)

    # ---- the turn policy (pipelines/turn_policy.py): finished or thinking?
    adaptive: bool = True  # off: a fixed end_of_turn_silence_ms, as before the policy
    # A turn-completion score at or above this says "finished" (Smart Turn's own decision point).
    completion_threshold: float = Field(0.5, ge=0.0, le=1.0)
    # The turn model scores a pause once it has lasted this long (or at the speculation, if that
    # is later): Smart Turn was trained on speech followed by about 200 ms of silence, and scores
    # audio with less trailing silence differently (measured: scored at 120 ms, more complete
    # sentences were judged unfinished and more pauses finished).
    completion_silence_ms: int = Field(200, ge=0, le=5000)
    use_punctuation: bool = True  # Whisper's punctuation of the speculative transcript as evidence
    # The turn model hears some finished sentences as unfinished (on 137 real ends of dev clips,
    # 23 that Whisper closed with a full stop scored below the threshold). When the STT engine is
    # at least this sure of a sentence end after the last word, the words outvote the turn model
    # (on the same clips: 10 of those 23 ends, and 2 of 52 thinking pauses of 1.2-3 s) ...
    sure_sentence_end: float = Field(0.8, ge=0.0, le=1.0)
    # ... and the turn ends after this share of the patience: 1.5 s of the default 3 s, past the
    # natural pauses inside a sentence (300-810 ms on those clips); 2.5 s after a tutor question.
    # A share, not a fixed wait, so that a classroom that gives more patience gives more here too.
    # 1: a turn model saying "unfinished" always gets the whole patience.
    outvoted_share: float = Field(0.5, gt=0.0, le=1.0)
    # A finished utterance is answered after this much silence (humans answer in about 200 ms) ...
    commit_silence_ms: int = Field(250, ge=90, le=5000)
    # ... unless the turn model only just called it finished: a score at or above the threshold
    # but below `sure_completion` waits `unsure_commit_ms`. Readers pause 300-930 ms inside
    # sentences at places both signals call finished, and there the score sits near the threshold
    # (on the dev clips, 6 such pauses scored 0.51-0.70, against 3 of 97 real ends).
    sure_completion: float = Field(0.7, ge=0.0, le=1.0)
    unsure_commit_ms: int = Field(1000, ge=90, le=5000)
    # A thinking learner gets this much silence (classroom "wait time": gains start at 3 s) ...
    patience_ms: int = Field(3000, ge=150, le=30_000)
    # ... and more right after the tutor asked a question: an answer takes longer to find.
    question_patience_ms: int = Field(5000, ge=150, le=30_000)
    # What happens when the patience runs out: answer what was said, or say a gentle prompt (and
    # go on waiting until max_silence_ms).
    patience_action: Literal["commit", "prompt"] = "commit"
    patience_prompt: str = Field("Take your time.", min_length=1, max_length=200)
    # No pause lasts longer than this, whatever the evidence: the turn ends.
    max_silence_ms: int = Field(8000, ge=150, le=60_000)

    @model_validator(mode="after")
    def _speculation_first(self) -> TurnConfig:
        if self.speculation_silence_ms > self.end_of_turn_silence_ms:
            object.__setattr__(self, "speculation_silence_ms", self.end_of_turn_silence_ms)
        return self


class PipelineConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    turn: TurnConfig = TurnConfig()
    budgets: BudgetPolicy = BudgetPolicy()
    caps: UsageCaps = UsageCaps()  # none by default
    # The teaching plan (pipelines/pedagogy): checked sums, vetted lesson cards, a question to end
    # every teaching reply, the model's sentences checked. Off: the model's reply alone, as
    # screened by the safety layer (for tests of the model's own path).
    lesson_plans: bool = True
    # Reply audio goes out at real time plus this lead: "sent" stays close to "heard", and a
    # barge-in silences the tutor within the lead.
    playback_lead_ms: int = Field(300, ge=0, le=5000)
    audio_chunk_ms: int = Field(40, ge=10, le=1000)
