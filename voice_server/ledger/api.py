"""HTTP: what the ledger holds, per session and per time range: exact units, and their cost where
the server has a price table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from pipelines.frames import UsageKind
from voice_server.ledger import repository
from voice_server.ledger.prices import PriceTable, bill
from voice_server.ledger.records import TurnState, UsageTotal
from voice_server.ledger.writer import UsageLedger

router = APIRouter(prefix="/api/v1/usage", tags=["usage"])

MAX_RANGE = timedelta(days=366)


class UsageLine(BaseModel):
    kind: UsageKind
    provider: str
    model: str
    speculative: bool = Field(description="work thrown away (discarded speculation, prefill), still paid for")
    units: int = Field(ge=0, description="ms for *_ms kinds, tokens, or characters")
    cost_minor_units: int | None = Field(
        None, description="this line's cost in the currency's minor unit; null without a price"
    )


class Cost(BaseModel):
    currency: str
    total_minor_units: int = Field(ge=0)
    complete: bool = Field(description="false when some line has no price: the total is then a lower bound")


class SessionUsage(BaseModel):
    session_id: str
    turns: dict[TurnState, int] = Field(description="how many of the session's turns are in each state")
    usage: list[UsageLine]
    cost: Cost | None = Field(None, description="null when the server has no price table")


class UsageSummary(BaseModel):
    start: datetime
    end: datetime
    usage: list[UsageLine]
    cost: Cost | None = Field(None, description="null when the server has no price table")


def _priced(request: Request, totals: list[UsageTotal]) -> tuple[list[UsageLine], Cost | None]:
    prices: PriceTable | None = getattr(request.app.state, "prices", None)
    if prices is None:
        lines = [
            UsageLine(
                kind=t.kind, provider=t.provider, model=t.model, speculative=t.speculative, units=t.units
            )
            for t in totals
        ]
        return lines, None
    result = bill(prices, totals)
    lines = [
        UsageLine(
            kind=line.usage.kind,
            provider=line.usage.provider,
            model=line.usage.model,
            speculative=line.usage.speculative,
            units=line.usage.units,
            cost_minor_units=line.minor_units,
        )
        for line in result.lines
    ]
    return lines, Cost(
        currency=result.currency, total_minor_units=result.total_minor_units, complete=result.complete
    )


def _ledger(request: Request) -> UsageLedger:
    return request.app.state.ledger  # type: ignore[no-any-return]


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


def _error(status: int, code: str, message: str) -> JSONResponse:
    # The same shape as the server's other HTTP errors.
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


@router.get(
    "/sessions/{session_id}",
    response_model=SessionUsage,
    responses={404: {"model": ErrorResponse, "description": "no usage recorded for this session"}},
)
async def session_usage(session_id: str, request: Request) -> SessionUsage | JSONResponse:
    ledger = _ledger(request)
    await ledger.flush()  # a live session's latest units, not those of the last background write
    totals = await repository.session_totals(ledger.engine, session_id)
    turns = await repository.session_turns(ledger.engine, session_id)
    if not totals and not turns:
        return _error(404, "unknown_session", f"No usage is recorded for session {session_id}.")
    counts: dict[TurnState, int] = {}
    for state in turns.values():
        counts[state] = counts.get(state, 0) + 1
    lines, cost = _priced(request, totals)
    return SessionUsage(session_id=session_id, turns=counts, usage=lines, cost=cost)


@router.get(
    "",
    response_model=UsageSummary,
    responses={400: {"model": ErrorResponse, "description": "an empty or too long range"}},
)
async def usage_summary(
    request: Request,
    start: Annotated[datetime, Query(description="inclusive, ISO 8601; naive times are UTC")],
    end: Annotated[datetime, Query(description="exclusive, ISO 8601; naive times are UTC")],
) -> UsageSummary | JSONResponse:
    """Usage first recorded in [start, end), summed per kind, provider, model and speculative."""
    start, end = _utc(start), _utc(end)
    if not start < end or end - start > MAX_RANGE:
        return _error(400, "invalid_range", f"start must be before end, at most {MAX_RANGE.days} days apart.")
    ledger = _ledger(request)
    await ledger.flush()
    lines, cost = _priced(request, await repository.totals_between(ledger.engine, start, end))
    return UsageSummary(start=start, end=end, usage=lines, cost=cost)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
