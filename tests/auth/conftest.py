"""An app with sign-in on, in-process: a known secret, no models loaded, a throwaway database."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from voice_server.app import create_app
from voice_server.auth.tokens import Role, TokenIssuer
from voice_server.settings import Settings

SECRET = "auth-tests-secret-" + "abcdefghijklmnop" * 3
OTHER_SECRET = "someone-elses-secret-" + "qrstuvwxyz012345" * 3
METRICS_TOKEN = "scrape-token-0123456789"


async def _no_models() -> None:
    """Models are not what these tests are about."""


def make_app(tmp_path: Path, *, database_url: str | None = None, **auth: object) -> FastAPI:
    settings = Settings(
        storage={"data_dir": tmp_path, "url": database_url},  # type: ignore[arg-type]
        auth={"secret": SECRET, "metrics_token": METRICS_TOKEN, **auth},  # type: ignore[arg-type]
    )
    app = create_app(settings)
    app.state.hub.load = _no_models
    return app


@dataclass
class AuthApp:
    app: FastAPI
    http: TestClient

    def token(
        self, role: Role, *, ttl_s: int = 600, secret: str = SECRET, subject: str | None = None,
        now: datetime | None = None, classroom: str | None = None,
    ) -> str:
        return TokenIssuer(secret, ttl_s=ttl_s).mint(
            role, subject or f"test_{role.value}", now=now, classroom=classroom
        )

    def bearer(self, role: Role, **kwargs: Any) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token(role, **kwargs)}"}


@pytest.fixture
def auth_app(tmp_path: Path) -> Iterator[AuthApp]:
    app = make_app(tmp_path)
    with TestClient(app, base_url="http://127.0.0.1:8765") as http:
        yield AuthApp(app, http)
