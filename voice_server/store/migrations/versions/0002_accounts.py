"""Accounts: teachers and admins who sign in with a password (argon2 hashes).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_accounts"),
        sa.CheckConstraint("role IN ('teacher', 'admin')", name="ck_accounts_known_role"),
    )
    op.create_index("ix_accounts_username", "accounts", ["username"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_accounts_username", table_name="accounts")
    op.drop_table("accounts")
