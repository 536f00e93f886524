"""What was said in a classroom session, as heard, in the database until the retention job
purges it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from voice_server.store.schema import transcript_lines

# A line longer than this is cut: a 45 s utterance is ~800 characters, so this is only a guard.
MAX_LINE_CHARS = 2000


@dataclass(frozen=True, slots=True)
class Line:
    turn_id: str
    speaker: str  # "student" | "tutor"
    text: str
    interrupted: bool = False


async def append(
    engine: AsyncEngine,
    session_id: str,
    first_seq: int,
    lines: list[Line],
    *,
    classroom_id: str | None,
    student_id: str | None,
) -> None:
    if not lines:
        return
    now = datetime.now(UTC)
    async with engine.begin() as connection:
        await connection.execute(
            insert(transcript_lines),
            [
                {
                    "session_id": session_id,
                    "seq": first_seq + i,
                    "turn_id": line.turn_id,
                    "classroom_id": classroom_id,
                    "student_id": student_id,
                    "speaker": line.speaker,
                    "text": line.text[:MAX_LINE_CHARS],
                    "interrupted": line.interrupted,
                    "said_at": now,
                }
                for i, line in enumerate(lines)
            ],
        )


async def read(engine: AsyncEngine, session_id: str) -> list[Line]:
    query = (
        select(transcript_lines)
        .where(transcript_lines.c.session_id == session_id)
        .order_by(transcript_lines.c.seq)
    )
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).mappings().all()
    return [Line(r["turn_id"], r["speaker"], r["text"], bool(r["interrupted"])) for r in rows]
