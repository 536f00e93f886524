"""HTTP: what the ledger holds, per session and per time range. Exact units; cost comes later."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from pipelines.frames import UsageKind
from voice_server.ledger import repository
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


class SessionUsage(BaseModel):
    session_id: str
    turns: dict[TurnState, int] = Field(description="how many of the session's turns are in each state")
    usage: list[UsageLine]


class UsageSummary(BaseModel):
    start: datetime
    end: datetime
    usage: list[UsageLine]


def _lines(totals: list[UsageTotal]) -> list[UsageLine]:
    return [UsageLine(kind=t.kind, provider=t.provider, model=t.model, speculative=t.speculative, units=t.units)
            for t in totals]


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
    return SessionUsage(session_id=session_id, turns=counts, usage=_lines(totals))


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
    return UsageSummary(start=start, end=end, usage=_lines(await repository.totals_between(ledger.engine, start, end)))


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
