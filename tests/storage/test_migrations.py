"""Schema migrations: a new database builds itself, an outdated one is upgraded only on request."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.storage.conftest import backend_url, reset_postgres
from voice_server import cli
from voice_server.store import migrate
from voice_server.store.engine import create_engine
from voice_server.store.migrate import SchemaError, SchemaState

NEXT_REVISION = '''
"""A later release's migration, as the tests imagine it."""
import sqlalchemy as sa
from alembic import op

revision = "next"
down_revision = "{head}"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("usage_records", sa.Column("note", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("usage_records") as batch:
        batch.drop_column("note")
'''


@pytest.fixture
def newer_release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The migrations of a server one revision ahead of this one; returns that revision."""
    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS_DIR, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    head = migrate.head_revision()  # the release after this one builds on its latest revision
    (scripts / "versions" / "next_release.py").write_text(NEXT_REVISION.replace("{head}", head))
    monkeypatch.setattr(migrate, "MIGRATIONS_DIR", scripts)
    return "next"


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return set(await connection.run_sync(lambda c: inspect(c).get_table_names()))


async def test_an_empty_database_is_migrated_to_the_latest_schema(engine: AsyncEngine) -> None:
    assert (await migrate.schema_status(engine)).state is SchemaState.EMPTY
    status = await migrate.ensure_schema(engine)
    assert status.state is SchemaState.CURRENT and status.current == migrate.head_revision()
    assert {
        "usage_records", "turn_states", "accounts", "provider_keys", "revoked_tokens", "subject_revocations",
        "cap_overrides",
        "alembic_version",
    } <= await _tables(engine)
    assert (await migrate.ensure_schema(engine)).state is SchemaState.CURRENT  # again: nothing to do


async def test_replicas_starting_together_on_a_new_postgresql_database_all_find_it_ready(
    tmp_path: Path,
) -> None:
    # Each replica has its own connections; the first to take the schema lock builds the
    # tables, the others wait for it and find them current (without the lock one failed).
    # Replicas share PostgreSQL (SQLite is the embedded database of one server).
    database_url = backend_url("postgresql", tmp_path)
    await reset_postgres(database_url)
    replicas = [create_engine(database_url) for _ in range(3)]
    try:
        statuses = await asyncio.gather(*(migrate.ensure_schema(r) for r in replicas))
    finally:
        for replica in replicas:
            await replica.dispose()
    assert [s.state for s in statuses] == [SchemaState.CURRENT] * 3


async def test_migrations_go_down_to_nothing_and_up_again(engine: AsyncEngine) -> None:
    await migrate.upgrade(engine)
    async with engine.begin() as connection:
        await connection.run_sync(lambda c: migrate.command.downgrade(migrate._config(c), "base"))
    assert await _tables(engine) <= {"alembic_version"}
    assert (await migrate.schema_status(engine)).state is SchemaState.EMPTY
    assert (await migrate.upgrade(engine)).state is SchemaState.CURRENT


async def test_an_outdated_database_is_refused_until_upgraded(
    engine: AsyncEngine, newer_release: str
) -> None:
    await migrate.upgrade(engine, "0001")  # made by the previous release
    status = await migrate.schema_status(engine)
    assert (status.state, status.current, status.head) == (SchemaState.BEHIND, "0001", newer_release)
    with pytest.raises(SchemaError, match="convergio-voice db upgrade"):
        await migrate.ensure_schema(engine)
    assert (await migrate.upgrade(engine)).current == newer_release
    assert (await migrate.ensure_schema(engine)).state is SchemaState.CURRENT


async def test_a_schema_from_a_newer_server_or_another_application_is_refused(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE somebody_elses (id INTEGER PRIMARY KEY)"))
    assert (await migrate.schema_status(engine)).state is SchemaState.UNKNOWN
    with pytest.raises(SchemaError, match="does not know"):
        await migrate.ensure_schema(engine)


def _use_database(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    monkeypatch.setenv("CONVERGIO_STORAGE__URL", url)
    # Engines the CLI validates but never loads here: serve stops before any model.
    monkeypatch.setenv("CONVERGIO_ENGINES__TURN", "none")


async def _at_revision(url: str, revision: str) -> None:
    from voice_server.store.engine import create_engine

    engine = create_engine(url)
    try:
        await migrate.upgrade(engine, revision)
    finally:
        await engine.dispose()


def test_serve_refuses_an_outdated_database_and_says_how_to_upgrade(
    database_url: str, newer_release: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import asyncio

    asyncio.run(_at_revision(database_url, "0001"))
    _use_database(monkeypatch, database_url)
    monkeypatch.setattr(
        "uvicorn.Server.run", lambda self: pytest.fail("serve started on an outdated database")
    )

    assert cli.main(["serve"]) == 2
    assert "convergio-voice db upgrade" in capsys.readouterr().err
    assert cli.main(["db", "current"]) == 1  # scripts can ask whether an upgrade is due

    assert cli.main(["db", "upgrade"]) == 0
    assert cli.main(["db", "current"]) == 0
    assert f"revision {newer_release}" in capsys.readouterr().out


def test_serve_creates_a_new_database_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONVERGIO_STORAGE__DATA_DIR", str(tmp_path / "fresh" / "data"))
    monkeypatch.setenv("CONVERGIO_ENGINES__TURN", "none")
    started: list[bool] = []
    monkeypatch.setattr("uvicorn.Server.run", lambda self: started.append(True))
    assert cli.main(["serve"]) == 0 and started
    assert (tmp_path / "fresh" / "data" / "convergio.db").exists()
    assert cli.main(["db", "current"]) == 0
    assert "current" in capsys.readouterr().out


async def test_the_migrations_build_exactly_the_tables_the_code_queries(engine: AsyncEngine) -> None:
    """schema.py and the migration scripts agree: autogenerate finds nothing to add or change."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from voice_server.store.schema import metadata

    await migrate.upgrade(engine)
    async with engine.connect() as connection:
        differences = await connection.run_sync(
            lambda c: compare_metadata(MigrationContext.configure(c), metadata)
        )
    assert differences == []
