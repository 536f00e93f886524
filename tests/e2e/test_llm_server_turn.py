"""A whole turn with the language model on a server: `convergio-voice serve` configured only by
environment variables to use the openai-compatible engine on the real llama-cpp-python server
(tests/llm_servers.py), with the real Whisper and Piper. The model's streamed words reach the
student as Piper's audio, and the turn's tokens land in the ledger under that engine's name."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import websockets

from tests.conftest import TEST_SERVER_ENV, start_server, stop_server
from tests.llm_servers import LlamaServer

pytestmark = pytest.mark.models


async def test_a_typed_turn_is_answered_by_the_server_model_heard_as_audio_and_metered_in_the_ledger(
    llama_server: LlamaServer, tmp_path: Path
):
    env = {
        **TEST_SERVER_ENV,
        "CONVERGIO_ENGINES__LLM": "openai-compatible",
        "CONVERGIO_ENGINES__OPTIONS__OPENAI_COMPATIBLE__BASE_URL": llama_server.base_url,
        "CONVERGIO_ENGINES__OPTIONS__OPENAI_COMPATIBLE__MODEL": llama_server.model,
        "CONVERGIO_ENGINES__OPTIONS__OPENAI_COMPATIBLE__API_KEY": llama_server.api_key,
        "CONVERGIO_ENGINES__TURN": "none",  # not needed for a typed turn; saves a core
        # The model's own reply is what is spoken (the teaching plan answers some turns in code).
        "CONVERGIO_LESSON_PLANS": "false",
        "CONVERGIO_LOG_LEVEL": "debug",
    }
    server = start_server(tmp_path, env=env)
    try:
        async with websockets.connect(server.ws_url, additional_headers=server.auth("student")) as ws:
            messages, audio = [], 0
            hello = json.loads(await ws.recv())
            assert hello["type"] == "server.hello"
            await ws.send(json.dumps({"type": "session.start", "persona": "science"}))
            session_id = json.loads(await ws.recv())["session_id"]
            await ws.send(json.dumps({"type": "input.text", "text": "Why is the sky blue?"}))
            async with asyncio.timeout(120):
                while True:
                    raw = await ws.recv()
                    if isinstance(raw, bytes):
                        audio += len(raw)
                        continue
                    messages.append(json.loads(raw))
                    if messages[-1]["type"] == "turn.done":
                        break
            done = messages[-1]
            await asyncio.sleep(1.0)  # the ledger writes every 0.25 s
            status, report = server.get(f"/api/v1/usage/sessions/{session_id}", role="admin")
    finally:
        stop_server(server)
    types = [m["type"] for m in messages]
    assert done["status"] == "completed", messages
    # Streamed: the text came in deltas, and it was heard as audio (Piper's, 16-bit PCM).
    deltas = "".join(m["delta"] for m in messages if m["type"] == "reply.text.delta")
    assert types.count("reply.text.delta") > 1 and deltas.strip(), types
    assert "reply.audio.started" in types and audio > 16_000, (types, audio)  # over 0.5 s of speech
    # The ledger holds the turn's tokens under this engine and model, as the client was told.
    assert status == 200 and report["turns"] == {"done": 1}, report
    llm_lines = {
        line["kind"]: line["units"] for line in report["usage"]
        if line["provider"] == "openai-compatible" and line["model"] == "smollm2" and not line["speculative"]
    }
    assert llm_lines.get("llm_completion_tokens", 0) > 0 and llm_lines.get("llm_prompt_tokens", 0) > 0, report
    told = done["usage"]
    assert llm_lines["llm_completion_tokens"] == told["llm_completion_tokens"], (report, told)
    assert told["providers"]["llm"] == "openai-compatible/smollm2", told
    # The key was in the server's environment; it is in none of its log lines (debug level).
    assert llama_server.api_key not in server.log()
