"""How long what was said is kept, and deletion on request.

Kept for the classroom's `retention_days` (default 30), then purged by `RetentionJob` (at start,
then hourly): transcript lines (`said_at`), guidance notes (`created_at`) and ended sessions'
metadata (`ended_at`). A line or note whose classroom is gone, or that has none, is kept for
`default_days`. The purge never touches:
- `usage_records`: the usage ledger, billing records made only of opaque ids and amounts, kept for
  billing (no words, no names);
- `audit_log`: the record of what teachers and admins did, deletions included, which must
  outlive what it records (its `detail` holds ids and counts, never a student's words).

Deletion on request (`delete_student_data`, `delete_classroom_data`) removes every transcript
line, guidance note, session row and classroom membership (with its nickname) of the student or
classroom. Usage ledger rows are not deleted, because a school's bill and its classroom totals must
still add up: their `student_id` is replaced with the fixed marker `DELETED_STUDENT` ('deleted'),
so they no longer say whose they were. Their session ids stay, but the sessions they name are
deleted, so nothing links them back to the student.

A student id is the opaque id a student got when joining one classroom (`classroom_students` has
it as its primary key), so everything of that id is everything of that student; a teacher's
deletion is still limited to what is stored under their own classroom.

Every statement here is SQLAlchemy Core and runs on SQLite and PostgreSQL; the retention windows
are computed here (one cutoff per distinct `retention_days`), not with a backend's date functions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import ColumnElement, Table, and_, delete, exists, false, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from voice_server.store.schema import (
    classroom_sessions,
    classroom_students,
    classrooms,
    guidance_notes,
    transcript_lines,
    usage_records,
)

log = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS = 30
DEFAULT_INTERVAL_S = 3600.0
# What a deleted student's usage rows say instead of their id.
DELETED_STUDENT = "deleted"
# The count of usage rows anonymised (not deleted) in what the deletions return.
ANONYMISED = "usage_records"
PURGED_TABLES = ("transcript_lines", "guidance_notes", "classroom_sessions")
DELETED_TABLES = ("transcript_lines", "guidance_notes", "classroom_sessions", "classroom_students")


# ------------------------------------------------------------------------------ the scheduled purge


async def purge_expired(
    engine: AsyncEngine, *, now: datetime | None = None, default_days: int = DEFAULT_RETENTION_DAYS
) -> dict[str, int]:
    """Delete the transcript lines, guidance notes and ended sessions older than their classroom's
    retention period (`default_days` for those without a classroom), in one transaction; returns
    how many rows each table lost. The usage ledger and the audit log are never purged here."""
    now = _utc(now or datetime.now(UTC))
    counts = dict.fromkeys(PURGED_TABLES, 0)
    async with engine.begin() as connection:
        periods = (await connection.execute(select(classrooms.c.retention_days).distinct())).scalars().all()
        windows: list[tuple[ColumnElement[bool], datetime]] = [
            (classrooms.c.retention_days == days, now - timedelta(days=days)) for days in sorted(periods)
        ]
        for table, stamp, extra in (
            (transcript_lines, transcript_lines.c.said_at, None),
            (guidance_notes, guidance_notes.c.created_at, None),
            (
                classroom_sessions,
                classroom_sessions.c.ended_at,
                classroom_sessions.c.status == "ended",
            ),
        ):
            counts[table.name] = await _purge_table(
                connection, table, stamp, extra, windows, now, default_days
            )
    return counts


async def _purge_table(
    connection: AsyncConnection,
    table: Table,
    stamp: ColumnElement[datetime],
    extra: ColumnElement[bool] | None,
    windows: list[tuple[ColumnElement[bool], datetime]],
    now: datetime,
    default_days: int,
) -> int:
    classroom_id = table.c.classroom_id
    purged = 0
    for in_period, cutoff in windows:
        # The rows of every classroom kept this many days.
        of_period = classroom_id.in_(select(classrooms.c.id).where(in_period).scalar_subquery())
        purged += await _delete(connection, table, of_period, stamp < cutoff, extra)
    # Rows of no classroom, or of a classroom that is gone.
    known = exists().where(classrooms.c.id == classroom_id)
    orphan = or_(classroom_id.is_(None), ~known)
    purged += await _delete(connection, table, orphan, stamp < now - timedelta(days=default_days), extra)
    return purged


async def _delete(connection: AsyncConnection, table: Table, *conditions: ColumnElement[bool] | None) -> int:
    result = await connection.execute(delete(table).where(and_(*(c for c in conditions if c is not None))))
    return int(result.rowcount or 0)


class RetentionJob:
    """Runs `purge_expired` when started and then every `interval_s`, in the background.

    Logs only counts, never content. A failed run is logged and retried at the next interval; the
    job stops only with `aclose()`. Every replica may run one: the purge is idempotent."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        default_days: int = DEFAULT_RETENTION_DAYS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.engine = engine
        self.interval_s = interval_s
        self.default_days = default_days
        self.clock = clock
        self.runs = 0  # finished runs, failed ones included
        self.last: dict[str, int] | None = None  # the last successful run's counts
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="retention-purge")

    async def run_once(self) -> dict[str, int] | None:
        """One purge; None (logged) when it failed."""
        try:
            counts = await purge_expired(self.engine, now=self.clock(), default_days=self.default_days)
        except Exception:
            log.exception("retention purge failed; trying again in %.0f s", self.interval_s)
            return None
        finally:
            self.runs += 1
        self.last = counts
        if any(counts.values()):
            log.info("retention purge removed %s", ", ".join(f"{t}={n}" for t, n in counts.items()))
        else:
            log.debug("retention purge: nothing expired")
        return counts

    async def _loop(self) -> None:
        while True:
            await self.run_once()
            await asyncio.sleep(self.interval_s)

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# -------------------------------------------------------------------------- deletion on request


async def delete_student_data(
    engine: AsyncEngine, student_id: str, *, classroom_id: str | None = None
) -> dict[str, int]:
    """Delete everything of one student, in one transaction: their transcript lines (and every line
    of their sessions), guidance notes about them, their sessions and their classroom membership
    with its nickname. Their usage ledger rows are kept for billing but anonymised: `student_id`
    becomes 'deleted' (`DELETED_STUDENT`), so per-classroom totals still add up.

    With `classroom_id`, only what is stored under that classroom (what its teacher may delete);
    for a student who joined with the classroom's code that is everything of theirs.

    Returns rows deleted per table, and under `usage_records` the rows anonymised."""

    def scoped(column: ColumnElement[str | None]) -> ColumnElement[bool]:
        return true() if classroom_id is None else column == classroom_id

    sessions = select(classroom_sessions.c.session_id).where(
        classroom_sessions.c.student_id == student_id, scoped(classroom_sessions.c.classroom_id)
    )
    async with engine.begin() as connection:
        return await _delete_content(
            connection,
            lines=or_(
                and_(transcript_lines.c.student_id == student_id, scoped(transcript_lines.c.classroom_id)),
                transcript_lines.c.session_id.in_(sessions.scalar_subquery()),
            ),
            notes=and_(guidance_notes.c.student_id == student_id, scoped(guidance_notes.c.classroom_id)),
            sessions=and_(
                classroom_sessions.c.student_id == student_id, scoped(classroom_sessions.c.classroom_id)
            ),
            students=and_(
                classroom_students.c.student_id == student_id, scoped(classroom_students.c.classroom_id)
            ),
            usage=and_(usage_records.c.student_id == student_id, scoped(usage_records.c.classroom_id)),
        )


async def delete_classroom_data(
    engine: AsyncEngine, classroom_id: str, *, now: datetime | None = None
) -> dict[str, int]:
    """Delete everything of one classroom, in one transaction: all its students' data as
    `delete_student_data` does (their memberships and nicknames included), and every transcript
    line, note and session of the classroom. The classroom row is kept (its id, name, teacher and
    settings, for the audit log and the ledger), closed, with its join code replaced by one nobody
    was given, so no one can join it again. Usage rows keep the classroom id, lose the student id.

    Returns rows deleted per table, and under `usage_records` the rows anonymised."""
    members = select(classroom_students.c.student_id).where(
        classroom_students.c.classroom_id == classroom_id
    )
    sessions = select(classroom_sessions.c.session_id).where(
        classroom_sessions.c.classroom_id == classroom_id
    )
    async with engine.begin() as connection:
        # Its students' ids, read first: the rows that name them go in the same transaction.
        student_ids = (await connection.execute(members)).scalars().all()
        by_student = (lambda column: column.in_(student_ids)) if student_ids else (lambda _: false())
        counts = await _delete_content(
            connection,
            lines=or_(
                transcript_lines.c.classroom_id == classroom_id,
                transcript_lines.c.session_id.in_(sessions.scalar_subquery()),
                by_student(transcript_lines.c.student_id),
            ),
            notes=or_(guidance_notes.c.classroom_id == classroom_id, by_student(guidance_notes.c.student_id)),
            sessions=or_(
                classroom_sessions.c.classroom_id == classroom_id, by_student(classroom_sessions.c.student_id)
            ),
            students=classroom_students.c.classroom_id == classroom_id,
            usage=and_(
                usage_records.c.student_id.is_not(None),
                usage_records.c.student_id != DELETED_STUDENT,
                or_(usage_records.c.classroom_id == classroom_id, by_student(usage_records.c.student_id)),
            ),
        )
        await connection.execute(
            update(classrooms)
            .where(classrooms.c.id == classroom_id, classrooms.c.closed_at.is_(None))
            .values(closed_at=_utc(now or datetime.now(UTC)))
        )
        await connection.execute(
            update(classrooms).where(classrooms.c.id == classroom_id).values(join_code=unjoinable_code())
        )
    return counts


def unjoinable_code() -> str:
    """A join code no one was given and no join code looks like (16 characters, lower case and a
    dash), unique like every code."""
    return "deleted-" + secrets.token_hex(4)


async def _delete_content(
    connection: AsyncConnection,
    *,
    lines: ColumnElement[bool],
    notes: ColumnElement[bool],
    sessions: ColumnElement[bool],
    students: ColumnElement[bool],
    usage: ColumnElement[bool],
) -> dict[str, int]:
    # Lines first: their condition may select them through the sessions deleted next.
    counts = {
        "transcript_lines": await _delete(connection, transcript_lines, lines),
        "guidance_notes": await _delete(connection, guidance_notes, notes),
        "classroom_sessions": await _delete(connection, classroom_sessions, sessions),
        "classroom_students": await _delete(connection, classroom_students, students),
    }
    anonymised = await connection.execute(
        update(usage_records).where(usage).values(student_id=DELETED_STUDENT)
    )
    counts[ANONYMISED] = int(anonymised.rowcount or 0)
    return counts


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
