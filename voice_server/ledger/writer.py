"""The ledger's writer: takes usage as the pipeline reports it and writes it in the background.

`observe` is called on the event path of every session, so it only updates an in-memory buffer
and never waits. The buffer coalesces by idempotency key (a key's newest running total replaces
the older ones), so its size is bounded by the keys in flight, not by how often they are
reported; a bounded queue that dropped reports would lose billable units instead. A background
task writes the buffer in batches, each in one transaction; a batch that fails goes back into
the buffer and is retried, so units are delayed, never lost, never doubled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.ext.asyncio import AsyncEngine

from pipelines.frames import PipelineEvent, TurnDone, UsageMetric
from voice_server.ledger import repository
from voice_server.ledger.records import NOBODY, Attribution, TurnState, UsageKey, UsageRecord, merged_state

log = logging.getLogger(__name__)

TurnKey = tuple[str, str]  # (session_id, turn_id)
MAX_RETRY_DELAY_S = 30.0


class UsageLedger:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        instance: str,
        flush_interval_s: float = 0.25,
        max_pending: int = 10_000,
    ) -> None:
        self.engine = engine
        self.instance = instance
        self._interval = flush_interval_s
        self._max_pending = max_pending
        self._records: dict[UsageKey, UsageRecord] = {}
        self._turns: dict[TurnKey, TurnState] = {}
        # Per live session, where each of its turns stands (dropped when the session ends).
        self._live: dict[str, dict[str, TurnState]] = {}
        self._dirty = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._writing: asyncio.Future[None] | None = None  # the batch being written, if any
        self._task: asyncio.Task[None] | None = None
        self._warned = False
        self.settled_at_start = 0

    @property
    def pending_keys(self) -> int:
        """Usage keys waiting to be written."""
        return len(self._records)

    # ------------------------------------------------------------------- the sessions' side

    def observe(
        self, session_id: str | None, event: PipelineEvent, attribution: Attribution = NOBODY
    ) -> None:
        """Every pipeline event of a session passes here; usage (as `attribution`'s) and turn
        ends are kept."""
        if isinstance(event, UsageMetric):
            self.record(UsageRecord.from_metric(event, attribution))
        elif isinstance(event, TurnDone) and session_id is not None:
            self._set_turn(session_id, event.turn_id, TurnState.DONE)

    def record(self, record: UsageRecord) -> None:
        key = record.key
        known = self._records.get(key)
        self._records[key] = record if known is None else known.merged(record)
        if key.turn_id not in self._live.get(key.session_id, {}):
            self._set_turn(key.session_id, key.turn_id, TurnState.IN_FLIGHT)
        if len(self._records) > self._max_pending and not self._warned:
            self._warned = True  # the database is slow or down: say so once, keep everything
            log.warning("usage ledger: %d usage keys wait to be written", len(self._records))
        self._dirty.set()

    def _set_turn(self, session_id: str, turn_id: str, state: TurnState) -> None:
        turns = self._live.setdefault(session_id, {})
        turns[turn_id] = merged_state(turns.get(turn_id), state)
        key = (session_id, turn_id)
        self._turns[key] = merged_state(self._turns.get(key), state)
        self._dirty.set()

    def _settle_open_turns(self, session_id: str) -> None:
        for turn_id, state in self._live.get(session_id, {}).items():
            if not state.final:
                key = (session_id, turn_id)
                self._turns[key] = merged_state(self._turns.get(key), TurnState.SETTLED)
        self._live.pop(session_id, None)

    async def end_session(self, session_id: str) -> None:
        """The session is over: turns it never reported are settled as they stand, then written."""
        self._settle_open_turns(session_id)
        try:
            await self.flush()
        except Exception:  # kept in the buffer: the background writer retries
            log.exception("usage ledger: could not write session %s's usage yet", session_id)

    # -------------------------------------------------------------------- the background side

    async def recover(self) -> int:
        """Settle the turns a crash of this instance left in flight; returns how many."""
        settled = await repository.settle_in_flight(self.engine, instance=self.instance)
        if settled:
            log.warning("usage ledger: settled %d turn(s) left in flight by a crash", settled)
        return settled

    async def start(self) -> None:
        """Recover, then write in the background."""
        self.settled_at_start = await self.recover()
        self._task = asyncio.create_task(self._run(), name="usage-ledger-writer")

    async def _run(self) -> None:
        delay = self._interval
        while True:
            await self._dirty.wait()
            await asyncio.sleep(delay)  # gather a turn's reports into one transaction
            try:
                await self.flush()
            except Exception:
                if delay == self._interval:
                    log.exception("usage ledger: write failed; units stay buffered and are retried")
                # Back off while the database is away rather than hammering it and the log.
                delay = min(delay * 2, MAX_RETRY_DELAY_S)
                log.warning(
                    "usage ledger: %d usage keys buffered; next try in %.1f s", len(self._records), delay
                )
            else:
                delay = self._interval

    async def flush(self) -> None:
        """Write everything buffered now. On failure the batch goes back and the error is raised.

        A caller cancelled meanwhile (a session's task at shutdown) does not cancel the write: a
        transaction cut off mid-statement can leave its connection holding SQLite's write lock,
        and every later write would then wait out the busy timeout and fail. The next flush
        waits for it instead."""
        async with self._write_lock:
            if self._writing is not None:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._writing)
            self._dirty.clear()
            records, self._records = self._records, {}
            turns, self._turns = self._turns, {}
            if not records and not turns:
                return
            self._writing = asyncio.ensure_future(self._write(records, turns))
            await asyncio.shield(self._writing)

    async def _write(self, records: dict[UsageKey, UsageRecord], turns: dict[TurnKey, TurnState]) -> None:
        try:
            await repository.write(self.engine, records.values(), turns, instance=self.instance)
        except BaseException:
            self._restore(records, turns)
            raise
        if len(self._records) <= self._max_pending:
            self._warned = False

    def _restore(self, records: dict[UsageKey, UsageRecord], turns: dict[TurnKey, TurnState]) -> None:
        for key, record in records.items():
            newer = self._records.get(key)
            self._records[key] = record if newer is None else newer.merged(record)
        for key, state in turns.items():
            newer_state = self._turns.get(key)
            self._turns[key] = state if newer_state is None else merged_state(state, newer_state)
        self._dirty.set()

    async def aclose(self) -> None:
        """Server shutdown: stop the writer, settle open turns, write what is left."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for session_id in list(self._live):
            self._settle_open_turns(session_id)
        await self.flush()
