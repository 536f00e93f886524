"""A learner who stops mid-sentence to think is not cut off: on real clips with a thinking pause
(../shared/turns, or synthesised), on the real engines, each clip is one turn, no reply audio
arrives before the speech really ends, and the one transcript holds every reference word the
model recognises when it transcribes the whole clip at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from latency_bench.client import VoiceClient, load_clip
from latency_bench.wer import normalise
from tests.speech import load_audio, manifest

pytestmark = pytest.mark.models

SLICE = 4  # the shortest clips: CI time, and pauses of 1.2 s and 2 s


def _whole_clip_words(stt, path: Path) -> set[str]:
    return set(normalise(stt._transcribe_blocking(load_audio(path))).split())  # noqa: SLF001 - offline reference


@pytest.fixture(scope="module")
def offline_stt():
    from models.faster_whisper_stt import FasterWhisperSTT

    return FasterWhisperSTT(threads=1)


async def test_every_clip_with_a_thinking_pause_is_one_whole_turn(
    server, turn_clips: Path, offline_stt, assert_valid
):
    entries = sorted(manifest(turn_clips), key=lambda e: e["duration_s"])[:SLICE]
    failures = []
    async with VoiceClient(server.ws_ticket_url()) as client:
        for entry in entries:
            result = await client.play_clip(load_clip(turn_clips / entry["file"]))
            spoken = [t for t in result.turns if t.status != "no_speech"]
            recognised = set(normalise(entry["transcript"]).split()) & _whole_clip_words(
                offline_stt, turn_clips / entry["file"]
            )
            missing = recognised - set(normalise(result.transcript).split())
            if len(spoken) != 1 or result.cut_off or result.finals != 1 or missing:
                failures.append(
                    f"{entry['file']}: turns {len(spoken)}, cut off {result.cut_off}, "
                    f"finals {result.finals}, missing {sorted(missing)}, transcript {result.transcript!r}"
                )
        assert_valid(client.messages)
    assert not failures, "\n".join(failures)
    assert client.stray_audio_bytes == 0
