"""Alembic environment: always run from `voice_server.store.migrate`, on the connection it passes."""

from __future__ import annotations

from alembic import context

from voice_server.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `convergio-voice db upgrade`, not the alembic command line")

# Batch mode lets later migrations alter SQLite tables (it copies the table, as SQLite requires).
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
