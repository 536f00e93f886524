"""Prometheus metrics, one registry per app (so tests can run several apps in one process)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, Metric

from models.base import EngineInfo
from models.scheduling import CPU
from pipelines.frames import BudgetMiss, LatencyMetric, PipelineError, PipelineEvent, SafetyFlag, TurnDone

_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0, 1.2, 1.5, 2.0, 3.0, 5.0, 10.0)


class VoiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        r = self.registry
        self.stage_latency = Histogram(
            "convergio_stage_latency_seconds", "Latency of each stage of a turn", ["stage"],
            buckets=_BUCKETS, registry=r,
        )
        self.voice_to_voice = Histogram(
            "convergio_voice_to_voice_seconds", "End of student speech to first reply audio sent",
            buckets=_BUCKETS, registry=r,
        )
        self.voice_to_answer = Histogram(
            "convergio_voice_to_answer_seconds",
            "End of student speech to the first audio of the answer itself (fillers excluded)",
            buckets=_BUCKETS, registry=r,
        )
        self.reply_gaps = Counter(
            "convergio_reply_gap_seconds", "Silence inside replies where the next audio was late",
            registry=r,
        )
        self.budget_misses = Counter(
            "convergio_budget_misses_total", "Stages that overran their budget, by action taken",
            ["stage", "action"], registry=r,
        )
        self.safety_flags = Counter(
            "convergio_safety_flags_total", "Safety events by category, action and direction (input, output)",
            ["category", "action", "direction"], registry=r,
        )
        self.turns = Counter("convergio_turns_total", "Finished turns by status", ["status"], registry=r)
        self.active_sessions = Gauge("convergio_active_sessions", "Open voice sessions", registry=r)
        self.webrtc_peers = Gauge("convergio_webrtc_peers", "Open WebRTC peer connections", registry=r)
        self.engine_errors = Counter(
            "convergio_engine_errors_total", "Turns an engine failed or stalled", ["code"], registry=r
        )
        self.loop_lag = Histogram(
            "convergio_event_loop_lag_seconds", "How late the event loop runs a 100 ms timer",
            buckets=(0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5), registry=r,
        )
        self.engine_fallbacks = Counter(
            "convergio_engine_fallbacks_total", "Attempts handed to the next engine of a chain",
            ["kind", "failed", "next", "reason"], registry=r,
        )

        registry_cpu = CPU

        class _CpuCollector:
            def collect(self) -> Iterator[Metric]:
                waited = CounterMetricFamily(
                    "convergio_cpu_wait_seconds", "Time engine steps waited for a core, by urgency",
                    labels=["urgency"],
                )
                held = CounterMetricFamily(
                    "convergio_cpu_busy_seconds", "Core-seconds engine steps ran, by urgency",
                    labels=["urgency"],
                )
                for urgency, seconds in registry_cpu.waited_s.items():
                    waited.add_metric([urgency], seconds)
                for urgency, seconds in registry_cpu.held_s.items():
                    held.add_metric([urgency], seconds)
                yield waited
                yield held

        r.register(_CpuCollector())  # type: ignore[arg-type]

    def observe(self, event: PipelineEvent) -> None:
        """Reads the pipeline's metric events: latency per stage from the metering stage."""
        if isinstance(event, LatencyMetric):
            seconds = event.ms / 1000
            if event.stage == "voice_to_voice":
                self.voice_to_voice.observe(seconds)
            elif event.stage == "voice_to_answer":
                self.voice_to_answer.observe(seconds)
            elif event.stage == "reply_gaps":
                self.reply_gaps.inc(seconds)
            else:
                self.stage_latency.labels(event.stage).observe(seconds)
        elif isinstance(event, TurnDone):
            self.turns.labels(event.status).inc()
        elif isinstance(event, BudgetMiss):
            self.budget_misses.labels(event.stage, event.action).inc()
        elif isinstance(event, SafetyFlag):
            self.safety_flags.labels(event.category, event.action, event.direction).inc()
        elif isinstance(event, PipelineError) and event.code.startswith("engine_"):
            self.engine_errors.labels(event.code).inc()

    def fallback(self, kind: str, failed: EngineInfo, following: EngineInfo, reason: str) -> None:
        self.engine_fallbacks.labels(kind, failed.provider, following.provider, reason).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
