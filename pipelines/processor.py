"""The stage contract: every stage consumes frames and produces frames.

- `on_system(frame)` receives every system frame at once, synchronously and in the order they
  were broadcast, whatever data is queued: barge-in and the end of a turn never wait behind audio.
  It must not block; it may change state, start tasks or hand data on.
- `process(frame)` receives data frames one at a time, in order, on the stage's own task; by
  default a stage hands on what it does not handle.
- `push(frame)` hands a frame on: a system frame to every stage, a data frame to the next one.

Stages never call each other; the pipeline links them and owns the broadcast.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence

from pipelines.frames import DataFrame, Frame, SystemFrame

log = logging.getLogger(__name__)


class Stage:
    name = "stage"

    def __init__(self) -> None:
        self._next: Stage | None = None
        self._broadcast: Callable[[SystemFrame], None] = lambda frame: None
        self._queue: asyncio.Queue[DataFrame | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    # -------------------------------------------------------------------------- for stages

    def on_system(self, frame: SystemFrame) -> None:  # noqa: B027 - most stages ignore most frames
        """React to a system frame. Synchronous: never wait here."""

    async def process(self, frame: DataFrame) -> None:
        self.push(frame)

    def push(self, frame: Frame) -> None:
        if isinstance(frame, SystemFrame):
            self._broadcast(frame)
        elif self._next is not None:
            self._next.enqueue(frame)  # type: ignore[arg-type]

    # ------------------------------------------------------------------------ for the pipeline

    def enqueue(self, frame: DataFrame) -> None:
        self._queue.put_nowait(frame)

    def start(self, next_stage: Stage | None, broadcast: Callable[[SystemFrame], None]) -> None:
        self._next = next_stage
        self._broadcast = broadcast
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"stage-{self.name}")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(self._task, timeout=5)
        except (TimeoutError, asyncio.CancelledError):
            self._task.cancel()

    async def _run(self) -> None:
        while (frame := await self._queue.get()) is not None:
            try:
                await self.process(frame)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad frame must not end the session
                log.exception("stage %s failed on %s", self.name, type(frame).__name__)


class Broadcast:
    """Delivers system frames to every stage in order. A frame broadcast while another is being
    delivered waits for it, so every stage sees system frames in one and the same order."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self._stages = list(stages)
        self._pending: deque[SystemFrame] = deque()
        self._delivering = False

    def __call__(self, frame: SystemFrame) -> None:
        self._pending.append(frame)
        if self._delivering:
            return
        self._delivering = True
        try:
            while self._pending:
                current = self._pending.popleft()
                for stage in self._stages:
                    try:
                        stage.on_system(current)
                    except Exception:  # noqa: BLE001 - one stage's bug must not silence the others
                        log.exception("stage %s failed on %s", stage.name, type(current).__name__)
        finally:
            self._delivering = False
