"""HTTP: what the ledger holds, per session, per student, per classroom and per time range: exact
units, and their cost where the server has a price table.

Who may read what: the per-session and whole-range routes (`router`) are mounted admin-only; the
per-student and per-classroom routes (`owner_router`) admit admins for any owner and teachers for
their own classroom (the token's `classroom` claim), a student's usage only as recorded there.
A session's usage stays admin-only: a teacher sees their students through the student route."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from pipelines.frames import UsageKind
from voice_server.auth.guard import AuthError, require
from voice_server.auth.tokens import Claims, Role
from voice_server.classrooms.store import teaches
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


# Per student and per classroom. Mounted without a router-wide role: each route admits admins
# (any owner) and teachers (their own classroom only: the token's `classroom`), never students.
owner_router = APIRouter(prefix="/api/v1/usage", tags=["usage"])
_teacher_or_admin = require(Role.TEACHER, Role.ADMIN)
Reader = Annotated[Claims, Depends(_teacher_or_admin)]
OwnerId = Annotated[str, Path(min_length=1, max_length=64, description="an opaque id, never a name")]
Start = Annotated[datetime, Query(description="inclusive, ISO 8601; naive times are UTC")]
End = Annotated[datetime, Query(description="exclusive, ISO 8601; naive times are UTC")]


class OwnerUsage(BaseModel):
    scope: Literal["student", "classroom"]
    owner_id: str
    classroom_id: str | None = Field(
        description="the classroom the usage was recorded in; null for a student: in every classroom"
    )
    start: datetime
    end: datetime
    usage: list[UsageLine]
    cost: Cost | None = Field(None, description="null when the server has no price table")


_OWNER_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "an empty or too long range"},
    403: {"model": ErrorResponse, "description": "a student, or a teacher asking about another classroom"},
}


async def _teachers_classroom(request: Request, claims: Claims, classroom_id: str | None) -> None:
    """Admins read any classroom; a teacher the one their token names, or one they created."""
    if claims.role is Role.ADMIN:
        return
    if classroom_id is not None and (
        classroom_id == claims.classroom or await teaches(request.app.state.database, claims.subject, classroom_id)
    ):
        return
    raise AuthError(403, "forbidden", "A teacher may read only their own classroom's usage.")


async def _owner_usage(
    request: Request, scope: Literal["student", "classroom"], owner_id: str, classroom_id: str | None,
    start: datetime, end: datetime,
) -> OwnerUsage | JSONResponse:
    start, end = _utc(start), _utc(end)
    if not start < end or end - start > MAX_RANGE:
        return _error(400, "invalid_range", f"start must be before end, at most {MAX_RANGE.days} days apart.")
    owners: dict[repository.ScopeColumn, str] = {f"{scope}_id": owner_id}  # type: ignore[dict-item]
    if classroom_id is not None:
        owners["classroom_id"] = classroom_id
    ledger = _ledger(request)
    await ledger.flush()  # live sessions' latest units
    totals = await repository.owner_totals_between(ledger.engine, owners, start, end)
    lines, cost = _priced(request, totals)
    return OwnerUsage(
        scope=scope, owner_id=owner_id, classroom_id=classroom_id, start=start, end=end, usage=lines,
        cost=cost,
    )


@owner_router.get("/classrooms/{classroom_id}", response_model=OwnerUsage, responses=_OWNER_RESPONSES)
async def classroom_usage(
    classroom_id: OwnerId, request: Request, start: Start, end: End, claims: Reader
) -> OwnerUsage | JSONResponse:
    """One classroom's usage first recorded in [start, end), summed per kind, provider, model and
    speculative. Admins: any classroom; teachers: their own."""
    await _teachers_classroom(request, claims, classroom_id)
    return await _owner_usage(request, "classroom", classroom_id, classroom_id, start, end)


@owner_router.get("/students/{student_id}", response_model=OwnerUsage, responses=_OWNER_RESPONSES)
async def student_usage(
    student_id: OwnerId, request: Request, start: Start, end: End, claims: Reader,
    classroom_id: Annotated[
        str | None,
        Query(max_length=64, description="only what was recorded in this classroom; a teacher's: their own"),
    ] = None,
) -> OwnerUsage | JSONResponse:
    """One student's usage first recorded in [start, end). Admins: everywhere, or in one
    classroom; teachers: only what the student used in the teacher's own classroom."""
    if claims.role is not Role.ADMIN:
        classroom_id = classroom_id or claims.classroom
        await _teachers_classroom(request, claims, classroom_id)
    return await _owner_usage(request, "student", student_id, classroom_id, start, end)
