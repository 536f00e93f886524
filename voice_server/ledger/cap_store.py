"""Caps set at run time (`PUT /api/v1/caps/...`), kept in the database so that they outlive a
restart and every replica reads the same: overrides on top of the settings' defaults
(`CONVERGIO_BILLING__*_CAPS__*`).

What applies to an owner (a student, a classroom, a school key), most specific first: the caps
stored for that owner, else the caps stored for its whole scope, else the settings'. Each replaces
the ones beneath it whole (a field left out is no cap, not the default's value), so what `GET`
shows is exactly what a session gets. Session caps have no owner: only a scope-wide override.

Sessions read the table once when they start (`voice_server/ledger/caps.py`): a change applies to
sessions started after it; sessions already running keep the caps they started with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from pipelines.caps import CapKind, UsageCaps
from pipelines.quota import CapScope, ScopeCaps
from voice_server.store.schema import cap_overrides

OwnedScope = Literal["student", "classroom", "key"]
SCOPES: tuple[CapScope, ...] = ("session", "student", "classroom", "key")
OWNED_SCOPES: tuple[OwnedScope, ...] = ("student", "classroom", "key")
ANY_OWNER = ""  # the owner_id of a scope-wide row
# Where the caps in force come from: the settings, the scope's stored default, the owner's own.
CapSource = Literal["settings", "scope", "owner"]
_LIMITS = ("stt_audio_ms", "llm_tokens", "tts_chars")


@dataclass(frozen=True, slots=True)
class StoredCaps:
    scope: CapScope
    owner_id: str | None  # None: the scope's default, for every owner
    caps: UsageCaps  # a ScopeCaps for every scope but "session"
    updated_at: datetime
    updated_by: str  # the admin's opaque subject


@dataclass(frozen=True, slots=True)
class InForce:
    caps: UsageCaps
    source: CapSource
    stored: StoredCaps | None  # None when the settings' apply


@dataclass(frozen=True)
class CapTable:
    """The settings' caps with the stored ones on top (all of them, or those `read` was asked for)."""

    defaults: Mapping[CapScope, UsageCaps]
    stored: Mapping[tuple[CapScope, str], StoredCaps]

    def in_force(self, scope: CapScope, owner_id: str | None = None) -> InForce:
        if owner_id is not None and (own := self.stored.get((scope, owner_id))) is not None:
            return InForce(own.caps, "owner", own)
        if (default := self.stored.get((scope, ANY_OWNER))) is not None:
            return InForce(default.caps, "scope", default)
        return InForce(self.defaults[scope], "settings", None)

    def caps(self, scope: CapScope, owner_id: str | None = None) -> UsageCaps:
        return self.in_force(scope, owner_id).caps

    def owners(self, scope: CapScope) -> list[StoredCaps]:
        """The caps stored for single owners of `scope`, by owner id."""
        rows = [s for (sc, owner), s in self.stored.items() if sc == scope and owner != ANY_OWNER]
        return sorted(rows, key=lambda s: s.owner_id or "")


def _caps_of(scope: CapScope, row: Any) -> UsageCaps:
    """A row as the settings' own model, validated again: a row edited by hand that breaks a rule
    stops the session start (fail closed) rather than capping nothing."""
    values = {name: row[name] for name in _LIMITS if row[name] is not None}
    if scope == "session":
        return UsageCaps.model_validate(values)
    if row["cost_minor"] is not None:
        values["cost_minor"] = row["cost_minor"]
    if row["period"] is not None:
        values["period"] = row["period"]
    return ScopeCaps.model_validate(values)


def _stored(row: Any) -> StoredCaps:
    scope: CapScope = row["scope"]
    at = row["updated_at"]
    return StoredCaps(
        scope=scope,
        owner_id=None if row["owner_id"] == ANY_OWNER else row["owner_id"],
        caps=_caps_of(scope, row),
        updated_at=at.replace(tzinfo=UTC) if at.tzinfo is None else at,  # SQLite keeps no zone
        updated_by=row["updated_by"],
    )


async def read(
    engine: AsyncEngine, defaults: Mapping[CapScope, UsageCaps],
    owners: Mapping[CapScope, Iterable[str]] | None = None,
) -> CapTable:
    """One query. With `owners`, only the scope-wide rows and those of these owners (what one
    session needs); without, every row (the admin's view)."""
    c = cap_overrides.c
    query = select(cap_overrides)
    if owners is not None:
        wanted = [c.owner_id == ANY_OWNER]
        for scope, ids in owners.items():
            ids = sorted(set(ids))
            if ids:
                wanted.append(and_(c.scope == scope, c.owner_id.in_(ids)))
        query = query.where(or_(*wanted))
    async with engine.connect() as connection:
        rows = (await connection.execute(query)).mappings().all()
    stored = {(row["scope"], row["owner_id"]): _stored(row) for row in rows}
    return CapTable(dict(defaults), stored)


def _insert(dialect: str) -> Any:
    if dialect == "sqlite":
        return sqlite.insert(cap_overrides)
    if dialect == "postgresql":
        return postgresql.insert(cap_overrides)
    raise NotImplementedError(f"caps are stored in SQLite or PostgreSQL, not {dialect}")


async def put(
    engine: AsyncEngine, scope: CapScope, owner_id: str | None, caps: UsageCaps, *, by: str
) -> StoredCaps:
    """Store `caps` for `scope` (owner None: every owner), replacing what was stored."""
    if scope == "session" and (owner_id is not None or type(caps) is not UsageCaps):
        raise ValueError("session caps have no owner, no period and no cost")
    if scope != "session" and not isinstance(caps, ScopeCaps):
        raise ValueError(f"{scope} caps need a period")
    now = datetime.now(UTC)
    kinds: tuple[CapKind, ...] = ("stt", "llm", "tts")
    values: dict[str, Any] = {name: caps.limit(kind) for name, kind in zip(_LIMITS, kinds, strict=True)}
    values |= {
        "cost_minor": caps.cost_minor if isinstance(caps, ScopeCaps) else None,
        "period": caps.period if isinstance(caps, ScopeCaps) else None,
        "updated_at": now,
        "updated_by": by,
    }
    async with engine.begin() as connection:
        insert = _insert(connection.dialect.name)
        await connection.execute(
            insert.values(scope=scope, owner_id=owner_id or ANY_OWNER, **values).on_conflict_do_update(
                index_elements=[cap_overrides.c.scope, cap_overrides.c.owner_id], set_=values
            )
        )
    return StoredCaps(scope, owner_id, caps, now, by)


async def remove(engine: AsyncEngine, scope: CapScope, owner_id: str | None) -> bool:
    """Drop a stored override (what is beneath it applies again); False when there was none."""
    c = cap_overrides.c
    async with engine.begin() as connection:
        result = await connection.execute(
            delete(cap_overrides).where(c.scope == scope, c.owner_id == (owner_id or ANY_OWNER))
        )
        return bool(result.rowcount)
