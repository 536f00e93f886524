"""Signed access tokens (JWT, HS256): role, an opaque subject id, an optional classroom scope.

A token never names a person: the subject is an opaque id, so tokens, logs and metrics that carry
it say nothing about the child or teacher behind it.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt

ALGORITHM = "HS256"
# Tokens of another service that shares the secret by mistake are still refused.
AUDIENCE = "convergio-voice"
# A WebSocket ticket is signed for this audience instead: it is no access token, and no access
# token is a ticket.
TICKET_AUDIENCE = "convergio-voice-ws-ticket"
MIN_SECRET_CHARS = 32


class Role(enum.StrEnum):
    STUDENT = "student"
    TEACHER = "teacher"
    ADMIN = "admin"


ALL_ROLES = frozenset(Role)


@dataclass(frozen=True, slots=True)
class Claims:
    subject: str
    role: Role
    classroom: str | None
    expires_at: datetime
    token_id: str
    # When it was signed: an admin's "revoke all" refuses the subject's tokens issued up to a moment.
    issued_at: datetime | None = None


class InvalidToken(Exception):
    """The token is missing, malformed, forged, expired or not ours; the message says which
    (and never repeats the token)."""


class TokenIssuer:
    def __init__(self, secret: str, *, ttl_s: int) -> None:
        if len(secret) < MIN_SECRET_CHARS:
            raise ValueError(f"the signing secret needs at least {MIN_SECRET_CHARS} characters")
        self._secret = secret
        self.ttl_s = ttl_s

    def mint(
        self,
        role: Role,
        subject: str,
        *,
        classroom: str | None = None,
        ttl_s: int | None = None,
        now: datetime | None = None,
    ) -> str:
        issued = now or datetime.now(UTC)
        payload: dict[str, object] = {
            "aud": AUDIENCE,
            "sub": subject,
            "role": role.value,
            "iat": issued,
            "exp": issued + timedelta(seconds=self.ttl_s if ttl_s is None else ttl_s),
            "jti": secrets.token_urlsafe(12),
        }
        if classroom is not None:
            payload["classroom"] = classroom
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM)

    def verify(self, token: str) -> Claims:
        try:
            # The algorithm list is fixed: a token cannot choose "none" or another key type.
            payload = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                options={"require": ["exp", "iat", "jti", "sub", "role", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired") from None
        except jwt.InvalidTokenError:
            raise InvalidToken("the token is not valid") from None
        try:
            role = Role(payload["role"])
        except ValueError:
            raise InvalidToken("the token has an unknown role") from None
        classroom = payload.get("classroom")
        if not isinstance(payload["sub"], str) or not (classroom is None or isinstance(classroom, str)):
            raise InvalidToken("the token is not valid")
        return Claims(
            subject=payload["sub"],
            role=role,
            classroom=classroom,
            expires_at=datetime.fromtimestamp(payload["exp"], UTC),
            token_id=str(payload["jti"]),
            issued_at=datetime.fromtimestamp(payload["iat"], UTC),
        )


    def mint_ticket(self, claims: Claims, *, ttl_s: int, now: datetime | None = None) -> str:
        """A one-time WebSocket ticket for the holder of `claims`: short-lived, for the ticket
        audience, carrying the access token's id and issue time so that a revocation of that
        token still refuses it. Any replica with the same secret can check it."""
        issued = now or datetime.now(UTC)
        payload: dict[str, object] = {
            "aud": TICKET_AUDIENCE,
            "sub": claims.subject,
            "role": claims.role.value,
            "iat": issued,
            "exp": issued + timedelta(seconds=ttl_s),
            "jti": secrets.token_urlsafe(12),
            "tok": claims.token_id,
            "tok_iat": int((claims.issued_at or issued).timestamp()),
            "tok_exp": int(claims.expires_at.timestamp()),
        }
        if claims.classroom is not None:
            payload["classroom"] = claims.classroom
        return jwt.encode(payload, self._secret, algorithm=ALGORITHM)

    def verify_ticket(self, ticket: str) -> tuple[Claims, str, datetime]:
        """The claims of the access token the ticket was traded for, the ticket's own id (to use
        it once) and when it expires. InvalidToken when it is not a valid, unexpired ticket."""
        try:
            payload = jwt.decode(
                ticket,
                self._secret,
                algorithms=[ALGORITHM],
                audience=TICKET_AUDIENCE,
                options={"require": ["exp", "iat", "jti", "sub", "role", "aud", "tok", "tok_iat", "tok_exp"]},
            )
            role = Role(payload["role"])
            classroom = payload.get("classroom")
            if not isinstance(payload["sub"], str) or not (classroom is None or isinstance(classroom, str)):
                raise ValueError
            claims = Claims(
                subject=payload["sub"],
                role=role,
                classroom=classroom,
                expires_at=datetime.fromtimestamp(int(payload["tok_exp"]), UTC),
                token_id=str(payload["tok"]),
                issued_at=datetime.fromtimestamp(int(payload["tok_iat"]), UTC),
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the ticket has expired") from None
        except (jwt.InvalidTokenError, ValueError, TypeError):
            raise InvalidToken("the ticket is not valid") from None
        return claims, str(payload["jti"]), datetime.fromtimestamp(payload["exp"], UTC)


def new_subject(prefix: str) -> str:
    """An opaque id for a new subject (e.g. "stu_3kZ..."): random, never derived from a name."""
    return f"{prefix}_{secrets.token_urlsafe(12)}"
