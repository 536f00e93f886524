"""The echo engine, added as one module and one registry entry, loads and answers like any LLM."""

from __future__ import annotations

from models.base import ChatMessage, GenerationRequest
from models.registry import spec_for
from voice_server.settings import Settings


def request(text: str, max_tokens: int = 96) -> GenerationRequest:
    return GenerationRequest([ChatMessage("system", "Be kind."), ChatMessage("user", text)], max_tokens)


async def test_echo_loads_through_the_registry_and_says_back_the_last_message():
    llm = spec_for("llm", "echo").load()
    asked = request("what is two plus two")
    pieces = [piece async for piece in llm.stream(asked)]
    assert "".join(pieces) == "You said: what is two plus two."
    assert len(pieces) == 7  # streamed word by word
    assert (asked.usage.prompt_tokens, asked.usage.completion_tokens) == (7, 7)


async def test_echo_stops_between_words_when_cancelled_and_meters_what_it_said():
    llm = spec_for("llm", "echo").load({"prefix": ""})
    asked = request("one two three four")
    pieces = []
    async for piece in llm.stream(asked):
        pieces.append(piece)
        asked.cancel.set()
    assert pieces == ["one"] and asked.usage.completion_tokens == 1


def test_echo_is_configured_like_any_engine(monkeypatch):
    monkeypatch.setenv("CONVERGIO_ENGINES__LLM", "echo")
    monkeypatch.setenv("CONVERGIO_ENGINES__OPTIONS__ECHO__WORD_DELAY_MS", "5")
    engines = Settings().engines
    assert engines.chain("llm") == ["echo"]
    assert engines.options_for("echo").word_delay_ms == 5
    assert spec_for("llm", "echo").local
