"""What the ledger stores, as plain values: usage records by idempotency key, and turn states."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from pipelines.caps import engine_kind_of
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
class Attribution:
    """Whose use a session's records are: opaque ids from its access token (never a name), and
    the school key each engine kind bills. None where unknown (open mode, an engine on no key).
    Not part of the idempotency key: every record of a session carries the same."""

    student_id: str | None = None
    classroom_id: str | None = None
    key_ids: Mapping[str, str] = field(default_factory=dict)  # "stt" | "llm" | "tts" -> key id

    def key_for(self, kind: UsageKind) -> str | None:
        return self.key_ids.get(engine_kind_of(kind))


NOBODY = Attribution()


@dataclass(frozen=True, slots=True)
class UsageRecord:
    key: UsageKey
    amount: int  # the running total for the key, in the kind's unit
    speculative: bool
    student_id: str | None = None
    classroom_id: str | None = None
    key_id: str | None = None

    @classmethod
    def from_metric(cls, metric: UsageMetric, attribution: Attribution = NOBODY) -> UsageRecord:
        key = UsageKey(
            metric.session_id, metric.turn_id, metric.attempt, metric.kind, metric.provider, metric.model
        )
        return cls(
            key, metric.amount, metric.speculative,
            attribution.student_id, attribution.classroom_id, attribution.key_for(metric.kind),
        )

    def merged(self, other: UsageRecord) -> UsageRecord:
        """Two reports of one key as one: the larger running total, and once work is known to be
        thrown away it stays so. Order does not matter, so replays and reordering are harmless."""
        assert other.key == self.key
        return UsageRecord(
            self.key, max(self.amount, other.amount), self.speculative or other.speculative,
            self.student_id or other.student_id, self.classroom_id or other.classroom_id,
            self.key_id or other.key_id,
        )


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
