"""Revoked access tokens, in the database so every replica refuses them.

Two ways to revoke: one token by its `jti` (sign-out), or every token of a subject issued up to a
moment (an admin's "revoke all", for a lost device or a departed teacher). Rows outlive the
tokens they refuse by nothing: each carries when it stops mattering, and is purged after that.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from voice_server.auth.tokens import Claims
from voice_server.store.schema import revoked_tokens, subject_revocations

# The longest an access token can live (AuthSettings.access_token_ttl_s's upper bound): a subject
# revocation older than this has no token left to refuse.
MAX_TOKEN_TTL = timedelta(hours=24)


def _utc(moment: datetime) -> datetime:
    # SQLite gives back naive datetimes; they were written in UTC.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


class Revocations:
    def __init__(
        self, engine: AsyncEngine, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.engine = engine
        self._clock = clock

    async def revoke_token(self, claims: Claims) -> None:
        """This one token is refused from now on (signing out)."""
        try:
            async with self.engine.begin() as connection:
                await self._purge(connection)
                await connection.execute(
                    insert(revoked_tokens).values(
                        jti=claims.token_id, subject=claims.subject, expires_at=claims.expires_at
                    )
                )
        except IntegrityError:
            pass  # signed out twice: already refused

    async def use_once(self, token_id: str, subject: str, expires_at: datetime) -> bool:
        """True the first time a one-time credential (a WebSocket ticket) is used, on any replica:
        its id is recorded with the revoked tokens until it would have expired anyway."""
        try:
            async with self.engine.begin() as connection:
                await self._purge(connection)
                await connection.execute(
                    insert(revoked_tokens).values(jti=token_id, subject=subject, expires_at=expires_at)
                )
        except IntegrityError:
            return False  # used already
        return True

    async def revoke_subject(self, subject: str) -> datetime:
        """Every token of `subject` issued up to now is refused; tokens issued later are not.
        Returns that moment (whole seconds, as tokens' `iat` are: a token issued in the same
        second is refused too, and signing in again a second later works)."""
        not_before = self._clock().astimezone(UTC).replace(microsecond=0)
        try:
            async with self.engine.begin() as connection:
                await self._purge(connection)
                await connection.execute(
                    delete(subject_revocations).where(subject_revocations.c.subject == subject)
                )
                await connection.execute(
                    insert(subject_revocations).values(
                        subject=subject, not_before=not_before, expires_at=not_before + MAX_TOKEN_TTL
                    )
                )
        except IntegrityError:
            pass  # another admin revoked the same subject at the same moment
        return not_before

    async def is_revoked(self, claims: Claims) -> bool:
        # Two primary-key lookups on one connection: cheap enough for every request.
        async with self.engine.connect() as connection:
            by_id = await connection.execute(
                select(revoked_tokens.c.jti).where(revoked_tokens.c.jti == claims.token_id)
            )
            if by_id.first() is not None:
                return True
            not_before = (
                await connection.execute(
                    select(subject_revocations.c.not_before).where(
                        subject_revocations.c.subject == claims.subject
                    )
                )
            ).scalar_one_or_none()
        return not_before is not None and (claims.issued_at is None or claims.issued_at <= _utc(not_before))

    async def _purge(self, connection: AsyncConnection) -> None:
        now = self._clock()
        await connection.execute(delete(revoked_tokens).where(revoked_tokens.c.expires_at < now))
        await connection.execute(delete(subject_revocations).where(subject_revocations.c.expires_at < now))
