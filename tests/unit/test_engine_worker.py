"""Engine work is served most urgent first: one step at a time per engine, one core at a time
across engines."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from models.scheduling import CpuArbiter, Priority, Urgency, work_scope
from models.worker import EngineWorker


def _steps(log: list[str], name: str, count: int, gate: threading.Event | None = None) -> Iterator[str]:
    for i in range(count):
        if gate is not None:
            gate.wait(5)
        time.sleep(0.005)
        log.append(f"{name}{i}")
        yield f"{name}{i}"


async def _drain(worker: EngineWorker, make: object, priority: Priority) -> list[str]:
    with work_scope(priority):
        return [item async for item in worker.iterate(make)]  # type: ignore[arg-type]


async def test_urgent_work_never_waits_behind_a_step_of_background_work() -> None:
    worker = EngineWorker("test", max_started=2, arbiter=CpuArbiter(2))
    log: list[str] = []
    gate = threading.Event()
    # Another student's third sentence: its step is stuck in the model until the gate opens.
    background = asyncio.create_task(
        _drain(worker, lambda: _steps(log, "tail", 3, gate), Priority(Urgency.AHEAD))
    )
    await asyncio.sleep(0.05)
    urgent = await _drain(worker, lambda: _steps(log, "first", 3), Priority(Urgency.NOW))
    assert urgent == ["first0", "first1", "first2"]
    assert not any(entry.startswith("tail") for entry in log)  # it all ran while tail was stuck
    gate.set()
    await background
    worker.shutdown()


async def test_background_work_runs_most_urgent_first() -> None:
    worker = EngineWorker("test", max_started=4, arbiter=CpuArbiter(2))
    log: list[str] = []
    gate = threading.Event()
    blocker = asyncio.create_task(_drain(worker, lambda: _steps(log, "x", 1, gate), Priority(Urgency.AHEAD)))
    await asyncio.sleep(0.05)
    partial = asyncio.create_task(_drain(worker, lambda: _steps(log, "partial", 2), Priority(Urgency.OPTIONAL)))
    await asyncio.sleep(0.02)
    tail = asyncio.create_task(_drain(worker, lambda: _steps(log, "tail", 2), Priority(Urgency.AHEAD)))
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(blocker, tail, partial)
    # A reply's next sentence goes before a partial transcript that arrived earlier.
    assert log == ["x0", "tail0", "tail1", "partial0", "partial1"]
    worker.shutdown()


async def test_one_started_stream_at_a_time_when_streams_share_state() -> None:
    worker = EngineWorker("test", max_started=1, arbiter=CpuArbiter(2))
    log: list[str] = []
    gate = threading.Event()
    first = asyncio.create_task(_drain(worker, lambda: _steps(log, "a", 4, gate), Priority(Urgency.AHEAD)))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(_drain(worker, lambda: _steps(log, "b", 2), Priority(Urgency.NOW)))
    await asyncio.sleep(0.05)
    gate.set()
    await asyncio.gather(first, second)
    assert log == ["a0", "a1", "a2", "a3", "b0", "b1"]
    worker.shutdown()


async def test_a_speculation_committed_while_queued_is_taken_by_the_urgent_lane() -> None:
    worker = EngineWorker("test", max_started=4, arbiter=CpuArbiter(2))
    log: list[str] = []
    gate = threading.Event()
    stuck = asyncio.create_task(_drain(worker, lambda: _steps(log, "tail", 1, gate), Priority(Urgency.AHEAD)))
    await asyncio.sleep(0.05)
    waiting = Priority(Urgency.OPTIONAL)  # queued behind the stuck background step
    queued = asyncio.create_task(_drain(worker, lambda: _steps(log, "turn", 1), waiting))
    await asyncio.sleep(0.1)
    assert log == []
    waiting.urgency = Urgency.NOW  # e.g. the pause became the end of the turn
    assert await queued == ["turn0"]
    gate.set()
    await stuck
    worker.shutdown()


async def test_a_job_abandoned_before_it_starts_never_runs() -> None:
    worker = EngineWorker("test", arbiter=CpuArbiter(2))
    gate = threading.Event()
    ran: list[str] = []
    with work_scope(Priority(Urgency.AHEAD)):
        blocker = asyncio.create_task(worker.run(lambda: gate.wait(5)))
        await asyncio.sleep(0.02)
        abandoned = asyncio.create_task(worker.run(lambda: ran.append("ran")))
    await asyncio.sleep(0.02)
    abandoned.cancel()
    await asyncio.sleep(0.02)  # the caller leaves (barge-in) while the job still waits its turn
    gate.set()
    await blocker
    with pytest.raises(asyncio.CancelledError):
        await abandoned
    await worker.run(lambda: None)  # the worker is still serving
    assert ran == []
    assert worker.pending == 0
    worker.shutdown()


async def test_errors_reach_the_caller_and_the_worker_goes_on() -> None:
    worker = EngineWorker("test", arbiter=CpuArbiter(2))

    def broken() -> None:
        raise ValueError("model exploded")

    with pytest.raises(ValueError, match="model exploded"):
        await worker.run(broken)
    assert await worker.run(lambda: 42) == 42
    worker.shutdown()


def test_work_with_slack_leaves_a_core_free_for_a_student_waiting() -> None:
    arbiter = CpuArbiter(2)
    holding = threading.Event()
    release = threading.Event()

    def background() -> None:
        with arbiter.hold(Priority(Urgency.AHEAD), want=2) as granted:
            assert granted == 1  # never both cores, even on an idle machine
            holding.set()
            release.wait(5)

    thread = threading.Thread(target=background)
    thread.start()
    assert holding.wait(5)
    started = time.monotonic()
    with arbiter.hold(Priority(Urgency.NOW), want=2) as granted:
        assert granted == 1  # the free core, at once
    assert time.monotonic() - started < 0.5
    release.set()
    thread.join(5)
    with arbiter.hold(Priority(Urgency.NOW), want=2) as granted:
        assert granted == 2  # idle machine: urgent work gets every core


def test_the_most_urgent_waiting_step_gets_the_next_core() -> None:
    arbiter = CpuArbiter(1)
    order: list[str] = []
    first_holds = threading.Event()
    release = threading.Event()

    def step(name: str, urgency: Urgency, hold: threading.Event | None = None) -> None:
        with arbiter.hold(Priority(urgency)):
            order.append(name)
            if hold is not None:
                first_holds.set()
                release.wait(5)

    blocker = threading.Thread(target=step, args=("blocker", Urgency.NOW, release))
    blocker.start()
    assert first_holds.wait(5)
    waiters = [
        threading.Thread(target=step, args=("partial", Urgency.OPTIONAL)),
        threading.Thread(target=step, args=("tail", Urgency.AHEAD)),
        threading.Thread(target=step, args=("first", Urgency.NOW)),
    ]
    for thread in waiters:
        thread.start()
        time.sleep(0.05)
    release.set()
    for thread in [blocker, *waiters]:
        thread.join(5)
    assert order == ["blocker", "first", "tail", "partial"]


async def test_a_single_call_waits_for_cores_once_and_on_as_many_as_it_asks() -> None:
    asked: list[int] = []

    class Recording(CpuArbiter):
        def hold(self, priority: Priority, want: int = 1):  # type: ignore[no-untyped-def]
            asked.append(want)
            return super().hold(priority, want)

    worker = EngineWorker("test", cores=2, arbiter=Recording(2))
    assert await worker.run(lambda: 42) == 42
    assert await worker.run(lambda: worker.granted, cores=1) == 1
    # Before: a second step per call, and so a second wait for a core behind any more urgent
    # work, only to find the call had nothing more to give.
    assert asked == [2, 1]
    worker.shutdown()
