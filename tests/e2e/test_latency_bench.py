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


# The benchmark cannot send a token yet (latency_bench has no --token), so it measures a loopback
# `serve --open` server.
def _bench(server, clips: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "latency_bench", "--url", server.ws_url, "--audio-dir", str(clips), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def two_short_clips(speech_clips: Path, tmp_path: Path) -> Path:
    clips = tmp_path / "clips"
    clips.mkdir()
    for clip in sorted(speech_clips.glob("*.wav"), key=lambda p: p.stat().st_size)[:2]:
        shutil.copy(clip, clips / clip.name)
    shutil.copy(speech_clips / "manifest.json", clips / "manifest.json")
    return clips


def test_benchmark_smoke_run_writes_json_plot_and_summary(
    open_server, two_short_clips: Path, tmp_path: Path
):
    report = tmp_path / "report.json"
    reports = tmp_path / "reports"
    result = _bench(
        open_server,
        two_short_clips,
        "--json",
        str(report),
        "--report-dir",
        str(reports),
        "--concurrency",
        "1,2",
        "--limit",
        "1",
    )
    assert result.returncode == 0, result.stderr
    assert "p50" in result.stdout and "p95" in result.stdout and "p99" in result.stdout
    data = json.loads(report.read_text())
    assert len(data["turns"]) == 1  # the warm-up turn is not counted
    for turn in data["turns"]:
        assert {"clip", "transcript", "reply_text", "voice_to_voice_ms", "stages"} <= set(turn)
        assert turn["voice_to_voice_ms"] > 0
        assert {"endpointing", "stt", "llm_first_token", "tts_first_audio"} <= set(turn["stages"])
    assert data["summary"]["voice_to_voice_ms"]["p50"] > 0
    assert 0 <= data["summary"]["word_error_rate"] < 0.5
    assert [level["concurrency"] for level in data["levels"]] == [1, 2]
    assert len(data["levels"][1]["turns"]) == 2
    resources = data["levels"][1]["resources"]
    assert resources["cpu_cores_per_session"] > 0 and resources["rss_peak_mb"] > 100
    png = (reports / "latency.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert "| 2 |" in (reports / "summary.md").read_text()


def test_benchmark_soak_reports_memory_over_time(open_server, two_short_clips: Path, tmp_path: Path):
    result = _bench(open_server, two_short_clips, "--soak", "0.2", "--report-dir", str(tmp_path))
    assert result.returncode == 0, result.stderr
    soak = json.loads((tmp_path / "report.json").read_text())["soak"]
    assert soak["turns"] >= 1 and len(soak["rss_mb_over_time"]) >= 2
    assert "rss_growth_mb_per_min" in soak and "RSS" in (tmp_path / "summary.md").read_text()


def test_transcripts_are_normalised_before_scoring():
    assert number_words(1813) == "eighteen thirteen"
    assert normalise("Mr. Quilter, in 1813!") == "mister quilter in eighteen thirteen"
    assert normalise("IN EIGHTEEN THIRTEEN") == normalise("In 1813.")


def test_benchmark_runs_over_webrtc_too(open_server, two_short_clips: Path, tmp_path: Path):
    report = tmp_path / "report.json"
    result = _bench(
        open_server, two_short_clips, "--transport", "webrtc", "--limit", "1", "--json", str(report)
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(report.read_text())
    assert data["transport"] == "webrtc"
    assert data["turns"][0]["voice_to_voice_ms"] > 0 and data["turns"][0]["reply_text"]
