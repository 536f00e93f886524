"""Checks a request's bearer token and role; FastAPI dependencies that also declare the security
scheme in the served OpenAPI."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from voice_server.auth.onetime import OneTimeCodes
from voice_server.auth.ratelimit import FailureLimiter
from voice_server.auth.revocation import Revocations
from voice_server.auth.tokens import ALL_ROLES, Claims, InvalidToken, Role, TokenIssuer
from voice_server.settings import AuthSettings

log = logging.getLogger(__name__)

# The one scheme every protected route declares (OpenAPI "bearerAuth").
bearer_scheme = HTTPBearer(
    scheme_name="bearerAuth",
    bearerFormat="JWT",
    description="An access token from POST /v1/auth/sign-in or POST /v1/auth/redeem.",
    auto_error=False,
)
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)]


class AuthError(Exception):
    """Rendered as the server's usual error body: 401 (who are you?), 403 (not allowed), 429 (too
    many failed tries; `headers` then has Retry-After)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # another name could resolve anywhere


class OpenModeRefused(ValueError):
    pass


def check_open_mode(settings: AuthSettings, host: str) -> None:
    """Open mode (no sign-in) only where nobody else can reach the server."""
    if settings.mode == "open" and not is_loopback(host):
        raise OpenModeRefused(
            f"open mode (no sign-in) is refused on {host}: it is allowed only on a loopback address "
            "such as 127.0.0.1; drop --open / CONVERGIO_AUTH__MODE=open to require sign-in"
        )


# What an open-mode request acts as: one local person with every right, as before accounts.
OPEN_CLAIMS = Claims("local", Role.ADMIN, None, datetime.max.replace(tzinfo=UTC), "open")


@dataclass
class Authenticator:
    """The server's auth state: the token issuer, its one-time codes, the count of failed
    sign-ins and (once the app has a database) the revoked tokens."""

    settings: AuthSettings
    issuer: TokenIssuer
    signin_codes: OneTimeCodes[Role] = field(init=False)
    sign_in_failures: FailureLimiter = field(init=False)
    revocations: Revocations | None = None
    # Tickets used, where there is no database to record them in (an app embedded without one).
    _used_tickets: dict[str, datetime] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.signin_codes = OneTimeCodes(self.settings.signin_code_ttl_s)
        self.sign_in_failures = FailureLimiter(
            self.settings.max_sign_in_failures, self.settings.sign_in_failure_window_s
        )

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> Authenticator:
        if settings.secret is None:
            # `serve` always passes a kept secret; an app built without one (tests, embedding)
            # signs with a fresh one, valid until it stops.
            if settings.mode != "open":
                log.warning("no CONVERGIO_AUTH__SECRET: tokens are valid only until this server stops")
            secret = secrets.token_urlsafe(48)
        else:
            secret = settings.secret.get_secret_value()
        return cls(settings, TokenIssuer(secret, ttl_s=settings.access_token_ttl_s))

    @property
    def open(self) -> bool:
        return self.settings.mode == "open"

    async def verify(self, token: str | None, roles: frozenset[Role]) -> Claims:
        """The claims of a token that is signed, unexpired, not revoked and of one of `roles`;
        AuthError otherwise (401 before 403: a revoked admin token is refused as revoked)."""
        if self.open:
            return OPEN_CLAIMS
        if not token:
            raise AuthError(401, "unauthenticated", "Sign in first: send an access token as a bearer token.")
        try:
            claims = self.issuer.verify(token)
        except InvalidToken as exc:
            raise AuthError(401, "invalid_token", f"Sign in again: {exc}.") from None
        await self.check_not_revoked(claims)
        if claims.role not in roles:
            raise AuthError(403, "forbidden", "Your role may not use this.")
        return claims

    def issue_ws_ticket(self, claims: Claims) -> str:
        """A one-time WebSocket ticket: signed, not stored, so any replica can take it."""
        return self.issuer.mint_ticket(claims, ttl_s=self.settings.ws_ticket_ttl_s)

    async def redeem_ws_ticket(self, ticket: str) -> Claims | None:
        """The claims it was issued for, the first time it is used anywhere; None when it is
        forged, expired or used already."""
        try:
            claims, ticket_id, expires_at = self.issuer.verify_ticket(ticket)
        except InvalidToken:
            return None
        if self.revocations is not None:
            return claims if await self.revocations.use_once(ticket_id, claims.subject, expires_at) else None
        now = datetime.now(UTC)
        self._used_tickets = {k: v for k, v in self._used_tickets.items() if v > now}
        if ticket_id in self._used_tickets:
            return None
        self._used_tickets[ticket_id] = expires_at
        return claims

    async def check_not_revoked(self, claims: Claims) -> None:
        if self.revocations is not None and await self.revocations.is_revoked(claims):
            raise AuthError(401, "invalid_token", "Sign in again: the token was revoked.")

    def is_metrics_token(self, token: str | None) -> bool:
        expected = self.settings.metrics_token
        return bool(token) and expected is not None and hmac.compare_digest(
            token.encode(), expected.get_secret_value().encode()
        )


def authenticator(request: Request) -> Authenticator:
    return request.app.state.auth  # type: ignore[no-any-return]


def require(*roles: Role) -> Callable[..., Awaitable[Claims]]:
    """A dependency: the caller's claims when its token is valid and its role one of `roles`
    (every role when none is named)."""
    allowed = frozenset(roles) or ALL_ROLES

    async def dependency(request: Request, credentials: BearerCredentials) -> Claims:
        return await authenticator(request).verify(credentials.credentials if credentials else None, allowed)

    return dependency


async def require_metrics_reader(request: Request, credentials: BearerCredentials) -> None:
    """/metrics: an admin's token, or the scrape token from configuration."""
    auth = authenticator(request)
    token = credentials.credentials if credentials else None
    if auth.is_metrics_token(token):
        return
    await auth.verify(token, frozenset({Role.ADMIN}))
