"""Password sign-in and code redemption: after 5 failures in 15 minutes from one address (or for
one username) the next try gets 429 with Retry-After, until the window has passed. The clock is
injected; nothing sleeps. No username reaches the log."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.auth.conftest import AuthApp, make_app
from voice_server.auth import accounts
from voice_server.auth.ratelimit import FailureLimiter
from voice_server.auth.tokens import Role

PASSWORD = "a long enough password"
USERNAME = "ms.rivera.limits"


@pytest.fixture
def clock(auth_app: AuthApp) -> list[float]:
    now = [0.0]
    settings = auth_app.app.state.settings.auth
    auth_app.app.state.auth.sign_in_failures = FailureLimiter(
        settings.max_sign_in_failures, settings.sign_in_failure_window_s, clock=lambda: now[0]
    )
    return now


def _sign_in(api: AuthApp, password: str, username: str = USERNAME):  # type: ignore[no-untyped-def]
    return api.http.post("/v1/auth/sign-in", json={"username": username, "password": password})


def test_five_wrong_passwords_then_429_until_the_window_passes(
    auth_app: AuthApp, clock: list[float], caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="aiosqlite")  # as `serve` sets it: it logs SQL parameters
    auth_app.http.portal.call(
        accounts.create_account, auth_app.app.state.database, USERNAME, PASSWORD, Role.TEACHER
    )
    for _ in range(5):
        assert _sign_in(auth_app, "wrong password!!").status_code == 401
        clock[0] += 60
    limited = _sign_in(auth_app, PASSWORD)  # even the right password waits: it is not even checked
    assert limited.status_code == 429
    assert limited.json()["error"]["code"] == "too_many_attempts"
    assert int(limited.headers["retry-after"]) == 900 - 300  # the first failure leaves the window then
    assert "minutes" in limited.json()["error"]["message"]

    clock[0] = 900.0  # the first failure is 15 minutes old
    assert _sign_in(auth_app, PASSWORD).status_code == 200
    assert USERNAME not in caplog.text and "rivera" not in caplog.text


def test_a_successful_sign_in_does_not_count(auth_app: AuthApp, clock: list[float]):
    auth_app.http.portal.call(
        accounts.create_account, auth_app.app.state.database, USERNAME, PASSWORD, Role.TEACHER
    )
    for _ in range(20):
        assert _sign_in(auth_app, PASSWORD).status_code == 200
    for _ in range(4):
        assert _sign_in(auth_app, "wrong password!!").status_code == 401
    assert _sign_in(auth_app, PASSWORD).status_code == 200


def test_one_address_guessing_many_usernames_is_limited(auth_app: AuthApp, clock: list[float]):
    for n in range(5):
        assert _sign_in(auth_app, "wrong password!!", username=f"guess{n}").status_code == 401
    assert _sign_in(auth_app, "wrong password!!", username="guess99").status_code == 429


def test_one_username_guessed_from_many_addresses_is_limited(tmp_path):
    app = make_app(tmp_path)
    address = ["198.51.100.0"]

    async def from_address(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**scope, "client": (address[0], 50000)}
        await app(scope, receive, send)

    with TestClient(from_address) as http:
        for n in range(6):
            address[0] = f"198.51.100.{n}"
            response = http.post("/v1/auth/sign-in", json={"username": USERNAME, "password": "wrong guess!"})
            assert response.status_code == (429 if n == 5 else 401)
        address[0] = "198.51.100.200"
        other = http.post("/v1/auth/sign-in", json={"username": "someone.else", "password": "x"})
        assert other.status_code == 401  # another name from a fresh address is not limited


def test_redeeming_codes_is_limited_per_address_too(auth_app: AuthApp, clock: list[float]):
    for _ in range(5):
        assert auth_app.http.post("/v1/auth/redeem", json={"code": "made-up"}).status_code == 401
    teacher = {"authorization": f"Bearer {auth_app.token(Role.TEACHER)}"}
    code = auth_app.http.post("/v1/auth/signin-links", headers=teacher).json()["code"]
    limited = auth_app.http.post("/v1/auth/redeem", json={"code": code})
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) == 900
    clock[0] = 900.0
    assert auth_app.http.post("/v1/auth/redeem", json={"code": code}).status_code == 200
