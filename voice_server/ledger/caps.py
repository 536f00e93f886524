"""The caps a session shares with others: its student's, its classroom's and its engines' school
keys', each for the configured period, seeded from the ledger and then kept live in this
process by `pipelines.quota.QuotaRegistry` (its docstring says what that can and cannot promise
across replicas).

Who a session is comes from its access token: the subject id of whoever signed in (a student;
a teacher or admin trying the page is recorded and capped under their own opaque subject in the
same `student_id` column, so no signed-in role is an uncapped way in) and the token's classroom.
Open mode has no token, so no student or classroom: only key caps can apply there.

The caps themselves are the settings' with those an admin stored at run time on top
(`voice_server/ledger/cap_store.py`), read once when a session starts, its own session caps
included. A changed cap applies to sessions started after the change; a session already running
keeps the caps it started with, and is still charged to the same shared count (see
`QuotaRegistry.quota`), so no unit is counted twice or missed.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any, NamedTuple

from pipelines.allowance import key_id_of
from pipelines.caps import UNIT, CapKind, UsageCaps
from pipelines.quota import CapScope, Line, PriceBook, Quota, QuotaRegistry, ScopeCaps
from voice_server.auth.tokens import Claims
from voice_server.ledger import cap_store, repository
from voice_server.ledger.records import Attribution
from voice_server.ledger.writer import UsageLedger
from voice_server.settings import BillingSettings


_COLUMN: dict[CapScope, repository.ScopeColumn] = {
    "student": "student_id", "classroom": "classroom_id", "key": "key_id",
}


def attribution_of(claims: Claims | None) -> Attribution:
    """Opaque ids only: the token's subject and classroom, never a name."""
    if claims is None:
        return Attribution()
    return Attribution(student_id=claims.subject, classroom_id=claims.classroom)


def with_engine_keys(who: Attribution, engines: Any) -> Attribution:
    """The school key each engine kind of the session bills, where its engine has one."""
    keys = {kind: key for kind in UNIT if (key := key_id_of(getattr(engines, kind, None))) is not None}
    return replace(who, key_ids=keys)


class SessionCaps(NamedTuple):
    """What one session starts with: its own caps and, per engine kind, the shared quotas its
    calls are charged to."""

    session: UsageCaps
    quotas: dict[CapKind, list[Quota]]


class SharedCaps:
    """Opens, for one session, the quotas of every scope that is capped and applies to it. The
    caps are the settings' with those stored at run time on top (`cap_store`), read once per
    session start: a cap changed through the API applies to sessions started after the change."""

    def __init__(self, billing: BillingSettings, prices: PriceBook | None, ledger: UsageLedger) -> None:
        self.defaults: dict[CapScope, UsageCaps] = {
            "session": billing.session_caps,
            "student": billing.student_caps,
            "classroom": billing.classroom_caps,
            "key": billing.key_caps,
        }
        self._ledger = ledger
        self.registry = QuotaRegistry(prices)

    async def table(self, who: Attribution | None = None) -> cap_store.CapTable:
        """The caps in force: for `who`'s scopes only, or (None) every stored one."""
        owners: dict[CapScope, list[str]] | None = None
        if who is not None:
            owners = {
                "student": [who.student_id] if who.student_id else [],
                "classroom": [who.classroom_id] if who.classroom_id else [],
                "key": list(who.key_ids.values()),
            }
        return await cap_store.read(self._ledger.engine, self.defaults, owners)

    async def open(self, who: Attribution) -> SessionCaps:
        """A starting session's caps and quotas, from one read of the stored caps; raises when the
        caps or the use they start from cannot be read (the session then does not start)."""
        table = await self.table(who)
        return SessionCaps(table.caps("session"), await self.for_session(who, table))

    async def for_session(
        self, who: Attribution, table: cap_store.CapTable | None = None
    ) -> dict[CapKind, list[Quota]]:
        """Per engine kind, the shared quotas its calls are charged to. Reads the ledger once per
        quota and period (the first session of a student, classroom or key); raises when it cannot."""
        if table is None:
            table = await self.table(who)
        quotas: dict[CapKind, list[Quota]] = {kind: [] for kind in UNIT}
        for scope, owner in (("student", who.student_id), ("classroom", who.classroom_id)):
            if owner is not None and (caps := self._scope_caps(table, scope, owner)).any:
                quota = await self._quota(scope, owner, caps)
                for kind in UNIT:
                    quotas[kind].append(quota)
        for kind, key in who.key_ids.items():
            if (caps := self._scope_caps(table, "key", key)).any:
                quota = await self._quota("key", key, caps)
                quotas[kind].append(quota)  # type: ignore[index] - kinds are CapKind
        return quotas

    def _scope_caps(self, table: cap_store.CapTable, scope: CapScope, owner: str) -> ScopeCaps:
        caps = table.caps(scope, owner)
        assert isinstance(caps, ScopeCaps)  # every scope but "session" has a period
        if caps.cost_minor is not None and self.registry.prices is None:
            # Stored while the server had a price table, and it has none now: fail closed.
            raise RuntimeError(
                f"a {scope} cap in cost is stored but the server has no price table: set "
                "CONVERGIO_BILLING__PRICE_TABLE, or change the cap with PUT /api/v1/caps"
            )
        return caps

    async def _quota(self, scope: CapScope, owner: str, caps: ScopeCaps) -> Quota:
        column = _COLUMN[scope]

        async def load(since: datetime | None) -> list[tuple[Line, int]]:
            await self._ledger.flush()  # what this process used so far is in the database first
            totals = await repository.scope_totals(self._ledger.engine, column, owner, since)
            return [((t.kind, t.provider, t.model), t.units) for t in totals]

        return await self.registry.quota(scope, owner, caps, load)
