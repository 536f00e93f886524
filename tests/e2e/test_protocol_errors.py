"""Bad input gets a clear, machine-readable error and the session survives it."""

from __future__ import annotations

import json

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

pytestmark = pytest.mark.models


async def _recv_json(ws) -> dict:
    while True:
        raw = await ws.recv()
        if isinstance(raw, str):
            return json.loads(raw)


async def _expect_error(ws, code: str) -> dict:
    message = await _recv_json(ws)
    assert message["type"] == "error", message
    assert message["code"] == code, message
    assert message["message"] and not message["fatal"]
    return message


async def _start(ws, **fields) -> dict:
    await ws.send(json.dumps({"type": "session.start", **fields}))
    return await _recv_json(ws)


async def test_first_message_declares_protocol_and_reply_audio_format(server, assert_valid):
    async with websockets.connect(server.ws_url, additional_headers=server.auth()) as ws:
        hello = await _recv_json(ws)
        started = await _start(ws, persona="science", output_audio={"sample_rate": 24000})
    assert_valid([hello, started])
    assert hello["type"] == "server.hello" and hello["protocol_version"] == 1 and hello["ready"]
    assert hello["output_audio"]["encoding"] == "pcm16"
    assert {p["id"] for p in hello["personas"]} >= {"maths", "science", "language", "history"}
    assert started["type"] == "session.started"
    assert started["persona"]["id"] == "science"
    assert started["output_audio"] == {"encoding": "pcm16", "sample_rate": 24000, "channels": 1}


async def test_every_bad_input_is_answered_and_the_session_survives(server, assert_valid):
    received: list[dict] = []
    async with websockets.connect(server.ws_url, additional_headers=server.auth()) as ws:
        received.append(await _recv_json(ws))

        await ws.send(b"\x00\x01" * 160)
        received.append(await _expect_error(ws, "session_not_started"))
        await ws.send(json.dumps({"type": "input.text", "text": "hi"}))
        received.append(await _expect_error(ws, "session_not_started"))

        await ws.send("{not json")
        received.append(await _expect_error(ws, "invalid_json"))
        await ws.send(json.dumps([1, 2]))
        received.append(await _expect_error(ws, "invalid_message"))
        await ws.send(json.dumps({"type": "dance"}))
        received.append(await _expect_error(ws, "unknown_message_type"))
        await ws.send("[" * 2000)  # deeper than any parser should recurse
        received.append(await _expect_error(ws, "invalid_json"))
        await ws.send('{"type": "input.text", "text": "\\ud800"}')  # a lone surrogate
        received.append(await _expect_error(ws, "invalid_json"))
        # Strictly the published schema: a string is not an integer.
        await ws.send(json.dumps({"type": "session.start", "turn": {"end_of_turn_silence_ms": "900"}}))
        received.append(await _expect_error(ws, "invalid_message"))
        # Valid to the schema, but an action the stage cannot take.
        shorten = {"stt": {"ms": 500, "action": "shorten"}}
        await ws.send(json.dumps({"type": "session.start", "budgets": shorten}))
        error = await _expect_error(ws, "invalid_message")
        assert "shorten" in error["message"] and "stt" in error["message"]
        received.append(error)

        for bad_format in ({"sample_rate": 12345}, {"channels": 2}, {"encoding": "opus"}):
            await ws.send(json.dumps({"type": "session.start", "input_audio": bad_format}))
            error = await _expect_error(ws, "unsupported_audio_format")
            assert "16000" in error["message"]
            received.append(error)
        await ws.send(json.dumps({"type": "session.start", "protocol_version": 2}))
        received.append(await _expect_error(ws, "unsupported_protocol_version"))
        await ws.send(json.dumps({"type": "session.start", "persona": "pirate"}))
        received.append(await _expect_error(ws, "unknown_persona"))

        # Still usable: a good start now works, at a rate that gets resampled.
        started = await _start(ws, input_audio={"sample_rate": 48000})
        assert started["type"] == "session.started", started
        received.append(started)

        await ws.send(json.dumps({"type": "session.start"}))
        received.append(await _expect_error(ws, "session_already_started"))
        await ws.send(b"\x00\x01\x02")
        received.append(await _expect_error(ws, "invalid_audio_frame"))
        limit = received[0]["limits"]["max_text_chars"]
        await ws.send(json.dumps({"type": "input.text", "text": "x" * (limit + 1)}))
        error = await _expect_error(ws, "text_too_long")
        assert str(limit) in error["message"]
        received.append(error)
        await ws.send(json.dumps({"type": "input.text", "text": "hi", "extra": 1}))
        received.append(await _expect_error(ws, "invalid_message"))

        # And it still answers a typed question after all of that.
        await ws.send(json.dumps({"type": "input.text", "text": "What is two plus two?"}))
        while (message := await _recv_json(ws))["type"] != "turn.done":
            received.append(message)
        received.append(message)
        assert message["status"] == "completed" and message["reply_text"]
        assert message["user_text"] == "What is two plus two?"
    assert_valid(received)


async def test_oversized_audio_frame_closes_with_1009_before_buffering(server):
    async with websockets.connect(server.ws_url, max_size=None, additional_headers=server.auth()) as ws:
        hello = await _recv_json(ws)
        await _start(ws)
        await ws.send(bytes(hello["limits"]["max_frame_bytes"] + 2))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


async def test_typed_input_and_cancel_stop_the_reply(server, assert_valid):
    async with websockets.connect(server.ws_url, additional_headers=server.auth()) as ws:
        messages = [await _recv_json(ws), await _start(ws)]
        await ws.send(json.dumps({"type": "input.text", "text": "Explain photosynthesis to me."}))
        while (message := await _recv_json(ws))["type"] != "reply.audio.started":
            messages.append(message)
        messages.append(message)
        await ws.send(json.dumps({"type": "response.cancel"}))
        while (message := await _recv_json(ws))["type"] != "turn.done":
            messages.append(message)
        messages.append(message)
        assert message["status"] == "cancelled"
        interrupted = next(m for m in messages if m["type"] == "reply.interrupted")
        assert interrupted["reason"] == "cancel"
        final = next(m for m in messages if m["type"] == "transcript.final")
        assert final["source"] == "text"
        await ws.send(json.dumps({"type": "session.end"}))
        while (ended := await _recv_json(ws))["type"] != "session.ended":
            messages.append(ended)  # the turn's usage.updated may still be on its way
        messages.append(ended)
        assert ended["reason"] == "client"
        # The lead is stock speech, so the cancel can land before the model has read the prompt
        # (then it is rightly never counted); whatever the turn did use is in the session's total.
        for update in (m["usage"] for m in messages if m["type"] == "usage.updated"):
            counted = {kind: used for kind, used in update.items() if isinstance(used, int)}
            assert counted and all(ended["usage"][kind] >= used for kind, used in counted.items())
    assert_valid(messages)


async def test_repeat_that_says_the_last_answer_again_at_the_chosen_rate(server, assert_valid):
    async with websockets.connect(server.ws_url, additional_headers=server.auth()) as ws:
        messages = [await _recv_json(ws), await _start(ws)]
        await ws.send(json.dumps({"type": "response.repeat"}))
        messages.append(await _expect_error(ws, "nothing_to_repeat"))
        await ws.send(json.dumps({"type": "input.text", "text": "Name a planet."}))
        while (first := await _recv_json(ws))["type"] != "turn.done":
            messages.append(first)
        messages.append(first)
        await ws.send(json.dumps({"type": "session.update", "voice_rate": 1.4}))
        await ws.send(json.dumps({"type": "response.repeat"}))
        audio = 0
        while True:
            raw = await ws.recv()
            if isinstance(raw, bytes):
                audio += len(raw)
                continue
            messages.append(message := json.loads(raw))
            if message["type"] == "turn.done":
                break
        assert message["reply_text"] == first["reply_text"] and message["turn_id"] != first["turn_id"]
        assert message["usage"]["llm_completion_tokens"] == 0  # said again, not asked again
        assert audio > 0
    assert_valid(messages)
