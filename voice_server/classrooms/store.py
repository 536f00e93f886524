"""Classrooms, their students and their sessions in the database (SQLite or PostgreSQL)."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from pipelines.caps import UsageCaps
from voice_server.auth.tokens import new_subject
from voice_server.store.schema import classroom_sessions, classroom_students, classrooms

# No 0/O, 1/I/L: a code read aloud or copied from a board is typed right the first time.
JOIN_CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
JOIN_CODE_LENGTH = 6  # 31^6 ~ 887 million; redemption is rate-limited like sign-in
DEFAULT_RETENTION_DAYS = 30


@dataclass(frozen=True, slots=True)
class Classroom:
    id: str
    name: str
    teacher_id: str
    join_code: str
    personas: tuple[str, ...]
    caps: UsageCaps
    patience_ms: int | None
    retention_days: int
    created_at: datetime
    closed_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.closed_at is None

    def allows(self, persona_id: str) -> bool:
        return not self.personas or persona_id in self.personas


@dataclass(frozen=True, slots=True)
class ClassroomSpec:
    name: str
    personas: tuple[str, ...] = ()
    caps: UsageCaps = field(default_factory=UsageCaps)
    patience_ms: int | None = None
    retention_days: int = DEFAULT_RETENTION_DAYS


@dataclass(frozen=True, slots=True)
class SessionRow:
    session_id: str
    classroom_id: str
    student_id: str
    nickname: str | None
    persona: str
    instance: str
    status: str
    started_at: datetime
    ended_at: datetime | None
    end_reason: str | None


def new_join_code() -> str:
    return "".join(secrets.choice(JOIN_CODE_ALPHABET) for _ in range(JOIN_CODE_LENGTH))


def normal_join_code(code: str) -> str:
    """What a student typed, as stored: case, spaces and dashes do not matter."""
    return "".join(ch for ch in code.upper() if ch.isalnum())


async def create_classroom(engine: AsyncEngine, teacher_id: str, spec: ClassroomSpec) -> Classroom:
    now = datetime.now(UTC)
    for _ in range(8):  # a clash is ~1 in 10^8 per try with few classrooms; retry rather than fail
        room = Classroom(
            id=new_subject("cls"),
            name=spec.name,
            teacher_id=teacher_id,
            join_code=new_join_code(),
            personas=spec.personas,
            caps=spec.caps,
            patience_ms=spec.patience_ms,
            retention_days=spec.retention_days,
            created_at=now,
        )
        try:
            async with engine.begin() as connection:
                await connection.execute(insert(classrooms).values(**_row_of(room)))
            return room
        except IntegrityError:
            continue
    raise RuntimeError("could not find a free join code")


async def get_classroom(engine: AsyncEngine, classroom_id: str) -> Classroom | None:
    async with engine.connect() as connection:
        row = (
            (await connection.execute(select(classrooms).where(classrooms.c.id == classroom_id)))
            .mappings()
            .first()
        )
    return None if row is None else _classroom(row)


async def list_classrooms(engine: AsyncEngine, teacher_id: str | None = None) -> list[Classroom]:
    query = select(classrooms).order_by(classrooms.c.created_at)
    if teacher_id is not None:
        query = query.where(classrooms.c.teacher_id == teacher_id)
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).mappings().all()
    return [_classroom(r) for r in rows]


async def open_classroom_by_code(engine: AsyncEngine, code: str) -> Classroom | None:
    code = normal_join_code(code)
    if len(code) != JOIN_CODE_LENGTH:
        return None
    async with engine.connect() as connection:
        row = (
            (
                await connection.execute(
                    select(classrooms).where(classrooms.c.join_code == code, classrooms.c.closed_at.is_(None))
                )
            )
            .mappings()
            .first()
        )
    return None if row is None else _classroom(row)


async def close_classroom(engine: AsyncEngine, classroom_id: str) -> Classroom | None:
    async with engine.begin() as connection:
        await connection.execute(
            update(classrooms)
            .where(classrooms.c.id == classroom_id, classrooms.c.closed_at.is_(None))
            .values(closed_at=datetime.now(UTC))
        )
    return await get_classroom(engine, classroom_id)


async def add_student(engine: AsyncEngine, classroom_id: str, nickname: str | None) -> str:
    student_id = new_subject("stu")
    async with engine.begin() as connection:
        await connection.execute(
            insert(classroom_students).values(
                student_id=student_id,
                classroom_id=classroom_id,
                nickname=nickname,
                joined_at=datetime.now(UTC),
            )
        )
    return student_id


async def student_in(engine: AsyncEngine, classroom_id: str, student_id: str) -> bool:
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(classroom_students.c.student_id).where(
                    classroom_students.c.student_id == student_id,
                    classroom_students.c.classroom_id == classroom_id,
                )
            )
        ).first()
    return row is not None


async def nickname_of(engine: AsyncEngine, student_id: str) -> str | None:
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(classroom_students.c.nickname).where(classroom_students.c.student_id == student_id)
            )
        ).first()
    return None if row is None else row[0]


async def session_started(
    engine: AsyncEngine, *, session_id: str, classroom_id: str, student_id: str, persona: str, instance: str
) -> datetime:
    now = datetime.now(UTC)
    async with engine.begin() as connection:
        await connection.execute(
            insert(classroom_sessions).values(
                session_id=session_id,
                classroom_id=classroom_id,
                student_id=student_id,
                persona=persona,
                instance=instance,
                status="live",
                started_at=now,
            )
        )
    return now


async def set_session_status(
    engine: AsyncEngine, session_id: str, status: str, *, reason: str | None = None
) -> None:
    values: dict[str, Any] = {"status": status}
    if status == "ended":
        values |= {"ended_at": datetime.now(UTC), "end_reason": reason}
    async with engine.begin() as connection:
        await connection.execute(
            update(classroom_sessions)
            .where(classroom_sessions.c.session_id == session_id, classroom_sessions.c.status != "ended")
            .values(**values)
        )


async def end_sessions_of_instance(engine: AsyncEngine, instance: str, reason: str) -> int:
    """Sessions this server left running when it stopped (or crashed): ended, so no console shows
    them live for ever."""
    async with engine.begin() as connection:
        result = await connection.execute(
            update(classroom_sessions)
            .where(classroom_sessions.c.instance == instance, classroom_sessions.c.status != "ended")
            .values(status="ended", ended_at=datetime.now(UTC), end_reason=reason)
        )
    return int(result.rowcount or 0)


async def get_session(engine: AsyncEngine, session_id: str) -> SessionRow | None:
    rows = await _sessions(engine, classroom_sessions.c.session_id == session_id)
    return rows[0] if rows else None


async def sessions_of(engine: AsyncEngine, classroom_id: str, *, ended_since: datetime) -> list[SessionRow]:
    """Its live and paused sessions, and those that ended since `ended_since`."""
    return await _sessions(
        engine,
        and_(
            classroom_sessions.c.classroom_id == classroom_id,
            or_(classroom_sessions.c.status != "ended", classroom_sessions.c.ended_at >= ended_since),
        ),
    )


async def _sessions(engine: AsyncEngine, where: Any) -> list[SessionRow]:
    query = (
        select(classroom_sessions, classroom_students.c.nickname)
        .select_from(
            classroom_sessions.outerjoin(
                classroom_students, classroom_students.c.student_id == classroom_sessions.c.student_id
            )
        )
        .where(where)
        .order_by(classroom_sessions.c.started_at)
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).mappings().all()
    return [
        SessionRow(
            session_id=r["session_id"],
            classroom_id=r["classroom_id"],
            student_id=r["student_id"],
            nickname=r["nickname"],
            persona=r["persona"],
            instance=r["instance"],
            status=r["status"],
            started_at=_utc(r["started_at"]),
            ended_at=_utc(r["ended_at"]) if r["ended_at"] else None,
            end_reason=r["end_reason"],
        )
        for r in rows
    ]


def _row_of(room: Classroom) -> dict[str, Any]:
    return {
        "id": room.id,
        "name": room.name,
        "teacher_id": room.teacher_id,
        "join_code": room.join_code,
        "personas": json.dumps(list(room.personas)),
        "stt_audio_ms": room.caps.stt_audio_ms,
        "llm_tokens": room.caps.llm_tokens,
        "tts_chars": room.caps.tts_chars,
        "patience_ms": room.patience_ms,
        "retention_days": room.retention_days,
        "created_at": room.created_at,
        "closed_at": room.closed_at,
    }


def _classroom(row: Any) -> Classroom:
    return Classroom(
        id=row["id"],
        name=row["name"],
        teacher_id=row["teacher_id"],
        join_code=row["join_code"],
        personas=tuple(json.loads(row["personas"])),
        caps=UsageCaps(
            stt_audio_ms=row["stt_audio_ms"], llm_tokens=row["llm_tokens"], tts_chars=row["tts_chars"]
        ),
        patience_ms=row["patience_ms"],
        retention_days=row["retention_days"],
        created_at=_utc(row["created_at"]),
        closed_at=_utc(row["closed_at"]) if row["closed_at"] else None,
    )


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def teaches(engine: AsyncEngine, subject: str, classroom_id: str) -> bool:
    """Whether `subject` is the teacher who created this classroom."""
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                select(classrooms.c.id).where(
                    classrooms.c.id == classroom_id, classrooms.c.teacher_id == subject
                )
            )
        ).first()
    return row is not None
