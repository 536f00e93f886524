"""Caps set at run time (overrides on top of the settings' defaults), and the ledger's indexes for
one student's or classroom's use in a time range.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cap_overrides",
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("owner_id", sa.String(64), nullable=False),
        sa.Column("stt_audio_ms", sa.BigInteger(), nullable=True),
        sa.Column("llm_tokens", sa.BigInteger(), nullable=True),
        sa.Column("tts_chars", sa.BigInteger(), nullable=True),
        sa.Column("cost_minor", sa.BigInteger(), nullable=True),
        sa.Column("period", sa.String(8), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("scope", "owner_id", name="pk_cap_overrides"),
        sa.CheckConstraint(
            "scope IN ('session', 'student', 'classroom', 'key')", name="ck_cap_overrides_known_scope"
        ),
        sa.CheckConstraint(
            "period IS NULL OR period IN ('day', 'month', 'total')", name="ck_cap_overrides_known_period"
        ),
        sa.CheckConstraint(
            "(stt_audio_ms IS NULL OR stt_audio_ms >= 0) AND (llm_tokens IS NULL OR llm_tokens >= 0) "
            "AND (tts_chars IS NULL OR tts_chars >= 0) AND (cost_minor IS NULL OR cost_minor >= 0)",
            name="ck_cap_overrides_limits_not_negative",
        ),
        sa.CheckConstraint(
            "scope <> 'session' OR (owner_id = '' AND period IS NULL AND cost_minor IS NULL)",
            name="ck_cap_overrides_session_caps_in_units",
        ),
    )
    op.create_index("ix_usage_records_student_id_recorded_at", "usage_records", ["student_id", "recorded_at"])
    op.create_index(
        "ix_usage_records_classroom_id_recorded_at", "usage_records", ["classroom_id", "recorded_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_usage_records_classroom_id_recorded_at", table_name="usage_records")
    op.drop_index("ix_usage_records_student_id_recorded_at", table_name="usage_records")
    op.drop_table("cap_overrides")
