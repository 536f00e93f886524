"""The WebSocket handshake check, before the socket is accepted: Origin first, then credentials.

Browsers cannot set headers on a WebSocket, so a page first trades its access token for a
one-time ticket (POST /v1/auth/ws-ticket) and opens /v1/ws?ticket=...; the ticket works once,
for seconds, so the URL is worthless once used (and access logs redact it anyway). Other clients
send "Authorization: Bearer <access token>". A long-lived token in the URL is refused.
"""

from __future__ import annotations

import ipaddress
import logging
from urllib.parse import urlsplit

from fastapi import WebSocket

from voice_server.auth.guard import OPEN_CLAIMS, Authenticator, AuthError
from voice_server.auth.tokens import ALL_ROLES, Claims

log = logging.getLogger(__name__)

CLOSE_POLICY_VIOLATION = 1008


def origin_allowed(origin: str, host_header: str | None, bind_host: str, extra: list[str]) -> bool:
    """Is a page from `origin` allowed to open the socket?

    Allowed: the configured extra origins, and the server's own origin, i.e. the Origin names the
    same host and port the request was sent to (the Host header), as a loopback name, the bind
    address or an IP literal. A hostname other than those is refused even when it matches Host:
    that is what DNS rebinding looks like (evil.example resolving to 127.0.0.1).
    """
    normalised = origin.strip().rstrip("/").lower()
    if normalised in {o.strip().rstrip("/").lower() for o in extra}:
        return True
    parts = urlsplit(normalised)
    if parts.scheme not in ("http", "https") or not parts.hostname or not host_header:
        return False
    if parts.netloc != host_header.strip().lower():
        return False
    hostname = parts.hostname
    if hostname in ("localhost", bind_host.lower()):
        return True
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True


async def admit_websocket(websocket: WebSocket, auth: Authenticator, *, bind_host: str) -> Claims | None:
    """The caller's claims, or None after refusing the handshake (HTTP 403, nothing accepted)."""
    origin = websocket.headers.get("origin")
    if origin is not None and not origin_allowed(
        origin, websocket.headers.get("host"), bind_host, auth.settings.allowed_origins
    ):
        log.warning("websocket refused: Origin %r is not allowed (CONVERGIO_AUTH__ALLOWED_ORIGINS)", origin)
        await websocket.close(code=CLOSE_POLICY_VIOLATION)
        return None
    if auth.open:
        return OPEN_CLAIMS
    try:
        return await _credentials(websocket, auth)
    except AuthError as exc:
        log.info("websocket refused: %s", exc.code)  # the reason, never the credential
        await websocket.close(code=CLOSE_POLICY_VIOLATION)
        return None


async def _credentials(websocket: WebSocket, auth: Authenticator) -> Claims:
    params = websocket.query_params
    if "token" in params or "access_token" in params:
        raise AuthError(401, "token_in_url", "Send a one-time ticket in the URL, never an access token.")
    if (ticket := params.get("ticket")) is not None:
        claims = await auth.redeem_ws_ticket(ticket)
        if claims is None:
            raise AuthError(401, "invalid_ticket", "The ticket is unknown, used or expired.")
        # The token it was traded for may have been revoked in the seconds since.
        await auth.check_not_revoked(claims)
        return claims
    header = websocket.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return await auth.verify(token.strip() if scheme.lower() == "bearer" else None, ALL_ROLES)
