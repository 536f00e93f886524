"""Command-line options are validated exactly like environment variables, against the one
definition of each setting, and merged with the environment rather than replacing it."""

from __future__ import annotations

import pytest

from voice_server.cli import SettingsError, build_parser, settings_from_args
from voice_server.settings import Settings


def serve_settings(*argv: str) -> Settings:
    return settings_from_args(build_parser().parse_args(["serve", *argv]))


def test_an_end_of_turn_silence_below_the_minimum_is_refused_naming_the_flag():
    with pytest.raises(SettingsError) as raised:
        serve_settings("--end-of-turn-ms", "10")
    message = str(raised.value)
    assert "--end-of-turn-ms" in message and "CONVERGIO_TURN__END_OF_TURN_SILENCE_MS" in message
    assert "greater than or equal to 150" in message


def test_an_unknown_persona_is_refused():
    with pytest.raises(SettingsError, match="unknown persona 'chemistry'"):
        serve_settings("--persona", "chemistry")


def test_options_merge_with_the_environment(monkeypatch):
    monkeypatch.setenv("CONVERGIO_TURN__PREFILL", "false")
    monkeypatch.setenv("CONVERGIO_BUDGETS__VOICE_TO_VOICE__ACTION", "none")
    settings = serve_settings("--end-of-turn-ms", "900", "--budget-v2v-ms", "1200", "--port", "9000")
    assert settings.turn.end_of_turn_silence_ms == 900 and settings.turn.prefill is False
    assert (settings.budgets.voice_to_voice.ms, settings.budgets.voice_to_voice.action) == (1200, "none")
    assert settings.port == 9000


def test_no_options_means_the_settings_defaults():
    assert serve_settings() == Settings()


def test_a_stage_budget_set_in_part_keeps_its_default_for_the_rest(monkeypatch):
    monkeypatch.setenv("CONVERGIO_BUDGETS__STT__ACTION", "filler")
    stt = Settings().budgets.stt
    assert (stt.ms, stt.action) == (700, "filler")


def test_a_session_must_start_within_the_admission_timeout_by_default():
    assert Settings().limits.session_start_timeout_s == 15


def test_an_engine_setting_that_moved_says_where_to(monkeypatch):
    monkeypatch.setenv("CONVERGIO_ENGINES__LLM_CONTEXTS", "4")
    with pytest.raises(SettingsError, match="use CONVERGIO_ENGINES__OPTIONS__LLAMA_CPP__CONTEXTS"):
        serve_settings()
