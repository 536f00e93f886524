"""HTTP, admins only: store a provider key, list keys (masked), replace a key's secret, delete one.

A secret goes one way: in, in a request body. No response carries it, and a refused request's
error names the field and the rule, never the value (FastAPI's own 422 body would echo it).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, SecretStr

from voice_server.http_errors import error_response
from voice_server.keys import store
from voice_server.keys.resolver import ProviderKeys
from voice_server.keys.store import KeyInfo, KeyProvider, UnknownKey

log = logging.getLogger(__name__)




router = APIRouter(prefix="/api/v1/keys", tags=["keys"])


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class NewKey(BaseModel):
    provider: KeyProvider
    label: str = Field(min_length=1, max_length=100, description="for admins to tell keys apart")
    classroom_id: str | None = Field(None, max_length=64, description="the classroom it pays for; null: any")
    secret: SecretStr = Field(
        description=f"the provider's key ({store.MIN_SECRET_CHARS} to {store.MAX_SECRET_CHARS} characters); "
        "write-only: no response ever returns it"
    )


class NewSecret(BaseModel):
    secret: SecretStr = Field(description="the provider's new key; write-only")


class KeyOut(BaseModel):
    id: str = Field(description="opaque (key_...): what usage rows and caps name")
    provider: KeyProvider
    label: str
    classroom_id: str | None
    fingerprint: str = Field(description=f"the key's last {store.FINGERPRINT_CHARS} characters")
    created_at: datetime
    rotated_at: datetime | None = Field(description="when the secret was last replaced; null: never")

    @classmethod
    def of(cls, info: KeyInfo) -> KeyOut:
        return cls(
            id=info.id, provider=KeyProvider(info.provider), label=info.label, classroom_id=info.classroom_id,
            fingerprint=info.fingerprint, created_at=info.created_at, rotated_at=info.rotated_at,
        )


_404 = {404: {"model": ErrorResponse, "description": "no key with this id"}}
_422 = {
    422: {"model": ErrorResponse, "description": "a field is missing or breaks a rule (named, never echoed)"}
}


def _keys(request: Request) -> ProviderKeys:
    return request.app.state.keys  # type: ignore[no-any-return]


@router.post("", status_code=201, response_model=KeyOut, responses=_422)
async def create_key(body: NewKey, request: Request) -> KeyOut | JSONResponse:
    """Store a school's provider key, encrypted under the server secret."""
    keys = _keys(request)
    try:
        info = await store.create_key(
            keys.engine, keys.box, provider=body.provider.value, label=body.label, secret=body.secret,
            classroom_id=body.classroom_id,
        )
    except ValueError as exc:
        return error_response(422, "invalid_request", f"secret: {exc}")
    log.info("provider key %s (%s) stored", info.id, info.provider)
    return KeyOut.of(info)


@router.get("", response_model=list[KeyOut])
async def list_keys(
    request: Request,
    classroom_id: Annotated[str | None, Query(max_length=64, description="only this classroom's")] = None,
) -> list[KeyOut]:
    """Every stored key, masked: its id, provider, label, classroom and fingerprint."""
    stored = await store.list_keys(_keys(request).engine, classroom_id=classroom_id)
    return [KeyOut.of(info) for info in stored]


@router.put("/{key_id}/secret", response_model=KeyOut, responses=_404 | _422)
async def replace_secret(key_id: str, body: NewSecret, request: Request) -> KeyOut | JSONResponse:
    """The school changed its key at the provider: the new secret, under the same id."""
    keys = _keys(request)
    try:
        info = await store.replace_secret(keys.engine, keys.box, key_id, body.secret)
    except UnknownKey as exc:
        return error_response(404, "unknown_key", str(exc))
    except ValueError as exc:
        return error_response(422, "invalid_request", f"secret: {exc}")
    log.info("provider key %s replaced", key_id)
    return KeyOut.of(info)


@router.delete("/{key_id}", status_code=204, response_class=Response, responses=_404)
async def delete_key(key_id: str, request: Request) -> Response:
    try:
        await store.delete_key(_keys(request).engine, key_id)
    except UnknownKey as exc:
        return error_response(404, "unknown_key", str(exc))
    log.info("provider key %s deleted", key_id)
    return Response(status_code=204)
