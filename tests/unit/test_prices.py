"""Prices turn exact units into money, rounding once per bill line by each entry's rule."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from pipelines.frames import UsageKind
from voice_server.ledger.prices import Price, PriceTable, bill
from voice_server.ledger.records import UsageTotal

TABLE = """
currency = "EUR"

[[price]]
provider = "azure-speech"
model = "*"
kind = "stt_audio_ms"
minor_units = 2
per = 1000
rounding = "started_block"

[[price]]
provider = "azure-openai"
model = "gpt-4o-mini"
kind = "llm_completion_tokens"
minor_units = 60
per = 1000
rounding = "pro_rata_up"

[[price]]
provider = "azure-speech"
model = "*"
kind = "tts_chars"
minor_units = 1
per = 1
rounding = "started_block"
"""


@pytest.fixture
def table(tmp_path: Path) -> PriceTable:
    path = tmp_path / "prices.toml"
    path.write_text(TABLE)
    return PriceTable.load(path)


@pytest.mark.parametrize(("units", "cents"), [(0, 0), (1, 2), (1000, 2), (1001, 4), (61_500, 124)])
def test_audio_is_priced_per_started_second(table: PriceTable, units: int, cents: int) -> None:
    price = table.find("azure-speech", "en-US", UsageKind.STT_AUDIO_MS)
    assert price is not None and price.cost(units) == cents


@pytest.mark.parametrize(("tokens", "cents"), [(0, 0), (1, 1), (1000, 60), (1500, 90), (1501, 91)])
def test_tokens_are_priced_per_thousand_pro_rata_rounded_up_to_a_cent(
    table: PriceTable, tokens: int, cents: int
) -> None:
    price = table.find("azure-openai", "gpt-4o-mini", UsageKind.LLM_COMPLETION_TOKENS)
    assert price is not None and price.cost(tokens) == cents


def test_a_bill_rounds_each_line_once_and_names_what_has_no_price(table: PriceTable) -> None:
    totals = [
        UsageTotal(UsageKind.STT_AUDIO_MS, "azure-speech", "en-US", False, 2500),
        UsageTotal(UsageKind.STT_AUDIO_MS, "azure-speech", "en-US", True, 400),  # thrown away, still paid
        UsageTotal(UsageKind.TTS_CHARS, "azure-speech", "jenny", False, 42),
        UsageTotal(UsageKind.LLM_PROMPT_TOKENS, "llama-cpp", "smollm2", False, 900),
    ]
    result = bill(table, totals)
    assert [line.minor_units for line in result.lines] == [6, 2, 42, None]
    assert result.currency == "EUR" and result.total_minor_units == 50 and not result.complete


def test_an_exact_model_price_wins_over_the_providers_wildcard() -> None:
    common = {"provider": "p", "kind": UsageKind.TTS_CHARS, "per": 1, "rounding": "started_block"}
    table = PriceTable(
        currency="EUR",
        price=(Price(model="*", minor_units=1, **common), Price(model="hd", minor_units=3, **common)),
    )
    assert table.find("p", "hd", UsageKind.TTS_CHARS).minor_units == 3  # type: ignore[union-attr]
    assert table.find("p", "std", UsageKind.TTS_CHARS).minor_units == 1  # type: ignore[union-attr]


def test_a_price_table_with_a_mistake_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "prices.toml"
    path.write_text(TABLE.replace('rounding = "pro_rata_up"', 'rounding = "nearest"'))
    with pytest.raises(ValidationError, match="rounding"):
        PriceTable.load(path)
    path.write_text(TABLE + TABLE.split('currency = "EUR"')[1])
    with pytest.raises(ValidationError, match="two prices"):
        PriceTable.load(path)
