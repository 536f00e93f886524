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


# Classrooms in the database: the matrix's teacher (subject test_teacher) created OWN_CLASSROOM,
# another teacher OTHER_CLASSROOM; each has a session (the matrix's commands reach a live one).
OWN_CLASSROOM, OTHER_CLASSROOM = "cls_own", "cls_other"
OWN_SESSION, OTHER_SESSION = "sess_own", "sess_other"


async def _seed_classrooms(app: FastAPI) -> None:
    from datetime import UTC

    from sqlalchemy import insert

    from voice_server.store.schema import classroom_sessions, classrooms

    now = datetime.now(UTC)
    async with app.state.database.begin() as connection:
        for room, teacher, code, session in (
            (OWN_CLASSROOM, "test_teacher", "OWNAAA", OWN_SESSION),
            (OTHER_CLASSROOM, "tch_someone_else", "OTHAAA", OTHER_SESSION),
        ):
            await connection.execute(insert(classrooms).values(
                id=room, name=room, teacher_id=teacher, join_code=code, personas="[]",
                retention_days=30, created_at=now,
            ))
            await connection.execute(insert(classroom_sessions).values(
                session_id=session, classroom_id=room, student_id="stu_x", persona="p",
                instance="elsewhere", status="live", started_at=now,
            ))


@pytest.fixture
def auth_app(tmp_path: Path) -> Iterator[AuthApp]:
    app = make_app(tmp_path)
    with TestClient(app, base_url="http://127.0.0.1:8765") as http:
        http.portal.call(_seed_classrooms, app)
        yield AuthApp(app, http)
