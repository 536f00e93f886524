"""The openai-compatible and azure-openai engines (models/openai_llm.py) against the real
llama-cpp-python OpenAI-compatible server on the bundled GGUF (tests/llm_servers.py), started
once for the session on one thread.

What is real and what is a stand-in:
- the text, the token stream, a client hanging up and the 401 for a wrong key come from the
  real llama.cpp server;
- the azure-openai engine reaches that server through `AzureFrontDoor`, a stand-in for Azure's
  routing (it rewrites `/openai/deployments/{deployment}/chat/completions?api-version=...` and the
  `api-key` header, and passes everything else through): not the Azure service;
- llama-cpp-python's server sends no usage chunk for `stream_options.include_usage`, and it never
  throttles, so the usage chunk, 429s and a stalled server come from `OpenAIStandIn`, a protocol
  stand-in speaking OpenAI's documented streaming format and error bodies.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from models.base import ChatMessage, EngineError, GenerationRequest
from models.registry import spec_for
from tests.llm_servers import AzureFrontDoor, LlamaServer, OpenAIStandIn, free_port

pytestmark = pytest.mark.models

ROOT = Path(__file__).resolve().parents[2]
# SmolLM2's end tokens (<|endoftext|>, <|im_end|>) banned: the model then writes until
# max_tokens, so a generation's length is known in advance.
NO_END = {"logit_bias": {"0": -100, "2": -100}}
LONG = [ChatMessage("user", "Count from one to one thousand in words.")]


def engine(name: str, **options):
    return spec_for("llm", name).load(options)


async def collect(llm, request: GenerationRequest) -> list[str]:
    return [piece async for piece in llm.stream(request)]


@pytest.fixture
def front_door(llama_server: LlamaServer):
    door = AzureFrontDoor(llama_server.port)
    yield door
    door.close()


@pytest.fixture
def stand_in():
    server = OpenAIStandIn()
    yield server
    server.close()


async def test_the_real_server_streams_text_and_every_token_is_counted(llama_server: LlamaServer):
    llm = engine("openai-compatible", **llama_server.options(extra_body=NO_END))
    request = GenerationRequest([ChatMessage("user", "Say hello to a student.")], max_tokens=8, temperature=0.0)
    try:
        pieces = await collect(llm, request)
    finally:
        await llm.aclose()
    assert len(pieces) > 1 and "".join(pieces).strip(), pieces  # streamed, piece by piece
    # No end token allowed: the server generated exactly max_tokens. It sends no usage chunk, so
    # they were counted from the stream, one per chunk, exactly.
    assert request.usage.completion_tokens == 8 == len(pieces)
    assert request.usage.prompt_tokens > 0  # estimated: this server reports no prompt count
    assert llm.info.provider == "openai-compatible" and llm.info.model == "smollm2"


async def test_a_cancelled_request_stops_generation_on_the_real_server(llama_server: LlamaServer):
    llm = engine("openai-compatible", **llama_server.options(extra_body=NO_END))
    disconnects_before = llama_server.log().count("Disconnected from client")
    # 1500 tokens would take the server about a minute on its one thread.
    request = GenerationRequest(LONG, max_tokens=1500, temperature=0.0)
    pieces = []
    try:
        async for piece in llm.stream(request):
            pieces.append(piece)
            if len(pieces) == 3:
                request.cancel.set()
        assert len(pieces) == 3 and request.usage.completion_tokens == 3  # metered as generated
        # The server serves one generation at a time (later requests wait for the lock, and it
        # runs with --interrupt_requests False): a follow-up answered within seconds proves the
        # cancelled generation stopped there, and the server's log says why.
        started = time.monotonic()
        follow_up = GenerationRequest([ChatMessage("user", "Hi")], max_tokens=2)
        assert await collect(llm, follow_up)
        assert time.monotonic() - started < 10
    finally:
        await llm.aclose()
    deadline = time.monotonic() + 5
    while llama_server.log().count("Disconnected from client") == disconnects_before:
        assert time.monotonic() < deadline, llama_server.log()[-2000:]
        time.sleep(0.1)


async def test_azure_openai_reaches_the_real_server_through_azures_routing_stand_in(
    llama_server: LlamaServer, front_door: AzureFrontDoor
):
    llm = engine(
        "azure-openai", endpoint=front_door.endpoint, deployment="tutor-gpt",
        api_version="2024-10-21", api_key=llama_server.api_key, extra_body=NO_END,
    )
    request = GenerationRequest([ChatMessage("user", "Say hello to a student.")], max_tokens=6, temperature=0.0)
    try:
        pieces = await collect(llm, request)
        # A cancel goes through as well: the front door passes the hang-up on to the server.
        long = GenerationRequest(LONG, max_tokens=1500, temperature=0.0)
        async for _ in llm.stream(long):
            long.cancel.set()
        started = time.monotonic()
        assert await collect(llm, GenerationRequest([ChatMessage("user", "Hi")], max_tokens=2))
        assert time.monotonic() - started < 10
    finally:
        await llm.aclose()
    assert "".join(pieces).strip() and request.usage.completion_tokens == 6 == len(pieces)
    assert llm.info.provider == "azure-openai" and llm.info.model == "tutor-gpt"
    # What the SDK sent is what Azure expects: the deployment's path, the API version, the key
    # in an api-key header and no bearer token.
    first = front_door.seen[0]
    assert first.method == "POST"
    assert first.target == "/openai/deployments/tutor-gpt/chat/completions?api-version=2024-10-21"
    assert first.headers["api-key"] == llama_server.api_key and "authorization" not in first.headers


async def test_usage_comes_from_the_stream_when_the_server_sends_it(stand_in: OpenAIStandIn):
    llm = engine("openai-compatible", base_url=stand_in.base_url, model="tutor-7b")
    request = GenerationRequest([ChatMessage("user", "Hi")], max_tokens=40, temperature=0.25, seed=7)
    try:
        pieces = await collect(llm, request)
    finally:
        await llm.aclose()
    assert pieces == ["Hello", " there", "!"]
    # The provider's own counts (the stand-in reports 321 and 1234 whatever it streamed).
    assert (request.usage.prompt_tokens, request.usage.completion_tokens) == (321, 1234)
    sent = stand_in.calls[0].body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert (sent["model"], sent["max_tokens"], sent["temperature"], sent["seed"]) == ("tutor-7b", 40, 0.25, 7)


# ------------------------------------------------------------------------ errors, and the key


async def _failure(llm) -> EngineError:
    try:
        with pytest.raises(EngineError) as caught:
            await collect(llm, GenerationRequest([ChatMessage("user", "Hi")], max_tokens=4))
    finally:
        await llm.aclose()
    return caught.value


async def test_a_wrong_key_is_an_auth_error_that_never_shows_a_key(
    llama_server: LlamaServer, front_door: AzureFrontDoor, caplog: pytest.LogCaptureFixture
):
    wrong = "sk-wrong-key-0a1b2c3d4e5f6a7b8c9d"
    caplog.set_level(logging.DEBUG)  # every logger, the SDK's and its HTTP client's included
    compatible = await _failure(engine("openai-compatible", **llama_server.options(api_key=wrong)))
    azure = await _failure(engine(
        "azure-openai", endpoint=front_door.endpoint, deployment="tutor-gpt", api_key=wrong,
    ))
    # And a good key, so its use is logged too, if anything logs it.
    good = engine("openai-compatible", **llama_server.options())
    await collect(good, GenerationRequest([ChatMessage("user", "Hi")], max_tokens=1))
    await good.aclose()
    for error in (compatible, azure):
        assert error.code == "engine_auth" and "HTTP 401" in str(error), error
        assert wrong not in str(error) and llama_server.api_key not in str(error)
    logged = caplog.text + "".join(repr(r.args) for r in caplog.records)
    assert caplog.records and wrong not in logged and llama_server.api_key not in logged


async def test_nothing_listening_is_unreachable_and_a_stalled_server_times_out(stand_in: OpenAIStandIn):
    refused = await _failure(engine("openai-compatible", base_url=f"http://127.0.0.1:{free_port()}/v1", model="m"))
    assert refused.code == "engine_unreachable" and "127.0.0.1" in str(refused)
    stand_in.script.stall_s = 2.0
    stalled = await _failure(engine("openai-compatible", base_url=stand_in.base_url, model="m", timeout_s=0.5))
    assert stalled.code == "engine_timeout"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ({"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded"},
         "engine_throttled"),
        ({"message": "You exceeded your current quota.", "type": "insufficient_quota", "code": "insufficient_quota"},
         "engine_quota"),
    ],
)
async def test_429_is_throttling_or_a_spent_quota_as_the_server_says(stand_in: OpenAIStandIn, error, code):
    stand_in.script.status, stand_in.script.error_body = 429, {"error": error}
    failure = await _failure(engine("openai-compatible", base_url=stand_in.base_url, model="m", api_key="sk-k"))
    assert failure.code == code and "HTTP 429" in str(failure)
    assert len(stand_in.calls) == 1  # no retries by default: the fallback chain decides


# ------------------------------------------------------------------------ the tutoring evaluation


def test_the_tutoring_evaluations_ci_slice_runs_on_the_openai_compatible_engine(
    llama_server: LlamaServer, tmp_path: Path
):
    report = tmp_path / "tutor-eval.json"
    options = llama_server.options(
        # The embedded engine's anti-repetition sampling, which this server takes as extra fields.
        extra_body={"repeat_penalty": 1.15, "frequency_penalty": 0.2, "presence_penalty": 0.1,
                    "top_k": 40, "min_p": 0.05, "top_p": 0.9},
    )
    command = [sys.executable, "-m", "latency_bench.tutor_eval", "--slice", "12", "--quiet",
               "--json", str(report), "--llm", "openai-compatible"]
    for key, value in options.items():
        command += ["--llm-option", f"{key}={json.dumps(value) if isinstance(value, dict) else value}"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(report.read_text())["summary"]
    assert summary["model"] == "openai-compatible/smollm2" and summary["model_turns"] > 0, summary
    overall = summary["overall"]
    # The same guarantees as on the embedded engine (tests/integration/test_tutor_quality.py).
    assert overall["non_empty"] == 1.0 and overall["no_markdown"] == 1.0 and overall["no_repeat"] == 1.0
    assert overall["teaches"] == 1.0 and overall["sums_true"] in (1.0, None), summary
    assert overall["structural"] >= 0.75, summary
