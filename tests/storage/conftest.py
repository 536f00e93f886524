"""Storage tests run twice: on SQLite (a file per test) and on a real PostgreSQL.

PostgreSQL is the database named by CONVERGIO_TEST_POSTGRES_URL, which `scripts/test.sh` starts
(a throwaway cluster). Without that variable its half of the tests is skipped, nothing else.
Each test gets an empty database: on PostgreSQL the public schema is dropped and recreated.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from voice_server.store.engine import create_engine

POSTGRES_URL_ENV = "CONVERGIO_TEST_POSTGRES_URL"
BACKENDS = ("sqlite", "postgresql")


async def reset_postgres(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("DROP SCHEMA public CASCADE"))
            await connection.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


def backend_url(backend: str, directory: Path) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{directory / 'data' / 'convergio.db'}"
    url = os.environ.get(POSTGRES_URL_ENV)
    if not url:
        why = f"{POSTGRES_URL_ENV} is not set (scripts/test.sh starts a PostgreSQL and sets it)"
        if os.environ.get("CI"):  # in CI a skip would pass for PostgreSQL without running on it
            pytest.fail(why)
        pytest.skip(why)
    return url


@pytest.fixture(params=BACKENDS)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database on each backend."""
    url = backend_url(request.param, tmp_path)
    if request.param == "postgresql":
        await reset_postgres(url)
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()
