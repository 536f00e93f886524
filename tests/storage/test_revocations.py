"""Revoked tokens, on each backend: one token (sign-out), or every token of a subject issued up to
a moment; rows are purged once no token they refuse can still be valid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from voice_server.auth.revocation import MAX_TOKEN_TTL, Revocations
from voice_server.auth.tokens import Claims, Role, TokenIssuer
from voice_server.store import migrate
from voice_server.store.schema import revoked_tokens, subject_revocations

ISSUER = TokenIssuer("revocation-tests-secret-" + "x" * 32, ttl_s=3600)
T0 = datetime(2026, 12, 1, 9, 0, 0, tzinfo=UTC)


@pytest.fixture
async def db(engine: AsyncEngine) -> AsyncEngine:
    await migrate.upgrade(engine)
    return engine


def claims(subject: str = "tch_1", at: datetime = T0, ttl_s: int = 3600) -> Claims:
    """The claims of a token issued `at` (past ones included: expiry is not what is tested here)."""
    token = ISSUER.mint(Role.TEACHER, subject, now=at, ttl_s=ttl_s)
    payload = jwt.decode(token, options={"verify_signature": False})
    return Claims(
        subject, Role.TEACHER, None, datetime.fromtimestamp(payload["exp"], UTC), payload["jti"],
        datetime.fromtimestamp(payload["iat"], UTC),
    )


async def _count(engine: AsyncEngine, table) -> int:  # type: ignore[no-untyped-def]
    async with engine.connect() as connection:
        return int((await connection.execute(select(func.count()).select_from(table))).scalar_one())


async def test_signing_out_revokes_that_token_only(db: AsyncEngine):
    revocations = Revocations(db, clock=lambda: T0)
    mine, other_device = claims(), claims()
    await revocations.revoke_token(mine)
    await revocations.revoke_token(mine)  # twice: still one refusal, no error
    assert await revocations.is_revoked(mine)
    assert not await revocations.is_revoked(other_device)
    assert await _count(db, revoked_tokens) == 1


async def test_revoking_a_subject_refuses_its_tokens_issued_until_then_not_later_ones(db: AsyncEngine):
    now = [T0 + timedelta(minutes=30, microseconds=500)]
    revocations = Revocations(db, clock=lambda: now[0])
    earlier, same_second = claims(at=T0), claims(at=T0 + timedelta(minutes=30))
    later, someone_else = claims(at=T0 + timedelta(minutes=30, seconds=1)), claims("tch_2", at=T0)
    not_before = await revocations.revoke_subject("tch_1")
    assert not_before == T0 + timedelta(minutes=30)
    assert await revocations.is_revoked(earlier) and await revocations.is_revoked(same_second)
    assert not await revocations.is_revoked(later)
    assert not await revocations.is_revoked(someone_else)
    now[0] += timedelta(minutes=5)
    await revocations.revoke_subject("tch_1")  # again, later: moves the moment on
    assert await revocations.is_revoked(later)
    assert await _count(db, subject_revocations) == 1


async def test_rows_are_purged_once_the_tokens_they_refuse_have_expired(db: AsyncEngine):
    now = [T0]
    revocations = Revocations(db, clock=lambda: now[0])
    await revocations.revoke_token(claims(at=T0, ttl_s=600))
    await revocations.revoke_subject("tch_9")
    now[0] = T0 + MAX_TOKEN_TTL + timedelta(seconds=1)
    fresh = claims("tch_3", at=now[0] - timedelta(seconds=5))
    await revocations.revoke_token(fresh)  # each revocation purges what no longer matters
    assert await _count(db, revoked_tokens) == 1 and await _count(db, subject_revocations) == 0
    assert await revocations.is_revoked(fresh)
