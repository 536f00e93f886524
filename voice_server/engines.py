"""Loads the configured engines once per server, warms them up and reports readiness."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import replace

from models.base import ChatMessage
from models.fallback import FallbackHook, FallbackLLM, FallbackSTT, FallbackTTS
from models.registry import spec_for
from pipelines.fillers import FillerCache
from pipelines.personas import PERSONAS
from pipelines.pipeline import Engines
from voice_server.settings import Settings

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


def _engine_options(kind: str, settings: Settings) -> dict[str, object]:
    e = settings.engines
    return {
        "vad": {"aggressiveness": e.vad_aggressiveness},
        "stt": {"threads": e.stt_threads, "trim_window": e.stt_trim_window},
        "llm": {"threads": e.llm_threads, "batch_threads": e.llm_batch_threads, "contexts": e.llm_contexts},
        "tts": {"threads": e.tts_threads},
    }[kind]


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
        names = {
            "vad": self.settings.engines.vad,
            "stt": self.settings.engines.stt,
            "llm": self.settings.engines.llm,
            "tts": self.settings.engines.tts,
        }
        loaded: dict[str, object] = {}
        try:
            for step, (kind, name) in enumerate(names.items(), start=1):
                spec = spec_for(kind, name)
                say(f"[{step}/5] loading {kind}: {spec.description} ...")
                started = time.perf_counter()
                # Loading reads hundreds of MB; keep the loop free so /healthz answers meanwhile.
                loaded[kind] = await asyncio.to_thread(spec.load, **_engine_options(kind, self.settings))
                say(f"[{step}/5] {kind} ready in {time.perf_counter() - started:.1f} s")
            loaded = await self._chain(loaded, say)
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

    async def _chain(self, loaded: dict[str, object], say: Progress) -> dict[str, object]:
        """Wrap an engine in a fallback chain when a fallback engine is configured for its kind."""
        e = self.settings.engines
        chains = {"stt": (e.stt_fallback, FallbackSTT), "llm": (e.llm_fallback, FallbackLLM),
                  "tts": (e.tts_fallback, FallbackTTS)}
        for kind, (name, chain) in chains.items():
            if not name:
                continue
            spec = spec_for(kind, name)
            say(f"      loading {kind} fallback: {spec.description} ...")
            fallback = await asyncio.to_thread(spec.load, **_engine_options(kind, self.settings))
            loaded[kind] = chain(
                [loaded[kind], fallback],
                first_output_timeout_s=e.attempt_timeout_ms / 1000,
                idle_timeout_s=e.idle_timeout_ms / 1000,
                on_fallback=self.on_fallback,
            )
        return loaded

    async def aclose(self) -> None:
        if self.engines is None:
            return
        for engine in (self.engines.stt, self.engines.llm, self.engines.tts):
            await engine.aclose()
