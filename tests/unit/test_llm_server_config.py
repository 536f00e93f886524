"""Configuring the language-model server engines (openai-compatible, azure-openai, ollama):
required options fail at start-up, privacy mode refuses what would leave the machine with the
engine named, and a key never shows in settings, errors or reprs. No server is contacted."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from models.base import EngineError
from models.registry import spec_for
from models.remote import is_loopback_host, server_is_local
from voice_server.privacy import is_local_address
from voice_server.settings import Settings

KEY = "sk-school-key-9f8e7d6c5b4a"


def llm(name: str, privacy: bool = False, **options) -> Settings:
    return Settings(engines={"llm": name, "options": {name: options}}, privacy={"mode": privacy})


def test_an_openai_compatible_server_on_loopback_is_local_and_privacy_mode_allows_it():
    for url in ("http://127.0.0.1:8000/v1", "http://localhost:1234/v1", "http://[::1]:8000/v1"):
        assert llm("openai-compatible", True, base_url=url, model="m").privacy.mode


@pytest.mark.parametrize(
    ("name", "options", "named"),
    [
        ("openai-compatible", {"base_url": "http://gpu-box.school.lan:8000/v1", "model": "m"}, "openai-compatible"),
        ("openai-compatible", {"base_url": "https://api.openai.com/v1", "model": "gpt-4o-mini", "api_key": KEY},
         "openai-compatible"),
        # A loopback port that is a tunnel to another machine, declared so.
        ("openai-compatible", {"base_url": "http://127.0.0.1:8000/v1", "model": "m", "local": False},
         "openai-compatible"),
        ("azure-openai", {"endpoint": "https://school.openai.azure.com", "deployment": "d", "api_key": KEY},
         "azure-openai"),
        # Azure is never local, even where its endpoint is not (a stand-in, a proxy).
        ("azure-openai", {"endpoint": "http://127.0.0.1:9000", "deployment": "d", "api_key": KEY}, "azure-openai"),
        ("ollama", {"host": "http://10.0.0.5:11434", "model": "llama3.2"}, "ollama"),
    ],
)
def test_privacy_mode_refuses_an_engine_that_sends_text_away_and_names_it(name, options, named):
    assert llm(name, **options)  # fine without privacy mode
    with pytest.raises(ValidationError) as refused:
        llm(name, True, **options)
    message = str(refused.value)
    assert "privacy mode allows only engines that run on this machine" in message
    assert f"llm engine {named!r}" in message and KEY not in message


def test_privacy_mode_refuses_a_remote_engine_as_a_fallback_too():
    with pytest.raises(ValidationError, match="azure-openai"):
        Settings(
            engines={"llm": "llama-cpp", "llm_fallback": "azure-openai",
                     "options": {"azure_openai": {"endpoint": "https://x.openai.azure.com", "deployment": "d",
                                                  "api_key": KEY}}},
            privacy={"mode": True},
        )


def test_ollama_on_this_machine_is_local():
    assert llm("ollama", True, model="llama3.2").privacy.mode  # the default host is 127.0.0.1


def test_local_true_is_refused_for_a_server_elsewhere():
    with pytest.raises(ValidationError, match="local=true needs a server on this machine"):
        llm("openai-compatible", base_url="http://gpu-box.school.lan:8000/v1", model="m", local=True)


def test_a_server_engine_without_its_required_options_fails_at_start_up_naming_them():
    with pytest.raises(ValidationError) as missing:
        Settings(engines={"llm": "openai-compatible"})
    message = str(missing.value)
    assert "'base_url'" in message and "'model'" in message
    assert "CONVERGIO_ENGINES__OPTIONS__OPENAI_COMPATIBLE__<OPTION>" in message
    with pytest.raises(ValidationError, match="give exactly one of api_key and key_id"):
        llm("azure-openai", endpoint="https://x.openai.azure.com", deployment="d")


def test_environment_variables_configure_an_engine(monkeypatch):
    monkeypatch.setenv("CONVERGIO_ENGINES__LLM", "azure-openai")
    monkeypatch.setenv("CONVERGIO_ENGINES__OPTIONS__AZURE_OPENAI__ENDPOINT", "https://school.openai.azure.com")
    monkeypatch.setenv("CONVERGIO_ENGINES__OPTIONS__AZURE_OPENAI__DEPLOYMENT", "gpt-4o-mini")
    monkeypatch.setenv("CONVERGIO_ENGINES__OPTIONS__AZURE_OPENAI__API_KEY", KEY)
    settings = Settings()
    options = settings.engines.options_for("azure-openai")
    assert options.deployment == "gpt-4o-mini" and options.api_version == "2024-10-21"
    assert options.api_key.get_secret_value() == KEY
    assert KEY not in repr(settings) and KEY not in str(options)


def test_a_key_id_is_accepted_but_needs_the_key_store_which_is_not_built_yet():
    spec = spec_for("llm", "azure-openai")
    options = spec.validate_options({"endpoint": "https://x.openai.azure.com", "deployment": "d", "key_id": "school-7"})
    with pytest.raises(EngineError, match="key store") as caught:
        spec.load(options)
    assert caught.value.code == "engine_auth"


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.8.9.10", "::1", "localhost", "0.0.0.0", "192.0.2.7", "10.0.0.5", "example.org", "gpu-box"]
)
def test_the_engines_loopback_rule_is_privacy_modes_rule(host):
    assert is_loopback_host(host) == is_local_address(host)


def test_a_url_is_judged_by_its_host_alone():
    assert server_is_local("http://127.0.0.1:8000/v1", None)
    assert not server_is_local("http://127.0.0.1.example.org/v1", None)
    assert not server_is_local("http://user:pw@gpu-box:8000/v1", None)
    assert server_is_local("127.0.0.1:11434", None)  # Ollama's host may come without a scheme
