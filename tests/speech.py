"""Speech fixtures: the real clips in ../shared/speech, or speech synthesised at test time.

The folder comes from CONVERGIO_SPEECH_DIR (default: ../shared/speech next to the repository). A
user's own clone may not have it; then Piper speaks a few sentences into WAV files with a
manifest, so the suite still runs anywhere (CI here always has the real clips).
"""

from __future__ import annotations

import json
import os
import wave
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SPEECH_DIR = REPO.parent / "shared" / "speech"

SYNTHETIC_SENTENCES = {
    "synthetic_01.wav": "What is seven times eight?",
    "synthetic_02.wav": "Can you help me with fractions please?",
    "synthetic_03.wav": "Why do leaves change colour in autumn?",
    "synthetic_04.wav": "I think the answer is twelve.",
    "synthetic_05.wav": "Tell me about the Roman empire.",
    "synthetic_06.wav": "How do plants make their food?",
}


def speech_dir(tmp_root: Path) -> Path:
    configured = Path(os.environ.get("CONVERGIO_SPEECH_DIR", DEFAULT_SPEECH_DIR))
    if (configured / "manifest.json").is_file():
        return configured
    return synthesise(tmp_root / "synthetic-speech")


def synthesise(folder: Path, sentences: dict[str, str] | None = None) -> Path:
    """Piper speaks `sentences` (file name -> text; default the fallback set) into 16 kHz WAVs."""
    import numpy as np
    import soxr

    from models.piper_tts import PiperTTS

    folder.mkdir(parents=True, exist_ok=True)
    voice = PiperTTS()._voice  # noqa: SLF001 - test-time synthesis only
    manifest = []
    for name, text in (sentences or SYNTHETIC_SENTENCES).items():
        audio = np.concatenate([c.audio_float_array for c in voice.synthesize(text)])
        audio16 = soxr.resample(audio, voice.config.sample_rate, 16_000)
        pcm = (np.clip(audio16, -1, 1) * 32767).astype("<i2")
        silence = np.zeros(3200, dtype="<i2")
        with wave.open(str(folder / name), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(16_000)
            wav.writeframes(np.concatenate([silence, pcm, silence]).tobytes())
        manifest.append({"file": name, "transcript": text, "duration_s": len(pcm) / 16_000})
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def manifest(folder: Path) -> list[dict]:
    return json.loads((folder / "manifest.json").read_text())
