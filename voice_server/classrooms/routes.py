"""HTTP: classrooms (create, list, read, close), joining one with its code, the teacher's live
console (an event stream and the commands on a session), and the audit log for admins.

Who: teachers act on their own classrooms only, admins on every one; students only join. Every
teacher and admin action that changes something is written to the audit log after it took effect.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, Field, field_validator
from sqlalchemy import insert

from pipelines.caps import UsageCaps
from pipelines.personas import PERSONAS
from voice_server.auth.guard import AuthError, authenticator, require
from voice_server.auth.ratelimit import address_key
from voice_server.auth.routes import ErrorResponse, _refuse_when_limited
from voice_server.auth.tokens import Claims, Role
from voice_server.classrooms import audit, store
from voice_server.classrooms.live import ClassroomLive
from voice_server.classrooms.store import Classroom, ClassroomSpec
from voice_server.store.schema import guidance_notes

log = logging.getLogger(__name__)

router = APIRouter(tags=["classrooms"])

KEEP_ALIVE_S = 15.0
MAX_GUIDANCE_CHARS = 200
ClassroomId = Annotated[str, Path(min_length=1, max_length=64)]
SessionId = Annotated[str, Path(min_length=1, max_length=64)]

_401 = {401: {"model": ErrorResponse, "description": "missing, expired, forged or revoked token"}}
_403 = {
    403: {"model": ErrorResponse, "description": "a student, or a teacher and another teacher's classroom"}
}
_404 = {404: {"model": ErrorResponse, "description": "no such classroom (or session in it)"}}
_409 = {409: {"model": ErrorResponse, "description": "the classroom is closed, or the session has ended"}}
teacher_or_admin = require(Role.TEACHER, Role.ADMIN)


class SessionCaps(BaseModel):
    """Per session, in units; null: no cap of the classroom's own (the server's still apply)."""

    stt_audio_ms: int | None = Field(None, ge=0, le=10**9, description="speech transcribed, ms")
    llm_tokens: int | None = Field(None, ge=0, le=10**9, description="prompt and completion tokens")
    tts_chars: int | None = Field(None, ge=0, le=10**9, description="characters synthesised")

    def usage_caps(self) -> UsageCaps:
        return UsageCaps(stt_audio_ms=self.stt_audio_ms, llm_tokens=self.llm_tokens, tts_chars=self.tts_chars)


class ClassroomIn(BaseModel):
    name: str = Field(min_length=1, max_length=100)
    personas: list[str] = Field(default_factory=list, max_length=50, description="allowed tutors; empty: all")
    caps: SessionCaps = Field(default_factory=SessionCaps)
    patience_ms: int | None = Field(
        None, ge=150, le=30_000, description="how long the tutor waits for a thinking student (end of turn)"
    )
    retention_days: int = Field(
        store.DEFAULT_RETENTION_DAYS, ge=1, le=3650, description="transcripts are kept this long"
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("a classroom needs a name")
        return value

    @field_validator("personas")
    @classmethod
    def _personas(cls, value: list[str]) -> list[str]:
        unknown = [p for p in value if p not in PERSONAS]
        if unknown:
            raise ValueError(f"unknown persona; known: {', '.join(PERSONAS)}")
        return list(dict.fromkeys(value))


class ClassroomOut(BaseModel):
    id: str
    name: str
    teacher_id: str
    join_code: str
    personas: list[str]
    caps: SessionCaps
    patience_ms: int | None
    retention_days: int
    created_at: datetime
    closed_at: datetime | None

    @classmethod
    def of(cls, room: Classroom) -> ClassroomOut:
        return cls(
            id=room.id,
            name=room.name,
            teacher_id=room.teacher_id,
            join_code=room.join_code,
            personas=list(room.personas),
            caps=SessionCaps(**room.caps.model_dump()),
            patience_ms=room.patience_ms,
            retention_days=room.retention_days,
            created_at=room.created_at,
            closed_at=room.closed_at,
        )


class Join(BaseModel):
    code: str = Field(min_length=1, max_length=32)
    nickname: str | None = Field(None, max_length=40, description="shown to the teacher only; optional")

    @field_validator("nickname")
    @classmethod
    def _nickname(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = " ".join(value.split())
        if any(not ch.isprintable() for ch in value):
            raise ValueError("a nickname is plain text")
        return value or None


class PersonaOut(BaseModel):
    id: str
    name: str
    subject: str


class JoinedClassroom(BaseModel):
    id: str
    name: str
    personas: list[PersonaOut]


class Joined(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int = Field(description="seconds")
    role: Role
    classroom: JoinedClassroom


class Accepted(BaseModel):
    status: str


class NoteIn(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_GUIDANCE_CHARS)

    @field_validator("text")
    @classmethod
    def _one_line(cls, value: str) -> str:
        value = " ".join(value.split())
        if not value:
            raise ValueError("a note needs some text")
        return value


class NoteAccepted(BaseModel):
    note_id: str


class AuditEntryOut(BaseModel):
    id: int
    at: datetime
    actor_id: str
    actor_role: str
    action: str
    classroom_id: str | None
    session_id: str | None
    target_id: str | None
    detail: dict[str, Any]


def _live(request: Request) -> ClassroomLive:
    live = getattr(request.app.state, "classrooms", None)
    if live is None:
        raise AuthError(503, "no_database", "Classrooms need the server's database.")
    return live  # type: ignore[no-any-return]


async def _own_classroom(request: Request, claims: Claims, classroom_id: str) -> Classroom:
    room = await store.get_classroom(request.app.state.database, classroom_id)
    if room is None:
        raise AuthError(404, "not_found", "There is no such classroom.")
    if claims.role is not Role.ADMIN and room.teacher_id != claims.subject:
        raise AuthError(403, "forbidden", "A teacher may act only on their own classrooms.")
    return room


async def _live_session(request: Request, room: Classroom, session_id: str) -> store.SessionRow:
    row = await store.get_session(request.app.state.database, session_id)
    if row is None or row.classroom_id != room.id:
        raise AuthError(404, "not_found", "There is no such session in this classroom.")
    if row.status == "ended":
        raise AuthError(409, "session_ended", "This session has already ended.")
    return row


# ------------------------------------------------------------------------------- classrooms


@router.post("/api/v1/classrooms", status_code=201, response_model=ClassroomOut, responses=_401 | _403)
async def create_classroom(
    body: ClassroomIn, request: Request, claims: Annotated[Claims, Depends(teacher_or_admin)]
) -> ClassroomOut:
    """Teachers (and admins): a new classroom with its join code."""
    database = request.app.state.database
    spec = ClassroomSpec(
        name=body.name,
        personas=tuple(body.personas),
        caps=body.caps.usage_caps(),
        patience_ms=body.patience_ms,
        retention_days=body.retention_days,
    )
    room = await store.create_classroom(database, claims.subject, spec)
    await audit.record(
        database,
        claims,
        "classroom.created",
        classroom_id=room.id,
        detail={
            "personas": list(room.personas),
            "caps": room.caps.model_dump(),
            "patience_ms": room.patience_ms,
            "retention_days": room.retention_days,
        },
    )
    return ClassroomOut.of(room)


@router.get("/api/v1/classrooms", response_model=list[ClassroomOut], responses=_401 | _403)
async def list_classrooms(
    request: Request, claims: Annotated[Claims, Depends(teacher_or_admin)]
) -> list[ClassroomOut]:
    """A teacher's own classrooms; every classroom for an admin."""
    teacher = None if claims.role is Role.ADMIN else claims.subject
    return [ClassroomOut.of(r) for r in await store.list_classrooms(request.app.state.database, teacher)]


@router.get("/api/v1/classrooms/{classroom_id}", response_model=ClassroomOut, responses=_401 | _403 | _404)
async def get_classroom(
    classroom_id: ClassroomId, request: Request, claims: Annotated[Claims, Depends(teacher_or_admin)]
) -> ClassroomOut:
    return ClassroomOut.of(await _own_classroom(request, claims, classroom_id))


@router.post(
    "/api/v1/classrooms/{classroom_id}/close", response_model=ClassroomOut, responses=_401 | _403 | _404
)
async def close_classroom(
    classroom_id: ClassroomId, request: Request, claims: Annotated[Claims, Depends(teacher_or_admin)]
) -> ClassroomOut:
    """Nobody can join it any more, its sessions end (wherever they run), and no new one starts."""
    database = request.app.state.database
    await _own_classroom(request, claims, classroom_id)
    room = await store.close_classroom(database, classroom_id)
    assert room is not None
    live = _live(request)
    running = [
        s
        for s in await store.sessions_of(database, room.id, ended_since=datetime.now(UTC))
        if s.status != "ended"
    ]
    for session in running:
        await live.command(session.session_id, "end", reason="classroom_closed")
    await live.publish(
        {"type": "classroom.closed", "classroom_id": room.id, "at": datetime.now(UTC).isoformat()}
    )
    await audit.record(
        database, claims, "classroom.closed", classroom_id=room.id, detail={"sessions_ended": len(running)}
    )
    return ClassroomOut.of(room)


# ------------------------------------------------------------------------------------- join


@router.post(
    "/v1/auth/join",
    response_model=Joined,
    tags=["auth"],
    responses={401: {"model": ErrorResponse, "description": "unknown code, or a closed classroom"}},
    openapi_extra={"security": []},
)
async def join(body: Join, request: Request) -> Joined:
    """Students: a classroom's join code (and, if they like, a nickname only the teacher sees)
    for a student token scoped to that classroom, with a new opaque id."""
    auth = authenticator(request)
    keys = (f"join-{address_key(request.client.host if request.client else None)}",)
    _refuse_when_limited(auth, keys)  # a code is short: guessing is limited like sign-in
    database = request.app.state.database
    room = await store.open_classroom_by_code(database, body.code)
    if room is None:
        auth.sign_in_failures.failed(keys)
        raise AuthError(
            401,
            "invalid_code",
            "That class code is not right, or the class has closed. Check it with your teacher.",
        )
    student_id = await store.add_student(database, room.id, body.nickname)
    token = auth.issuer.mint(Role.STUDENT, student_id, classroom=room.id)
    personas = [PERSONAS[p] for p in (room.personas or tuple(PERSONAS)) if p in PERSONAS]
    return Joined(
        access_token=token,
        expires_in=auth.issuer.ttl_s,
        role=Role.STUDENT,
        classroom=JoinedClassroom(
            id=room.id,
            name=room.name,
            personas=[PersonaOut(id=p.id, name=p.name, subject=p.subject) for p in personas],
        ),
    )


# ---------------------------------------------------------------------------------- console


@router.get(
    "/api/v1/classrooms/{classroom_id}/sessions",
    responses=_401 | _403 | _404,
)
async def classroom_sessions(
    classroom_id: ClassroomId, request: Request, claims: Annotated[Claims, Depends(teacher_or_admin)]
) -> list[dict[str, Any]]:
    """Its live and paused sessions and those that ended in the last day, as the console shows them."""
    room = await _own_classroom(request, claims, classroom_id)
    snapshot = await _live(request).snapshot(room)
    return list(snapshot["sessions"])


@router.get(
    "/api/v1/classrooms/{classroom_id}/events",
    responses=_401
    | _403
    | _404
    | {200: {"content": {"text/event-stream": {}}, "description": "server-sent events"}},
)
async def classroom_events(
    classroom_id: ClassroomId, request: Request, claims: Annotated[Claims, Depends(teacher_or_admin)]
) -> Response:
    """Server-sent events: first `snapshot` (the classroom and its sessions), then each event of
    its sessions as it happens, on whichever server the session runs. Read it with fetch() (it
    needs the bearer header). With `Accept: application/json` (and not text/event-stream), the
    snapshot alone, as JSON."""
    room = await _own_classroom(request, claims, classroom_id)
    live = _live(request)
    accept = request.headers.get("accept", "")
    if "application/json" in accept and "text/event-stream" not in accept:
        # A client asking for JSON gets the snapshot alone, and the response ends.
        snapshot = await live.snapshot(room)
        snapshot["classroom"] = ClassroomOut.of(room).model_dump(mode="json")
        return JSONResponse(json.loads(json.dumps(snapshot, default=str)))

    async def stream() -> AsyncIterator[str]:
        async with live.events(room.id) as events:
            snapshot = await live.snapshot(room)
            snapshot["classroom"] = ClassroomOut.of(room).model_dump(mode="json")
            yield _sse(snapshot)
            pending = asyncio.ensure_future(anext(events))
            try:
                while True:
                    done, _ = await asyncio.wait({pending}, timeout=KEEP_ALIVE_S)
                    if not done:
                        yield ": keep-alive\n\n"  # proxies close idle streams
                        continue
                    yield _sse(pending.result())
                    pending = asyncio.ensure_future(anext(events))
            finally:
                pending.cancel()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _sse(event: dict[str, Any]) -> str:
    return f"data: {json.dumps(event, default=str)}\n\n"


async def _session_command(
    request: Request,
    claims: Claims,
    classroom_id: str,
    session_id: str,
    command: Literal["pause", "resume", "end"],
) -> Accepted:
    room = await _own_classroom(request, claims, classroom_id)
    await _live_session(request, room, session_id)
    await _live(request).command(session_id, command, reason="teacher")
    await audit.record(
        request.app.state.database, claims, f"session.{command}", classroom_id=room.id, session_id=session_id
    )
    return Accepted(status="requested")


_COMMAND_RESPONSES = _401 | _403 | _404 | _409


@router.post(
    "/api/v1/classrooms/{classroom_id}/sessions/{session_id}/pause",
    status_code=202,
    response_model=Accepted,
    responses=_COMMAND_RESPONSES,
)
async def pause_session(
    classroom_id: ClassroomId,
    session_id: SessionId,
    request: Request,
    claims: Annotated[Claims, Depends(teacher_or_admin)],
) -> Accepted:
    """Stop the tutor and stop listening; the student is told. `resume` goes on."""
    return await _session_command(request, claims, classroom_id, session_id, "pause")


@router.post(
    "/api/v1/classrooms/{classroom_id}/sessions/{session_id}/resume",
    status_code=202,
    response_model=Accepted,
    responses=_COMMAND_RESPONSES,
)
async def resume_session(
    classroom_id: ClassroomId,
    session_id: SessionId,
    request: Request,
    claims: Annotated[Claims, Depends(teacher_or_admin)],
) -> Accepted:
    return await _session_command(request, claims, classroom_id, session_id, "resume")


@router.post(
    "/api/v1/classrooms/{classroom_id}/sessions/{session_id}/end",
    status_code=202,
    response_model=Accepted,
    responses=_COMMAND_RESPONSES,
)
async def end_session(
    classroom_id: ClassroomId,
    session_id: SessionId,
    request: Request,
    claims: Annotated[Claims, Depends(teacher_or_admin)],
) -> Accepted:
    """End the session; the student's page says their teacher ended it."""
    return await _session_command(request, claims, classroom_id, session_id, "end")


@router.post(
    "/api/v1/classrooms/{classroom_id}/sessions/{session_id}/guidance",
    status_code=202,
    response_model=NoteAccepted,
    responses=_COMMAND_RESPONSES,
)
async def send_guidance(
    classroom_id: ClassroomId,
    session_id: SessionId,
    body: NoteIn,
    request: Request,
    claims: Annotated[Claims, Depends(teacher_or_admin)],
) -> NoteAccepted:
    """A one-line note to the tutor about this student ("working on fractions; slow down"). It
    guides the tutor's next turns and is never read out. The note is kept with the student's
    data (deleted with it); the audit log records that it was sent, not what it said."""
    database = request.app.state.database
    room = await _own_classroom(request, claims, classroom_id)
    row = await _live_session(request, room, session_id)
    note_id = f"note_{secrets.token_urlsafe(9)}"
    async with database.begin() as connection:
        await connection.execute(
            insert(guidance_notes).values(
                id=note_id,
                session_id=session_id,
                classroom_id=room.id,
                student_id=row.student_id,
                teacher_id=claims.subject,
                text=body.text,
                created_at=datetime.now(UTC),
            )
        )
    live = _live(request)
    await live.command(session_id, "guidance", text=body.text)
    await live.publish(
        {
            "type": "guidance",
            "classroom_id": room.id,
            "session_id": session_id,
            "note_id": note_id,
            "at": datetime.now(UTC).isoformat(),
        }
    )
    await audit.record(
        database,
        claims,
        "session.guidance",
        classroom_id=room.id,
        session_id=session_id,
        target_id=row.student_id,
        detail={"note_id": note_id, "chars": len(body.text)},
    )
    return NoteAccepted(note_id=note_id)


@router.put(
    "/api/v1/classrooms/{classroom_id}/sessions/{session_id}/caps",
    status_code=202,
    response_model=Accepted,
    responses=_COMMAND_RESPONSES,
)
async def set_session_caps(
    classroom_id: ClassroomId,
    session_id: SessionId,
    body: SessionCaps,
    request: Request,
    claims: Annotated[Claims, Depends(teacher_or_admin)],
) -> Accepted:
    """This session's caps from now on, against what it has used so far. The server's own
    per-session caps still bound them, as do the student's, classroom's and key's shared caps."""
    room = await _own_classroom(request, claims, classroom_id)
    await _live_session(request, room, session_id)
    settings_caps: UsageCaps = request.app.state.settings.billing.session_caps
    caps = settings_caps.tighter(body.usage_caps())
    await _live(request).command(session_id, "caps", caps=caps.model_dump())
    await audit.record(
        request.app.state.database,
        claims,
        "session.caps_changed",
        classroom_id=room.id,
        session_id=session_id,
        detail={"caps": caps.model_dump()},
    )
    return Accepted(status="requested")


# ------------------------------------------------------------------------------------ audit


@router.get(
    "/api/v1/audit",
    response_model=list[AuditEntryOut],
    tags=["audit"],
    responses=_401 | _403,
)
async def read_audit(
    request: Request,
    _: Annotated[Claims, Depends(require(Role.ADMIN))],
    classroom_id: Annotated[str | None, Query(max_length=64)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after_id: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE)] = 100,
) -> list[AuditEntryOut]:
    """Admins: every teacher and admin action (and the server's safety flags), oldest first;
    page with `after_id`. Nothing in the API changes or removes an entry."""
    entries = await audit.read(
        request.app.state.database,
        classroom_id=classroom_id,
        since=since,
        until=until,
        after_id=after_id,
        limit=limit,
    )
    return [AuditEntryOut.model_validate(e, from_attributes=True) for e in entries]
