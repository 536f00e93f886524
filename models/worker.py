"""One worker thread per engine instance.

Engines are not safe for concurrent calls on one model object, and on two cores we want each
stage to use a known number of threads, so every adapter funnels its blocking work through a
single-thread executor. The event loop never runs inference.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
_DONE = object()


class EngineWorker:
    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"engine-{name}")
        self.pending = 0  # jobs queued or running; sessions use it to skip optional work under load

    @property
    def busy(self) -> bool:
        return self.pending > 0

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        self.pending += 1
        try:
            return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))
        finally:
            self.pending -= 1

    async def iterate(self, make_iter: Callable[[], Iterator[T]]) -> Any:
        """Drive a blocking iterator on the worker thread, yielding its items to the event loop.

        The whole iteration is one job on the worker, so two streams never interleave on one model.
        Items cross to the loop through an asyncio queue as soon as each is produced.
        """
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def produce() -> None:
            try:
                if stop.is_set():  # the consumer left while this job waited its turn: skip it
                    return
                for item in make_iter():
                    if stop.is_set():  # the consumer left (e.g. barge-in): stop after this item
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, item)
            except BaseException as exc:  # noqa: BLE001 - re-raised on the loop side
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        future = loop.run_in_executor(self._executor, produce)
        self.pending += 1
        future.add_done_callback(lambda _: setattr(self, "pending", self.pending - 1))
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            # Wait for the producer so the next job never overlaps this one's tail.
            await asyncio.shield(future)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
