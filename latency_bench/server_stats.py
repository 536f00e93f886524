"""Server CPU and memory, read from its own /metrics (the process collector of prometheus-client),
so the benchmark needs no access to the server's machine beyond the HTTP port."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Sample:
    at: float
    cpu_s: float
    rss_mb: float


class ServerSampler:
    def __init__(self, ws_url: str, token: str | None = None) -> None:
        self.token = token  # an admin token or the scrape token: /metrics is not public
        parts = urlsplit(ws_url)
        scheme = "https" if parts.scheme == "wss" else "http"
        self.metrics_url = f"{scheme}://{parts.netloc}/metrics"

    def _read(self) -> Sample:
        try:
            headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
            request = urllib.request.Request(self.metrics_url, headers=headers)
            with urllib.request.urlopen(request, timeout=5) as response:
                text = response.read().decode()
        except OSError:  # a server without /metrics: the benchmark still runs, without resources
            text = ""
        cpu = re.search(r"^process_cpu_seconds_total (\S+)$", text, re.M)
        rss = re.search(r"^process_resident_memory_bytes (\S+)$", text, re.M)
        return Sample(
            time.monotonic(), float(cpu.group(1)) if cpu else 0.0, float(rss.group(1)) / 2**20 if rss else 0.0
        )

    async def sample(self) -> Sample:
        return await asyncio.to_thread(self._read)

    @contextlib.asynccontextmanager
    async def watch(self, interval_s: float = 1.0) -> AsyncIterator[list[tuple[float, float]]]:
        """Collect (monotonic time, RSS MB) every interval while the block runs."""
        samples: list[tuple[float, float]] = []

        async def poll() -> None:
            while True:
                with contextlib.suppress(OSError):
                    s = await self.sample()
                    samples.append((s.at, round(s.rss_mb, 1)))
                await asyncio.sleep(interval_s)

        task = asyncio.create_task(poll())
        try:
            yield samples
        finally:
            task.cancel()

    @staticmethod
    def resources(
        before: Sample, after: Sample, samples: list[tuple[float, float]], wall_s: float, sessions: int
    ) -> dict[str, Any]:
        cores = (after.cpu_s - before.cpu_s) / max(wall_s, 1e-6)
        peak = max([before.rss_mb, after.rss_mb, *(m for _, m in samples)])
        return {
            "wall_s": round(wall_s, 1),
            "cpu_cores_total": round(cores, 3),
            "cpu_cores_per_session": round(cores / sessions, 3),
            "rss_start_mb": round(before.rss_mb, 1),
            "rss_peak_mb": round(peak, 1),
            "rss_end_mb": round(after.rss_mb, 1),
            "rss_per_session_mb": round((peak - before.rss_mb) / sessions, 1),
        }
