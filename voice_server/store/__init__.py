"""Durable state: one database (SQLite embedded, PostgreSQL in production), its schema and migrations."""
