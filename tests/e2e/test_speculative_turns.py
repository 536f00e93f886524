"""A learner who pauses mid-sentence is not cut off, and the work started in the pause is metered."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from latency_bench.client import Clip, VoiceClient, load_clip, speech_end_ms
from latency_bench.wer import word_error_rate

pytestmark = pytest.mark.models

CLIP = "librispeech_1272-128104-0000.16k.wav"
PAUSE_MS = 1000
PATIENCE_MS = 1600  # this learner's end-of-turn silence: longer than the pause


def _with_pause(clip: Clip) -> Clip:
    """Insert silence at the quietest 30 ms frame of the middle half of the speech (a gap between
    words; never the silence before or after it)."""
    samples = np.frombuffer(clip.pcm16, dtype="<i2")
    frame = clip.sample_rate * 30 // 1000
    voiced = np.flatnonzero(np.abs(samples.astype(np.int32)) > 500)
    first, last = int(voiced[0]), int(voiced[-1])
    quarter = (last - first) // 4
    starts = range(first + quarter, last - quarter - frame, frame)
    cut = min(starts, key=lambda s: float(np.abs(samples[s : s + frame].astype(np.int32)).mean()))
    silence = np.zeros(clip.sample_rate * PAUSE_MS // 1000, dtype="<i2")
    pcm = np.concatenate([samples[:cut], silence, samples[cut:]]).tobytes()
    return Clip("paused-" + clip.name, pcm, clip.sample_rate, speech_end_ms(pcm, clip.sample_rate))


async def test_a_mid_sentence_pause_yields_one_whole_turn(
    server, speech_clips: Path, speech_manifest, assert_valid
):
    # Synthesised speech (a clone without ../shared): the longest sentence has the most gaps.
    longest = max(speech_manifest, key=lambda e: e["duration_s"])
    entry = next((e for e in speech_manifest if e["file"] == CLIP), longest)
    clip = _with_pause(load_clip(speech_clips / entry["file"]))
    # This learner asked for a fixed patience instead of the turn policy's judgement (the policy,
    # which may well call "the apostle of the middle classes" finished, has its own tests).
    fixed = {"adaptive": False}
    url = server.ws_ticket_url()
    async with VoiceClient(url, end_of_turn_silence_ms=PATIENCE_MS, turn_options=fixed) as client:
        result = await client.play_clip(clip)
    assert_valid(client.messages)
    types = [m["type"] for m in client.messages]

    assert types.count("speech.started") == 1 and types.count("transcript.final") == 1
    assert types.count("turn.done") == 1  # the discarded speculation is never shown as a turn
    assert word_error_rate([entry["transcript"]], [result.transcript]) < 0.25
    # No reply audio before the end of the turn was confirmed.
    assert types.index("reply.audio.started") > types.index("speech.stopped")
    assert client.stray_audio_bytes == 0
    done = next(m for m in client.messages if m["type"] == "turn.done")
    speculative = done["usage"]["speculative"]
    assert speculative is not None, "the speculation in the pause was not metered"
    assert speculative["stt_audio_ms"] > 0 and speculative["llm_prompt_tokens"] > 0
    assert done["status"] == "completed" and result.reply_audio_ms > 500


def test_metrics_expose_latency_histograms_and_counters_after_real_turns(server):
    # Runs after the end-to-end turns on the same server.
    text = server.text("/metrics", role="admin")
    count = re.search(r"^convergio_voice_to_voice_seconds_count (\S+)$", text, re.M)
    assert count and float(count.group(1)) >= 1
    for stage in ("endpointing", "stt", "llm_first_token", "first_sentence", "tts_first_audio"):
        assert f'convergio_stage_latency_seconds_bucket{{le="0.5",stage="{stage}"}}' in text
    assert re.search(r'^convergio_turns_total\{status="completed"\} [1-9]', text, re.M)
    for name in (
        "convergio_active_sessions",
        "convergio_budget_misses_total",
        "convergio_engine_errors_total",
        "convergio_engine_fallbacks_total",
        "convergio_voice_to_answer_seconds",
        "convergio_reply_gap_seconds",
        "convergio_event_loop_lag_seconds",
        "convergio_cpu_wait_seconds",
        "convergio_cpu_busy_seconds",
        "process_resident_memory_bytes",
    ):
        assert f"# HELP {name}" in text
