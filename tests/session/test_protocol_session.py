"""ProtocolSession as a client sees it: messages in, messages out, with scripted engines.

Nothing a client sends ends or poisons the session: each bad message gets an `error` with a code,
and the next good one is served as usual.
"""

from __future__ import annotations

import asyncio
import json

from pipelines.frames import Interrupted, PipelineError
from pipelines.pipeline import Engines
from tests.fakes import LoudnessVAD, ScriptedLLM, ScriptedSTT, ScriptedTurn
from tests.session.conftest import FakeHub, QuickTTS, new_session, scripted_engines, send


async def _ask(session, wire, text: str = "What is two plus two?") -> dict:
    await send(session, type="input.text", text=text)
    return await wire.until("turn.done", user_text=text)


async def test_hello_then_start_then_a_typed_question_is_answered(session_wire):
    session, wire = session_wire
    done = await _ask(session, wire)
    assert done["status"] == "completed" and done["reply_text"] == "Four."
    assert wire.of_type("transcript.final")[0]["source"] == "text"
    assert wire.audio, "reply audio went out as binary frames"
    await send(session, type="session.end")
    ended = await wire.until("session.ended")
    assert ended["reason"] == "client" and ended["usage"]["llm_completion_tokens"] > 0
    wire.assert_valid()


async def test_the_session_tells_its_transport_once_session_start_is_accepted():
    calls: list[str] = []
    session, wire = new_session(on_started=lambda: calls.append("started"))
    await session.start()
    await send(session, type="session.start", persona="pirate")
    assert calls == [] and wire.errors() == ["unknown_persona"]
    await send(session, type="session.start")
    await send(session, type="session.start")
    assert calls == ["started"] and wire.errors() == ["unknown_persona", "session_already_started"]
    await session.close()


async def test_input_before_session_start_is_refused():
    session, wire = new_session()
    await session.start()
    await send(session, type="input.text", text="hi")
    await session.on_bytes(b"\x00\x01" * 160)
    assert wire.errors() == ["session_not_started", "session_not_started"]
    wire.assert_valid()


async def test_a_server_still_loading_refuses_session_start():
    session, wire = new_session()
    session.hub = FakeHub(None, ready=False)  # type: ignore[assignment]
    await session.start()
    assert wire.messages[0]["ready"] is False
    await send(session, type="session.start")
    assert wire.errors() == ["server_not_ready"]
    wire.assert_valid()


async def test_messages_are_validated_strictly_to_the_published_schema(session_wire):
    session, wire = session_wire
    await send(session, type="session.update", voice_rate="1.5")  # a string is not a number
    await send(session, type="session.update", voice_rate=True)
    assert wire.errors() == ["invalid_message", "invalid_message"]
    assert "voice_rate" in wire.of_type("error")[0]["message"]

    fresh, fresh_wire = new_session()
    await send(fresh, type="session.start", turn={"end_of_turn_silence_ms": "900"})
    assert fresh_wire.errors() == ["invalid_message"]
    assert "end_of_turn_silence_ms" in fresh_wire.messages[0]["message"]


async def test_a_budget_action_the_stage_cannot_take_is_refused_by_name():
    session, wire = new_session()
    await send(session, type="session.start", budgets={"stt": {"ms": 500, "action": "shorten"}})
    assert wire.errors() == ["invalid_message"]
    message = wire.messages[0]["message"]
    assert "shorten" in message and "stt" in message
    await send(session, type="session.start", budgets={"stt": {"ms": 500, "action": "filler"}})
    assert wire.log[-1] == "session.started"
    await session.close()


async def test_deeply_nested_json_is_an_error_not_a_crash(session_wire):
    session, wire = session_wire
    await session.on_text("[" * 2000)
    await session.on_text('{"a":' * 2000)
    assert wire.errors() == ["invalid_json", "invalid_json"]
    assert (await _ask(session, wire))["status"] == "completed"


async def test_a_lone_surrogate_is_refused_and_never_reaches_the_conversation(session_wire):
    session, wire = session_wire
    await session.on_text('{"type": "input.text", "text": "hello \\ud800"}')  # the JSON escape
    await session.on_text('{"type": "input.text", "text": "hello \ud800"}')  # a raw str with one
    assert wire.errors() == ["invalid_json", "invalid_json"]
    assert "surrogate" in wire.of_type("error")[0]["message"]
    assert (await _ask(session, wire))["status"] == "completed"
    prompt = session.hub.engines.llm.requests[-1].messages
    assert [m.content for m in prompt if m.role == "user"] == ["What is two plus two?"]
    wire.assert_valid()


async def test_client_text_in_an_error_message_cannot_break_the_wire(session_wire):
    session, wire = session_wire
    # The unknown key is echoed in the error; it holds characters a strict encoder refuses.
    await session.on_text('{"type": "session.update", "\\udbff\\udfff\\u0000x": 1}')
    await session.on_text(json.dumps({"type": "x" * 10_000}))
    assert wire.errors() == ["invalid_message", "unknown_message_type"]
    assert all(len(m["message"]) < 400 for m in wire.of_type("error"))
    wire.assert_valid()


async def test_odd_audio_frames_are_refused_and_even_ones_accepted(session_wire):
    session, wire = session_wire
    await session.on_bytes(b"\x00\x01\x02")
    await session.on_bytes(b"")
    await session.on_bytes(bytes(640))
    assert wire.errors() == ["invalid_audio_frame"]


async def test_decoded_audio_from_a_transport_is_dropped_until_the_session_starts():
    session, wire = new_session()
    session.on_audio_16k(b"\x10\x00" * 1600)  # a microphone streaming before session.start
    await send(session, type="session.start")
    session.on_audio_16k(b"\x10\x00" * 16 * 600 + bytes(32 * 900))
    await asyncio.sleep(0.1)  # the transcript of the pause lands; the microphone goes on
    session.on_audio_16k(bytes(32 * 300))
    done = await wire.until("turn.done")
    assert done["user_text"] == "What is two plus two?" and done["status"] == "completed"
    assert wire.log.count("speech.started") == 1
    await session.close()


async def test_an_unexpected_failure_is_an_internal_error_and_the_session_goes_on(session_wire):
    session, wire = session_wire
    real = session.pipeline.set_voice_rate

    def broken(rate: float) -> None:
        raise RuntimeError("bug")

    session.pipeline.set_voice_rate = broken
    await send(session, type="session.update", voice_rate=1.2)
    assert wire.errors() == ["internal_error"]
    session.pipeline.set_voice_rate = real
    assert (await _ask(session, wire))["status"] == "completed"


async def test_a_frame_the_protocol_cannot_carry_is_reported_without_stopping_the_pipeline(session_wire):
    session, wire = session_wire
    await session._on_event(PipelineError("no_such_code", "whatever"))
    assert wire.errors() == ["internal_error"]
    assert (await _ask(session, wire))["status"] == "completed"


async def test_a_cut_reply_clears_the_transports_audio_before_it_is_announced(session_wire):
    session, wire = session_wire
    await session._on_event(Interrupted("turn-1", "barge_in", "Let us"))
    assert wire.log[-2:] == ["clear_audio", "reply.interrupted"]
    assert wire.messages[-1]["heard_text"] == "Let us"


async def test_cancel_interrupts_a_long_reply_and_clears_queued_audio():
    long_reply = " ".join(["This is a rather long sentence about numbers."] * 6)
    session, wire = new_session(scripted_engines(long_reply))
    await send(session, type="session.start")
    await send(session, type="input.text", text="Explain numbers")
    await wire.until("reply.audio.started")
    await send(session, type="response.cancel")
    done = await wire.until("turn.done")
    assert done["status"] == "cancelled"
    assert wire.log.index("clear_audio") < wire.log.index("reply.interrupted")
    await session.close()
    wire.assert_valid()


async def test_abort_sends_a_fatal_error_and_ends_the_session(session_wire):
    session, wire = session_wire
    await session.abort("session_start_timeout", "No session.start arrived in time.")
    assert session.ended
    error = wire.of_type("error")[-1]
    assert error["fatal"] is True and error["code"] == "session_start_timeout"
    assert wire.log[-1] == "session.ended"
    wire.assert_valid()


async def test_repeat_and_voice_rate(session_wire):
    session, wire = session_wire
    await send(session, type="response.repeat")
    assert wire.errors() == ["nothing_to_repeat"]
    first = await _ask(session, wire)
    await send(session, type="session.update", voice_rate=1.4)
    await send(session, type="response.repeat")
    for _ in range(500):
        if len(wire.of_type("turn.done")) == 2:
            break
        await asyncio.sleep(0.005)
    again = wire.of_type("turn.done")[-1]
    assert again["turn_id"] != first["turn_id"] and again["reply_text"] == first["reply_text"]
    assert again["usage"]["llm_completion_tokens"] == 0  # said again, not asked again
    assert session.hub.engines.tts.voices[-1].rate == 1.4


async def test_input_after_session_end_is_ignored(session_wire):
    session, wire = session_wire
    await send(session, type="session.end")
    count = len(wire.messages)
    await send(session, type="input.text", text="hello?")
    await session.on_bytes(b"\x00")
    session.on_audio_16k(b"\x10\x00" * 1600)
    assert len(wire.messages) == count and wire.log[-1] == "session.ended"


async def test_a_thinking_pause_and_the_declared_prompt_reach_the_client_as_published():
    engines = Engines(LoudnessVAD(), ScriptedSTT("Seven times eight is"), ScriptedLLM("Good."), QuickTTS())
    session, wire = new_session(engines)
    turn = {"patience_ms": 600, "patience_action": "prompt", "max_silence_ms": 1500}
    await send(session, type="session.start", turn=turn)
    pcm = b"\x10\x00" * 16 * 600 + bytes(32 * 900)
    for i in range(0, len(pcm), 960):  # 30 ms frames at 10x real time: the transcript lands meanwhile
        session.on_audio_16k(pcm[i : i + 960])
        await asyncio.sleep(0.003)
    thinking = await wire.until("turn.thinking")
    prompt = await wire.until("turn.prompt")
    assert thinking["patience_ms"] == 600 and prompt["text"] == "Take your time."
    assert wire.log.index("turn.thinking") < wire.log.index("turn.prompt")
    assert "reply.audio.started" not in wire.log  # silent while waiting: no filler either
    session.on_audio_16k(bytes(32 * 900))
    assert (await wire.until("turn.done"))["status"] == "completed"
    wire.assert_valid()
    await session.close()


async def test_a_session_sets_how_long_a_sentence_the_stt_is_sure_of_waits_on_a_doubting_turn_model():
    stt = ScriptedSTT("Seven times eight is fifty six.", sentence_end=0.95)
    engines = Engines(LoudnessVAD(), stt, ScriptedLLM("Good."), QuickTTS(), turn=ScriptedTurn(0.1))
    session, wire = new_session(engines)
    await send(session, type="session.start", turn={"outvoted_share": 0.3})
    pcm = b"\x10\x00" * 16 * 600 + bytes(32 * 1200)  # 1.2 s of silence: past 0.3 of 3 s, far short of 3 s
    for i in range(0, len(pcm), 960):
        session.on_audio_16k(pcm[i : i + 960])
        await asyncio.sleep(0.003)
    assert (await wire.until("turn.thinking"))["patience_ms"] == 900
    assert (await wire.until("turn.done"))["status"] == "completed"
    wire.assert_valid()
    await session.close()


async def test_a_session_sets_how_long_an_unsure_finished_waits():
    stt = ScriptedSTT("The ache of his overstrained eyes.")
    engines = Engines(LoudnessVAD(), stt, ScriptedLLM("Good."), QuickTTS(), turn=ScriptedTurn(0.6))
    session, wire = new_session(engines)
    await send(session, type="session.start", turn={"unsure_commit_ms": 2000})
    pcm = b"\x10\x00" * 16 * 600 + bytes(32 * 1500)  # 1.5 s: past the default 1 s, short of 2 s
    for i in range(0, len(pcm), 960):
        session.on_audio_16k(pcm[i : i + 960])
        await asyncio.sleep(0.003)
    await asyncio.sleep(0.2)
    assert "transcript.final" not in wire.log and "turn.thinking" not in wire.log
    session.on_audio_16k(bytes(32 * 900))
    assert (await wire.until("turn.done"))["status"] == "completed"
    wire.assert_valid()
    await session.close()


async def test_turn_options_outside_their_limits_are_refused_at_session_start():
    session, wire = new_session()
    await send(session, type="session.start", turn={"patience_ms": 10})
    assert wire.errors() == ["invalid_message"]
    await session.close()
