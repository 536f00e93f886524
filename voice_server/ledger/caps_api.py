"""HTTP: the caps in force, and caps set at run time.

`GET /api/v1/caps` shows every scope's caps (session, student, classroom, key) and where they come
from; `PUT` stores a scope's default or one owner's caps in the database, on top of the settings'
(`voice_server/ledger/cap_store.py`), so they outlive a restart and every replica reads them;
`DELETE` drops a stored one again. A session reads them once when it starts: a change applies to
sessions started after it, while sessions already running keep the caps they started with.

Who: admins read and set everything. A teacher may read their own classroom's caps
(`GET /api/v1/caps/classroom/{their classroom}`), never set them: a cap is the budget of whoever
pays for the engines, which in a school is the admin's to set, not the capped classroom's.
Students may not use any of it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from pipelines.caps import UsageCaps
from pipelines.quota import ScopeCaps
from voice_server.auth.guard import AuthError, require
from voice_server.auth.tokens import Claims, Role
from voice_server.classrooms.store import teaches
from voice_server.http_errors import error_response
from voice_server.ledger import cap_store
from voice_server.ledger.cap_store import CapSource, CapTable, OwnedScope
from voice_server.ledger.caps import SharedCaps

log = logging.getLogger(__name__)




# Mounted without a router-wide role: each route names its own (admins; teachers to read their
# own classroom's caps).
router = APIRouter(prefix="/api/v1/caps", tags=["caps"])
_admin = require(Role.ADMIN)
_teacher_or_admin = require(Role.TEACHER, Role.ADMIN)
Admin = Annotated[Claims, Depends(_admin)]
Reader = Annotated[Claims, Depends(_teacher_or_admin)]
OwnerId = Annotated[
    str, Path(min_length=1, max_length=64, description="an opaque student, classroom or key id")
]


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class SessionCapsOut(BaseModel):
    caps: UsageCaps = Field(description="per session, in units; null: no cap")
    source: Literal["settings", "scope"] = Field(
        description="settings: the server's configuration; scope: set through this API"
    )
    updated_at: datetime | None = Field(None, description="when it was set through this API")
    updated_by: str | None = Field(None, description="the opaque subject of the admin who set it")


class OwnerCapsOut(BaseModel):
    scope: OwnedScope
    owner_id: str
    caps: ScopeCaps = Field(description="what this owner's sessions share, per period; null: no cap")
    source: CapSource = Field(
        description="settings: the server's configuration; scope: the scope's default set through "
        "this API; owner: set for this owner"
    )
    updated_at: datetime | None = None
    updated_by: str | None = None


class ScopeCapsOut(BaseModel):
    caps: ScopeCaps = Field(description="for every owner of the scope without caps of its own")
    source: Literal["settings", "scope"]
    updated_at: datetime | None = None
    updated_by: str | None = None
    owners: list[OwnerCapsOut] = Field(description="owners with caps of their own, in force instead")


class CapsInForce(BaseModel):
    currency: str | None = Field(
        description="the price table's currency, which cost caps (cost_minor) count in; null: no "
        "price table, so no cost cap can be set"
    )
    session: SessionCapsOut
    student: ScopeCapsOut
    classroom: ScopeCapsOut
    key: ScopeCapsOut


def _shared(request: Request) -> SharedCaps:
    return request.app.state.shared_caps  # type: ignore[no-any-return]


def _out(force: cap_store.InForce, **fields: Any) -> dict[str, Any]:
    stored = force.stored
    stamp = {"updated_at": stored.updated_at, "updated_by": stored.updated_by} if stored else {}
    return {"caps": force.caps, "source": force.source, **stamp, **fields}


def _session_out(table: CapTable) -> SessionCapsOut:
    return SessionCapsOut.model_validate(_out(table.in_force("session")))


def _owner_out(table: CapTable, scope: OwnedScope, owner_id: str) -> OwnerCapsOut:
    return OwnerCapsOut.model_validate(_out(table.in_force(scope, owner_id), scope=scope, owner_id=owner_id))


def _scope_out(table: CapTable, scope: OwnedScope) -> ScopeCapsOut:
    owners = [_owner_out(table, scope, s.owner_id) for s in table.owners(scope) if s.owner_id]
    return ScopeCapsOut.model_validate(_out(table.in_force(scope), owners=owners))


def _cost_needs_prices(request: Request, caps: ScopeCaps) -> JSONResponse | None:
    if caps.cost_minor is not None and getattr(request.app.state, "prices", None) is None:
        return error_response(
            400, "cost_cap_needs_prices",
            "cost_minor is a cap in cost, which needs a price table: set CONVERGIO_BILLING__PRICE_TABLE "
            "(format: voice_server/ledger/prices.py), or cap units instead.",
        )
    return None


_400 = {400: {"model": ErrorResponse, "description": "a cap in cost, and the server has no price table"}}
_403 = {
    403: {"model": ErrorResponse, "description": "a student, or a teacher asking about another classroom"}
}
_404 = {404: {"model": ErrorResponse, "description": "nothing is stored there: the caps beneath apply"}}
_422 = {422: {"model": ErrorResponse, "description": "a field is unknown or breaks a rule (named)"}}


@router.get("", response_model=CapsInForce)
async def caps_in_force(request: Request, claims: Admin) -> CapsInForce:
    """Every scope's caps in force now, and each owner's that has its own: what the next session
    gets. Running sessions keep the caps they started with."""
    shared = _shared(request)
    table = await shared.table()
    prices = shared.registry.prices
    return CapsInForce(
        currency=None if prices is None else prices.currency,
        session=_session_out(table),
        student=_scope_out(table, "student"),
        classroom=_scope_out(table, "classroom"),
        key=_scope_out(table, "key"),
    )


# Declared before "/{scope}", which would otherwise take "session" for a scope name.
@router.put("/session", response_model=SessionCapsOut, responses=_422)
async def set_session_caps(body: UsageCaps, request: Request, claims: Admin) -> SessionCapsOut:
    """Every session's own caps, in units, from the next session on."""
    shared = _shared(request)
    await cap_store.put(_engine(request), "session", None, body, by=claims.subject)
    log.info("session caps set by %s", claims.subject)
    return _session_out(await shared.table())


@router.delete("/session", response_model=SessionCapsOut, responses=_404)
async def unset_session_caps(request: Request, claims: Admin) -> SessionCapsOut | JSONResponse:
    """Back to the settings' session caps."""
    if not await cap_store.remove(_engine(request), "session", None):
        return error_response(404, "no_stored_caps", "No session caps are stored; the settings' apply.")
    log.info("session caps unset by %s", claims.subject)
    return _session_out(await _shared(request).table())


@router.put("/{scope}", response_model=ScopeCapsOut, responses=_400 | _422)
async def set_scope_caps(
    scope: OwnedScope, body: ScopeCaps, request: Request, claims: Admin
) -> ScopeCapsOut | JSONResponse:
    """The caps of every student (classroom, key) without caps of its own, from its next session on."""
    if (refused := _cost_needs_prices(request, body)) is not None:
        return refused
    await cap_store.put(_engine(request), scope, None, body, by=claims.subject)
    log.info("%s caps set by %s", scope, claims.subject)
    return _scope_out(await _shared(request).table(), scope)


@router.delete("/{scope}", response_model=ScopeCapsOut, responses=_404 | _422)
async def unset_scope_caps(
    scope: OwnedScope, request: Request, claims: Admin
) -> ScopeCapsOut | JSONResponse:
    """Back to the settings' caps for the scope (owners with caps of their own keep them)."""
    if not await cap_store.remove(_engine(request), scope, None):
        return error_response(404, "no_stored_caps", f"No {scope} caps are stored; the settings' apply.")
    log.info("%s caps unset by %s", scope, claims.subject)
    return _scope_out(await _shared(request).table(), scope)


@router.get("/{scope}/{owner_id}", response_model=OwnerCapsOut, responses=_403 | _422)
async def owner_caps(scope: OwnedScope, owner_id: OwnerId, request: Request, claims: Reader) -> OwnerCapsOut:
    """The caps one student's, classroom's or key's next session gets. Teachers: their own
    classroom's only."""
    if claims.role is not Role.ADMIN and not (
        scope == "classroom"
        and (owner_id == claims.classroom or await teaches(request.app.state.database, claims.subject, owner_id))
    ):
        raise AuthError(403, "forbidden", "A teacher may read only their own classroom's caps.")
    return await _owner_now(request, scope, owner_id)


@router.put("/{scope}/{owner_id}", response_model=OwnerCapsOut, responses=_400 | _422)
async def set_owner_caps(
    scope: OwnedScope, owner_id: OwnerId, body: ScopeCaps, request: Request, claims: Admin
) -> OwnerCapsOut | JSONResponse:
    """Caps for one student, classroom or key, in force instead of the scope's, from its next
    session on."""
    if (refused := _cost_needs_prices(request, body)) is not None:
        return refused
    await cap_store.put(_engine(request), scope, owner_id, body, by=claims.subject)
    log.info("caps of %s %s set by %s", scope, owner_id, claims.subject)
    return await _owner_now(request, scope, owner_id)


@router.delete("/{scope}/{owner_id}", response_model=OwnerCapsOut, responses=_404 | _422)
async def unset_owner_caps(
    scope: OwnedScope, owner_id: OwnerId, request: Request, claims: Admin
) -> OwnerCapsOut | JSONResponse:
    """Back to the scope's caps for this owner."""
    if not await cap_store.remove(_engine(request), scope, owner_id):
        return error_response(404, "no_stored_caps", f"No caps are stored for {scope} {owner_id}.")
    log.info("caps of %s %s unset by %s", scope, owner_id, claims.subject)
    return await _owner_now(request, scope, owner_id)


def _engine(request: Request) -> Any:
    return request.app.state.database


async def _owner_now(request: Request, scope: OwnedScope, owner_id: str) -> OwnerCapsOut:
    shared = _shared(request)
    table = await cap_store.read(_engine(request), shared.defaults, {scope: [owner_id]})
    return _owner_out(table, scope, owner_id)
