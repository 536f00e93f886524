"""Where a student stops talking, heard by the real webrtcvad on real speech: the same in a
session's tenth turn as in its first. The voice-activity detector adapts to what it hears, and
carried from turn to turn that drift made sentence tails and the room's noise read as speech (the
answer waited for it). Language engines are scripted: only the detector and the audio are real."""

from __future__ import annotations

import asyncio
import json
import wave
from pathlib import Path

import numpy as np

from models.webrtc_vad import WebRtcVad
from pipelines.agent import TutorAgent
from pipelines.config import PipelineConfig, TurnConfig
from pipelines.frames import SpeechStopped
from pipelines.personas import PERSONAS
from pipelines.pipeline import Engines, Pipeline
from tests.fakes import ScriptedLLM, ScriptedSTT, ToneTTS

GAP_MS = 4500  # silence between clips, longer than a pause that continues the turn
CHUNK = 32 * 30  # 30 ms of 16 kHz PCM16


def _pcm(path: Path) -> bytes:
    with wave.open(str(path), "rb") as wav:
        assert wav.getframerate() == 16_000 and wav.getnchannels() == 1
        pcm = wav.readframes(wav.getnframes())
    # Whole frames, so every clip meets the detector at the same frame boundary as when alone.
    return pcm + bytes(-len(pcm) % CHUNK)


async def _speech_ends(clips: list[bytes], turn: TurnConfig | None = None) -> list[list[int]]:
    """Plays the clips into one session; for each, where each of its turns ended (ms into the clip)."""
    stopped: list[int] = []

    async def sink(event) -> None:
        if isinstance(event, SpeechStopped):
            stopped.append(event.stream_ms)

    engines = Engines(WebRtcVad(), ScriptedSTT(), ScriptedLLM("Good.", token_delay_s=0.001), ToneTTS())
    # A fixed end-of-turn silence: where speech ended is the detector's call alone.
    config = PipelineConfig(turn=turn or TurnConfig(adaptive=False, partial_interval_ms=0))
    pipeline = Pipeline(engines, TutorAgent(PERSONAS["maths"]), sink, config)
    starts, stream = [], b""
    for pcm in clips:
        starts.append(len(stream) // 32)
        stream += pcm + bytes(32 * GAP_MS)
    try:
        for i in range(0, len(stream), CHUNK):
            pipeline.push_audio(stream[i : i + CHUNK])
            await asyncio.sleep(0)
        await asyncio.sleep(0.2)
    finally:
        await pipeline.aclose()
    ends = []
    for start, pcm in zip(starts, clips, strict=True):
        span = len(pcm) // 32 + GAP_MS
        ends.append([ms - start for ms in stopped if start <= ms < start + span])
    return ends


async def test_a_turns_end_of_speech_is_heard_where_a_fresh_session_hears_it(speech_clips: Path):
    files = [speech_clips / clip["file"] for clip in json.loads((speech_clips / "manifest.json").read_text())]
    clips = [_pcm(path) for path in files]
    in_one_session = await _speech_ends(clips)
    each_on_its_own = [(await _speech_ends([pcm]))[0] for pcm in clips]
    assert all(each_on_its_own), "every clip is heard as speech"
    for path, heard, alone in zip(files, in_one_session, each_on_its_own, strict=True):
        assert heard == alone, f"{path.name}: speech ended at {heard} ms after other turns, at {alone} ms alone"


def _rising_hiss(seconds: float, seed: int) -> bytes:
    """What a browser's gain control does to the silence after speech: noise lifted steadily, here
    from -70 to -40 dBFS (chromium went from about -70 to -45 in 5 s)."""
    n = int(seconds * 16_000)
    gain = 32768 * 10 ** (np.linspace(-70, -40, n) / 20)
    noise = np.random.default_rng(seed).standard_normal(n) * gain
    return np.clip(noise, -32768, 32767).astype("<i2").tobytes()


async def test_hiss_lifted_by_a_browsers_gain_control_does_not_keep_the_turn_open(speech_clips: Path):
    """The patience after a tutor's question is 5 s; webrtcvad hears the rising hiss as speech within
    that, so without the quiet gate the turn never ends. With it, it ends where the speech did."""
    manifest = json.loads((speech_clips / "manifest.json").read_text())
    files = [speech_clips / clip["file"] for clip in manifest][:3]
    patient = {"adaptive": False, "partial_interval_ms": 0, "end_of_turn_silence_ms": 5000}
    kept_open = 0
    for seed, path in enumerate(files):
        pcm = _pcm(path)
        spoken = (await _speech_ends([pcm]))[0][0]  # the end with digital silence after it
        hissing = pcm + _rising_hiss(8, seed)
        gated = await _speech_ends([hissing], TurnConfig(**patient))
        assert gated[0] and abs(gated[0][0] - spoken) <= 90, f"{path.name}: {gated[0]}, speech {spoken}"
        ungated = await _speech_ends([hissing], TurnConfig(**patient, quiet_gate_db=0))
        kept_open += not ungated[0] or ungated[0][0] > spoken + 1000
    assert kept_open, "the hiss is heard as speech without the gate (else this test proves nothing)"
