"""The ledger's SQL: idempotent upserts, crash settlement and totals. Works on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from pipelines.frames import UsageKind
from voice_server.ledger.records import TurnState, UsageRecord, UsageTotal
from voice_server.store.schema import turn_states, usage_records


def _insert(connection: AsyncConnection, table: Any) -> Any:
    dialect = connection.dialect.name
    if dialect == "sqlite":
        return sqlite.insert(table)
    if dialect == "postgresql":
        return postgresql.insert(table)
    raise NotImplementedError(f"the ledger supports SQLite and PostgreSQL, not {dialect}")


async def write(
    engine: AsyncEngine,
    records: Iterable[UsageRecord],
    turns: Mapping[tuple[str, str], TurnState],
    *,
    instance: str,
) -> None:
    """Upsert a batch in one transaction: a turn's units and its state land together or not at all.
    Each key appears at most once (PostgreSQL refuses to update one row twice in a statement)."""
    now = datetime.now(UTC)
    rows = [
        {
            "session_id": r.key.session_id,
            "turn_id": r.key.turn_id,
            "attempt": r.key.attempt,
            "kind": r.key.kind.value,
            "provider": r.key.provider,
            "model": r.key.model,
            "amount": r.amount,
            "speculative": r.speculative,
            # Whose use it is: written with the row, never changed (a session's are all the same).
            "student_id": r.student_id,
            "classroom_id": r.classroom_id,
            "key_id": r.key_id,
            "recorded_at": now,
            "updated_at": now,
        }
        for r in records
    ]
    states = [
        {"session_id": s, "turn_id": t, "status": state.value, "instance": instance, "updated_at": now}
        for (s, t), state in turns.items()
    ]
    async with engine.begin() as connection:
        if rows:
            insert = _insert(connection, usage_records)
            new, old = insert.excluded, usage_records.c
            await connection.execute(
                insert.on_conflict_do_update(
                    index_elements=[
                        old.session_id,
                        old.turn_id,
                        old.attempt,
                        old.kind,
                        old.provider,
                        old.model,
                    ],
                    # `amount` is a running total: keeping the largest makes any replay a no-op.
                    set_={
                        "amount": case((new.amount > old.amount, new.amount), else_=old.amount),
                        "speculative": or_(old.speculative, new.speculative),
                        "updated_at": new.updated_at,
                    },
                ),
                rows,
            )
        if states:
            insert = _insert(connection, turn_states)
            new, old = insert.excluded, turn_states.c
            await connection.execute(
                insert.on_conflict_do_update(
                    index_elements=[old.session_id, old.turn_id],
                    set_={"status": new.status, "updated_at": new.updated_at},
                    # Forward only: a finished turn is never reopened, nor re-finished.
                    where=and_(
                        old.status == TurnState.IN_FLIGHT.value, new.status != TurnState.IN_FLIGHT.value
                    ),
                ),
                states,
            )


async def settle_in_flight(engine: AsyncEngine, *, instance: str) -> int:
    """Turns this instance left in flight (it crashed) become settled, their units kept as recorded.
    Returns how many."""
    async with engine.begin() as connection:
        result = await connection.execute(
            update(turn_states)
            .where(turn_states.c.instance == instance, turn_states.c.status == TurnState.IN_FLIGHT.value)
            .values(status=TurnState.SETTLED.value, updated_at=datetime.now(UTC))
        )
        return result.rowcount or 0


async def _totals(engine: AsyncEngine, *where: Any) -> list[UsageTotal]:
    c = usage_records.c
    query = (
        select(c.kind, c.provider, c.model, c.speculative, func.sum(c.amount))
        .where(*where)
        .group_by(c.kind, c.provider, c.model, c.speculative)
        .order_by(c.kind, c.provider, c.model, c.speculative)
    )
    async with engine.connect() as connection:
        result = await connection.execute(query)
        return [
            UsageTotal(UsageKind(kind), provider, model, bool(speculative), int(units))
            for kind, provider, model, speculative, units in result
        ]


async def session_totals(engine: AsyncEngine, session_id: str) -> list[UsageTotal]:
    return await _totals(engine, usage_records.c.session_id == session_id)


async def totals_between(engine: AsyncEngine, start: datetime, end: datetime) -> list[UsageTotal]:
    """Usage first recorded in [start, end); naive times are read as UTC."""
    # SQLite keeps times without a zone: compare in UTC, as they are written.
    start, end = (t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC) for t in (start, end))
    c = usage_records.c
    return await _totals(engine, c.recorded_at >= start, c.recorded_at < end)


ScopeColumn = Literal["student_id", "classroom_id", "key_id"]


async def owner_totals_between(
    engine: AsyncEngine, owners: Mapping[ScopeColumn, str], start: datetime, end: datetime
) -> list[UsageTotal]:
    """The use first recorded in [start, end) by rows whose every column in `owners` holds its
    value (a student's; a classroom's; a student's in one classroom)."""
    start, end = (t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC) for t in (start, end))
    c = usage_records.c
    where = [c[column] == owner for column, owner in owners.items()]
    return await _totals(engine, *where, c.recorded_at >= start, c.recorded_at < end)


async def scope_totals(
    engine: AsyncEngine, column: ScopeColumn, owner: str, since: datetime | None
) -> list[UsageTotal]:
    """One student's, classroom's or key's use first recorded since `since` (None: ever), per kind,
    provider and model: what a shared cap starts its period from. Bounded by `recorded_at`'s
    index for a day or a month; all time reads every row of the owner."""
    c = usage_records.c
    where = [c[column] == owner]
    if since is not None:
        since = since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)
        where.append(c.recorded_at >= since)
    return await _totals(engine, *where)


async def session_turns(engine: AsyncEngine, session_id: str) -> dict[str, TurnState]:
    query = select(turn_states.c.turn_id, turn_states.c.status).where(turn_states.c.session_id == session_id)
    async with engine.connect() as connection:
        return {turn: TurnState(status) for turn, status in await connection.execute(query)}
