"""Classrooms: the classes teachers run, their students and sessions, transcripts as heard (kept
for the classroom's retention period), teachers' guidance notes and the append-only audit log.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "classrooms",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("teacher_id", sa.String(64), nullable=False),
        sa.Column("join_code", sa.String(16), nullable=False),
        sa.Column("personas", sa.Text(), nullable=False),
        sa.Column("stt_audio_ms", sa.BigInteger(), nullable=True),
        sa.Column("llm_tokens", sa.BigInteger(), nullable=True),
        sa.Column("tts_chars", sa.BigInteger(), nullable=True),
        sa.Column("patience_ms", sa.Integer(), nullable=True),
        sa.Column("retention_days", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_classrooms"),
        sa.CheckConstraint(
            "retention_days >= 1 AND retention_days <= 3650", name="ck_classrooms_retention_in_range"
        ),
    )
    op.create_index("ix_classrooms_join_code", "classrooms", ["join_code"], unique=True)
    op.create_index("ix_classrooms_teacher_id", "classrooms", ["teacher_id"])
    op.create_table(
        "classroom_students",
        sa.Column("student_id", sa.String(64), nullable=False),
        sa.Column("classroom_id", sa.String(64), nullable=False),
        sa.Column("nickname", sa.String(40), nullable=True),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("student_id", name="pk_classroom_students"),
    )
    op.create_index("ix_classroom_students_classroom_id", "classroom_students", ["classroom_id"])
    op.create_table(
        "classroom_sessions",
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("classroom_id", sa.String(64), nullable=False),
        sa.Column("student_id", sa.String(64), nullable=False),
        sa.Column("persona", sa.String(64), nullable=False),
        sa.Column("instance", sa.String(128), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("session_id", name="pk_classroom_sessions"),
        sa.CheckConstraint(
            "status IN ('live', 'paused', 'ended')", name="ck_classroom_sessions_known_status"
        ),
    )
    op.create_index(
        "ix_classroom_sessions_classroom_id_status", "classroom_sessions", ["classroom_id", "status"]
    )
    op.create_index("ix_classroom_sessions_student_id", "classroom_sessions", ["student_id"])
    op.create_index("ix_classroom_sessions_started_at", "classroom_sessions", ["started_at"])
    op.create_table(
        "transcript_lines",
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("turn_id", sa.String(64), nullable=False),
        sa.Column("classroom_id", sa.String(64), nullable=True),
        sa.Column("student_id", sa.String(64), nullable=True),
        sa.Column("speaker", sa.String(8), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("interrupted", sa.Boolean(), nullable=False),
        sa.Column("said_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("session_id", "seq", name="pk_transcript_lines"),
        sa.CheckConstraint("speaker IN ('student', 'tutor')", name="ck_transcript_lines_known_speaker"),
    )
    op.create_index("ix_transcript_lines_said_at", "transcript_lines", ["said_at"])
    op.create_index("ix_transcript_lines_student_id", "transcript_lines", ["student_id"])
    op.create_index(
        "ix_transcript_lines_classroom_id_said_at", "transcript_lines", ["classroom_id", "said_at"]
    )
    op.create_table(
        "guidance_notes",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("session_id", sa.String(64), nullable=False),
        sa.Column("classroom_id", sa.String(64), nullable=False),
        sa.Column("student_id", sa.String(64), nullable=False),
        sa.Column("teacher_id", sa.String(64), nullable=False),
        sa.Column("text", sa.String(300), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_guidance_notes"),
    )
    op.create_index("ix_guidance_notes_student_id", "guidance_notes", ["student_id"])
    op.create_index("ix_guidance_notes_created_at", "guidance_notes", ["created_at"])
    op.create_table(
        "audit_log",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False, autoincrement=True
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_id", sa.String(64), nullable=False),
        sa.Column("actor_role", sa.String(16), nullable=False),
        sa.Column("action", sa.String(48), nullable=False),
        sa.Column("classroom_id", sa.String(64), nullable=True),
        sa.Column("session_id", sa.String(64), nullable=True),
        sa.Column("target_id", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_classroom_id_at", "audit_log", ["classroom_id", "at"])


def downgrade() -> None:
    for table in (
        "audit_log", "guidance_notes", "transcript_lines", "classroom_sessions", "classroom_students",
        "classrooms",
    ):
        op.drop_table(table)
