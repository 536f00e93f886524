"""Server settings from environment variables (prefix CONVERGIO_, nested with "__").

Example: CONVERGIO_PORT=9000, CONVERGIO_TURN__END_OF_TURN_SILENCE_MS=900.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from pipelines.budgets import BudgetPolicy
from pipelines.config import TurnConfig


class EngineSettings(BaseModel):
    vad: str = "webrtcvad"
    stt: str = "faster-whisper"
    llm: str = "llama-cpp"
    tts: str = "piper"
    # Optional second engine per kind; the first is then tried with attempt timeouts.
    stt_fallback: str | None = None
    llm_fallback: str | None = None
    tts_fallback: str | None = None
    attempt_timeout_ms: int = Field(1500, ge=50)  # for an attempt's first output
    idle_timeout_ms: int = Field(2000, ge=50)  # between outputs of a streaming attempt
    vad_aggressiveness: int = Field(2, ge=0, le=3)
    # The most threads one step of each engine may use. Steps get cores from one machine-wide
    # arbiter, most urgent first (models/scheduling.py), and run on fewer threads when fewer
    # cores are free, so these never oversubscribe the machine.
    stt_threads: int = Field(2, ge=1)
    # Encode a 10/20 s whisper window instead of the padded 30 s (same accuracy, ~3x faster).
    stt_trim_window: bool = True
    # A token is no faster on two threads here (~25 ms either way); reading a prompt is.
    llm_threads: int = Field(1, ge=1)
    llm_batch_threads: int = Field(2, ge=1)
    # KV-cache contexts of 1024 tokens (~35 MB each). Generations run interleaved, one per
    # context: with fewer contexts than replies in flight, an urgent reply waits for one.
    llm_contexts: int = Field(8, ge=1, le=64)
    tts_threads: int = Field(2, ge=1)


class LimitSettings(BaseModel):
    max_frame_bytes: int = Field(64 * 1024, ge=1024)  # ~2 s of 16 kHz PCM16 per frame
    max_text_chars: int = Field(2000, ge=1)
    max_sessions: int = Field(16, ge=1)


class WebRtcSettings(BaseModel):
    # Host candidates to offer instead of every interface's address (e.g. ["127.0.0.1"]).
    host_addresses: list[str] = []
    # Use only the client's candidates inside these networks (e.g. ["127.0.0.0/8"]); [] = all.
    allowed_candidate_networks: list[str] = []
    max_sdp_bytes: int = Field(64 * 1024, ge=1024)
    connect_timeout_s: float = Field(10.0, gt=0)  # a peer stuck connecting is closed after this
    inbound_timeout_s: float = Field(5.0, gt=0)  # a peer that sends no audio this long has vanished


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONVERGIO_", env_nested_delimiter="__")

    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    default_persona: str = "maths"
    # Spoken answers are short; every token is also ~0.25 s of speech to synthesise.
    max_reply_tokens: int = Field(48, ge=8, le=512)
    playback_lead_ms: int = Field(300, ge=0, le=5000)
    engines: EngineSettings = EngineSettings()
    turn: TurnConfig = TurnConfig()
    limits: LimitSettings = LimitSettings()
    budgets: BudgetPolicy = BudgetPolicy()
    webrtc: WebRtcSettings = WebRtcSettings()
    log_level: str = "info"
