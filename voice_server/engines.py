"""Loads the configured engines once per server, warms them up and reports readiness."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

from pydantic import BaseModel, SecretStr

from models.base import ChatMessage, ModelNotInstalledError, TurnCompletion
from models.fallback import FallbackHook, fallback_chain
from models.registry import spec_for
from pipelines.fillers import FillerCache
from pipelines.pedagogy.checks import warm as warm_lessons
from pipelines.personas import PERSONAS
from pipelines.pipeline import Engines
from pipelines.stock_speech import StockSpeech
from voice_server.privacy import PrivacyRefused
from voice_server.settings import KINDS, NO_ENGINE, Settings

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


class EngineHub:
    """Owns the shared engines. `ready` turns true once all are loaded and warm."""

    def __init__(self, settings: Settings, *, on_fallback: FallbackHook | None = None) -> None:
        self.settings = settings
        self.on_fallback = on_fallback
        self.engines: Engines | None = None
        self.error: str | None = None
        self._ready = asyncio.Event()
        self._local_members: dict[str, list[object]] = {}  # kind -> its engines that run here
        # The school key store (set by the app): turns an engine's `key_id` option into its key,
        # read when the engine loads, so the key never sits in the environment or the settings.
        self.resolve_key: Callable[[str], Awaitable[SecretStr]] | None = None
        self._local_engines: Engines | None = None

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    async def load(self, progress: Progress | None = None) -> Engines:
        say = progress or log.info
        loaded: dict[str, object] = {}
        try:
            for step, kind in enumerate(KINDS, start=1):
                loaded[kind] = await self._load_kind(kind, step, say)
            loaded["turn"] = await self._load_turn(say)
            engines = Engines(**loaded)  # type: ignore[arg-type]
            say("[5/5] warming up (first transcription, persona prompts, first voice, fillers) ...")
            started = time.perf_counter()
            await engines.stt.warm_up()
            # Every KV cache starts with the default persona's system prompt, so a new session's
            # first turn only reads its question.
            persona = PERSONAS[self.settings.default_persona]
            await engines.llm.warm_up([[ChatMessage("system", persona.system_prompt)]])
            await engines.tts.warm_up()
            if engines.turn is not None:
                await engines.turn.warm_up()
            fillers = FillerCache()
            await fillers.prepare(engines.tts, [p.voice for p in PERSONAS.values()])
            # The teaching checks' word list and lesson cards, off the loop, before any student.
            await asyncio.to_thread(warm_lessons)
            engines = replace(engines, fillers=fillers, stock=StockSpeech())
            say(f"[5/5] warm in {time.perf_counter() - started:.1f} s")
        except Exception as exc:
            self.error = str(exc)
            raise
        self.engines = engines
        self._ready.set()
        return engines

    async def _load_kind(self, kind: str, step: int, say: Progress) -> object:
        """The engine for one kind: the chosen one, or a fallback chain when fallbacks are set."""
        e = self.settings.engines
        engines = []
        for position, name in enumerate(e.chain(kind)):
            spec = spec_for(kind, name)
            role = kind if position == 0 else f"{kind} fallback {position}"
            say(f"[{step}/5] loading {role}: {spec.description} ...")
            started = time.perf_counter()
            # Loading reads hundreds of MB; keep the loop free so /healthz answers meanwhile.
            options = await self._with_school_key(e.options_for(name))
            engine = await asyncio.to_thread(spec.load, options)
            if getattr(options, "key_id", None) is not None:
                engine.key_id = options.key_id  # type: ignore[attr-defined]  # its use is the key's (caps)
            engines.append(engine)
            if spec.runs_locally(e.options_for(name)):
                self._local_members.setdefault(kind, []).append(engine)
            say(f"[{step}/5] {role} ready in {time.perf_counter() - started:.1f} s")
        return fallback_chain(kind, engines, cooldown_s=e.fallback_cooldown_s, on_fallback=self.on_fallback)

    async def _with_school_key(self, options: BaseModel) -> BaseModel:
        """The options with the key a `key_id` names filled in from the key store (under privacy
        mode the store refuses). Without a store, the adapter says what to configure instead."""
        key_id = getattr(options, "key_id", None)
        if key_id is None or self.resolve_key is None:
            return options
        field = "api_key" if "api_key" in type(options).model_fields else "key"
        return options.model_copy(update={field: await self.resolve_key(key_id)})

    def engines_for(self, classroom_id: str | None) -> Engines:
        """The engines a session may use: all of them, or for a classroom held to privacy mode only
        those that run on this machine (the same loaded instances, chained without the others), so
        no object in that session's pipeline can send a student's audio or words anywhere."""
        engines = self.engines
        if engines is None:
            raise RuntimeError("engines are not loaded")
        if classroom_id is None or classroom_id not in self.settings.privacy.classrooms:
            return engines
        if self._local_engines is None:
            e = self.settings.engines
            chains: dict[str, object] = {}
            for kind in KINDS:
                local = self._local_members.get(kind)
                if not local:  # the configuration is checked for this at start; never guess
                    raise PrivacyRefused(f"no {kind} engine that runs on this machine is configured")
                chains[kind] = fallback_chain(
                    kind, local, cooldown_s=e.fallback_cooldown_s, on_fallback=self.on_fallback
                )
            self._local_engines = replace(engines, **chains)  # type: ignore[arg-type]
        return self._local_engines

    async def _load_turn(self, say: Progress) -> TurnCompletion | None:
        """The turn-completion model, or None: without it the turn policy still has Whisper's
        punctuation and the silence, so a missing optional model degrades, never fails."""
        name = self.settings.engines.turn
        if name == NO_ENGINE:
            return None
        spec = spec_for("turn", name)
        try:
            engine = await asyncio.to_thread(spec.load, self.settings.engines.options_for(name))
        except ModelNotInstalledError as exc:
            log.warning("turn model not loaded, deciding turns from punctuation and silence: %s", exc)
            say(f"[4/5] turn model missing ({exc}); turns end on punctuation and silence")
            return None
        say(f"[4/5] turn model ready: {spec.description}")
        return engine

    async def aclose(self) -> None:
        if self.engines is None:
            return
        engines = [self.engines.stt, self.engines.llm, self.engines.tts, self.engines.turn]
        for engine in engines:
            if engine is not None:
                await engine.aclose()
