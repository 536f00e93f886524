"""Metric events: usage and latency as data, read by turn.done, /metrics, the ledger and the benchmark."""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.frames.base import SystemFrame
from pipelines.frames.values import UsageKind


@dataclass(frozen=True, slots=True)
class UsageMetric(SystemFrame):
    """Units of one kind used by one attempt at a turn, keyed by (session, turn, attempt, kind,
    provider, model). `amount` is the running total for that key, so replaying a record never
    counts twice. Attempt 0 is work for the turn while it was still being heard (partial
    transcripts, prefill); a `speculative` attempt was thrown away."""

    session_id: str
    turn_id: str
    attempt: int
    kind: UsageKind
    provider: str
    model: str
    amount: int
    speculative: bool


@dataclass(frozen=True, slots=True)
class LatencyMetric(SystemFrame):
    """One stage of one finished turn (see `pipelines.budgets.STAGE_MARKS`), in ms."""

    session_id: str
    turn_id: str
    stage: str
    ms: int
