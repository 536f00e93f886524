"""Frames the stages pass among themselves. Clients never see these; see `pipelines.frames`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from models.base import EngineInfo, SynthesizedAudio
from pipelines.fillers import CachedSpeech
from pipelines.frames import (
    BudgetStage,
    DataFrame,
    Frame,
    SystemFrame,
    TranscriptSource,
    TurnStatus,
    UsageKind,
)

if TYPE_CHECKING:
    from pipelines.turn import Attempt, Listening, SpokenPiece


# ------------------------------------------------------------------ endpointing -> transcription


@dataclass(frozen=True, slots=True, eq=False)
class Paused(SystemFrame):
    """The student paused long enough to transcribe and start answering, held back."""

    listening: Listening
    audio: np.ndarray


@dataclass(frozen=True, slots=True, eq=False)
class Resumed(SystemFrame):
    listening: Listening


@dataclass(frozen=True, slots=True, eq=False)
class EndOfTurn(SystemFrame):
    listening: Listening
    audio: np.ndarray
    speech_end_at: float  # when the last voiced frame arrived
    at: float
    # The policy held the turn open for a thinking pause that no speech ended: the student has
    # already sat through the wait, so the answer is due from the commit, not from their last word.
    held: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class HeardSoFar(SystemFrame):
    """The speculative transcript of a pause: evidence for the turn policy (its punctuation, and
    how sure the engine is of a sentence end there)."""

    listening: Listening
    text: str
    sentence_end: float | None = None


@dataclass(frozen=True, slots=True, eq=False)
class PartialAudio(DataFrame):
    listening: Listening
    audio: np.ndarray
    whole: bool  # the audio is the whole utterance so far (not only its most recent words)


# ---------------------------------------------------------------------------- turn lifecycle


@dataclass(frozen=True, slots=True, eq=False)
class Commit(SystemFrame):
    """The attempt answers its turn: release what it held back and start its deadlines."""

    attempt: Attempt


@dataclass(frozen=True, slots=True, eq=False)
class AttemptDiscarded(SystemFrame):
    """Thrown away unseen (the student went on talking); what it consumed is speculative."""

    attempt: Attempt


@dataclass(frozen=True, slots=True, eq=False)
class AttemptStopped(SystemFrame):
    """The attempt's output must stop now (interrupted, or given up before its apology)."""

    attempt: Attempt


@dataclass(frozen=True, slots=True, eq=False)
class AttemptEnded(SystemFrame):
    attempt: Attempt
    status: TurnStatus
    heard: str  # what the student was sent: the reply as remembered and reported


# ------------------------------------------------------------------------- work between stages


@dataclass(frozen=True, slots=True, eq=False)
class Transcript(DataFrame):
    attempt: Attempt
    text: str
    source: TranscriptSource


@dataclass(frozen=True, slots=True, eq=False)
class PrefillRequest(DataFrame):
    """Read the question heard so far into the language model's cache."""

    listening: Listening
    text: str
    done: asyncio.Future[None]


@dataclass(frozen=True, slots=True, eq=False)
class Sentence(DataFrame):
    attempt: Attempt
    text: str
    vetted: bool = False  # a line of the plan, not the model's words: its audio may be kept


@dataclass(frozen=True, slots=True, eq=False)
class SpeechAudio(DataFrame):
    attempt: Attempt
    piece: SpokenPiece
    audio: SynthesizedAudio


@dataclass(frozen=True, slots=True, eq=False)
class CachedAudio(DataFrame):
    """A pre-synthesised phrase (filler or apology), not part of the answer."""

    attempt: Attempt
    speech: CachedSpeech
    filler: bool  # a filler gives way to the answer between two words


@dataclass(frozen=True, slots=True, eq=False)
class ReplyDone(DataFrame):
    """No more reply for this attempt; it ends once everything before it has been heard."""

    attempt: Attempt
    status: TurnStatus
    apology: bool = False


@dataclass(frozen=True, slots=True, eq=False)
class Out(DataFrame):
    """An output event that belongs to an attempt (held back while the attempt is speculative)."""

    attempt: Attempt
    event: Frame


# ------------------------------------------------------------------------------- bookkeeping


@dataclass(frozen=True, slots=True, eq=False)
class Mark(SystemFrame):
    attempt: Attempt
    name: str
    at: float


@dataclass(frozen=True, slots=True, eq=False)
class Usage(SystemFrame):
    """Units used; `attempt` None means work for the turn while it was being heard."""

    turn_id: str
    attempt: Attempt | None
    kind: UsageKind
    amount: int
    engine: EngineInfo
    speculative: bool = False


# ---------------------------------------------------------------------------- budget actions


@dataclass(frozen=True, slots=True, eq=False)
class PlayFiller(SystemFrame):
    attempt: Attempt


@dataclass(frozen=True, slots=True, eq=False)
class UsePartialTranscript(SystemFrame):
    attempt: Attempt


@dataclass(frozen=True, slots=True, eq=False)
class ModelSetAside(SystemFrame):
    """The reply no longer waits for the model: its sentence missed the plan's deadline and vetted
    lines are said instead. The model's stages cannot leave the student in silence any more."""

    attempt: Attempt


@dataclass(frozen=True, slots=True, eq=False)
class GiveUp(SystemFrame):
    attempt: Attempt
    stage: BudgetStage

