"""Raw audio is never stored (issue 13): after a real spoken session through a real `serve` with
default settings, no audio file exists anywhere the server could have written one.

The server gets a temp directory of its own (TMPDIR), so everything that appears there is its
doing. Before the session every file under its data directory, that temp directory, its working
directory (the checkout) and the system temp directory is listed; after the session (and the
server's shutdown, when a recorder would flush) every file that is new or changed is checked:
- no audio file name (.wav, .ogg, .opus, .flac, .mp3, .webm, .pcm, ...) and no audio header
  (RIFF, OggS, fLaC, ID3, Matroska/WebM, AIFF, CAF);
- no stretch of the student's audio as sent (PCM16) or as the pipeline holds it (float32), and
  none of the reply audio the tutor sent: the clip is played with its level changed slightly, so
  its bytes exist nowhere but in this test and whatever kept them;
- in the server's own directories, no new file larger than the clip (the database aside, whose
  content is searched like every file).
The system temp directory is shared with other programs, so there only the audio of this session
counts as a finding.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pytest

from latency_bench.client import Clip, VoiceClient, load_clip
from tests.conftest import REPO_ROOT, TEST_SERVER_ENV, start_server, stop_server

pytestmark = pytest.mark.models

AUDIO_SUFFIXES = {
    ".wav", ".wave", ".ogg", ".oga", ".opus", ".flac", ".mp3", ".m4a", ".aac", ".webm", ".mka",
    ".pcm", ".raw", ".aif", ".aiff", ".caf", ".amr", ".au", ".snd",
}
AUDIO_MAGIC = (b"RIFF", b"OggS", b"fLaC", b"ID3", b"\x1a\x45\xdf\xa3", b"FORM", b"caff", b"#!AMR", b".snd")
NEEDLE_BYTES = 2048  # 1,024 samples: no file holds that by chance
LARGEST_READ = 512 * 1024 * 1024

Listing = dict[Path, tuple[int, int]]


class RecordingClient(VoiceClient):
    """The benchmark client, keeping the reply audio it receives (it only counts it)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.reply_audio = bytearray()

    async def _receive(self) -> None:
        async for raw in self._ws:
            if isinstance(raw, bytes):
                self.reply_audio.extend(raw)
                self._reply_audio(len(raw))
            elif self._handle(json.loads(raw)):
                return


def listing(root: Path) -> Listing:
    files: Listing = {}
    for folder, _dirs, names in os.walk(root):
        for name in names:
            path = Path(folder) / name
            try:
                stat = path.lstat()
            except OSError:
                continue  # gone meanwhile
            if path.is_file() and not path.is_symlink():
                files[path] = (stat.st_size, stat.st_mtime_ns)
    return files


def changed(before: Listing, after: Listing) -> Iterable[tuple[Path, bool]]:
    """(path, is_new) of every file new or changed since `before`."""
    for path, stamp in after.items():
        if before.get(path) != stamp:
            yield path, path not in before


def read(path: Path) -> bytes:
    try:
        if path.stat().st_size > LARGEST_READ:
            return b""
        return path.read_bytes()
    except OSError:
        return b""  # gone, or not ours to read


def unique_clip(speech_clips: Path, manifest: list[dict]) -> Clip:
    """A real 16 kHz clip at 90 % of its level: bytes found nowhere else."""
    entry = next(e for e in manifest if e["file"].endswith(".16k.wav"))
    clip = load_clip(speech_clips / entry["file"])
    assert clip.sample_rate == 16_000
    samples = np.frombuffer(clip.pcm16, dtype="<i2").astype(np.float32) * 0.9
    return Clip(clip.name, np.round(samples).astype("<i2").tobytes(), 16_000, clip.speech_end_ms)


def loudest(pcm16: bytes) -> bytes:
    """The loudest stretch of NEEDLE_BYTES in PCM16 audio (speech, never a silent pause)."""
    samples = np.frombuffer(pcm16[: len(pcm16) & ~1], dtype="<i2").astype(np.int64)
    width = NEEDLE_BYTES // 2
    energy = np.convolve(np.abs(samples), np.ones(width, dtype=np.int64), mode="valid")
    start = int(np.argmax(energy[::width]) * width)
    return samples[start : start + width].astype("<i2").tobytes()


def needles(sent: bytes, reply: bytes) -> dict[str, bytes]:
    """Stretches of the student's speech, as PCM16 and as float32, and of the tutor's reply."""
    pcm = loudest(sent)
    as_float = (np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0).astype("<f4").tobytes()
    return {
        "the student's audio (PCM16)": pcm,
        "the student's audio (float32)": as_float,
        "the tutor's reply audio": loudest(reply),
    }


async def test_no_audio_is_stored_anywhere_after_a_spoken_session(
    tmp_path_factory: pytest.TempPathFactory, speech_clips: Path, speech_manifest: list[dict]
):
    root = tmp_path_factory.mktemp("no-audio")
    own_tmp = root / "tmp"
    own_tmp.mkdir()
    server = start_server(root, env={**TEST_SERVER_ENV, "TMPDIR": str(own_tmp)})
    assert server.data_dir is not None
    own = [server.data_dir, own_tmp, REPO_ROOT]  # its data, its temp directory, its working directory
    shared = Path(tempfile.gettempdir())
    clip = unique_clip(speech_clips, speech_manifest)
    try:
        before = {folder: listing(folder) for folder in [*own, shared]}
        token = server.token("student", classroom="cls_no_audio")
        bearer = {"Authorization": f"Bearer {token}"}
        status, raw = server.request("POST", "/v1/auth/ws-ticket", headers=bearer)
        assert status == 200, raw
        async with RecordingClient(f"{server.ws_url}?ticket={json.loads(raw)['ticket']}") as client:
            result = await client.play_clip(clip)
    finally:
        stop_server(server)
    # A real session: the student's speech was heard and answered in a voice, then it ended.
    assert result.transcript.strip(), "the tutor heard nothing"
    assert len(client.reply_audio) >= 2 * NEEDLE_BYTES, "the tutor did not answer in a voice"
    assert any(m["type"] == "session.ended" for m in client.messages)
    searched = needles(clip.pcm16, client.reply_audio)
    for what, needle in searched.items():
        assert len(needle) >= NEEDLE_BYTES and any(needle), what

    findings: list[str] = []
    for folder in [*own, shared]:
        mine = folder in own
        for path, is_new in changed(before[folder], listing(folder)):
            if not mine and any(path.is_relative_to(o) for o in own):
                continue  # the server's own temp directory is in the shared one: checked above
            content = read(path)
            findings += [f"{path}: holds {what}" for what, needle in searched.items() if needle in content]
            if not mine:
                continue
            if path.suffix.lower() in AUDIO_SUFFIXES:
                findings.append(f"{path}: an audio file name")
            if content.startswith(AUDIO_MAGIC) or content[8:12] in (b"WAVE", b"AIFF"):
                findings.append(f"{path}: starts like an audio file ({content[:12]!r})")
            database = path.name.startswith("convergio.db")  # searched above like every file
            if is_new and not database and path.suffix != ".pyc" and len(content) > len(clip.pcm16):
                findings.append(f"{path}: a new file of {len(content)} bytes, more than the clip")
    assert findings == [], "audio was stored:\n" + "\n".join(findings)
