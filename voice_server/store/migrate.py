"""Schema versions, run programmatically: no alembic.ini at run time, the scripts ship in the package.

A brand-new (empty) database is brought to the latest schema on first use; a database with an
older schema is left alone until someone runs `convergio-voice db upgrade`, so an upgrade of the
server never rewrites a school's data behind its back.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


class SchemaState(enum.StrEnum):
    EMPTY = "empty"  # no tables at all: a new database
    CURRENT = "current"
    BEHIND = "behind"  # an older revision of ours: needs `db upgrade`
    UNKNOWN = "unknown"  # tables but no revision we know (a newer server's, or not ours)


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    state: SchemaState
    current: str | None
    head: str


class SchemaError(RuntimeError):
    """The database's schema is not one this server can use; the message says what to do."""


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None, "the package ships at least one migration"
    return head


def _status(connection: Connection) -> SchemaStatus:
    head = head_revision()
    current = MigrationContext.configure(connection).get_current_revision()
    if current is None:
        # Alembic's own (empty) version table is what a full downgrade leaves: still a new database.
        tables = set(inspect(connection).get_table_names()) - {"alembic_version"}
        state = SchemaState.UNKNOWN if tables else SchemaState.EMPTY
    elif current == head:
        state = SchemaState.CURRENT
    else:
        known = {script.revision for script in ScriptDirectory.from_config(_config()).walk_revisions()}
        state = SchemaState.BEHIND if current in known else SchemaState.UNKNOWN
    return SchemaStatus(state, current, head)


def _upgrade(connection: Connection, revision: str) -> None:
    command.upgrade(_config(connection), revision)


# Replicas started together on a new PostgreSQL database would each find it empty and race to
# create the tables (one then fails on alembic_version): the first takes this lock, the others
# wait for it and then find the schema current. (SQLite is one server's embedded database.)
SCHEMA_LOCK_KEY = 0x636F6E76  # "conv"


def _lock_schema(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})


def _locked_upgrade(connection: Connection, revision: str) -> None:
    _lock_schema(connection)
    _upgrade(connection, revision)


def _ensure(connection: Connection) -> SchemaStatus:
    _lock_schema(connection)
    status = _status(connection)
    if status.state is SchemaState.EMPTY:
        _upgrade(connection, "head")
        status = _status(connection)
    return status


async def schema_status(engine: AsyncEngine) -> SchemaStatus:
    async with engine.connect() as connection:
        return await connection.run_sync(_status)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> SchemaStatus:
    """Apply the migrations up to `revision` (what `convergio-voice db upgrade` runs)."""
    async with engine.begin() as connection:
        await connection.run_sync(_locked_upgrade, revision)
    return await schema_status(engine)


async def ensure_schema(engine: AsyncEngine) -> SchemaStatus:
    """Make a new database usable, accept a current one, refuse anything else (for `serve`)."""
    async with engine.begin() as connection:
        status = await connection.run_sync(_ensure)
    if status.state is SchemaState.BEHIND:
        raise SchemaError(
            f"the database schema is at revision {status.current}, this server needs {status.head}: "
            "back up the database, then run `convergio-voice db upgrade`"
        )
    if status.state is SchemaState.UNKNOWN:
        raise SchemaError(
            f"the database has a schema this server does not know (revision {status.current or 'none'}, "
            f"expected {status.head}): it belongs to a newer server or to another application"
        )
    return status
