"""A ProtocolSession on scripted engines, in-process: no sockets, no models."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import numpy as np
import pytest

from models.base import SynthesizedAudio, VoiceSettings
from pipelines.pipeline import Engines
from tests.fakes import LoudnessVAD, ScriptedLLM, ScriptedSTT, ToneTTS
from voice_server.protocol import protocol_schema
from voice_server.session import ProtocolSession
from voice_server.settings import Settings

SCHEMA = protocol_schema()
SERVER_MESSAGES = jsonschema.Draft202012Validator({"$ref": "#/$defs/ServerMessage", "$defs": SCHEMA["$defs"]})


class QuickTTS(ToneTTS):
    """1 ms of audio per character: a reply has played out almost as soon as it is sent."""

    def __init__(self) -> None:
        self.voices: list[VoiceSettings] = []

    async def synthesize(self, text: str, voice: VoiceSettings) -> AsyncIterator[SynthesizedAudio]:
        self.voices.append(voice)
        await asyncio.sleep(0)
        yield SynthesizedAudio(np.full(len(text) * 16, 1000, dtype="<i2").tobytes(), self.sample_rate)


class FakeHub:
    """What ProtocolSession reads of EngineHub: `ready` and `engines`."""

    def __init__(self, engines: Engines | None, *, ready: bool = True) -> None:
        self.engines = engines
        self.ready = ready

    def engines_for(self, classroom_id: str | None) -> Engines:
        assert self.engines is not None
        return self.engines


def scripted_engines(reply: str = "Four.") -> Engines:
    return Engines(LoudnessVAD(), ScriptedSTT(), ScriptedLLM(reply, token_delay_s=0.001), QuickTTS())


@dataclass
class Wire:
    """The client's end of a transport: what the session sent, decoded as a client would."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    audio: list[bytes] = field(default_factory=list)
    log: list[str] = field(default_factory=list)  # message types and "clear_audio", in order

    async def send_text(self, text: str) -> None:
        text.encode("utf-8")  # strictly, as a WebSocket does: a surrogate here would kill it
        message = json.loads(text)
        self.messages.append(message)
        self.log.append(message["type"])

    async def send_bytes(self, data: bytes) -> None:
        self.audio.append(data)

    def clear_audio(self) -> None:
        self.log.append("clear_audio")

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] == kind]

    def errors(self) -> list[str]:
        return [m["code"] for m in self.of_type("error")]

    async def until(self, kind: str, timeout: float = 5, **fields: Any) -> dict[str, Any]:
        for _ in range(int(timeout / 0.005)):
            for message in self.of_type(kind):
                if all(message.get(k) == v for k, v in fields.items()):
                    return message
            await asyncio.sleep(0.005)
        raise AssertionError(f"no {kind} {fields or ''} in {self.log}")

    def assert_valid(self) -> None:
        for message in self.messages:
            errors = sorted(SERVER_MESSAGES.iter_errors(message), key=str)
            assert not errors, f"{message['type']} violates the published schema: {errors[0].message}"


def new_session(engines: Engines | None = None, **kwargs: Any) -> tuple[ProtocolSession, Wire]:
    wire = Wire()
    hub = FakeHub(engines or scripted_engines())
    # The protocol is tested on the scripted model's own words; the teaching plan has its own tests.
    session = ProtocolSession(
        Settings(lesson_plans=False), hub, wire.send_text, wire.send_bytes, clear_audio=wire.clear_audio, **kwargs  # type: ignore[arg-type]
    )
    return session, wire


async def send(session: ProtocolSession, **message: Any) -> None:
    await session.on_text(json.dumps(message))


@pytest.fixture
async def session_wire() -> AsyncIterator[tuple[ProtocolSession, Wire]]:
    """A session whose hello is sent and whose session.start was accepted."""
    session, wire = new_session()
    await session.start()
    await send(session, type="session.start")
    assert wire.log == ["server.hello", "session.started"], wire.messages
    yield session, wire
    await session.close()
