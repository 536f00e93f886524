"""Server settings from environment variables (prefix CONVERGIO_, nested with "__").

Example: CONVERGIO_PORT=9000, CONVERGIO_TURN__END_OF_TURN_SILENCE_MS=900.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class EngineSettings(BaseModel):
    vad: str = "webrtcvad"
    stt: str = "faster-whisper"
    llm: str = "llama-cpp"
    tts: str = "piper"
    vad_aggressiveness: int = Field(2, ge=0, le=3)
    # Thread plan for two cores: see FIELD-NOTES (llama.cpp spin-waits against the others).
    stt_threads: int = Field(2, ge=1)
    # Encode a 10/20 s whisper window instead of the padded 30 s (same accuracy, ~3x faster).
    stt_trim_window: bool = True
    llm_threads: int = Field(1, ge=1)
    llm_batch_threads: int = Field(2, ge=1)
    tts_threads: int = Field(1, ge=1)


class TurnSettings(BaseModel):
    end_of_turn_silence_ms: int = Field(600, ge=150, le=5000)
    speculation_silence_ms: int = Field(240, ge=90, le=5000)
    partial_interval_ms: int = Field(900, ge=0, le=10_000)

    @model_validator(mode="after")
    def _speculation_first(self) -> TurnSettings:
        if self.speculation_silence_ms > self.end_of_turn_silence_ms:
            self.speculation_silence_ms = self.end_of_turn_silence_ms
        return self


class LimitSettings(BaseModel):
    max_frame_bytes: int = Field(64 * 1024, ge=1024)  # ~2 s of 16 kHz PCM16 per frame
    max_text_chars: int = Field(2000, ge=1)
    max_sessions: int = Field(16, ge=1)


class BudgetSettings(BaseModel):
    """Deadlines in ms. A miss is recorded on the turn (and, later, acted on)."""

    endpointing_ms: int = 800
    stt_ms: int = 600
    llm_first_token_ms: int = 500
    first_sentence_ms: int = 800
    tts_first_audio_ms: int = 400
    voice_to_voice_ms: int = 1200


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONVERGIO_", env_nested_delimiter="__")

    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    default_persona: str = "maths"
    max_reply_tokens: int = Field(64, ge=8, le=512)
    playback_lead_ms: int = Field(300, ge=0, le=5000)
    engines: EngineSettings = EngineSettings()
    turn: TurnSettings = TurnSettings()
    limits: LimitSettings = LimitSettings()
    budgets: BudgetSettings = BudgetSettings()
    log_level: str = "info"
