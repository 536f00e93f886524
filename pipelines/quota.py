"""Caps shared by sessions: one student's, one classroom's or one school key's allowance for a
period (a UTC day, a UTC month, or all time), in units or in cost.

A `Quota` is one such allowance, seeded with the use the ledger holds for its period and then
charged live by every session of that student, classroom or key in this process; the
`QuotaRegistry` hands every session the same `Quota` object. A call is checked and its high
estimate *held* in one synchronous step (no await in between), and the hold is given back only
as the call's real use is reported, so however the calls of many sessions interleave, use plus
holds never passes the cap: the last units cannot be handed to two sessions.

Limits, said plainly:
- The registry lives in one process. Two replicas each seed from the ledger and then count only
  their own sessions, so together they could each allow the last units. The ledger still records
  the exact use, and the next seeding (a new period, or a restart) sees it.
- A quota is seeded once per period in a process, when its first session starts; use recorded
  later by another replica is not seen until then.
- The guarantee rests on estimates being high: speech is exact (audio length, characters), a
  language-model prompt is estimated high and its answer cut to what is left, and speech audio
  for a price per audio ms is estimated at `TTS_MS_PER_CHAR_HIGH`.
- A session keeps the quotas of the period it started in: one that runs past midnight is still
  charged to the day it began (its rows land in the ledger by the time they are written).
- A cap changed at run time applies to sessions started after the change; sessions already
  running keep the cap they started with. Both charge one count in this process, unless the
  change is of period: the new period's count is seeded from the ledger then, and what sessions
  still on the old count use after that is not in it until it is next seeded.
- A session that closes with a call still running (a transcription finishing on its worker)
  gives its holds back at once; that call's use is still charged when it lands, so for that
  moment another session could be given the same units.
- A cost cap prices each bill line (kind, provider, model) as the price table does, rounding
  included; a line without a price costs nothing (local engines are free).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal, Protocol

from pydantic import Field

from pipelines.caps import UNIT, CapKind, UsageCaps, cap_kind_of
from pipelines.frames import UsageKind

CapScope = Literal["session", "student", "classroom", "key"]
Period = Literal["day", "month", "total"]
COST_UNIT = "minor_units"
# Speech rarely runs slower than ~7 characters a second, even at half speed: a high estimate
# of the audio a TTS call makes, for a price per audio ms (the characters themselves are exact).
TTS_MS_PER_CHAR_HIGH = 200

Line = tuple[UsageKind, str, str]  # a bill line: kind, provider, model


class ScopeCaps(UsageCaps):
    """Caps of one scope (every student, every classroom or every key gets its own), per period.

    Example: CONVERGIO_BILLING__STUDENT_CAPS__LLM_TOKENS=50000,
    CONVERGIO_BILLING__STUDENT_CAPS__COST_MINOR=200, CONVERGIO_BILLING__STUDENT_CAPS__PERIOD=day.
    """

    period: Period = Field("month", description="UTC day, UTC month, or all time")
    cost_minor: int | None = Field(
        None, ge=0, description="cost in the price table's minor currency unit; needs a price table"
    )

    @property
    def any(self) -> bool:
        return super().any or self.cost_minor is not None


def period_start(period: Period, now: datetime) -> datetime | None:
    """The start of the period `now` is in (UTC); None for all time."""
    now = now.astimezone(UTC)
    if period == "day":
        return now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return None


class PriceLike(Protocol):
    def cost(self, units: int) -> int: ...


class PriceBook(Protocol):
    """What a cost cap needs of a price table (voice_server/ledger/prices.py PriceTable)."""

    currency: str

    def find(self, provider: str, model: str, kind: UsageKind) -> PriceLike | None: ...


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a call does not fit: the cap it would pass, in its unit, and what is used (held
    included) already."""

    unit: str
    limit: int
    used: int


@dataclass(eq=False)
class Quota:
    """One scope's allowance for one period. Only ever changed synchronously, on the event loop."""

    scope: CapScope
    owner: str  # an opaque id (student, classroom or key), never a name
    caps: ScopeCaps
    prices: PriceBook | None = None
    used: dict[Line, int] = field(default_factory=dict)
    held: dict[Line, int] = field(default_factory=dict)

    @property
    def period(self) -> Period:
        return self.caps.period

    def units(self, kind: CapKind, *, held: bool = True) -> int:
        lines = [self.used, self.held] if held else [self.used]
        return sum(n for book in lines for (uk, _, _), n in book.items() if cap_kind_of(uk) == kind)

    def cost(self, extra: Mapping[Line, int] | None = None, *, held: bool = True) -> int:
        if self.prices is None:
            return 0
        totals: dict[Line, int] = dict(self.used)
        for book in ([self.held] if held else []) + ([extra] if extra else []):
            for line, n in book.items():
                totals[line] = totals.get(line, 0) + n
        total = 0
        for (kind, provider, model), units in totals.items():
            price = self.prices.find(provider, model, kind)
            total += 0 if price is None or units <= 0 else price.cost(units)
        return total

    def refusal(self, need: Mapping[Line, int]) -> Refusal | None:
        """None when `need` fits beside what is used and held; else the cap it would pass."""
        for kind in UNIT:
            limit = self.caps.limit(kind)
            wanted = sum(n for (uk, _, _), n in need.items() if cap_kind_of(uk) == kind)
            if limit is not None and wanted and self.units(kind) + wanted > limit:
                return Refusal(UNIT[kind], limit, self.units(kind))
        if self.caps.cost_minor is not None and any(need.values()):
            if self.cost(need) > self.caps.cost_minor:
                return Refusal(COST_UNIT, self.caps.cost_minor, self.cost())
        return None

    def hold(self, need: Mapping[Line, int]) -> None:
        for line, n in need.items():
            if n > 0:
                self.held[line] = self.held.get(line, 0) + n

    def release(self, line: Line, n: int) -> None:
        left = self.held.get(line, 0) - n
        if left > 0:
            self.held[line] = left
        else:
            self.held.pop(line, None)

    def charge(self, line: Line, n: int) -> None:
        if n > 0:
            self.used[line] = self.used.get(line, 0) + n

    def remaining(self) -> list[tuple[CapKind | None, str, int, int]]:
        """(kind or None for cost, unit, limit, used) of every cap set; holds not counted."""
        rows: list[tuple[CapKind | None, str, int, int]] = []
        for kind in UNIT:
            limit = self.caps.limit(kind)
            if limit is not None:
                rows.append((kind, UNIT[kind], limit, self.units(kind, held=False)))
        if self.caps.cost_minor is not None:
            rows.append((None, COST_UNIT, self.caps.cost_minor, self.cost(held=False)))
        return rows


SeedLoader = Callable[[datetime | None], Awaitable[Iterable[tuple[Line, int]]]]


class QuotaRegistry:
    """Every live quota of this process, by scope, owner and period: sessions of one student (or
    classroom, or key) share one object. A quota is seeded from the ledger once, when the first
    session of its period asks for it; concurrent first sessions wait for the same seeding."""

    def __init__(
        self, prices: PriceBook | None = None, *, clock: Callable[[], datetime] | None = None
    ) -> None:
        self.prices = prices
        self._clock = clock or (lambda: datetime.now(UTC))
        self._quotas: dict[tuple[CapScope, str, datetime | None], asyncio.Future[Quota]] = {}

    async def quota(self, scope: CapScope, owner: str, caps: ScopeCaps, load: SeedLoader) -> Quota:
        start = period_start(caps.period, self._clock())
        key = (scope, owner, start)
        self._forget_past(caps.period, start)
        known = self._quotas.get(key)
        if known is None:
            known = self._quotas[key] = asyncio.get_running_loop().create_future()
            try:
                quota = Quota(scope, owner, caps, self.prices)
                for line, units in await load(start):
                    quota.charge(line, units)
            except BaseException as exc:
                del self._quotas[key]  # the next session tries again
                known.set_exception(exc)
                known.exception()  # retrieved: nobody else may be waiting
                raise
            known.set_result(quota)
        quota = await asyncio.shield(known)
        if quota.caps != caps:
            quota = self._recapped(key, quota, caps)
        return quota

    def _recapped(self, key: tuple[CapScope, str, datetime | None], quota: Quota, caps: ScopeCaps) -> Quota:
        """The cap was changed at run time: sessions from now on get `caps`, sessions already
        running keep theirs, and all of them charge one count (the same `used` and `held`), so
        no unit is counted twice or missed, whichever cap each session is held to."""
        sibling = replace(quota, caps=caps)  # the same dicts, not copies
        future: asyncio.Future[Quota] = asyncio.get_running_loop().create_future()
        future.set_result(sibling)
        self._quotas[key] = future
        return sibling

    def _forget_past(self, period: Period, start: datetime | None) -> None:
        """Quotas of an earlier period are done with: sessions still holding them keep them."""
        if start is None:
            return
        for key in [k for k in self._quotas if k[2] is not None and k[2] < start]:
            future = self._quotas[key]
            if future.done() and not future.exception() and future.result().period == period:
                del self._quotas[key]

    def __len__(self) -> int:
        return len(self._quotas)
