"""The caps a session shares with others: its student's, its classroom's and its engines' school
keys', each for the configured period, seeded from the ledger and then kept live in this
process by `pipelines.quota.QuotaRegistry` (its docstring says what that can and cannot promise
across replicas).

Who a session is comes from its access token: the subject id of whoever signed in (a student;
a teacher or admin trying the page is recorded and capped under their own opaque subject in the
same `student_id` column, so no signed-in role is an uncapped way in) and the token's classroom.
Open mode has no token, so no student or classroom: only key caps can apply there.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from pipelines.allowance import key_id_of
from pipelines.caps import UNIT, CapKind
from pipelines.quota import CapScope, Line, PriceBook, Quota, QuotaRegistry, ScopeCaps
from voice_server.auth.tokens import Claims
from voice_server.ledger import repository
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


class SharedCaps:
    """Opens, for one session, the quotas of every scope that is capped and applies to it."""

    def __init__(self, billing: BillingSettings, prices: PriceBook | None, ledger: UsageLedger) -> None:
        self._caps: dict[CapScope, ScopeCaps] = {
            "student": billing.student_caps,
            "classroom": billing.classroom_caps,
            "key": billing.key_caps,
        }
        self._ledger = ledger
        self.registry = QuotaRegistry(prices)

    @property
    def any(self) -> bool:
        return any(caps.any for caps in self._caps.values())

    async def for_session(self, who: Attribution) -> dict[CapKind, list[Quota]]:
        """Per engine kind, the shared quotas its calls are charged to. Reads the ledger once per
        quota and period (the first session of a student, classroom or key); raises when it cannot."""
        quotas: dict[CapKind, list[Quota]] = {kind: [] for kind in UNIT}
        for scope, owner in (("student", who.student_id), ("classroom", who.classroom_id)):
            if owner is not None and self._caps[scope].any:
                quota = await self._quota(scope, owner)
                for kind in UNIT:
                    quotas[kind].append(quota)
        if self._caps["key"].any:
            for kind, key in who.key_ids.items():
                quotas[kind].append(await self._quota("key", key))  # type: ignore[index] - kinds are CapKind
        return quotas

    async def _quota(self, scope: CapScope, owner: str) -> Quota:
        column = _COLUMN[scope]

        async def load(since: datetime | None) -> list[tuple[Line, int]]:
            await self._ledger.flush()  # what this process used so far is in the database first
            totals = await repository.scope_totals(self._ledger.engine, column, owner, since)
            return [((t.kind, t.provider, t.model), t.units) for t in totals]

        return await self.registry.quota(scope, owner, self._caps[scope], load)
