"""The tables, as SQLAlchemy Core metadata. Migrations (not `create_all`) build them in a database;
this module is what the code queries and what `alembic revision --autogenerate` compares with."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "pk": "pk_%(table_name)s",
    }
)

TURN_STATUSES = ("in_flight", "done", "settled")

# One row per idempotency key. `amount` is the running total the metering stage reported for the
# key, so the row keeps the largest one seen and a replayed record changes nothing.
usage_records = Table(
    "usage_records",
    metadata,
    Column("session_id", String(64), nullable=False),
    Column("turn_id", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("provider", String(64), nullable=False),
    Column("model", String(128), nullable=False),
    Column("amount", BigInteger, nullable=False),
    # Work thrown away (a discarded speculative attempt, a prefill): paid for, not part of an answer.
    Column("speculative", Boolean, nullable=False),
    # Opaque ids, filled in once accounts exist.
    Column("student_id", String(64), nullable=True),
    Column("classroom_id", String(64), nullable=True),
    Column("key_id", String(64), nullable=True),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("session_id", "turn_id", "attempt", "kind", "provider", "model"),
    CheckConstraint("amount >= 0", name="amount_not_negative"),
    Index(None, "recorded_at"),
    # One student's or classroom's use in a time range (the usage API, a shared cap's period).
    Index(None, "student_id", "recorded_at"),
    Index(None, "classroom_id", "recorded_at"),
)

# Where each turn stands, so a restart can tell the turns a crash interrupted.
turn_states = Table(
    "turn_states",
    metadata,
    Column("session_id", String(64), nullable=False),
    Column("turn_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    # The server that ran the turn: a restart settles only its own, never a live replica's.
    Column("instance", String(128), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("session_id", "turn_id"),
    CheckConstraint(f"status IN {TURN_STATUSES!r}", name="known_status"),
    Index(None, "instance", "status"),
)

ACCOUNT_ROLES = ("teacher", "admin")

# Teachers and admins who sign in with a password (students get links until classrooms exist).
# `id` is the opaque subject put in tokens; the username never leaves this table.
accounts = Table(
    "accounts",
    metadata,
    Column("id", String(64), nullable=False),
    Column("username", String(64), nullable=False),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(255), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("id"),
    CheckConstraint(f"role IN {ACCOUNT_ROLES!r}", name="known_role"),
    Index(None, "username", unique=True),
)

KEY_PROVIDERS = ("azure-speech", "azure-openai", "openai-compatible")

# Provider keys a school brings (voice_server/keys/). The secret is stored only as a Fernet token
# under the server secret; `fingerprint` (its last characters) lets an admin tell keys apart.
provider_keys = Table(
    "provider_keys",
    metadata,
    Column("id", String(64), nullable=False),
    Column("provider", String(32), nullable=False),
    Column("label", String(100), nullable=False),
    Column("classroom_id", String(64), nullable=True),
    Column("ciphertext", Text, nullable=False),
    Column("fingerprint", String(8), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # When the school last replaced the secret (null: never since it was created).
    Column("rotated_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("id"),
    CheckConstraint(f"provider IN {KEY_PROVIDERS!r}", name="known_provider"),
    Index(None, "classroom_id"),
)

# Access tokens revoked one by one (sign-out). A row is needed only until the token would have
# expired anyway: `expires_at` lets old rows be purged.
revoked_tokens = Table(
    "revoked_tokens",
    metadata,
    Column("jti", String(64), nullable=False),
    Column("subject", String(64), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("jti"),
    Index(None, "expires_at"),
)

# Every token of a subject issued up to `not_before` is refused (an admin's "revoke all").
# After `expires_at` (not_before plus the longest token lifetime) no such token is left.
subject_revocations = Table(
    "subject_revocations",
    metadata,
    Column("subject", String(64), nullable=False),
    Column("not_before", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("subject"),
    Index(None, "expires_at"),
)

CAP_SCOPES = ("session", "student", "classroom", "key")
CAP_PERIODS = ("day", "month", "total")

# Caps an admin set at run time (PUT /api/v1/caps/...), on top of the settings' defaults
# (voice_server/ledger/cap_store.py). `owner_id` '' is the scope's own default, for every owner;
# otherwise an opaque student, classroom or key id. A row replaces the caps beneath it whole: a
# NULL limit is no cap. Session caps have no owner, no period and no cost.
cap_overrides = Table(
    "cap_overrides",
    metadata,
    Column("scope", String(16), nullable=False),
    Column("owner_id", String(64), nullable=False),
    Column("stt_audio_ms", BigInteger, nullable=True),
    Column("llm_tokens", BigInteger, nullable=True),
    Column("tts_chars", BigInteger, nullable=True),
    Column("cost_minor", BigInteger, nullable=True),
    Column("period", String(8), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # The opaque subject of the admin who set it.
    Column("updated_by", String(64), nullable=False),
    PrimaryKeyConstraint("scope", "owner_id"),
    CheckConstraint(f"scope IN {CAP_SCOPES!r}", name="known_scope"),
    CheckConstraint(f"period IS NULL OR period IN {CAP_PERIODS!r}", name="known_period"),
    CheckConstraint(
        "(stt_audio_ms IS NULL OR stt_audio_ms >= 0) AND (llm_tokens IS NULL OR llm_tokens >= 0) "
        "AND (tts_chars IS NULL OR tts_chars >= 0) AND (cost_minor IS NULL OR cost_minor >= 0)",
        name="limits_not_negative",
    ),
    CheckConstraint(
        "scope <> 'session' OR (owner_id = '' AND period IS NULL AND cost_minor IS NULL)",
        name="session_caps_in_units",
    ),
)

SESSION_STATUSES = ("live", "paused", "ended")
SPEAKERS = ("student", "tutor")

# A teacher's class (voice_server/classrooms/). Students join it with `join_code`; its sessions
# get its personas, its per-session caps and its end-of-turn patience. `retention_days` is how
# long its transcripts are kept. A closed classroom (closed_at set) takes no one and runs nothing.
classrooms = Table(
    "classrooms",
    metadata,
    Column("id", String(64), nullable=False),
    Column("name", String(100), nullable=False),
    Column("teacher_id", String(64), nullable=False),
    Column("join_code", String(16), nullable=False),
    # JSON list of persona ids; every persona when empty.
    Column("personas", Text, nullable=False),
    Column("stt_audio_ms", BigInteger, nullable=True),
    Column("llm_tokens", BigInteger, nullable=True),
    Column("tts_chars", BigInteger, nullable=True),
    Column("patience_ms", Integer, nullable=True),
    Column("retention_days", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("closed_at", DateTime(timezone=True), nullable=True),
    PrimaryKeyConstraint("id"),
    Index(None, "join_code", unique=True),
    Index(None, "teacher_id"),
    CheckConstraint("retention_days >= 1 AND retention_days <= 3650", name="retention_in_range"),
)

# A student who joined a classroom: the opaque id in their token, and the nickname the teacher
# sees (optional, kept only here and deleted with the student's data).
classroom_students = Table(
    "classroom_students",
    metadata,
    Column("student_id", String(64), nullable=False),
    Column("classroom_id", String(64), nullable=False),
    Column("nickname", String(40), nullable=True),
    Column("joined_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("student_id"),
    Index(None, "classroom_id"),
)

# Every classroom session, on any replica: what the console lists, and where a teacher's command
# for it is carried out (`instance`).
classroom_sessions = Table(
    "classroom_sessions",
    metadata,
    Column("session_id", String(64), nullable=False),
    Column("classroom_id", String(64), nullable=False),
    Column("student_id", String(64), nullable=False),
    Column("persona", String(64), nullable=False),
    Column("instance", String(128), nullable=False),
    Column("status", String(8), nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True), nullable=True),
    Column("end_reason", String(32), nullable=True),
    PrimaryKeyConstraint("session_id"),
    CheckConstraint(f"status IN {SESSION_STATUSES!r}", name="known_status"),
    Index(None, "classroom_id", "status"),
    Index(None, "student_id"),
    Index(None, "started_at"),
)

# What was said, as heard: the student's transcript and the tutor's reply cut where it was
# interrupted. Kept for the classroom's retention period, then purged.
transcript_lines = Table(
    "transcript_lines",
    metadata,
    Column("session_id", String(64), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("turn_id", String(64), nullable=False),
    Column("classroom_id", String(64), nullable=True),
    Column("student_id", String(64), nullable=True),
    Column("speaker", String(8), nullable=False),
    Column("text", Text, nullable=False),
    Column("interrupted", Boolean, nullable=False),
    Column("said_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("session_id", "seq"),
    CheckConstraint(f"speaker IN {SPEAKERS!r}", name="known_speaker"),
    Index(None, "said_at"),
    Index(None, "student_id"),
    Index(None, "classroom_id", "said_at"),
)

# A teacher's one-line note to the tutor about one student's session. Its own table, not the
# audit log's, so that deleting a student's data deletes the notes about them too.
guidance_notes = Table(
    "guidance_notes",
    metadata,
    Column("id", String(64), nullable=False),
    Column("session_id", String(64), nullable=False),
    Column("classroom_id", String(64), nullable=False),
    Column("student_id", String(64), nullable=False),
    Column("teacher_id", String(64), nullable=False),
    Column("text", String(300), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("id"),
    Index(None, "student_id"),
    Index(None, "created_at"),
)

# Every teacher and admin action: append-only (no route updates or deletes a row). `detail` is
# JSON of opaque ids and settings, never a student's words or a note's text.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), nullable=False, autoincrement=True),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("actor_id", String(64), nullable=False),
    Column("actor_role", String(16), nullable=False),
    Column("action", String(48), nullable=False),
    Column("classroom_id", String(64), nullable=True),
    Column("session_id", String(64), nullable=True),
    Column("target_id", String(64), nullable=True),
    Column("detail", Text, nullable=False),
    PrimaryKeyConstraint("id"),
    Index(None, "at"),
    Index(None, "classroom_id", "at"),
)
