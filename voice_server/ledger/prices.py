"""Prices: the one place usage units become money, and the one place anything is rounded.

A price table is a TOML file in integer minor currency units (cents), one entry per provider,
model and kind. Each entry prices a block of units (`per`: 1000 ms is a second, 1000 tokens, one
character) and says how a part of a block is rounded:

- `started_block`: every started block costs a whole block (per started second);
- `pro_rata_up`: the exact share of a block, rounded up to one minor unit (per 1K tokens).

Rounding happens once per bill line (a total of one kind, provider and model), never per record,
so the ledger's exact units decide the bill.

    currency = "EUR"

    [[price]]
    provider = "azure-speech"
    model = "*"                 # any model of the provider; an exact model wins
    kind = "stt_audio_ms"
    minor_units = 1             # 1 cent...
    per = 1000                  # ...per 1000 ms
    rounding = "started_block"
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from pipelines.frames import UsageKind
from voice_server.ledger.records import UsageTotal

ANY_MODEL = "*"


class Price(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    kind: UsageKind
    minor_units: int = Field(ge=0, description="the price of one block")
    per: int = Field(ge=1, description="units in a block, in the kind's unit")
    rounding: Literal["started_block", "pro_rata_up"]

    def cost(self, units: int) -> int:
        if self.rounding == "started_block":
            return -(-units // self.per) * self.minor_units
        return -(-units * self.minor_units // self.per)


class PriceTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    currency: str = Field(pattern=r"^[A-Z]{3}$", description="ISO 4217; prices are in its minor unit")
    price: tuple[Price, ...] = ()

    def model_post_init(self, _context: object) -> None:
        seen: set[tuple[str, str, UsageKind]] = set()
        for entry in self.price:
            key = (entry.provider, entry.model, entry.kind)
            if key in seen:
                raise ValueError(f"two prices for {entry.provider}/{entry.model} {entry.kind}")
            seen.add(key)

    @classmethod
    def load(cls, path: Path) -> PriceTable:
        with path.open("rb") as file:
            return cls.model_validate(tomllib.load(file))

    def find(self, provider: str, model: str, kind: UsageKind) -> Price | None:
        exact = wildcard = None
        for entry in self.price:
            if entry.provider == provider and entry.kind == kind:
                if entry.model == model:
                    exact = entry
                elif entry.model == ANY_MODEL:
                    wildcard = entry
        return exact or wildcard


@dataclass(frozen=True, slots=True)
class BillLine:
    usage: UsageTotal
    minor_units: int | None  # None: no price for this provider, model and kind


@dataclass(frozen=True, slots=True)
class Bill:
    currency: str
    lines: tuple[BillLine, ...]

    @property
    def total_minor_units(self) -> int:
        return sum(line.minor_units or 0 for line in self.lines)

    @property
    def complete(self) -> bool:
        """Every line had a price (otherwise the total is a lower bound)."""
        return all(line.minor_units is not None for line in self.lines)


def bill(table: PriceTable, totals: Iterable[UsageTotal]) -> Bill:
    lines = []
    for usage in totals:
        price = table.find(usage.provider, usage.model, usage.kind)
        lines.append(BillLine(usage, None if price is None else price.cost(usage.units)))
    return Bill(table.currency, tuple(lines))
