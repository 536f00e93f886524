"""Privacy mode for some classrooms: on a server whose engines include a cloud one, a session of a
classroom held to privacy mode gets only the engines that run on this machine, and a server that
could not give it one for every kind refuses to start."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import pytest
from pydantic import ValidationError

import voice_server.engines as engines_module
import voice_server.settings as settings_module
from models.registry import spec_for
from voice_server.engines import EngineHub
from voice_server.ledger.records import Attribution
from voice_server.session import ProtocolSession
from voice_server.settings import Settings
from tests.fakes import LoudnessVAD, ScriptedLLM, ScriptedSTT
from tests.session.conftest import QuickTTS, Wire, send

PRIVATE, OTHER = "cls_private", "cls_other"


@dataclass
class _Spec:
    """What EngineHub reads of a registry entry: the cloud model is a scripted one marked non-local."""

    kind: str
    name: str
    local: bool
    description: str = "scripted"

    def runs_locally(self, options: Any) -> bool:
        return self.local

    def load(self, options: Any) -> Any:
        if self.kind == "llm":
            return ScriptedLLM("From the cloud." if not self.local else "From this machine.", token_delay_s=0.001)
        return {"vad": LoudnessVAD, "stt": ScriptedSTT, "tts": QuickTTS}[self.kind]()


@pytest.fixture
async def hub(monkeypatch) -> EngineHub:
    # llama-cpp stands for a cloud model here; echo is its local fallback.
    monkeypatch.setattr(engines_module, "spec_for", lambda kind, name: _Spec(kind, name, name != "llama-cpp"))
    settings = Settings(
        engines={"llm": "llama-cpp", "llm_fallback": "echo", "turn": "none"},
        privacy={"classrooms": [PRIVATE]},
        lesson_plans=False,
    )
    hub = EngineHub(settings)
    await hub.load(progress=lambda _: None)
    return hub


async def _answer(hub: EngineHub, classroom: str) -> str:
    wire = Wire()
    session = ProtocolSession(
        hub.settings, hub, wire.send_text, wire.send_bytes, clear_audio=wire.clear_audio,  # type: ignore[arg-type]
        who=Attribution(student_id="stu_1", classroom_id=classroom),
    )
    await session.start()
    await send(session, type="session.start")
    await send(session, type="input.text", text="What is two plus two?")
    done = await wire.until("turn.done")
    await session.close()
    return done["reply_text"]


async def test_a_private_classrooms_session_is_served_only_by_engines_on_this_machine(hub):
    assert await _answer(hub, PRIVATE) == "From this machine."
    assert await _answer(hub, OTHER) == "From the cloud."  # other classrooms keep the school's choice
    private = hub.engines_for(PRIVATE)
    assert isinstance(private.llm, ScriptedLLM) and private.llm.reply == "From this machine."


def test_a_server_that_has_no_local_engine_for_a_kind_refuses_private_classrooms_at_start(monkeypatch):
    def cloud_llm(kind: str, name: str):
        spec = spec_for(kind, name)
        return replace(spec, local=False) if kind == "llm" else spec

    monkeypatch.setattr(settings_module, "spec_for", cloud_llm)
    with pytest.raises(ValidationError, match="privacy mode for classrooms needs a llm engine"):
        Settings(privacy={"classrooms": [PRIVATE]})
    assert Settings().privacy.classrooms == frozenset()  # without private classrooms, nothing changes
