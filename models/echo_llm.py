"""echo: a language model that says back what the student said, word by word.

No model and no packages, so tests and demos run a whole voice loop instantly and
deterministically; it still behaves like a real engine where the pipeline can tell: it streams,
stops between words when `request.cancel` is set, and meters usage (one token per word).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from models.base import EngineInfo, GenerationRequest, LanguageModel


class EchoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: str = "You said:"  # words spoken before the echo
    word_delay_ms: int = Field(0, ge=0, le=10_000)  # pause before each word, to act like a slow model


class EchoLLM(LanguageModel):
    def __init__(self, options: EchoOptions | None = None, **fields: Any) -> None:
        self.options = options or EchoOptions(**fields)
        self.info = EngineInfo("llm", "echo", "echo")

    def reply(self, request: GenerationRequest) -> list[str]:
        heard = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
        words = [*self.options.prefix.split(), *heard.split()]
        if words and words[-1][-1] not in ".?!":
            words[-1] += "."  # a whole sentence, so the chunker speaks it at once
        return words[: request.max_tokens]

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        request.usage.prompt_tokens = sum(len(m.content.split()) for m in request.messages)
        for index, word in enumerate(self.reply(request)):
            if self.options.word_delay_ms:
                await asyncio.sleep(self.options.word_delay_ms / 1000)
            if request.cancel.is_set():
                return
            request.usage.completion_tokens += 1
            yield word if index == 0 else " " + word
