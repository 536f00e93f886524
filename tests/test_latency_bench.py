"""The benchmark runs against a real server and writes its stable JSON interface."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from latency_bench.wer import normalise, number_words

pytestmark = pytest.mark.models


def test_benchmark_smoke_run_writes_the_stable_json(server, speech_clips: Path, tmp_path: Path):
    clips = tmp_path / "clips"
    clips.mkdir()
    for clip in sorted(speech_clips.glob("*.wav"), key=lambda p: p.stat().st_size)[:2]:
        shutil.copy(clip, clips / clip.name)
    shutil.copy(speech_clips / "manifest.json", clips / "manifest.json")
    report = tmp_path / "report.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "latency_bench",
            "--url",
            server.ws_url,
            "--audio-dir",
            str(clips),
            "--json",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "p50" in result.stdout and "p95" in result.stdout
    data = json.loads(report.read_text())
    assert len(data["turns"]) == 2
    for turn in data["turns"]:
        assert {"clip", "transcript", "reply_text", "voice_to_voice_ms", "stages"} <= set(turn)
        assert turn["voice_to_voice_ms"] > 0
        assert {"endpointing", "stt", "llm_first_token", "tts_first_audio"} <= set(turn["stages"])
    assert data["summary"]["voice_to_voice_ms"]["p50"] > 0
    assert 0 <= data["summary"]["word_error_rate"] < 0.5


def test_transcripts_are_normalised_before_scoring():
    assert number_words(1813) == "eighteen thirteen"
    assert normalise("Mr. Quilter, in 1813!") == "mister quilter in eighteen thirteen"
    assert normalise("IN EIGHTEEN THIRTEEN") == normalise("In 1813.")
