"""Speech fixtures: the real clips in ../shared/speech, or speech synthesised at test time.

The folder comes from CONVERGIO_SPEECH_DIR (default: ../shared/speech next to the repository). A
user's own clone may not have it; then Piper speaks a few sentences into WAV files with a
manifest, so the suite still runs anywhere (CI here always has the real clips).

Thinking pauses likewise: CONVERGIO_TURNS_DIR (default ../shared/turns: real clips with a pause
inserted mid-sentence), or Piper speaking a sentence in two halves with a pause of faint noise
between them, described by the same manifest fields (`pause_start_s`, `pause_s`).
"""

from __future__ import annotations

import json
import os
import wave
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SPEECH_DIR = REPO.parent / "shared" / "speech"
DEFAULT_TURNS_DIR = REPO.parent / "shared" / "turns"

SYNTHETIC_SENTENCES = {
    "synthetic_01.wav": "What is seven times eight?",
    "synthetic_02.wav": "Can you help me with fractions please?",
    # "the leaves": the noise-free voice's "do leaves" is heard as "do you leave".
    "synthetic_03.wav": "Why do the leaves change color in autumn?",
    "synthetic_04.wav": "I think the answer is twelve.",
    "synthetic_05.wav": "Tell me about the Roman empire.",
    "synthetic_06.wav": "How do plants make their food?",
}


def speech_dir(tmp_root: Path) -> Path:
    configured = Path(os.environ.get("CONVERGIO_SPEECH_DIR", DEFAULT_SPEECH_DIR))
    if (configured / "manifest.json").is_file():
        return configured
    return synthesise(tmp_root / "synthetic-speech")


# Each sentence is spoken in two halves with a thinking pause (seconds) after the first.
SYNTHETIC_PAUSES = {
    "synthetic_pause_01.wav": ("I think the answer is", "twelve because seven and five make twelve.", 1.2),
    "synthetic_pause_02.wav": ("Plants make their food from", "sunlight, water and air.", 2.0),
}


def turns_dir(tmp_root: Path) -> Path:
    configured = Path(os.environ.get("CONVERGIO_TURNS_DIR", DEFAULT_TURNS_DIR))
    if (configured / "manifest.json").is_file():
        return configured
    return synthesise_pauses(tmp_root / "synthetic-turns")


def spoken(text: str):  # -> np.ndarray of 16 kHz float32
    """Piper speech with its sampling noise off: the same words give the same audio on every run,
    so a test that hears it never depends on the luck of one rendering."""
    import numpy as np
    import soxr
    from piper.config import SynthesisConfig

    from models.piper_tts import PiperTTS

    voice = PiperTTS()._voice  # noqa: SLF001 - test-time synthesis only
    steady = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text, syn_config=steady)])
    return soxr.resample(audio, voice.config.sample_rate, 16_000).astype(np.float32)


def _speak(text: str):  # -> np.ndarray of 16 kHz PCM16
    import numpy as np

    return (np.clip(spoken(text), -1, 1) * 32767).astype("<i2")


def _write(path: Path, pcm) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16_000)
        wav.writeframes(pcm.tobytes())


def synthesise(folder: Path, sentences: dict[str, str] | None = None) -> Path:
    """Piper speaks `sentences` (file name -> text; default the fallback set) into 16 kHz WAVs."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    manifest = []
    for name, text in (sentences or SYNTHETIC_SENTENCES).items():
        pcm = _speak(text)
        silence = np.zeros(3200, dtype="<i2")
        _write(folder / name, np.concatenate([silence, pcm, silence]))
        manifest.append({"file": name, "transcript": text, "duration_s": len(pcm) / 16_000})
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def synthesise_pauses(folder: Path) -> Path:
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    manifest = []
    for name, (first, second, pause_s) in SYNTHETIC_PAUSES.items():
        lead, head, tail = np.zeros(3200, dtype="<i2"), _speak(first), _speak(second)
        # Faint noise, not digital silence: a room while a learner thinks.
        pause = rng.normal(0, 30, int(pause_s * 16_000)).astype("<i2")
        pcm = np.concatenate([lead, head, pause, tail, np.zeros(3200, dtype="<i2")])
        _write(folder / name, pcm)
        manifest.append(
            {
                "file": name,
                "transcript": f"{first} {second}",
                "pause_after_word": first.split()[-1],
                "pause_start_s": (len(lead) + len(head)) / 16_000,
                "pause_s": pause_s,
                "duration_s": len(pcm) / 16_000,
            }
        )
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def manifest(folder: Path) -> list[dict]:
    return json.loads((folder / "manifest.json").read_text())


def load_audio(path: Path):  # -> np.ndarray of 16 kHz float32 in [-1, 1]
    """A clip as the STT engines take it (the clips are 16 kHz mono PCM16)."""
    import numpy as np

    with wave.open(str(path)) as wav:
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768


def short_sentence_clip(folder: Path, entries: list[dict]):  # -> (dict, np.ndarray of 16 kHz float32)
    """The shortest clip of 2.5-9 s (one trimmed Whisper window), or the longest synthesised
    sentence where ../shared is absent (all of them are shorter), with its audio."""
    mid = [e for e in entries if 2.5 <= e["duration_s"] <= 9]
    entry = min(mid, key=lambda e: e["duration_s"]) if mid else max(entries, key=lambda e: e["duration_s"])
    return entry, load_audio(folder / entry["file"])
