"""The speculation gate: an attempt started in a pause prepares its whole answer, but none of it
reaches the student until the end of the turn confirms it; if the student goes on, it is dropped."""

from __future__ import annotations

from pipelines.control import AttemptDiscarded, AttemptStopped, Commit
from pipelines.frames import DataFrame, SystemFrame
from pipelines.processor import Stage
from pipelines.turn import Attempt


class SpeculationGate(Stage):
    name = "gate"

    def __init__(self) -> None:
        super().__init__()
        self._held: dict[Attempt, list[DataFrame]] = {}

    def on_system(self, frame: SystemFrame) -> None:
        if isinstance(frame, Commit):
            for held in self._held.pop(frame.attempt, []):
                self.push(held)
        elif isinstance(frame, AttemptDiscarded | AttemptStopped):
            self._held.pop(frame.attempt, None)

    async def process(self, frame: DataFrame) -> None:
        attempt: Attempt | None = getattr(frame, "attempt", None)
        if attempt is None or attempt.committed:
            if attempt is None or not (attempt.discarded or attempt.stopped):
                self.push(frame)
        elif not attempt.discarded:
            self._held.setdefault(attempt, []).append(frame)
