"""What a cap is counted in: integer units per engine kind (the units the ledger bills).

Shared by the per-session allowance (`pipelines.allowance`) and the caps sessions share
(`pipelines.quota`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipelines.frames import UsageKind

CapKind = Literal["stt", "llm", "tts"]
UNIT: dict[CapKind, str] = {"stt": "audio_ms", "llm": "tokens", "tts": "chars"}

# The units a cap in units counts: speech synthesised is capped by its characters, not its ms.
_COUNTED: dict[UsageKind, CapKind] = {
    UsageKind.STT_AUDIO_MS: "stt",
    UsageKind.STT_PARTIAL_AUDIO_MS: "stt",
    UsageKind.LLM_PROMPT_TOKENS: "llm",
    UsageKind.LLM_COMPLETION_TOKENS: "llm",
    UsageKind.TTS_CHARS: "tts",
}
# The engine that used them (a cost cap prices every kind, synthesised ms included).
_ENGINE: dict[UsageKind, CapKind] = _COUNTED | {UsageKind.TTS_AUDIO_MS: "tts"}


def cap_kind_of(kind: UsageKind) -> CapKind | None:
    """The cap in units that `kind` counts towards (None: no cap in units counts it)."""
    return _COUNTED.get(kind)


def engine_kind_of(kind: UsageKind) -> CapKind:
    return _ENGINE[kind]


class UsageCaps(BaseModel):
    """Per session; None: no cap. Example: CONVERGIO_BILLING__SESSION_CAPS__LLM_TOKENS=20000."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stt_audio_ms: int | None = Field(None, ge=0, description="speech transcribed, partial captions included")
    llm_tokens: int | None = Field(None, ge=0, description="prompt and completion tokens")
    tts_chars: int | None = Field(None, ge=0, description="characters synthesised")

    def limit(self, kind: CapKind) -> int | None:
        return {"stt": self.stt_audio_ms, "llm": self.llm_tokens, "tts": self.tts_chars}[kind]

    def tighter(self, other: UsageCaps) -> UsageCaps:
        """Each kind's smaller limit of the two (None: no cap)."""

        def least(x: int | None, y: int | None) -> int | None:
            return y if x is None else x if y is None else min(x, y)

        return UsageCaps(
            stt_audio_ms=least(self.stt_audio_ms, other.stt_audio_ms),
            llm_tokens=least(self.llm_tokens, other.llm_tokens),
            tts_chars=least(self.tts_chars, other.tts_chars),
        )

    @property
    def any(self) -> bool:
        return any(self.limit(kind) is not None for kind in UNIT)
