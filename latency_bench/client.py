"""A protocol-v1 WebSocket client that behaves like a microphone.

It streams each clip at real-time pace and keeps streaming silence afterwards (a microphone never
stops), so the server's endpointing sees what it would see live. Voice-to-voice is measured on the
client: from the moment the last voiced sample of the clip was sent to the first reply audio byte
received.
"""

from __future__ import annotations

import asyncio
import json
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import websockets

SAMPLE_RATE = 16_000


@dataclass(slots=True)
class Clip:
    name: str
    pcm16: bytes
    sample_rate: int
    speech_end_ms: int  # end of the last voiced frame in the clip

    @property
    def duration_ms(self) -> int:
        return len(self.pcm16) // 2 * 1000 // self.sample_rate


def speech_end_ms(pcm16: bytes, sample_rate: int) -> int:
    """End of speech in a clip, by webrtcvad at its most conservative, at 16 kHz."""
    import soxr
    import webrtcvad

    samples = np.frombuffer(pcm16, dtype="<i2")
    if sample_rate != SAMPLE_RATE:
        samples = soxr.resample(samples, sample_rate, SAMPLE_RATE).astype("<i2")
    vad = webrtcvad.Vad(3)
    frame = SAMPLE_RATE * 30 // 1000
    last = 0
    for i in range(0, len(samples) - frame + 1, frame):
        if vad.is_speech(samples[i : i + frame].tobytes(), SAMPLE_RATE):
            last = i + frame
    return last * 1000 // SAMPLE_RATE


def load_clip(path: Path) -> Clip:
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise ValueError(f"{path.name}: need 16-bit mono WAV")
        rate = wav.getframerate()
        pcm = wav.readframes(wav.getnframes())
    return Clip(path.name, pcm, rate, speech_end_ms(pcm, rate))


@dataclass(slots=True)
class TurnRecord:
    turn_id: str
    transcript: str = ""
    reply_text: str = ""
    status: str = ""
    latency: dict[str, int | None] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    first_audio_at: float | None = None
    audio_bytes: int = 0
    interrupted: bool = False
    finals: int = 0  # transcript.final messages: more than one means the turn was answered twice
    budget_misses: list[dict[str, Any]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(slots=True)
class ClipResult:
    clip: str
    transcript: str
    reply_text: str
    voice_to_voice_ms: float | None
    stages: dict[str, int | None]
    reply_audio_ms: int
    turns: list[TurnRecord]
    # To the first audio of the answer itself: the client's voice-to-voice plus however long a
    # filler covered for the answer on the server's clock (equal when no filler was needed).
    voice_to_answer_ms: float | None = None
    # Reply audio (a filler included) arrived before the clip's real end of speech: the tutor
    # cut the student off, e.g. in a thinking pause.
    cut_off: bool = False
    finals: int = 0  # transcript.final messages over the clip's turns: one when taken as one turn


class VoiceClient:
    """One session over one WebSocket. Collects every server message in `messages`."""

    def __init__(
        self,
        url: str,
        *,
        persona: str | None = None,
        end_of_turn_silence_ms: int | None = None,
        turn_options: dict[str, Any] | None = None,
        frame_ms: int = 20,
        on_message: Callable[[dict[str, Any]], None] | None = None,
        token: str | None = None,
    ) -> None:
        self.url = url
        self.token = token  # a signed access token; None against a server in open mode
        self.persona = persona
        self.end_of_turn_silence_ms = end_of_turn_silence_ms
        self.turn_options = turn_options or {}  # more of session.start's "turn" (see the protocol)
        self.frame_ms = frame_ms
        self.on_message = on_message
        self.messages: list[dict[str, Any]] = []
        self.turns: dict[str, TurnRecord] = {}
        self.turn_order: list[str] = []
        self.output_rate = 0
        self.hello: dict[str, Any] = {}
        self.started: dict[str, Any] = {}
        self._ws: Any = None
        self._receiver: asyncio.Task[None] | None = None
        self._audio_turn: str | None = None
        self._sent_ms = 0
        self._clock_start = 0.0
        # Reply audio that arrived outside any reply.audio.started ... done/interrupted window.
        self.stray_audio_bytes = 0

    async def __aenter__(self) -> VoiceClient:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        self._ws = await websockets.connect(self.url, max_size=2**22, additional_headers=headers)
        self.hello = json.loads(await self._ws.recv())
        self._record(self.hello)
        start: dict[str, Any] = {"type": "session.start", "input_audio": {"sample_rate": SAMPLE_RATE}}
        if self.persona:
            start["persona"] = self.persona
        if self.end_of_turn_silence_ms or self.turn_options:
            start["turn"] = {**self.turn_options}
            if self.end_of_turn_silence_ms:
                start["turn"]["end_of_turn_silence_ms"] = self.end_of_turn_silence_ms
        await self._ws.send(json.dumps(start))
        self.started = json.loads(await self._ws.recv())
        self._record(self.started)
        if self.started.get("type") != "session.started":
            raise RuntimeError(f"session did not start: {self.started}")
        self.output_rate = self.started["output_audio"]["sample_rate"]
        self._receiver = asyncio.create_task(self._receive())
        self._clock_start = time.monotonic()
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self._ws.send(json.dumps({"type": "session.end"}))
            await asyncio.wait_for(self._receiver, timeout=10)
        except Exception:  # noqa: BLE001 - best effort on the way out
            pass
        finally:
            await self._ws.close()

    def _record(self, message: dict[str, Any]) -> None:
        self.messages.append(message)
        if self.on_message:
            self.on_message(message)

    async def _receive(self) -> None:
        async for raw in self._ws:
            if isinstance(raw, bytes):
                self._reply_audio(len(raw))
            elif self._handle(json.loads(raw)):
                return

    def _reply_audio(self, n_bytes: int) -> None:
        turn = self.turns.get(self._audio_turn or "")
        if turn is None:
            self.stray_audio_bytes += n_bytes
            return
        if turn.first_audio_at is None:
            turn.first_audio_at = time.monotonic()
        turn.audio_bytes += n_bytes

    def _handle(self, message: dict[str, Any]) -> bool:
        """Track turns from one server message. Returns True once the session has ended."""
        self._record(message)
        kind = message["type"]
        turn_id = message.get("turn_id")
        if turn_id and turn_id not in self.turns:
            self.turns[turn_id] = TurnRecord(turn_id)
            self.turn_order.append(turn_id)
        turn = self.turns.get(turn_id) if turn_id else None
        if kind == "reply.audio.started":
            self._audio_turn = turn_id
        elif kind in ("reply.audio.done", "reply.interrupted"):
            if self._audio_turn == turn_id:
                self._audio_turn = None
            if kind == "reply.interrupted" and turn is not None:
                turn.interrupted = True
        elif kind == "transcript.final" and turn is not None:
            turn.transcript = message["text"]
            turn.finals += 1
        elif kind == "turn.done" and turn is not None:
            turn.reply_text = message["reply_text"]
            turn.status = message["status"]
            turn.latency = message["latency"]
            turn.usage = message["usage"]
            turn.budget_misses = message["budget_misses"]
            turn.done.set()
        return kind == "session.ended"

    # ------------------------------------------------------------------------------ streaming

    async def send_audio(self, pcm16: bytes) -> float:
        """Send PCM16 at real-time pace. Returns the wall time the last frame left."""
        frame_bytes = SAMPLE_RATE * self.frame_ms // 1000 * 2
        sent_at = time.monotonic()
        for start in range(0, len(pcm16), frame_bytes):
            due = self._clock_start + self._sent_ms / 1000
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.2:
                self._clock_start = time.monotonic() - self._sent_ms / 1000  # fell behind: resync
            chunk = pcm16[start : start + frame_bytes]
            await self._ws.send(chunk)
            sent_at = time.monotonic()
            self._sent_ms += len(chunk) // 2 * 1000 // SAMPLE_RATE
        return sent_at

    async def send_silence(self, ms: int) -> None:
        await self.send_audio(bytes(SAMPLE_RATE * ms // 1000 * 2))

    async def send_json(self, message: dict[str, Any]) -> None:
        await self._ws.send(json.dumps(message))

    async def play_clip(self, clip: Clip, *, settle_ms: int = 300, timeout_s: float = 60) -> ClipResult:
        """Stream a clip, then silence until every turn it started is done."""
        audio = _to_16k(clip)
        known = set(self.turn_order)
        speech_end = clip.speech_end_ms * SAMPLE_RATE // 1000 * 2
        speech_end -= speech_end % 2
        speech_sent_at = await self.send_audio(audio[:speech_end])
        await self.send_audio(audio[speech_end:])
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            mine = [self.turns[t] for t in self.turn_order if t not in known]
            if mine and all(t.done.is_set() for t in mine):
                break
            await self.send_silence(self.frame_ms)
        else:
            raise TimeoutError(f"{clip.name}: no finished turn within {timeout_s} s")
        await self.send_silence(settle_ms)
        mine = [self.turns[t] for t in self.turn_order if t not in known]
        spoken = [t for t in mine if t.status != "no_speech"]
        # Audio is only received, never played: its arrival time is when the student would hear it.
        cut_off = any(t.first_audio_at is not None and t.first_audio_at < speech_sent_at for t in mine)
        last = spoken[-1] if spoken else mine[-1]
        v2v = None
        if last.first_audio_at is not None:
            v2v = round((last.first_audio_at - speech_sent_at) * 1000, 1)
        stages = {k.removesuffix("_ms"): v for k, v in last.latency.items()}
        v2a = None
        server_v2v, server_v2a = last.latency.get("voice_to_voice_ms"), last.latency.get("voice_to_answer_ms")
        if v2v is not None and server_v2v is not None and server_v2a is not None:
            v2a = round(v2v + server_v2a - server_v2v, 1)
        return ClipResult(
            clip=clip.name,
            transcript=" ".join(t.transcript for t in spoken).strip(),
            reply_text=last.reply_text,
            voice_to_voice_ms=v2v,
            stages=stages,
            reply_audio_ms=sum(t.audio_bytes for t in mine) // 2 * 1000 // max(self.output_rate, 1),
            turns=mine,
            voice_to_answer_ms=v2a,
            cut_off=cut_off,
            finals=sum(t.finals for t in mine),
        )

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], timeout_s: float = 30
    ) -> dict[str, Any]:
        """Wait for a matching message (already received or future), streaming silence meanwhile."""
        deadline = time.monotonic() + timeout_s
        seen = 0
        while time.monotonic() < deadline:
            for message in self.messages[seen:]:
                if predicate(message):
                    return message
            seen = len(self.messages)
            await self.send_silence(self.frame_ms)
        raise TimeoutError("expected message did not arrive")


def _to_16k(clip: Clip) -> bytes:
    if clip.sample_rate == SAMPLE_RATE:
        return clip.pcm16
    import soxr

    samples = np.frombuffer(clip.pcm16, dtype="<i2")
    return soxr.resample(samples, clip.sample_rate, SAMPLE_RATE).astype("<i2").tobytes()
