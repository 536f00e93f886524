"""Reply: the agent answers a transcript. Builds the prompt from the persona and what the student
heard before, streams the language model, and cuts its text into speakable pieces (the first one
short, so speech starts early). Also answers "repeat that" and reads prefill requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import re
import zlib
from collections.abc import Callable

from models.base import EngineError, GenerationRequest, LanguageModel, call_scope
from models.scheduling import Priority, Urgency, work_scope
from pipelines.agent import TutorAgent
from pipelines.chunker import SentenceChunker
from pipelines.control import AttemptEnded, Commit, Mark, Out, PrefillRequest, ReplyDone, Sentence, Transcript, Usage
from pipelines.frames import (
    DataFrame,
    ErrorCode,
    PipelineError,
    RepeatLast,
    ReplyTextDelta,
    SystemFrame,
    TranscriptFinal,
    TurnStatus,
    UsageKind,
)
from pipelines.processor import Stage
from pipelines.spoken import SpokenStyle, near_duplicate, opens_like, repeats_earlier
from pipelines.turn import Attempt, Turns

log = logging.getLogger(__name__)

# A reply that repeats an earlier one is drawn again this many times, then replaced by a short
# question that brings the student back in.
REDRAWS = 1
BASE_TEMPERATURE = 0.4
REDRAW_TEMPERATURE_STEP = 0.3
_ENDS_SENTENCE = re.compile(r"[.!?][\"')\]]*$")
_LEADING_MARKER = re.compile(r"^(?:[-*\u2022+]|\d{1,2}[.)])(?:\s+|$)")


class _Outcome(enum.Enum):
    DONE = "done"
    REPEATED = "repeated"


def reply_seed(turn_id: str, attempt: int, draw: int) -> int:
    """The sampler's seed for one draw of one turn: reproducible, and different per draw."""
    return zlib.crc32(f"{turn_id}/{attempt}/{draw}".encode())


def _unlisted(piece: str) -> str:
    """A piece as spoken: a list marker the chunker split off ("2.") or left in front is dropped."""
    return _LEADING_MARKER.sub("", piece).strip()


class ReplyStage(Stage):
    name = "reply"

    def __init__(
        self,
        llm: LanguageModel,
        agent: TutorAgent,
        turns: Turns,
        clock: Callable[[], float],
        *,
        speculative: bool,
    ) -> None:
        super().__init__()
        self._llm = llm
        self.agent = agent
        self._turns = turns
        self._clock = clock
        # Off: a transcript found in a pause waits for the end of the turn before it is answered.
        self._speculative = speculative
        self._waiting: dict[Attempt, Transcript] = {}

    def last_answer(self) -> str:
        return next((e.assistant for e in reversed(self.agent.history) if e.assistant), "")

    def on_system(self, frame: SystemFrame) -> None:
        if isinstance(frame, Commit) and (waiting := self._waiting.pop(frame.attempt, None)) is not None:
            self._begin(waiting.attempt)
        elif isinstance(frame, AttemptEnded):
            self._waiting.pop(frame.attempt, None)
            if frame.attempt.user_text:
                self.agent.remember(frame.attempt.user_text, frame.heard)

    async def process(self, frame: DataFrame) -> None:
        if isinstance(frame, Transcript):
            self._on_transcript(frame)
        elif isinstance(frame, RepeatLast):
            self._repeat(frame)
        elif isinstance(frame, PrefillRequest):
            asyncio.get_running_loop().create_task(self._prefill(frame))
        else:
            self.push(frame)

    def _on_transcript(self, frame: Transcript) -> None:
        attempt = frame.attempt
        if not attempt.live:
            return
        attempt.user_text = frame.text.strip()
        self.push(Out(attempt, TranscriptFinal(attempt.turn_id, attempt.user_text, frame.source)))
        if not attempt.user_text:
            self.push(ReplyDone(attempt, TurnStatus.NO_SPEECH))
        elif not self._speculative and not attempt.committed:
            self._waiting[attempt] = frame
        else:
            self._begin(attempt)

    def _begin(self, attempt: Attempt) -> None:
        attempt.reply_started = True
        attempt.track(asyncio.get_running_loop().create_task(self._think(attempt)))

    def _repeat(self, frame: RepeatLast) -> None:
        attempt = self._turns.new_attempt(turn_id=frame.turn_id, replay=frame.text)
        now = self._clock()
        for mark in ("speech_end", "end_of_turn", "transcript", "llm_first_token", "first_sentence"):
            self.push(Mark(attempt, mark, now))
        self._turns.commit(attempt)
        attempt.reply_started = True
        attempt.generated = frame.text
        chunker = SentenceChunker()
        for piece in [*chunker.push(frame.text + " "), *chunker.flush()]:
            self.push(Sentence(attempt, piece))
        self.push(ReplyDone(attempt, TurnStatus.COMPLETED))

    async def _think(self, attempt: Attempt) -> None:
        persona = self.agent.persona
        earlier = self.agent.earlier_replies()
        control = attempt.call("llm")
        requests: list[GenerationRequest] = []
        emitted = 0
        attempt.generated = ""  # what is queued to be spoken, in spoken style (see Turns.complete)
        attempt.llm_priority = priority = Priority(attempt.priority.urgency, attempt.priority.since)

        def queue(piece: str) -> None:
            nonlocal emitted
            if emitted == 0:
                self.push(Mark(attempt, "first_sentence", self._clock()))
            emitted += 1
            attempt.generated = f"{attempt.generated} {piece}".lstrip()
            # Text goes out as it will be spoken, piece by piece: no raw markup reaches a caption.
            self.push(Out(attempt, ReplyTextDelta(attempt.turn_id, piece if emitted == 1 else f" {piece}")))
            self.push(Sentence(attempt, piece))
            # The first piece is what the student waits for; the rest can queue behind other
            # students' first pieces (it is needed only once this one has been spoken).
            priority.urgency = max(priority.urgency, Urgency.AHEAD)

        try:
            with work_scope(priority), call_scope(control):
                for draw in range(REDRAWS + 1):
                    request = GenerationRequest(
                        messages=self.agent.messages_for(attempt.user_text),
                        max_tokens=persona.max_reply_tokens,
                        # A redraw is a different draw, a little bolder, from the same prompt.
                        temperature=BASE_TEMPERATURE + REDRAW_TEMPERATURE_STEP * draw,
                        seed=reply_seed(attempt.turn_id, attempt.number, draw),
                        cancel=attempt.cancel,
                    )
                    requests.append(request)
                    sentences = persona.max_sentences
                    outcome = await self._compose(
                        attempt, request, earlier, queue, max_sentences=sentences, first_draw=draw == 0
                    )
                    if outcome is not _Outcome.REPEATED or not attempt.live:
                        break
                    if emitted:  # part of it was already spoken: no redraw, just bring the student back in
                        queue(self.agent.re_engage(earlier))
                        break
                    log.info("turn %s: reply repeated an earlier one (draw %d)", attempt.turn_id, draw)
                else:
                    queue(self.agent.re_engage(earlier))
                if not emitted and attempt.live:  # the model said nothing at all: never silence
                    queue(self.agent.re_engage(earlier))
        except EngineError as exc:
            log.error("turn %s failed in the language model: %s", attempt.turn_id, exc)
            self.push(Out(attempt, PipelineError(ErrorCode.ENGINE_ERROR, "The tutor could not answer this turn.", attempt.turn_id)))
            self.push(ReplyDone(attempt, TurnStatus.FAILED, apology=True))
            return
        finally:
            # Counted from what was really generated, a cancelled stream and a redraw included.
            engine = control.served_by or self._llm.info
            for kind, amount in (
                (UsageKind.LLM_PROMPT_TOKENS, sum(r.usage.prompt_tokens for r in requests)),
                (UsageKind.LLM_COMPLETION_TOKENS, sum(r.usage.completion_tokens for r in requests)),
            ):
                self.push(Usage(attempt.turn_id, attempt, kind, amount, engine))
        self.push(ReplyDone(attempt, TurnStatus.COMPLETED))

    async def _compose(
        self,
        attempt: Attempt,
        request: GenerationRequest,
        earlier: list[str],
        queue: Callable[[str], None],
        *,
        max_sentences: int,
        first_draw: bool,
    ) -> _Outcome:
        """Stream one draw of the reply into spoken pieces and queue them, unless it repeats an
        earlier reply: nothing of a repeating draw is queued while it can still be redrawn."""
        style = SpokenStyle()
        chunker = SentenceChunker()
        spoken: list[str] = []
        limit = None
        first_token = first_draw

        def accept(pieces: list[str]) -> _Outcome | None:
            nonlocal limit
            for raw in pieces:
                piece = _unlisted(raw)
                if not piece:
                    continue
                so_far = " ".join([*spoken, piece])
                if (
                    (not spoken and opens_like(piece, earlier))  # "every reply began with the same sentence"
                    or repeats_earlier(so_far, earlier)
                    or any(near_duplicate(so_far, old) for old in earlier)  # a short reply said again
                    or repeats_earlier(piece, spoken)
                ):
                    return _Outcome.REPEATED
                spoken.append(piece)
                queue(piece)
                if sum(bool(_ENDS_SENTENCE.search(p)) for p in spoken) >= max_sentences:
                    return _Outcome.DONE
                if limit is not None and len(spoken) >= limit:
                    return _Outcome.DONE
            return None

        async with contextlib.aclosing(self._llm.stream(request)) as stream:
            async for delta in stream:
                if first_token:
                    first_token = False
                    self.push(Mark(attempt, "llm_first_token", self._clock()))
                ready = chunker.push(style.push(delta))
                if attempt.shorten and limit is None:
                    # Budget action "shorten": speak what there is now and end after one more.
                    ready += [] if ready else chunker.flush()
                    limit = len(spoken) + len(ready) + 1
                if (outcome := accept(ready)) is not None:
                    return outcome  # leaving the stream stops the generation after this token
            rest = chunker.push(style.flush()) + chunker.flush()
            if spoken and request.usage.completion_tokens >= request.max_tokens:
                # Cut off by the token limit mid-sentence: a spoken fragment sounds broken.
                rest = [p for p in rest if _ENDS_SENTENCE.search(p)]
            return accept(rest) or _Outcome.DONE

    async def _prefill(self, request: PrefillRequest) -> None:
        try:
            # Only on an idle model: a prefill step cannot be interrupted, and under load it would
            # hold the core other students' replies need.
            if not self._llm.busy:
                tokens = await self._llm.prefill(self.agent.messages_for(request.text))
                usage = Usage(request.listening.id, None, UsageKind.LLM_PROMPT_TOKENS, tokens, self._llm.info, speculative=True)
                self.push(usage)
        except EngineError as exc:
            log.warning("prefill failed: %s", exc)
        finally:
            if not request.done.done():
                request.done.set_result(None)
