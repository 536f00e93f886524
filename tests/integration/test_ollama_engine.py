"""The ollama engine (models/ollama_llm.py, on the official `ollama` client) against
`OllamaStandIn` (tests/llm_servers.py): a PROTOCOL STAND-IN that answers `POST /api/chat` as
Ollama documents it (NDJSON, a final message with done=true, prompt_eval_count and eval_count,
errors as {"error": ...}). No Ollama server can be installed here, so this proves the adapter
speaks the documented protocol, not that it was run against Ollama itself."""

from __future__ import annotations

import logging
import time

import pytest

from models.base import ChatMessage, EngineError, GenerationRequest
from models.registry import spec_for
from tests.llm_servers import OllamaStandIn, free_port

MODEL = "llama3.2:3b"


def ollama(**options):
    return spec_for("llm", "ollama").load({"model": MODEL, **options})


@pytest.fixture
def stand_in():
    server = OllamaStandIn(models=(MODEL,))
    yield server
    server.close()


async def collect(llm, request: GenerationRequest) -> list[str]:
    try:
        return [piece async for piece in llm.stream(request)]
    finally:
        await llm.aclose()


async def test_a_reply_streams_and_its_usage_is_ollamas_own_count(stand_in: OllamaStandIn):
    stand_in.script.pieces = ["Plants", " make", " food", " from", " light", "."]
    messages = [ChatMessage("system", "You are a tutor."), ChatMessage("user", "What is photosynthesis?")]
    request = GenerationRequest(messages, max_tokens=32, temperature=0.3, seed=11)
    pieces = await collect(ollama(host=stand_in.host, keep_alive="30m"), request)
    assert pieces == stand_in.script.pieces
    # From the final message: prompt_eval_count (the stand-in: words + 4 per message) and eval_count.
    assert (request.usage.prompt_tokens, request.usage.completion_tokens) == (4 + 4 + 3 + 4, 6)
    sent = stand_in.calls[0].body
    assert sent["model"] == MODEL and sent["stream"] is True and sent["keep_alive"] == "30m"
    assert sent["options"] == {"temperature": 0.3, "num_predict": 32, "seed": 11}
    assert sent["messages"][1] == {"role": "user", "content": "What is photosynthesis?"}


async def test_a_cancel_closes_the_stream_and_the_server_sees_the_client_go(stand_in: OllamaStandIn):
    stand_in.script.pieces = [f" w{i}" for i in range(200)]
    stand_in.script.piece_delay_s = 0.02  # 4 s for the whole reply
    llm = ollama(host=stand_in.host)
    request = GenerationRequest([ChatMessage("user", "Count.")], max_tokens=200)
    received = 0
    try:
        async for _ in llm.stream(request):
            received += 1
            if received == 3:
                request.cancel.set()
    finally:
        await llm.aclose()
    assert received == 3 and request.usage.completion_tokens == 3  # metered as generated
    call = stand_in.calls[0]
    deadline = time.monotonic() + 3
    while not call.client_went_away:
        assert time.monotonic() < deadline and not call.finished, "the stand-in streamed on to the end"
        time.sleep(0.02)
    assert call.sent_pieces < 20  # it stopped within a few tokens, not after 200


async def test_a_model_that_was_never_pulled_says_so(stand_in: OllamaStandIn):
    llm = spec_for("llm", "ollama").load({"model": "mistral:7b", "host": stand_in.host})
    with pytest.raises(EngineError) as caught:
        await collect(llm, GenerationRequest([ChatMessage("user", "Hi")]))
    assert caught.value.code == "engine_model_missing"
    assert "'mistral:7b' not found" in str(caught.value) and "ollama pull mistral:7b" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (401, {"error": "unauthorized"}, "engine_auth"),
        (429, {"error": "too many requests"}, "engine_throttled"),
        (500, {"error": "llama runner process has terminated"}, "engine_error"),
    ],
)
async def test_http_errors_are_mapped_and_the_key_is_never_shown(
    stand_in: OllamaStandIn, caplog: pytest.LogCaptureFixture, status, body, code
):
    key = "ollama-proxy-key-5e6f7a8b9c0d"
    stand_in.script.status, stand_in.script.error_body = status, body
    caplog.set_level(logging.DEBUG)
    with pytest.raises(EngineError) as caught:
        await collect(ollama(host=stand_in.host, api_key=key), GenerationRequest([ChatMessage("user", "Hi")]))
    assert caught.value.code == code and f"HTTP {status}" in str(caught.value)
    assert stand_in.calls[0].headers["authorization"] == f"Bearer {key}"  # sent to the host ...
    assert key not in str(caught.value) and key not in caplog.text  # ... and nowhere else


async def test_nothing_listening_is_unreachable_and_a_stalled_server_times_out(stand_in: OllamaStandIn):
    with pytest.raises(EngineError) as refused:
        await collect(ollama(host=f"http://127.0.0.1:{free_port()}"), GenerationRequest([ChatMessage("user", "Hi")]))
    assert refused.value.code == "engine_unreachable"
    stand_in.script.stall_s = 2.0
    with pytest.raises(EngineError) as stalled:
        await collect(ollama(host=stand_in.host, timeout_s=0.5), GenerationRequest([ChatMessage("user", "Hi")]))
    assert stalled.value.code == "engine_timeout"


async def test_no_key_from_the_environment_is_sent_to_the_configured_host(stand_in: OllamaStandIn, monkeypatch):
    monkeypatch.setenv("OLLAMA_API_KEY", "a-key-meant-for-ollama-com")
    await collect(ollama(host=stand_in.host), GenerationRequest([ChatMessage("user", "Hi")]))
    assert "authorization" not in stand_in.calls[0].headers
