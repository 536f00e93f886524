"""Event-loop lag: how late a timer fires. Every session's audio passes through the one loop, so
a loop that falls behind delays every student at once; this makes that visible in /metrics."""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import Histogram

log = logging.getLogger(__name__)


async def watch_loop_lag(histogram: Histogram, *, interval_s: float = 0.1, warn_s: float = 0.25) -> None:
    while True:
        due = time.monotonic() + interval_s
        await asyncio.sleep(interval_s)
        lag = max(0.0, time.monotonic() - due)
        histogram.observe(lag)
        if lag > warn_s:
            log.warning("event loop ran %.0f ms late", lag * 1000)
