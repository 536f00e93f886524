"""The ledger as a state machine: whatever is reported, replayed, flushed or crashed, the totals in
the database are the sum over distinct keys of the largest total each key reached, and turns only
move forward."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from pipelines.frames import TurnDone, TurnStatus, TurnUsage, UsageKind, UsageMetric
from voice_server.ledger import repository
from voice_server.ledger.records import TurnState, UsageKey
from voice_server.ledger.writer import UsageLedger
from voice_server.store import migrate
from voice_server.store.engine import create_engine

SESSIONS = st.integers(0, 1)
TURNS = st.sampled_from(["turn_1", "turn_2", "turn_3"])


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self, loop: asyncio.AbstractEventLoop, engine: Any) -> None:
        super().__init__()
        self.loop, self.engine = loop, engine
        run = uuid.uuid4().hex[:8]  # every example writes under its own sessions: no clean-up needed
        self.instance = f"server-{run}"
        self.sessions = [f"sess_{run}_{i}" for i in range(2)]
        self.ledger = UsageLedger(engine, instance=self.instance)
        self.running: dict[UsageKey, int] = defaultdict(int)  # what metering has counted so far
        self.reports: list[UsageMetric] = []
        # The model: what is buffered, and what the database must hold.
        self.pending: dict[UsageKey, tuple[int, bool]] = {}
        self.stored: dict[UsageKey, tuple[int, bool]] = {}
        self.live: dict[tuple[str, str], TurnState] = {}
        self.pending_turns: dict[tuple[str, str], TurnState] = {}
        self.stored_turns: dict[tuple[str, str], TurnState] = {}

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    # ----------------------------------------------------------------------------- the model

    def _buffer_usage(self, metric: UsageMetric) -> None:
        key = UsageKey(
            metric.session_id, metric.turn_id, metric.attempt, metric.kind, metric.provider, metric.model
        )
        amount, speculative = self.pending.get(key, (0, False))
        self.pending[key] = (max(amount, metric.amount), speculative or metric.speculative)

    def _buffer_turn(self, turn: tuple[str, str], state: TurnState) -> None:
        for book in (self.live, self.pending_turns):
            old = book.get(turn)
            book[turn] = state if old is None or not old.final else old

    # --------------------------------------------------------------------------------- rules

    @rule(
        session=SESSIONS,
        turn=TURNS,
        attempt=st.integers(0, 2),
        kind=st.sampled_from(list(UsageKind)),
        provider=st.sampled_from(["local", "azure"]),
        increment=st.integers(1, 10_000),
        speculative=st.booleans(),
    )
    def report(
        self,
        session: int,
        turn: str,
        attempt: int,
        kind: UsageKind,
        provider: str,
        increment: int,
        speculative: bool,
    ) -> None:
        session_id = self.sessions[session]
        key = UsageKey(session_id, turn, attempt, kind, provider, "m1")
        self.running[key] += increment
        metric = UsageMetric(session_id, turn, attempt, kind, provider, "m1", self.running[key], speculative)
        self.reports.append(metric)
        self.ledger.observe(session_id, metric)
        self._buffer_usage(metric)
        if (session_id, turn) not in self.live:
            self._buffer_turn((session_id, turn), TurnState.IN_FLIGHT)

    @precondition(lambda self: self.reports)
    @rule(data=st.data(), increment=st.integers(1, 10_000))
    def report_more(self, data: st.DataObject, increment: int) -> None:
        """A key already reported grows: the running total goes up."""
        metric = data.draw(st.sampled_from(self.reports))
        kind = metric.kind
        provider = metric.provider
        session = self.sessions.index(metric.session_id)
        self.report(session, metric.turn_id, metric.attempt, kind, provider, increment, metric.speculative)

    @precondition(lambda self: self.reports)
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        """Any earlier report again: a duplicate, or an older (smaller) running total."""
        metric = data.draw(st.sampled_from(self.reports))
        self.ledger.observe(metric.session_id, metric)
        self._buffer_usage(metric)
        if (metric.session_id, metric.turn_id) not in self.live:
            self._buffer_turn((metric.session_id, metric.turn_id), TurnState.IN_FLIGHT)

    @rule(session=SESSIONS, turn=TURNS)
    def finish_turn(self, session: int, turn: str) -> None:
        session_id = self.sessions[session]
        self.ledger.observe(session_id, TurnDone(turn, TurnStatus.COMPLETED, "", "", {}, TurnUsage()))
        self._buffer_turn((session_id, turn), TurnState.DONE)

    @rule()
    def flush(self) -> None:
        self.run(self.ledger.flush())
        for key, (amount, speculative) in self.pending.items():
            old_amount, old_speculative = self.stored.get(key, (0, False))
            self.stored[key] = (max(amount, old_amount), speculative or old_speculative)
        for turn, state in self.pending_turns.items():
            old = self.stored_turns.get(turn)
            if old is None or (not old.final and state.final):
                self.stored_turns[turn] = state
        self.pending.clear()
        self.pending_turns.clear()

    @rule()
    def crash_and_restart(self) -> None:
        """The process dies: what was buffered is gone, a new ledger settles what was in flight."""
        self.ledger = UsageLedger(self.engine, instance=self.instance)
        self.run(self.ledger.recover())
        self.pending.clear()
        self.pending_turns.clear()
        self.live.clear()
        for turn, state in self.stored_turns.items():
            if state is TurnState.IN_FLIGHT:
                self.stored_turns[turn] = TurnState.SETTLED

    # ---------------------------------------------------------------------------- invariants

    @invariant()
    def totals_are_the_sum_of_distinct_keys_at_their_largest(self) -> None:
        expected: dict[tuple[str, str, str, bool], int] = defaultdict(int)
        for key, (amount, speculative) in self.stored.items():
            expected[(key.session_id, key.kind.value, key.provider, speculative)] += amount
        actual: dict[tuple[str, str, str, bool], int] = {}
        for session_id in self.sessions:
            for total in self.run(repository.session_totals(self.engine, session_id)):
                actual[(session_id, total.kind.value, total.provider, total.speculative)] = total.units
        assert actual == dict(expected)

    @invariant()
    def turns_only_move_forward(self) -> None:
        actual = {}
        for session_id in self.sessions:
            for turn, state in self.run(repository.session_turns(self.engine, session_id)).items():
                actual[(session_id, turn)] = state
        assert actual == self.stored_turns


def test_the_ledger_never_loses_nor_doubles_units(database_url: str) -> None:
    loop = asyncio.new_event_loop()
    engine = create_engine(database_url)
    try:
        loop.run_until_complete(migrate.ensure_schema(engine))
        run_state_machine_as_test(
            lambda: LedgerMachine(loop, engine),
            settings=settings(
                max_examples=25,
                stateful_step_count=30,
                deadline=None,
                suppress_health_check=[HealthCheck.too_slow],
            ),
        )
    finally:
        loop.run_until_complete(engine.dispose())
        loop.close()
