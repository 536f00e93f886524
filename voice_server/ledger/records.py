"""What the ledger stores, as plain values: usage records by idempotency key, and turn states."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pipelines.frames import UsageKind, UsageMetric


class TurnState(enum.StrEnum):
    IN_FLIGHT = "in_flight"  # usage is arriving; a crash now leaves it for the restart to settle
    DONE = "done"  # the turn ended normally
    SETTLED = "settled"  # it ended without a report (crash, session gone): its units stand as recorded

    @property
    def final(self) -> bool:
        return self is not TurnState.IN_FLIGHT


@dataclass(frozen=True, slots=True)
class UsageKey:
    """The idempotency key: one running total per key, however often it is reported."""

    session_id: str
    turn_id: str
    attempt: int
    kind: UsageKind
    provider: str
    model: str


@dataclass(frozen=True, slots=True)
class UsageRecord:
    key: UsageKey
    amount: int  # the running total for the key, in the kind's unit
    speculative: bool

    @classmethod
    def from_metric(cls, metric: UsageMetric) -> UsageRecord:
        key = UsageKey(
            metric.session_id, metric.turn_id, metric.attempt, metric.kind, metric.provider, metric.model
        )
        return cls(key, metric.amount, metric.speculative)

    def merged(self, other: UsageRecord) -> UsageRecord:
        """Two reports of one key as one: the larger running total, and once work is known to be
        thrown away it stays so. Order does not matter, so replays and reordering are harmless."""
        assert other.key == self.key
        return UsageRecord(self.key, max(self.amount, other.amount), self.speculative or other.speculative)


def merged_state(old: TurnState | None, new: TurnState) -> TurnState:
    """A turn only moves forward: a late usage report never reopens a finished turn."""
    if old is None or not old.final:
        return new
    return old


@dataclass(frozen=True, slots=True)
class UsageTotal:
    """Units of one kind from one provider and model, summed over distinct keys."""

    kind: UsageKind
    provider: str
    model: str
    speculative: bool
    units: int
