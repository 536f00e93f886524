"""Server settings from environment variables (prefix CONVERGIO_, nested with "__").

Example: CONVERGIO_PORT=9000, CONVERGIO_TURN__END_OF_TURN_SILENCE_MS=900.
"""

from __future__ import annotations

import os
import socket
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from models.registry import EngineOptionsError, spec_by_key, spec_for
from pipelines.allowance import UsageCaps
from pipelines.quota import ScopeCaps
from pipelines.budgets import BudgetPolicy
from pipelines.config import TurnConfig
from pipelines.personas import PERSONAS
from voice_server.ledger.prices import PriceTable
from voice_server.privacy import PrivacySettings, refused_engines

KINDS = ("vad", "stt", "llm", "tts")
# Kinds the pipeline runs without: a missing turn model leaves the turn policy its other evidence.
OPTIONAL_KINDS = ("turn",)
NO_ENGINE = "none"

_NO_TIMEOUTS = "an engine is switched when a latency budget with action fallback passes"
_MOVED = {
    old: f"use CONVERGIO_ENGINES__OPTIONS__{new}"
    for old, new in {
        "vad_aggressiveness": "WEBRTCVAD__AGGRESSIVENESS",
        "stt_threads": "FASTER_WHISPER__THREADS",
        "stt_trim_window": "FASTER_WHISPER__TRIM_WINDOW",
        "llm_threads": "LLAMA_CPP__THREADS",
        "llm_batch_threads": "LLAMA_CPP__BATCH_THREADS",
        "llm_contexts": "LLAMA_CPP__CONTEXTS",
        "tts_threads": "PIPER__THREADS",
    }.items()
} | {"attempt_timeout_ms": _NO_TIMEOUTS, "idle_timeout_ms": _NO_TIMEOUTS}


class EngineSettings(BaseModel):
    """Which engine serves each kind, its fallbacks, and each engine's own options.

    Example: CONVERGIO_ENGINES__LLM=llama-cpp, CONVERGIO_ENGINES__LLM_FALLBACK=echo,
    CONVERGIO_ENGINES__OPTIONS__LLAMA_CPP__CONTEXTS=4. An engine's options, their defaults and
    limits are its options model's (models/registry.py); they are validated here, when settings
    load, so a typo fails at start-up with the engine and option named.
    """

    vad: str = "webrtcvad"
    stt: str = "faster-whisper"
    llm: str = "llama-cpp"
    tts: str = "piper"
    # Scores "finished or thinking?" at each pause (pipelines/turn_policy.py); "none" to go without.
    turn: str = "smart-turn"
    # Engines to try, in order, when the one before fails or misses a deadline whose action is
    # "fallback" (comma-separated for more than one).
    stt_fallback: str | None = None
    llm_fallback: str | None = None
    tts_fallback: str | None = None
    # A failed engine sits out this long before calls go to it first again.
    fallback_cooldown_s: float = Field(30.0, ge=0)
    # Per engine, keyed by its name with "-" read as "_": {"llama_cpp": {"contexts": 4}}.
    options: dict[str, dict[str, Any]] = {}

    @model_validator(mode="before")
    @classmethod
    def _moved_settings(cls, data: Any) -> Any:
        """Settings that moved say where to, instead of being silently ignored."""
        if isinstance(data, dict):
            for old in data.keys() & _MOVED:
                raise ValueError(f"CONVERGIO_ENGINES__{old.upper()} is no longer read: {_MOVED[old]}")
        return data

    def chain(self, kind: str) -> list[str]:
        """The engines of one kind in the order they are tried: the chosen one, then fallbacks."""
        fallback = getattr(self, f"{kind}_fallback", None) or ""
        return [getattr(self, kind), *(n.strip() for n in fallback.split(",") if n.strip())]

    def options_for(self, name: str) -> BaseModel:
        """The validated options of the engine with this name (its defaults where none were set)."""
        spec = spec_by_key(name)
        return spec.validate_options(self.options.get(spec.key))

    @model_validator(mode="after")
    def _engines_exist_and_options_validate(self) -> EngineSettings:
        for kind in KINDS:
            for name in self.chain(kind):
                spec_for(kind, name)  # raises naming the known engines of that kind
        if self.turn != NO_ENGINE:
            spec_for("turn", self.turn)
        validated: dict[str, dict[str, Any]] = {}
        for key, raw in self.options.items():
            spec = spec_by_key(key)
            # Keep what was set (not the defaults), under the normalised key, checked once here.
            try:
                options = spec.validate_options(raw)
            except EngineOptionsError as exc:
                where = f"CONVERGIO_ENGINES__OPTIONS__{spec.key.upper()}__<OPTION>"
                raise ValueError(f"{exc} (set as {where})") from None
            validated[spec.key] = options.model_dump(include=set(options.model_fields_set))
        self.options = validated
        # A configured engine with required options (a cloud engine's region and key) and none
        # set fails here too, naming the option, not when the server loads it.
        for kind in KINDS:
            for name in self.chain(kind):
                spec = spec_for(kind, name)
                if spec.key not in validated:
                    try:
                        spec.validate_options({})
                    except EngineOptionsError as exc:
                        where = f"CONVERGIO_ENGINES__OPTIONS__{spec.key.upper()}__<OPTION>"
                        raise ValueError(f"{exc} (set as {where})") from None
        return self


class LimitSettings(BaseModel):
    max_frame_bytes: int = Field(64 * 1024, ge=1024)  # ~2 s of 16 kHz PCM16 per frame
    max_text_chars: int = Field(2000, ge=1)
    max_sessions: int = Field(16, ge=1)
    # A connection that has not started its session by then gives its slot back.
    session_start_timeout_s: float = Field(15.0, gt=0)


class WebRtcSettings(BaseModel):
    # Host candidates to offer instead of every interface's address (e.g. ["127.0.0.1"]).
    host_addresses: list[str] = []
    # Use only the client's candidates inside these networks (e.g. ["127.0.0.0/8"]); [] = all.
    allowed_candidate_networks: list[str] = []
    max_sdp_bytes: int = Field(64 * 1024, ge=1024)
    connect_timeout_s: float = Field(10.0, gt=0)  # a peer stuck connecting is closed after this
    # STUN/TURN servers (e.g. ["stun:stun.example.org:3478"]). None by default: aiortc's own
    # default is a public STUN server that would learn the address of every peer.
    ice_servers: list[str] = []
    inbound_timeout_s: float = Field(5.0, gt=0)  # a peer that sends no audio this long has vanished
    # Opus frames (20 ms each) aiortc holds back before decoding the student's audio. Its default,
    # 4, smooths playback for a listener; the server only transcribes, so waiting for later packets
    # only makes it hear the end of a sentence later (80 ms at 4, 20 ms at 1). A packet that
    # arrives out of order keeps its place in the buffer whatever this is.
    inbound_jitter_frames: int = Field(1, ge=1, le=8)


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "convergio-voice"


class StorageSettings(BaseModel):
    """Where durable state (the usage ledger) lives.

    Example: CONVERGIO_STORAGE__DATA_DIR=/var/lib/convergio, or for production
    CONVERGIO_STORAGE__URL=postgresql+asyncpg://user:pass@db/convergio.
    """

    # The embedded SQLite database is a file here, created on first `serve`.
    data_dir: Path = Field(default_factory=_default_data_dir)
    # A SQLAlchemy async URL; unset means SQLite in data_dir.
    url: str | None = None
    # Names this server's in-flight turns, so a restart settles its own and not a replica's.
    instance: str = Field(default_factory=socket.gethostname, min_length=1, max_length=128)
    # The ledger writes usage off the audio path, at most this often.
    flush_interval_s: float = Field(0.25, gt=0, le=10)
    # Distinct usage keys waiting to be written before a warning (none is ever dropped).
    max_pending: int = Field(10_000, ge=1)

    @property
    def database_url(self) -> str:
        return self.url or f"sqlite+aiosqlite:///{self.data_dir / 'convergio.db'}"


class BillingSettings(BaseModel):
    """Example: CONVERGIO_BILLING__PRICE_TABLE=/etc/convergio/prices.toml (format:
    voice_server/ledger/prices.py)."""

    # Without a table the usage endpoints report exact units only, no cost.
    price_table: Path | None = None
    # Per session, in the ledger's units; a call that would go over is never made.
    session_caps: UsageCaps = UsageCaps()
    # Shared by every session of one student (any signed-in subject), one classroom, one school
    # key, per period, in units or cost (pipelines/quota.py; README "Caps").
    student_caps: ScopeCaps = ScopeCaps()
    classroom_caps: ScopeCaps = ScopeCaps()
    key_caps: ScopeCaps = ScopeCaps()

    @field_validator("price_table")
    @classmethod
    def _table_loads(cls, path: Path | None) -> Path | None:
        """A price table with a mistake stops the start, not the first bill."""
        if path is not None:
            try:
                PriceTable.load(path)
            except (OSError, tomllib.TOMLDecodeError, ValidationError) as exc:
                raise ValueError(f"cannot use the price table {path}: {exc}") from None
        return path

    @model_validator(mode="after")
    def _cost_caps_need_prices(self) -> BillingSettings:
        for scope in ("student", "classroom", "key"):
            if getattr(self, f"{scope}_caps").cost_minor is not None and self.price_table is None:
                raise ValueError(
                    f"CONVERGIO_BILLING__{scope.upper()}_CAPS__COST_MINOR is a cap in cost, which needs "
                    "a price table: set CONVERGIO_BILLING__PRICE_TABLE "
                    "(format: voice_server/ledger/prices.py)"
                )
        return self

    def load_prices(self) -> PriceTable | None:
        return None if self.price_table is None else PriceTable.load(self.price_table)


class AuthSettings(BaseModel):
    """Who may use the server (voice_server/auth/).

    Example: CONVERGIO_AUTH__SECRET=<at least 32 random characters>,
    CONVERGIO_AUTH__ALLOWED_ORIGINS='["https://tutor.school.example"]',
    CONVERGIO_AUTH__METRICS_TOKEN=<a scrape token for Prometheus>.
    """

    # "token": every endpoint but the public ones checks a signed token. "open": no sign-in, as
    # before accounts existed; refused unless the server listens on a loopback address.
    mode: Literal["token", "open"] = "token"
    # Signs the tokens. Unset: `serve` makes one and keeps it in the data directory (mode 0600).
    secret: SecretStr | None = Field(None, min_length=32)
    # Access tokens are short-lived: a session already running is not cut when its token expires.
    access_token_ttl_s: int = Field(3600, ge=60, le=24 * 3600)
    # A student sign-in link works once, within this time.
    signin_code_ttl_s: int = Field(600, ge=30, le=24 * 3600)
    # A WebSocket ticket works once, within this time: just long enough to open the socket.
    ws_ticket_ttl_s: int = Field(30, ge=5, le=300)
    # Origins whose pages may open the WebSocket; [] means the server's own origin only.
    allowed_origins: list[str] = []
    # Lets Prometheus read /metrics without an admin token (sent as "Authorization: Bearer ...").
    metrics_token: SecretStr | None = Field(None, min_length=16)
    # Failed password sign-ins or code redemptions per client address, and per username, within
    # the window before further tries get 429 (voice_server/auth/ratelimit.py).
    max_sign_in_failures: int = Field(5, ge=1, le=1000)
    sign_in_failure_window_s: int = Field(900, ge=1, le=24 * 3600)


class SecretsSettings(BaseModel):
    """The server secret that encrypts the provider keys a school brings (voice_server/keys/).

    Example: CONVERGIO_SECRETS__KEY=<at least 32 random characters>; to rotate, put the new one
    there, the old one in CONVERGIO_SECRETS__PREVIOUS_KEYS='["<old>"]', restart, then run
    `convergio-voice keys rotate`.
    """

    # Encrypts every key stored from now on. Unset: one is made on first use and kept in the data
    # directory (`secrets-key`, mode 0600); several replicas must share one configured secret.
    key: SecretStr | None = Field(None, min_length=32)
    # Still decrypt, never encrypt: keys stored before the last change of `key`.
    previous_keys: list[Annotated[SecretStr, Field(min_length=32)]] = []

    @model_validator(mode="after")
    def _previous_need_a_current(self) -> SecretsSettings:
        if self.previous_keys and self.key is None:
            raise ValueError(
                "CONVERGIO_SECRETS__PREVIOUS_KEYS needs CONVERGIO_SECRETS__KEY (the newest secret)"
            )
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONVERGIO_", env_nested_delimiter="__")

    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    default_persona: str = "maths"
    # Spoken answers are short; every token is also ~0.25 s of speech to synthesise.
    max_reply_tokens: int = Field(48, ge=8, le=512)
    # The teaching plan in code (pipelines/pedagogy): checked sums, vetted lesson cards, checked
    # model sentences. Off only to judge an engine's own replies.
    lesson_plans: bool = True
    playback_lead_ms: int = Field(300, ge=0, le=5000)
    engines: EngineSettings = EngineSettings()
    # The pipeline's own models: their defaults and limits are the only ones.
    turn: TurnConfig = TurnConfig()
    limits: LimitSettings = LimitSettings()
    budgets: BudgetPolicy = BudgetPolicy()
    webrtc: WebRtcSettings = WebRtcSettings()
    storage: StorageSettings = StorageSettings()
    billing: BillingSettings = BillingSettings()
    auth: AuthSettings = AuthSettings()
    privacy: PrivacySettings = PrivacySettings()
    secrets: SecretsSettings = SecretsSettings()
    log_level: str = "info"

    @model_validator(mode="after")
    def _privacy_mode_allows_only_local(self) -> Settings:
        """Refused at configuration, before anything starts: an engine that sends audio or text
        to a service, or an ICE server that learns every peer's address."""
        engines = self.engines
        if self.privacy.classrooms and not self.privacy.mode:
            # Each kind needs an engine that runs here, for the private classrooms' sessions.
            for kind in KINDS:
                if not any(spec_for(kind, name).runs_locally(engines.options_for(name)) for name in engines.chain(kind)):
                    names = ", ".join(engines.chain(kind))
                    raise ValueError(
                        f"privacy mode for classrooms needs a {kind} engine that runs on this machine in the "
                        f"{kind} chain ({names}); add a local fallback, e.g. CONVERGIO_ENGINES__{kind.upper()}_FALLBACK"
                    )
        if not self.privacy.mode:
            return self
        chains = [(kind, name) for kind in KINDS for name in engines.chain(kind)]
        if engines.turn != NO_ENGINE:
            chains.append(("turn", engines.turn))
        refused = refused_engines(
            (kind, name, spec_for(kind, name).runs_locally(engines.options_for(name))) for kind, name in chains
        )
        if refused:
            raise ValueError(
                f"privacy mode allows only engines that run on this machine; refused: {', '.join(refused)}"
            )
        if self.webrtc.ice_servers:
            raise ValueError(
                "privacy mode allows no ICE (STUN/TURN) server: CONVERGIO_WEBRTC__ICE_SERVERS must be empty"
            )
        return self

    def privacy_allowed_hosts(self) -> list[str]:
        """Hosts the configuration itself names, which privacy mode lets the server reach."""
        host = make_url(self.storage.database_url).host
        return [host] if host else []

    @field_validator("default_persona")
    @classmethod
    def _known_persona(cls, persona: str) -> str:
        if persona not in PERSONAS:
            raise ValueError(f"unknown persona {persona!r}; known: {', '.join(PERSONAS)}")
        return persona
