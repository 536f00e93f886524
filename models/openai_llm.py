"""Language models behind the OpenAI chat completions API, through the official `openai` SDK.

Two engines, one adapter:
- `openai-compatible`: any server that speaks the API at a base URL (vLLM, llama.cpp's server,
  llama-cpp-python's server, LM Studio, OpenAI itself). It is local, for privacy mode, exactly
  when the base URL's host is a loopback address (models/remote.py).
- `azure-openai`: an Azure OpenAI deployment (endpoint, deployment, API version, key). Never
  local: the student's words go to Microsoft's service.

Each reply is one streamed chat completion asked with `stream_options.include_usage`, so the
provider's own token counts land in `request.usage` at the end of the stream. A cancel closes
the stream: closing the HTTP response is what tells the server to stop generating, and what the
student never heard is not paid for beyond the tokens already sent. The SDK's own retries are
off by default: a voice turn cannot wait out back-offs, and the fallback chain and latency
budgets decide what happens next. No key is logged or put into an error message.
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

INSTALL = "pip install 'convergio-voice[openai]'"
# llama.cpp's documented placeholder: the SDK insists on a key, servers without auth ignore it.
NO_KEY = "sk-no-key-required"


class _Common(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Whole request, first byte to last; the connection itself must open within connect_timeout_s.
    timeout_s: float = Field(30.0, gt=0, le=600)
    connect_timeout_s: float = Field(5.0, gt=0, le=60)
    # The SDK's retries with back-off; off by default (see the module docstring).
    max_retries: int = Field(0, ge=0, le=5)
    # More JSON fields for every request, for a server's own sampling options (vLLM's top_k, ...).
    extra_body: dict[str, Any] = {}


class OpenAICompatibleOptions(_Common):
    """Example: CONVERGIO_ENGINES__LLM=openai-compatible,
    CONVERGIO_ENGINES__OPTIONS__OPENAI_COMPATIBLE__BASE_URL=http://127.0.0.1:8000/v1,
    CONVERGIO_ENGINES__OPTIONS__OPENAI_COMPATIBLE__MODEL=qwen2.5-7b-instruct."""

    base_url: str = Field(min_length=1)  # up to and including /v1
    model: str = Field(min_length=1)  # as the server names it
    api_key: SecretStr | None = None  # none for a server without authentication
    # None: local exactly when base_url's host is a loopback address. False: a loopback address
    # that is a tunnel or port forward to another machine. True only confirms a loopback host.
    local: bool | None = None

    @model_validator(mode="after")
    def _local_only_on_loopback(self) -> OpenAICompatibleOptions:
        check_declared_local(self.base_url, self.local)
        return self


class AzureOpenAIOptions(_Common):
    """Example: CONVERGIO_ENGINES__LLM=azure-openai,
    CONVERGIO_ENGINES__OPTIONS__AZURE_OPENAI__ENDPOINT=https://school.openai.azure.com,
    CONVERGIO_ENGINES__OPTIONS__AZURE_OPENAI__DEPLOYMENT=gpt-4o-mini,
    CONVERGIO_ENGINES__OPTIONS__AZURE_OPENAI__API_KEY=..."""

    endpoint: str = Field(min_length=1)  # https://<resource>.openai.azure.com
    deployment: str = Field(min_length=1)
    # A GA version that streams usage (stream_options.include_usage).
    api_version: str = Field("2024-10-21", min_length=1)
    api_key: SecretStr | None = None
    # The id of a school's key in the server's encrypted key store (`POST /api/v1/keys`): `serve`
    # fills api_key from it when the engine loads, so the key never sits in the environment.
    key_id: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_credential(self) -> AzureOpenAIOptions:
        if (self.api_key is None) == (self.key_id is None):
            raise ValueError("give exactly one of api_key and key_id")
        return self


def runs_locally(options: BaseModel) -> bool:
    """Registry hook (EngineSpec.locality) for `openai-compatible`."""
    assert isinstance(options, OpenAICompatibleOptions)
    return server_is_local(options.base_url, options.local)


def _http_timeout(options: _Common) -> Any:
    import openai

    return openai.Timeout(options.timeout_s, connect=options.connect_timeout_s)


def openai_error(exc: Exception, engine: str, where: str, secret: str | None) -> EngineError:
    """The project's EngineError for an exception of the `openai` SDK (shared with the audio
    engines, models/openai_audio.py). `where`: the server's address; `secret`: the key, only to
    redact it from what a server says."""
    import openai

    if isinstance(exc, openai.APITimeoutError):
        return EngineError(f"{engine} at {where} did not answer in time", code=TIMEOUT)
    if isinstance(exc, openai.APIConnectionError):
        return EngineError(f"{engine}: cannot connect to {where}", code=UNREACHABLE)
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        error = body.get("error", body) if isinstance(body, dict) else {}
        code = str(error.get("code", "")) if isinstance(error, dict) else ""
        kind = str(error.get("type", "")) if isinstance(error, dict) else ""
        message = str(error.get("message") or body.get("detail") or "") if isinstance(error, dict) else ""
        quota = "quota" in f"{code} {kind}".lower()
        return http_error(engine, where, exc.status_code, redact(message, [secret]), quota=quota)
    # Never the exception's text: it may quote a request.
    return EngineError(f"{engine} at {where} failed ({type(exc).__name__})", code=FAILED)


class OpenAIChatLLM(LanguageModel):
    """One chat-completions model at one server; built by the two engine classes below."""

    def __init__(self, client: Any, model: str, info: EngineInfo, where: str, secret: str | None,
                 extra_body: dict[str, Any]) -> None:
        self._client = client
        self._model = model
        self.info = info
        self._where = where  # the server's host, for error messages
        self._secret = secret  # only to redact it from what a server says
        self._extra_body = dict(extra_body)
        self._warned_no_usage = False

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        if request.cancel.is_set():
            return
        kwargs: dict[str, Any] = {
            "model": self._model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if self._extra_body:
            kwargs["extra_body"] = self._extra_body
        # Until the server's own count arrives (the stream's last chunk), an estimate: a stream
        # cancelled before its end, or a server that never reports usage, is still metered.
        request.usage.prompt_tokens = estimate_prompt_tokens(request.messages)
        try:
            stream = await self._client.chat.completions.create(**kwargs)
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc) from None
        pieces, reported = 0, False
        try:
            async for chunk in until_cancelled(aiter(stream), request.cancel):
                if chunk.usage is not None:  # the last chunk, with no choices: the provider's count
                    request.usage.prompt_tokens = chunk.usage.prompt_tokens
                    request.usage.completion_tokens = chunk.usage.completion_tokens
                    reported = True
                for choice in chunk.choices:
                    text = choice.delta.content if choice.delta else None
                    if not text:
                        continue
                    # Servers stream one chunk per sampled token (llama.cpp's, vLLM), so until the
                    # usage chunk arrives, and for servers that send none even when asked
                    # (llama-cpp-python's server), the pieces received are the count: exact up to
                    # a token or two the server may have sampled after a cancel and never sent.
                    pieces += 1
                    if not reported:
                        request.usage.completion_tokens = pieces
                    if request.cancel.is_set():
                        return
                    yield text
        except EngineError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._error(exc) from None
        finally:
            # Closing the HTTP response is what stops the server's generation (a cancel, the
            # consumer stopping early); after the last chunk it only releases the connection.
            await stream.close()
        if not reported and not request.cancel.is_set() and not self._warned_no_usage:
            self._warned_no_usage = True
            log.info("%s at %s sent no token usage; completion tokens are counted from the stream "
                     "and prompt tokens estimated", self.info.provider, self._where)

    async def probe(self) -> float:
        """A one-token completion; its latency in seconds (for `doctor`)."""
        started = time.perf_counter()
        async for _ in self.stream(GenerationRequest([ChatMessage("user", "Hi")], max_tokens=1)):
            pass
        return time.perf_counter() - started

    async def warm_up(self, prefixes: Sequence[Sequence[ChatMessage]] = ()) -> None:
        # One tiny call proves the server answers; the prefixes warm its prompt cache if it has one.
        for messages in prefixes[:1] or [[ChatMessage("user", "Hi")]]:
            async for _ in self.stream(GenerationRequest(messages=messages, max_tokens=1)):
                pass

    def _error(self, exc: Exception) -> EngineError:
        return openai_error(exc, self.info.provider, self._where, self._secret)

    async def aclose(self) -> None:
        await self._client.close()


class OpenAICompatibleLLM(OpenAIChatLLM):
    def __init__(self, options: OpenAICompatibleOptions | None = None, **fields: Any) -> None:
        require_module("openai", "the openai SDK", INSTALL)
        from openai import AsyncOpenAI

        self.options = options = options or OpenAICompatibleOptions(**fields)
        key = options.api_key.get_secret_value() if options.api_key else None
        client = AsyncOpenAI(
            base_url=options.base_url,
            # Always given, so the SDK never falls back on OPENAI_API_KEY from the environment
            # and sends a key meant for OpenAI to some other server.
            api_key=key or NO_KEY,
            timeout=_http_timeout(options),
            max_retries=options.max_retries,
        )
        super().__init__(
            client, options.model, EngineInfo("llm", "openai-compatible", options.model),
            address_of(options.base_url), key, options.extra_body,
        )


class AzureOpenAILLM(OpenAIChatLLM):
    def __init__(self, options: AzureOpenAIOptions | None = None, **fields: Any) -> None:
        require_module("openai", "the openai SDK", INSTALL)
        from openai import AsyncAzureOpenAI

        self.options = options = options or AzureOpenAIOptions(**fields)
        if options.api_key is None:
            raise EngineError(
                f"azure-openai: key_id {options.key_id!r} is resolved by the server's key store when "
                "`serve` loads the engine; without one, set CONVERGIO_ENGINES__OPTIONS__AZURE_OPENAI__API_KEY",
                code="engine_auth",
            )
        key = options.api_key.get_secret_value()
        client = AsyncAzureOpenAI(
            azure_endpoint=options.endpoint,
            azure_deployment=options.deployment,
            api_version=options.api_version,
            api_key=key,
            timeout=_http_timeout(options),
            max_retries=options.max_retries,
        )
        super().__init__(
            client, options.deployment, EngineInfo("llm", "azure-openai", options.deployment),
            address_of(options.endpoint), key, options.extra_body,
        )
