"""HTTP: sign in (teachers, admins), redeem a student sign-in link, get a WebSocket ticket, make a
new student sign-in link, sign out; for admins, revoke every token of a subject."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, Field

from voice_server.auth import accounts
from voice_server.auth.guard import OPEN_CLAIMS, Authenticator, AuthError, authenticator, require
from voice_server.auth.onetime import OneTimeCodes
from voice_server.auth.ratelimit import address_key, username_key
from voice_server.auth.tokens import Claims, Role, new_subject

T = TypeVar("T")
log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/auth", tags=["auth"])
# Mounted by the app with the admin-only dependency, like the usage API.
admin_router = APIRouter(prefix="/api/v1/subjects", tags=["auth"])


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class SignIn(BaseModel):
    username: str = Field(min_length=1, max_length=accounts.MAX_USERNAME_CHARS)
    password: str = Field(min_length=1, max_length=1024)


class Redeem(BaseModel):
    code: str = Field(min_length=1, max_length=128)


class AccessToken(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="seconds")
    role: Role


class Ticket(BaseModel):
    ticket: str = Field(description="open /v1/ws?ticket=<ticket> with it, once")
    expires_in: int = Field(description="seconds")


class SignInLink(BaseModel):
    code: str = Field(description="single use; the page at /#signin=<code> redeems it")
    path: str
    expires_in: int = Field(description="seconds")


class Revoked(BaseModel):
    subject_id: str
    not_before: datetime = Field(description="every token of the subject issued up to this moment is refused")


_401 = {401: {"model": ErrorResponse, "description": "missing, expired, forged or revoked token"}}
_403 = {403: {"model": ErrorResponse, "description": "this role may not do this"}}
_429 = {
    429: {
        "model": ErrorResponse,
        "description": "too many failed tries from this address or for this username; see Retry-After",
        "headers": {"Retry-After": {"description": "seconds", "schema": {"type": "integer"}}},
    }
}


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


def _refuse_when_limited(auth: Authenticator, keys: Sequence[str]) -> None:
    wait = auth.sign_in_failures.retry_after(keys)
    if wait is not None:
        # Neither the username nor the address: the log says that it happened, not to whom.
        log.warning("sign-in refused: too many failed tries (retry in %d s)", wait)
        minutes = max(1, round(wait / 60))
        raise AuthError(
            429, "too_many_attempts",
            f"Too many failed sign-in attempts. Try again in about {minutes} minute{'s' * (minutes != 1)}.",
            headers={"Retry-After": str(wait)},
        )


def _issue(codes: OneTimeCodes[T], value: T) -> str:
    try:
        return codes.issue(value)
    except OverflowError:  # a flood of unredeemed codes: refuse more rather than grow without bound
        raise AuthError(503, "too_many_codes", "Too many unused codes; try again in a minute.") from None


def _token(auth: Authenticator, role: Role, subject: str) -> AccessToken:
    token = auth.issuer.mint(role, subject)
    return AccessToken(access_token=token, expires_in=auth.issuer.ttl_s, role=role)


@router.post(
    "/sign-in",
    response_model=AccessToken,
    responses={401: {"model": ErrorResponse, "description": "wrong username or password"}} | _429,
    openapi_extra={"security": []},
)
async def sign_in(body: SignIn, request: Request) -> AccessToken:
    """Teachers and admins: a username and password for an access token."""
    auth = authenticator(request)
    user = username_key(body.username)
    keys = (address_key(_client(request)), user)
    # Checked before the password: a refused guess costs no argon2 work and learns nothing.
    _refuse_when_limited(auth, keys)
    account = await accounts.authenticate(request.app.state.database, body.username, body.password)
    if account is None:
        auth.sign_in_failures.failed(keys)
        raise AuthError(401, "invalid_credentials", "The username or password is wrong.")
    auth.sign_in_failures.forget(user)
    return _token(auth, account.role, account.id)


@router.post(
    "/redeem",
    response_model=AccessToken,
    responses={401: {"model": ErrorResponse, "description": "unknown, used or expired code"}} | _429,
    openapi_extra={"security": []},
)
async def redeem(body: Redeem, request: Request) -> AccessToken:
    """Students: a one-time sign-in code (from a link) for an access token with a new opaque id."""
    auth = authenticator(request)
    keys = (f"redeem-{address_key(_client(request))}",)
    _refuse_when_limited(auth, keys)
    role = auth.signin_codes.redeem(body.code)
    if role is None:
        auth.sign_in_failures.failed(keys)
        raise AuthError(
            401, "invalid_code", "This sign-in link was already used or has expired. Ask for a new one."
        )
    return _token(auth, role, new_subject("stu"))


@router.post("/sign-out", status_code=204, response_class=Response, responses=_401)
async def sign_out(request: Request, claims: Annotated[Claims, Depends(require())]) -> Response:
    """Revoke the token this request was sent with (on every replica); others of the same subject
    stay valid. A session already running is not cut."""
    auth = authenticator(request)
    if claims is not OPEN_CLAIMS and auth.revocations is not None:
        await auth.revocations.revoke_token(claims)
    return Response(status_code=204)


@router.post("/ws-ticket", response_model=Ticket, responses=_401)
async def ws_ticket(
    request: Request, claims: Annotated[Claims, Depends(require())]
) -> Ticket:
    """A one-time ticket to open the WebSocket from a browser, which cannot set its headers. It
    is signed rather than stored, and its use is recorded in the database, so it works once on
    whichever replica the WebSocket reaches."""
    auth = authenticator(request)
    return Ticket(ticket=auth.issue_ws_ticket(claims), expires_in=auth.settings.ws_ticket_ttl_s)


@router.post("/signin-links", response_model=SignInLink, responses=_401 | _403)
async def signin_link(
    request: Request, _: Annotated[Claims, Depends(require(Role.TEACHER, Role.ADMIN))]
) -> SignInLink:
    """Teachers and admins: a new single-use student sign-in link."""
    auth = authenticator(request)
    code = _issue(auth.signin_codes, Role.STUDENT)
    return SignInLink(code=code, path=f"/#signin={code}", expires_in=int(auth.signin_codes.ttl_s))


@admin_router.post("/{subject_id}/revoke", response_model=Revoked, responses=_401 | _403)
async def revoke_subject(
    request: Request, subject_id: Annotated[str, Path(min_length=1, max_length=64)]
) -> Revoked:
    """Admins: refuse every token issued so far to this subject (stu_..., tch_..., adm_...), on
    every replica. New sign-ins work; sessions already running are not cut."""
    auth = authenticator(request)
    if auth.revocations is None:
        raise AuthError(503, "no_database", "Revocation needs the server's database.")
    not_before = await auth.revocations.revoke_subject(subject_id)
    log.info("revoked every token of %s issued up to %s", subject_id, not_before.isoformat())
    return Revoked(subject_id=subject_id, not_before=not_before)
