"""A language model on Apple's MLX through `mlx-lm` (extra `[mlx]`): Apple silicon only.

    CONVERGIO_ENGINES__LLM=mlx
    CONVERGIO_ENGINES__OPTIONS__MLX__MODEL=/models/Qwen2.5-1.5B-Instruct-4bit

`model` is a local MLX model folder (one made with `mlx_lm.convert`, or downloaded ahead of
time); a Hugging Face repo id also works, but then mlx-lm downloads it on first load, which this
project otherwise never does. Generation streams with `mlx_lm.stream_generate`, on a thread of its
own, honours `request.cancel` between tokens and meters prompt and completion tokens exactly.

NOT RUN HERE: the project's machines and CI are Linux on x86_64, where MLX does not run. What is
tested is the clear error on any other machine (tests/unit/test_speech_engines.py); the streaming
code follows mlx-lm's documented `load` / `stream_generate` API (GenerationResponse's `text`,
`prompt_tokens`, `generation_tokens`) and has never been executed by this project's tests.
"""

from __future__ import annotations

import asyncio
import platform
import sys
import threading
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.base import EngineError, EngineInfo, GenerationRequest, LanguageModel, ModelNotInstalledError
from models.locate import require_module

ALTERNATIVES = (
    "llama-cpp (embedded, the default: CONVERGIO_ENGINES__LLM=llama-cpp), "
    "ollama (an Ollama server: CONVERGIO_ENGINES__LLM=ollama) or "
    "openai-compatible (any OpenAI-compatible server: vLLM, llama.cpp server, LM Studio)"
)


class NeedsAppleSilicon(ModelNotInstalledError):
    """MLX cannot run on this machine, whatever is installed."""

    def __init__(self, machine: str) -> None:
        RuntimeError.__init__(
            self,
            f"the mlx engine needs Apple silicon (macOS on arm64); this machine is {machine}. "
            f"Use instead: {ALTERNATIVES}",
        )
        self.what = "MLX (Apple silicon only)"
        self.install = f"not installable here; use {ALTERNATIVES}"


def is_apple_silicon() -> bool:
    return sys.platform == "darwin" and platform.machine() == "arm64"


def check_platform() -> None:
    """Raises NeedsAppleSilicon anywhere but macOS on arm64 (the registry calls it first)."""
    if not is_apple_silicon():
        raise NeedsAppleSilicon(f"{platform.system() or sys.platform} on {platform.machine() or 'unknown'}")


class MlxOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1)  # a local MLX model folder, or a Hugging Face repo id
    top_p: float = Field(1.0, gt=0, le=1)


class MlxLLM(LanguageModel):
    def __init__(self, options: MlxOptions | None = None, **fields: Any) -> None:
        check_platform()
        require_module("mlx_lm", "mlx-lm", "pip install 'convergio-voice[mlx]'")
        from mlx_lm import load

        self.options = options = options or MlxOptions(**fields)
        self._model, self._tokenizer = load(options.model)
        self._lock = threading.Lock()  # one generation at a time on the one model
        self.info = EngineInfo("llm", "mlx", options.model.rstrip("/").rsplit("/", 1)[-1])

    def _generate(self, request: GenerationRequest, put: Any, stop: threading.Event) -> None:
        import mlx.core as mx
        from mlx_lm import stream_generate
        from mlx_lm.sample_utils import make_sampler

        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        prompt = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True)
        with self._lock:
            if request.seed is not None:
                mx.random.seed(request.seed)
            sampler = make_sampler(temp=request.temperature, top_p=self.options.top_p)
            for response in stream_generate(
                self._model, self._tokenizer, prompt, max_tokens=request.max_tokens, sampler=sampler
            ):
                request.usage.prompt_tokens = response.prompt_tokens
                request.usage.completion_tokens = response.generation_tokens
                if request.cancel.is_set() or stop.is_set():
                    return
                if response.text:
                    put(response.text)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        stop = threading.Event()

        def put(item: str | BaseException | None) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, item)

        def run() -> None:
            try:
                self._generate(request, put, stop)
                put(None)
            except Exception as exc:  # noqa: BLE001
                put(EngineError(f"mlx failed: {exc}"))

        worker = threading.Thread(target=run, name="mlx-generate", daemon=True)
        worker.start()
        try:
            while (item := await queue.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()  # a consumer that leaves early stops the generation
