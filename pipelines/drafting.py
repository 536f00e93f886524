"""One draw of a reply, as it will be spoken: the model's stream cut into spoken-style pieces,
each queued the moment it is ready unless the draw turns out to repeat an earlier reply."""

from __future__ import annotations

import contextlib
import enum
import re
import zlib
from collections.abc import Callable

from models.base import GenerationRequest, LanguageModel
from pipelines.chunker import SentenceChunker
from pipelines.spoken import SpokenStyle, near_duplicate, opens_like, repeats_earlier

# A reply that repeats an earlier one is drawn again this many times, then replaced by a short
# question that brings the student back in.
REDRAWS = 1
BASE_TEMPERATURE = 0.4
REDRAW_TEMPERATURE_STEP = 0.3
ENDS_SENTENCE = _ENDS_SENTENCE = re.compile(r"[.!?][\"')\]]*$")
_LEADING_MARKER = re.compile(r"^(?:[-*\u2022+]|\d{1,2}[.)])(?:\s+|$)")


class Outcome(enum.Enum):
    DONE = "done"
    REPEATED = "repeated"


def reply_seed(turn_id: str, attempt: int, draw: int) -> int:
    """The sampler's seed for one draw of one turn: reproducible, and different per draw."""
    return zlib.crc32(f"{turn_id}/{attempt}/{draw}".encode())


def _unlisted(piece: str) -> str:
    """A piece as spoken: a list marker the chunker split off ("2.") or left in front is dropped."""
    return _LEADING_MARKER.sub("", piece).strip()


async def compose(
    llm: LanguageModel,
    request: GenerationRequest,
    earlier: list[str],
    queue: Callable[[str], bool | None],
    *,
    max_sentences: int,
    shorten: Callable[[], bool],
    on_first_token: Callable[[], None] | None = None,
) -> Outcome:
    """Stream one draw of the reply into spoken pieces and queue them, unless it repeats an
    earlier reply: nothing of a repeating draw is queued while it can still be redrawn."""
    style = SpokenStyle()
    chunker = SentenceChunker()
    spoken: list[str] = []
    limit = None


    def accept(pieces: list[str]) -> Outcome | None:
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
                return Outcome.REPEATED
            if (outcome := speak([piece])) is not None:
                return outcome
        return None

    def speak(ready: list[str]) -> Outcome | None:
        for piece in ready:
            spoken.append(piece)
            verdict = queue(piece)
            if verdict is None:  # dropped by the caller's checks: not said, not counted
                spoken.pop()
                continue
            if not verdict:
                return Outcome.DONE  # the safety layer ended the reply
            if sum(bool(_ENDS_SENTENCE.search(p)) for p in spoken) >= max_sentences:
                return Outcome.DONE
            if limit is not None and len(spoken) >= limit:
                return Outcome.DONE
        return None

    async with contextlib.aclosing(llm.stream(request)) as stream:
        async for delta in stream:
            if on_first_token is not None:
                on_first_token()
                on_first_token = None
            ready = chunker.push(style.push(delta))
            if shorten() and limit is None:
                # Budget action "shorten": speak what there is now and end after one more.
                ready += [] if ready else chunker.flush()
                limit = len(spoken) + len(ready) + 1
            if (outcome := accept(ready)) is not None:
                return outcome  # leaving the stream stops the generation after this token
        rest = chunker.push(style.flush()) + chunker.flush()
        if spoken and request.usage.completion_tokens >= request.max_tokens:
            # Cut off by the token limit mid-sentence: a spoken fragment sounds broken.
            rest = [p for p in rest if _ENDS_SENTENCE.search(p)]
        return accept(rest) or Outcome.DONE
