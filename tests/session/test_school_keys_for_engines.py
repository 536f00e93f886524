"""An engine configured with a school's `key_id` gets that key from the server's encrypted key
store when it loads (the key never sits in the environment), and its use is the key's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import SecretStr

import voice_server.engines as engines_module
from models.openai_llm import AzureOpenAIOptions
from voice_server.app import create_app
from voice_server.engines import EngineHub
from voice_server.settings import Settings
from tests.fakes import LoudnessVAD, ScriptedLLM, ScriptedSTT
from tests.session.conftest import QuickTTS

SCHOOL_KEY = "sk-school-0123456789abcdef"


@dataclass
class _Spec:
    kind: str
    name: str
    loaded: list[Any]
    description: str = "scripted"

    def runs_locally(self, options: Any) -> bool:
        return self.kind != "llm"

    def load(self, options: Any) -> Any:
        self.loaded.append(options)
        if self.kind == "llm":
            return ScriptedLLM("From the school's deployment.")
        return {"vad": LoudnessVAD, "stt": ScriptedSTT, "tts": QuickTTS}[self.kind]()


async def test_an_engine_with_a_key_id_is_loaded_with_the_stored_key_and_bills_that_key(monkeypatch):
    loaded: list[Any] = []
    monkeypatch.setattr(engines_module, "spec_for", lambda kind, name: _Spec(kind, name, loaded))
    settings = Settings(
        engines={
            "llm": "azure-openai",
            "turn": "none",
            "options": {"azure_openai": {"endpoint": "https://school.example", "deployment": "tutor", "key_id": "key_1"}},
        },
    )
    hub = EngineHub(settings)
    asked: list[str] = []

    async def resolve(key_id: str) -> SecretStr:
        asked.append(key_id)
        return SecretStr(SCHOOL_KEY)

    hub.resolve_key = resolve
    engines = await hub.load(progress=lambda _: None)
    options = next(o for o in loaded if isinstance(o, AzureOpenAIOptions))
    assert asked == ["key_1"] and options.api_key is not None
    assert options.api_key.get_secret_value() == SCHOOL_KEY and options.key_id == "key_1"
    assert engines.llm.key_id == "key_1"  # caps per key and the ledger's key_id see it
    assert SCHOOL_KEY not in repr(options)


def test_the_app_hands_its_key_store_to_the_engines(tmp_path):
    app = create_app(Settings(storage={"data_dir": tmp_path}, auth={"secret": "s" * 32}))  # type: ignore[arg-type]
    assert app.state.hub.resolve_key == app.state.keys.resolve


def test_azure_speech_uses_the_key_the_server_filled_in_for_its_key_id():
    from models.azure_speech import AzureSpeechOptions, speech_config

    class Sdk:  # records what the Speech SDK would be given
        @staticmethod
        def SpeechConfig(**given: Any) -> dict[str, Any]:  # noqa: N802 - the SDK's own name
            return given

    options = AzureSpeechOptions(region="westeurope", key_id="key_2")
    filled = options.model_copy(update={"key": SecretStr(SCHOOL_KEY)})
    assert speech_config(Sdk, filled) == {"subscription": SCHOOL_KEY, "region": "westeurope"}
