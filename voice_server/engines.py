"""Loads the configured engines once per server, warms them up and reports readiness."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from models.base import ChatMessage
from models.fallback import FallbackHook, fallback_chain
from models.registry import spec_for
from pipelines.fillers import FillerCache
from pipelines.personas import PERSONAS
from pipelines.pipeline import Engines
from voice_server.settings import KINDS, Settings

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
            engines = Engines(**loaded)  # type: ignore[arg-type]
            say("[5/5] warming up (first transcription, persona prompts, first voice, fillers) ...")
            started = time.perf_counter()
            await engines.stt.warm_up()
            # Every KV cache starts with the default persona's system prompt, so a new session's
            # first turn only reads its question.
            persona = PERSONAS[self.settings.default_persona]
            await engines.llm.warm_up([[ChatMessage("system", persona.system_prompt)]])
            await engines.tts.warm_up()
            fillers = FillerCache()
            await fillers.prepare(engines.tts, [p.voice for p in PERSONAS.values()])
            engines = replace(engines, fillers=fillers)
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
            engines.append(await asyncio.to_thread(spec.load, e.options_for(name)))
            say(f"[{step}/5] {role} ready in {time.perf_counter() - started:.1f} s")
        return fallback_chain(kind, engines, cooldown_s=e.fallback_cooldown_s, on_fallback=self.on_fallback)

    async def aclose(self) -> None:
        if self.engines is None:
            return
        for engine in (self.engines.stt, self.engines.llm, self.engines.tts):
            await engine.aclose()
