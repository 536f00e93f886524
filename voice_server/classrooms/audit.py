"""The audit log: who (an opaque subject and role) did what, when, to which classroom, session or
student. Append-only: this module inserts and reads; nothing updates or deletes a row.

`detail` holds ids and settings only (a cap's new limits, a note's id and length), never a
student's words or a note's text: those are personal data and are deleted on request, while the
record that a deletion happened must outlive it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from voice_server.auth.tokens import Claims
from voice_server.store.schema import audit_log

MAX_PAGE = 500
SYSTEM_ACTOR = "system"


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor_id: str
    actor_role: str
    action: str
    classroom_id: str | None
    session_id: str | None
    target_id: str | None
    detail: dict[str, Any]


async def record(
    engine: AsyncEngine,
    actor: Claims | None,
    action: str,
    *,
    classroom_id: str | None = None,
    session_id: str | None = None,
    target_id: str | None = None,
    detail: Mapping[str, Any] | None = None,
    at: datetime | None = None,
) -> None:
    """Append one entry. Call it in the same request as the action, after the action took effect.
    `actor` None is the server itself (a safety flag it raised, a session it ended on shutdown)."""
    async with engine.begin() as connection:
        await connection.execute(
            insert(audit_log).values(
                at=at or datetime.now(UTC),
                actor_id=actor.subject if actor else SYSTEM_ACTOR,
                actor_role=actor.role.value if actor else SYSTEM_ACTOR,
                action=action,
                classroom_id=classroom_id,
                session_id=session_id,
                target_id=target_id,
                detail=json.dumps(dict(detail or {}), sort_keys=True, default=str),
            )
        )


async def read(
    engine: AsyncEngine,
    *,
    classroom_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[AuditEntry]:
    """Entries oldest first, `after_id` for the next page."""
    query = select(audit_log).where(audit_log.c.id > after_id)
    if classroom_id is not None:
        query = query.where(audit_log.c.classroom_id == classroom_id)
    if since is not None:
        query = query.where(audit_log.c.at >= since)
    if until is not None:
        query = query.where(audit_log.c.at < until)
    query = query.order_by(audit_log.c.id).limit(max(1, min(limit, MAX_PAGE)))
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).mappings().all()
    return [
        AuditEntry(
            id=int(r["id"]), at=_utc(r["at"]), actor_id=r["actor_id"], actor_role=r["actor_role"],
            action=r["action"], classroom_id=r["classroom_id"], session_id=r["session_id"],
            target_id=r["target_id"], detail=json.loads(r["detail"]),
        )
        for r in rows
    ]


def _utc(value: datetime) -> datetime:
    # SQLite gives back naive datetimes for timezone-aware columns.
    return value if value.tzinfo else value.replace(tzinfo=UTC)
