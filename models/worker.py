"""Worker threads per engine instance, serving jobs by priority, one step at a time.

Engines are not safe for arbitrary concurrent calls, and on two cores we want each stage to use a
known number of threads, so every adapter funnels its blocking work through its worker. The event
loop never runs inference.

A job is a single call (`run`) or a blocking iterator (`iterate`) that the worker advances one
item at a time. Before every step the worker picks the most urgent runnable job (see
`models.scheduling`), so the first tokens of a reply a student is waiting for overtake the tail
of another student's reply between two tokens, not after it.

A step cannot be interrupted (one sentence of speech is one model call), so each worker has two
lanes: lane 0 takes only urgent work (a student waiting, or a speculation that may become that),
lane 1 takes anything, most urgent first. Another student's partial transcript or third sentence
therefore never stands between a student and their answer. The adapter gives each lane its own
model state where the engine needs it (`lane`), and never steps one job on both lanes at once.
An adapter whose iterators share state allows one started iterator at a time (`max_started`);
one that gives each iterator its own state (a context per conversation) allows several.

Every step also waits for cores from the machine-wide `CpuArbiter`, so urgency counts across
engines too. A step may use up to `cores` threads; `granted` tells the adapter, during the step,
how many it got (an engine that can run on fewer threads then does so).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from models.scheduling import CPU, CpuArbiter, Priority, Urgency, current_priority

T = TypeVar("T")
_DONE = object()
URGENT_LANE, ANY_LANE = 0, 1


class _Job:
    __slots__ = (
        "priority", "want", "once", "started", "running", "stopped", "make_iter", "iterator", "deliver"
    )

    def __init__(
        self,
        priority: Priority,
        make_iter: Callable[[], Iterator[Any]],
        deliver: Callable[[Any], None],
        want: int,
        once: bool = False,
    ) -> None:
        self.priority = priority
        self.want = want  # cores its next step asks for
        # A single call (`run`): done with its first item, without a second step (and a second
        # wait for a core) only to learn that the iterator is empty.
        self.once = once
        self.make_iter = make_iter
        self.iterator: Iterator[Any] | None = None
        self.deliver = deliver  # called on a worker thread with each item, an exception or _DONE
        self.started = False
        self.running = False  # a lane is stepping it now
        self.stopped = threading.Event()


class EngineWorker:
    def __init__(
        self, name: str, *, max_started: int = 1, cores: int = 1, arbiter: CpuArbiter | None = None
    ) -> None:
        self.name = name
        self.max_started = max_started
        self.cores = cores
        self.arbiter = arbiter or CPU
        self.pending = 0  # jobs queued or running; sessions use it to skip optional work under load
        self._jobs: list[_Job] = []
        self._wake = threading.Condition()
        self._closed = False
        self._local = threading.local()  # per lane: its index, the running job, granted cores
        self._lane_busy = [False, False]
        self._threads = [
            threading.Thread(target=self._serve, args=(lane,), name=f"engine-{name}-{lane}", daemon=True)
            for lane in (URGENT_LANE, ANY_LANE)
        ]
        for thread in self._threads:
            thread.start()

    @property
    def busy(self) -> bool:
        return self.pending > 0

    @property
    def lane(self) -> int:
        """The lane running the calling step (adapters pick per-lane model state with it)."""
        return getattr(self._local, "lane", URGENT_LANE)

    @property
    def granted(self) -> int:
        """Cores granted to the calling step."""
        return getattr(self._local, "granted", self.cores)

    # ------------------------------------------------------------------------------ loop side

    async def run(self, fn: Callable[..., T], *args: Any, cores: int | None = None) -> T:
        """Run one blocking call on the worker thread, on up to `cores` cores (the worker's own
        number if None)."""
        result: T | None = None
        async for item in self._iterate(lambda: iter((fn(*args),)), cores, once=True):
            result = item
        return result  # type: ignore[return-value]

    def iterate(self, make_iter: Callable[[], Iterator[T]], *, cores: int | None = None) -> Any:
        """Drive a blocking iterator on the worker thread, yielding its items to the event loop
        as soon as each is produced. Leaving early (barge-in, cancel) stops it after the current
        step; a job that never started is dropped without running."""
        return self._iterate(make_iter, cores, once=False)

    async def _iterate(self, make_iter: Callable[[], Iterator[T]], cores: int | None, *, once: bool) -> Any:
        if self._closed:
            raise RuntimeError(f"engine worker {self.name} is shut down")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        finished = loop.create_future()

        def deliver(item: Any) -> None:
            def put() -> None:
                queue.put_nowait(item)
                if item is _DONE and not finished.done():
                    finished.set_result(None)

            try:
                loop.call_soon_threadsafe(put)
            except RuntimeError:  # the loop is gone (shutdown): nobody is waiting any more
                pass

        job = _Job(current_priority(), make_iter, deliver, max(1, min(cores or self.cores, self.cores)), once)
        self.pending += 1
        with self._wake:
            self._jobs.append(job)
            self._wake.notify_all()
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            job.stopped.set()
            with self._wake:
                self._wake.notify_all()
            # Wait for the job's current step, so an engine's state is never left mid-step when a
            # caller moves on (the next job may reuse that state).
            await asyncio.shield(finished)
            self.pending -= 1

    def want_cores(self, cores: int) -> None:
        """Called by an adapter during a step: how many cores the job's following steps need
        (e.g. a language model reads its prompt on two threads, then samples on one)."""
        running = getattr(self._local, "job", None)
        if running is not None:
            running.want = max(1, min(cores, self.cores))

    def shutdown(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify_all()

    # ---------------------------------------------------------------------------- thread side

    def _next_job(self, lane: int) -> _Job | None:
        """The most urgent job this lane may step now; None if nothing can."""
        jobs = [j for j in self._jobs if not j.stopped.is_set()]
        started = sum(1 for j in jobs if j.started)

        def may_step(job: _Job) -> bool:
            return not job.running and (job.started or started < self.max_started)

        def urgent(job: _Job) -> bool:
            return job.priority.urgency <= Urgency.SPECULATIVE

        if lane == URGENT_LANE:
            candidates = [j for j in jobs if urgent(j) and may_step(j)]
        else:
            # Urgent work belongs on lane 0 (the full-width model state); lane 1 takes it only
            # while lane 0 is busy, e.g. with another student's urgent work.
            candidates = [j for j in jobs if may_step(j) and (not urgent(j) or self._lane_busy[URGENT_LANE])]
        return min(candidates, key=lambda j: j.priority.key(), default=None)

    def _serve(self, lane: int) -> None:
        self._local.lane = lane
        while True:
            with self._wake:
                while True:
                    for job in [j for j in self._jobs if j.stopped.is_set() and not j.running]:
                        self._finish(job)
                    if self._closed:
                        for job in [j for j in self._jobs if not j.running]:
                            self._finish(job, RuntimeError(f"engine worker {self.name} shut down"))
                        return
                    job = self._next_job(lane)
                    if job is not None:
                        job.running = True
                        self._lane_busy[lane] = True
                        if job.iterator is None:
                            job.started = True  # counted against max_started from now on
                        break
                    # Priorities change without a notify (a speculation gets committed): look
                    # again now and then.
                    self._wake.wait(0.05)
            self._step(job)

    def _step(self, job: _Job) -> None:
        finished, error = False, None
        try:
            with self.arbiter.hold(job.priority, job.want) as granted:
                self._local.granted = granted
                self._local.job = job
                if job.iterator is None:
                    job.iterator = job.make_iter()
                item = next(job.iterator)
        except StopIteration:
            finished = True
        except BaseException as exc:  # noqa: BLE001 - re-raised on the loop side
            finished, error = True, exc
        finally:
            self._local.job = None
        if not finished:
            job.deliver(item)
            finished = job.once
        with self._wake:
            job.running = False
            self._lane_busy[self._local.lane] = False
            if finished:
                self._finish(job, error)
            self._wake.notify_all()

    def _finish(self, job: _Job, error: BaseException | None = None) -> None:
        """Called with the lock held: close the job's iterator and tell its consumer."""
        if job not in self._jobs:
            return
        self._jobs.remove(job)
        close = getattr(job.iterator, "close", None)
        if close is not None:
            try:
                close()  # runs the generator's cleanup (e.g. frees a model slot) on this thread
            except Exception:  # noqa: BLE001, S110 - cleanup errors must not kill the worker
                pass
        if error is not None:
            job.deliver(error)
        job.deliver(_DONE)
