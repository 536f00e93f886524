"""HTTP: deletion on request of a student's or a whole classroom's data (issue 13, retention).

- `DELETE /api/v1/classrooms/{classroom_id}/students/{student_id}/data`: the classroom's own
  teacher or an admin. Another teacher and any student: 403. An unknown classroom, or a student
  with nothing in it: 404.
- `DELETE /api/v1/classrooms/{classroom_id}/data`: admins only. The classroom row stays, closed,
  with a join code nobody has (`retention.delete_classroom_data`).

Each deletion is audited (`student.data_deleted`, `classroom.data_deleted`) after it took effect,
with the counts as detail: the audit log keeps that a deletion happened, never what was deleted.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import exists, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from voice_server.auth.guard import AuthError, authenticator, require
from voice_server.auth.tokens import Claims, Role
from voice_server.classrooms import audit, retention, store
from voice_server.http_errors import error_response
from voice_server.store.schema import (
    classroom_sessions,
    classroom_students,
    classrooms,
    guidance_notes,
    transcript_lines,
)

log = logging.getLogger(__name__)
# How long a deletion waits for the sessions it ended to report their end.
END_WAIT_S = 3.0

router = APIRouter(prefix="/api/v1/classrooms", tags=["classrooms"])
TeacherOrAdmin = Annotated[Claims, Depends(require(Role.TEACHER, Role.ADMIN))]
Admin = Annotated[Claims, Depends(require(Role.ADMIN))]
ClassroomId = Annotated[str, Path(min_length=1, max_length=64, description="the classroom's opaque id")]
StudentId = Annotated[str, Path(min_length=1, max_length=64, description="the student's opaque id")]


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorBody


class DataDeleted(BaseModel):
    deleted: dict[str, int] = Field(
        description="rows deleted per table: transcript_lines, guidance_notes, classroom_sessions, "
        "classroom_students (the membership and its nickname)"
    )
    anonymised: dict[str, int] = Field(
        description="rows kept for billing with the student id replaced by 'deleted': usage_records"
    )


_401 = {401: {"model": ErrorResponse, "description": "no token, or a token that is invalid or revoked"}}
_403_STUDENT = {
    403: {"model": ErrorResponse, "description": "a student, or a teacher of another classroom"}
}
_403_CLASSROOM = {403: {"model": ErrorResponse, "description": "not an admin"}}
_404_STUDENT = {
    404: {"model": ErrorResponse, "description": "no such classroom, or the student has nothing in it"}
}
_404_CLASSROOM = {404: {"model": ErrorResponse, "description": "no such classroom"}}


@router.delete(
    "/{classroom_id}/students/{student_id}/data",
    response_model=DataDeleted,
    responses=_401 | _403_STUDENT | _404_STUDENT,
)
async def delete_student_data(
    classroom_id: ClassroomId, student_id: StudentId, request: Request, claims: TeacherOrAdmin
) -> DataDeleted | JSONResponse:
    """Delete everything of one student of this classroom: what they said and heard, the notes
    about them, their sessions and their nickname. Their usage rows stay for billing, anonymised
    (student id 'deleted'). A teacher's request covers what is stored under their classroom; an
    admin's, that student id's data in every classroom. Audited as `student.data_deleted`."""
    engine = _engine(request)
    teacher_id = await _teacher_of(engine, classroom_id)
    if teacher_id is None:
        return _no_classroom()
    if claims.role is not Role.ADMIN and teacher_id != claims.subject:
        raise AuthError(403, "forbidden", "Only the classroom's own teacher or an admin may delete its data.")
    if not await _has_student(engine, classroom_id, student_id):
        return error_response(404, "student_not_found", "This classroom has no data of that student.")
    # A teacher deletes what is stored under their classroom (for a student who joined with its
    # code, everything of theirs); an admin everything of that student id, in any classroom.
    scope = None if claims.role is Role.ADMIN else classroom_id
    # Nothing of theirs may be written after the deletion: their tokens stop working and their
    # running sessions end (and report their last lines) first.
    auth = authenticator(request)
    if auth.revocations is not None:
        await auth.revocations.revoke_subject(student_id)
    await _end_live_sessions(request, classroom_id, student_id)
    counts = await retention.delete_student_data(engine, student_id, classroom_id=scope)
    out = _out(counts)
    await audit.record(
        engine, claims, "student.data_deleted", classroom_id=classroom_id, target_id=student_id,
        detail=out.model_dump(),
    )
    log.info("data of a student of %s deleted by %s: %s", classroom_id, claims.subject, counts)
    return out


@router.delete(
    "/{classroom_id}/data", response_model=DataDeleted, responses=_401 | _403_CLASSROOM | _404_CLASSROOM
)
async def delete_classroom_data(
    classroom_id: ClassroomId, request: Request, claims: Admin
) -> DataDeleted | JSONResponse:
    """Delete everything of a classroom's students and sessions. The classroom itself stays,
    closed, and its join code no longer works. Audited as `classroom.data_deleted`."""
    engine = _engine(request)
    if await _teacher_of(engine, classroom_id) is None:
        return _no_classroom()
    await store.close_classroom(engine, classroom_id)  # nobody joins or starts a session meanwhile
    await _end_live_sessions(request, classroom_id)
    counts = await retention.delete_classroom_data(engine, classroom_id)
    out = _out(counts)
    await audit.record(
        engine, claims, "classroom.data_deleted", classroom_id=classroom_id, target_id=classroom_id,
        detail=out.model_dump(),
    )
    log.info("data of classroom %s deleted by %s: %s", classroom_id, claims.subject, counts)
    return out


async def _end_live_sessions(request: Request, classroom_id: str, student_id: str | None = None) -> None:
    """End the classroom's (or one student's) running sessions wherever they run, and wait a
    moment for them to report their end, so their last transcript lines land before the delete."""
    engine = _engine(request)
    live = request.app.state.classrooms

    async def running() -> list[str]:
        since = datetime.now(UTC)
        rows = await store.sessions_of(engine, classroom_id, ended_since=since)
        return [r.session_id for r in rows if r.status != "ended" and student_id in (None, r.student_id)]

    for session_id in await running():
        await live.command(session_id, "end", reason="classroom_closed" if student_id is None else "teacher")
    deadline = asyncio.get_running_loop().time() + END_WAIT_S
    while await running() and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)


def _engine(request: Request) -> AsyncEngine:
    return request.app.state.database  # type: ignore[no-any-return]


def _out(counts: dict[str, int]) -> DataDeleted:
    return DataDeleted(
        deleted={t: counts[t] for t in retention.DELETED_TABLES},
        anonymised={retention.ANONYMISED: counts[retention.ANONYMISED]},
    )


def _no_classroom() -> JSONResponse:
    return error_response(404, "classroom_not_found", "There is no such classroom.")


async def _teacher_of(engine: AsyncEngine, classroom_id: str) -> str | None:
    """The classroom's teacher; None when there is no such classroom."""
    async with engine.connect() as connection:
        teacher: Any = await connection.scalar(
            select(classrooms.c.teacher_id).where(classrooms.c.id == classroom_id)
        )
    return None if teacher is None else str(teacher)


async def _has_student(engine: AsyncEngine, classroom_id: str, student_id: str) -> bool:
    """Whether the student joined this classroom, or anything of theirs is stored under it."""
    of_classroom = [
        exists().where(table.c.classroom_id == classroom_id, table.c.student_id == student_id)
        for table in (classroom_students, classroom_sessions, guidance_notes, transcript_lines)
    ]
    async with engine.connect() as connection:
        return bool(await connection.scalar(select(or_(*of_classroom))))
