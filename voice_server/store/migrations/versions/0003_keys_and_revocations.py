"""Provider keys a school brings (encrypted at rest), and revoked access tokens.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provider_keys",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("label", sa.String(100), nullable=False),
        sa.Column("classroom_id", sa.String(64), nullable=True),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("fingerprint", sa.String(8), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_provider_keys"),
        sa.CheckConstraint(
            "provider IN ('azure-speech', 'azure-openai', 'openai-compatible')",
            name="ck_provider_keys_known_provider",
        ),
    )
    op.create_index("ix_provider_keys_classroom_id", "provider_keys", ["classroom_id"])
    op.create_table(
        "revoked_tokens",
        sa.Column("jti", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("jti", name="pk_revoked_tokens"),
    )
    op.create_index("ix_revoked_tokens_expires_at", "revoked_tokens", ["expires_at"])
    op.create_table(
        "subject_revocations",
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subject", name="pk_subject_revocations"),
    )
    op.create_index("ix_subject_revocations_expires_at", "subject_revocations", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_subject_revocations_expires_at", table_name="subject_revocations")
    op.drop_table("subject_revocations")
    op.drop_index("ix_revoked_tokens_expires_at", table_name="revoked_tokens")
    op.drop_table("revoked_tokens")
    op.drop_index("ix_provider_keys_classroom_id", table_name="provider_keys")
    op.drop_table("provider_keys")
