"""A language model served by Ollama, through the official `ollama` client (AsyncClient).

Each reply is one streamed `/api/chat` call; Ollama's last message (`done: true`) carries its own
token counts (`prompt_eval_count`, `eval_count`), which go into `request.usage`. A cancel closes
the stream, and with it the HTTP response: Ollama stops generating when its client goes away.
`keep_alive` says how long Ollama keeps the model loaded after a call (a voice tutor wants it
warm: "30m", or -1 for ever). Local, for privacy mode, exactly when the host is a loopback
address (models/remote.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from models.base import ChatMessage, EngineError, EngineInfo, GenerationRequest, LanguageModel
from models.locate import require_module
from models.remote import (
    FAILED,
    MODEL_MISSING,
    TIMEOUT,
    UNREACHABLE,
    address_of,
    check_declared_local,
    estimate_prompt_tokens,
    http_error,
    redact,
    server_is_local,
    until_cancelled,
)

log = logging.getLogger(__name__)

INSTALL = "pip install 'convergio-voice[ollama]'"


class OllamaOptions(BaseModel):
    """Example: CONVERGIO_ENGINES__LLM=ollama, CONVERGIO_ENGINES__OPTIONS__OLLAMA__MODEL=llama3.2:3b,
    CONVERGIO_ENGINES__OPTIONS__OLLAMA__HOST=http://127.0.0.1:11434."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field("http://127.0.0.1:11434", min_length=1)
    model: str = Field(min_length=1)  # as `ollama list` names it, e.g. llama3.2:3b
    # How long Ollama keeps the model loaded after a call ("30m", seconds, -1 for ever); None:
    # Ollama's own default (5 minutes).
    keep_alive: str | int | None = None
    timeout_s: float = Field(30.0, gt=0, le=600)
    connect_timeout_s: float = Field(5.0, gt=0, le=60)
    # For an Ollama behind an authenticating proxy; sent as a bearer token to `host` only.
    api_key: SecretStr | None = None
    # As for openai-compatible: None decides from the host; False for a tunnel on loopback.
    local: bool | None = None

    @model_validator(mode="after")
    def _local_only_on_loopback(self) -> OllamaOptions:
        check_declared_local(self.host, self.local)
        return self


def runs_locally(options: BaseModel) -> bool:
    """Registry hook (EngineSpec.locality)."""
    assert isinstance(options, OllamaOptions)
    return server_is_local(options.host, options.local)


class OllamaLLM(LanguageModel):
    def __init__(self, options: OllamaOptions | None = None, **fields: Any) -> None:
        require_module("ollama", "the ollama client", INSTALL)
        import httpx
        from ollama import AsyncClient

        self.options = options = options or OllamaOptions(**fields)
        self._key = options.api_key.get_secret_value() if options.api_key else None
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else None
        self._client = AsyncClient(
            host=options.host,
            timeout=httpx.Timeout(options.timeout_s, connect=options.connect_timeout_s),
            headers=headers,
        )
        if self._key is None:
            # The client would otherwise send OLLAMA_API_KEY from the environment to this host.
            self._client._client.headers.pop("authorization", None)  # noqa: SLF001
        self._where = address_of(options.host)
        self.info = EngineInfo("llm", "ollama", options.model)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        if request.cancel.is_set():
            return
        sampling: dict[str, Any] = {"temperature": request.temperature, "num_predict": request.max_tokens}
        if request.seed is not None:
            sampling["seed"] = request.seed
        # Until Ollama's final message: an estimate, so a cancelled stream is still metered.
        request.usage.prompt_tokens = estimate_prompt_tokens(request.messages)
        parts = None
        try:
            parts = await self._client.chat(
                model=self.options.model,
                messages=[{"role": m.role, "content": m.content} for m in request.messages],
                stream=True,
                options=sampling,
                keep_alive=self.options.keep_alive,
            )
            pieces = 0
            async for part in until_cancelled(parts, request.cancel):
                text = part.message.content if part.message else None
                if text:
                    # One message per token; counted until the final message says exactly.
                    pieces += 1
                    request.usage.completion_tokens = pieces
                    if request.cancel.is_set():
                        return
                    yield text
                if part.done:
                    # Ollama leaves prompt_eval_count out when the whole prompt came from its
                    # cache; the estimate stays then.
                    if part.prompt_eval_count is not None:
                        request.usage.prompt_tokens = part.prompt_eval_count
                    if part.eval_count is not None:
                        request.usage.completion_tokens = part.eval_count
        except EngineError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc) from None
        finally:
            if parts is not None:
                # Leaves the client's `async with stream(...)`: the HTTP response is closed,
                # which is what makes Ollama stop generating.
                await parts.aclose()

    async def probe(self) -> float:
        """A one-token completion; its latency in seconds (for `doctor`)."""
        started = time.perf_counter()
        async for _ in self.stream(GenerationRequest([ChatMessage("user", "Hi")], max_tokens=1)):
            pass
        return time.perf_counter() - started

    async def warm_up(self, prefixes: Sequence[Sequence[ChatMessage]] = ()) -> None:
        # Loads the model into Ollama's memory (keep_alive keeps it there) and reads one prompt.
        for messages in prefixes[:1] or [[ChatMessage("user", "Hi")]]:
            async for _ in self.stream(GenerationRequest(messages=messages, max_tokens=1)):
                pass

    def _error(self, exc: Exception) -> EngineError:
        import httpx
        from ollama import ResponseError

        if isinstance(exc, ResponseError):
            detail = redact(str(exc.error), [self._key])
            if exc.status_code == 404:
                return EngineError(
                    f"ollama at {self._where}: model {self.options.model!r} not found "
                    f"(pull it with: ollama pull {self.options.model}): {detail}"[:400],
                    code=MODEL_MISSING,
                )
            if exc.status_code > 0:
                return http_error("ollama", self._where, exc.status_code, detail)
            return EngineError(f"ollama at {self._where} failed: {detail}"[:300], code=FAILED)
        if isinstance(exc, httpx.TimeoutException):
            return EngineError(f"ollama at {self._where} did not answer in time", code=TIMEOUT)
        if isinstance(exc, ConnectionError | httpx.TransportError):
            return EngineError(f"ollama: cannot connect to {self._where}", code=UNREACHABLE)
        return EngineError(f"ollama at {self._where} failed ({type(exc).__name__})", code=FAILED)

    async def aclose(self) -> None:
        await self._client.close()
