"""Usage ledger: usage records keyed for idempotency, and turn states for crash settlement.

Revision ID: 0001
Revises:
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "usage_records",
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("turn_id", sa.String(64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("provider", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("speculative", sa.Boolean(), nullable=False),
        sa.Column("student_id", sa.String(64), nullable=True),
        sa.Column("classroom_id", sa.String(64), nullable=True),
        sa.Column("key_id", sa.String(64), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint(
            "session_id", "turn_id", "attempt", "kind", "provider", "model", name="pk_usage_records"
        ),
        sa.CheckConstraint("amount >= 0", name="ck_usage_records_amount_not_negative"),
    )
    op.create_index("ix_usage_records_recorded_at", "usage_records", ["recorded_at"])
    op.create_table(
        "turn_states",
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("turn_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("instance", sa.String(128), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "turn_id", name="pk_turn_states"),
        sa.CheckConstraint("status IN ('in_flight', 'done', 'settled')", name="ck_turn_states_known_status"),
    )
    op.create_index("ix_turn_states_instance_status", "turn_states", ["instance", "status"])


def downgrade() -> None:
    op.drop_index("ix_turn_states_instance_status", table_name="turn_states")
    op.drop_table("turn_states")
    op.drop_index("ix_usage_records_recorded_at", table_name="usage_records")
    op.drop_table("usage_records")
