"""Usage caps on the real embedded engines: once a session's LLM cap is reached, the real model
gets no further call, and the turn ends with the notice spoken by the real voice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from models.base import GenerationRequest, LanguageModel
from pipelines.agent import TutorAgent
from pipelines.allowance import UsageCaps
from pipelines.budgets import CAP_NOTICE
from pipelines.config import PipelineConfig
from pipelines.frames import CapReached, PipelineError, ReplyAudio, TurnDone
from pipelines.personas import PERSONAS
from pipelines.pipeline import Pipeline

pytestmark = pytest.mark.models


class Counted(LanguageModel):
    """The real model, with its calls counted."""

    def __init__(self, real: LanguageModel) -> None:
        self.real, self.info, self.calls = real, real.info, 0

    async def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        self.calls += 1
        async for piece in self.real.stream(request):
            yield piece


async def test_at_the_cap_the_real_model_is_not_called_again(real_engines):
    llm = Counted(real_engines.llm)
    events: list = []

    async def sink(event) -> None:
        events.append(event)

    config = PipelineConfig(caps=UsageCaps(llm_tokens=400), playback_lead_ms=5000, lesson_plans=False)
    pipeline = Pipeline(replace(real_engines, llm=llm), TutorAgent(PERSONAS["maths"]), sink, config)
    statuses = []
    for question in (
        "What is two plus two?",
        "And three plus three?",
        "And four plus four?",
        "Five plus five?",
    ):
        start = len(events)
        await pipeline.submit_text(question)
        for _ in range(3000):
            done = [e for e in events[start:] if isinstance(e, TurnDone)]
            if done:
                break
            await asyncio.sleep(0.02)
        statuses.append(done[0].status)
        if statuses[-1] == "cap_reached":
            calls = llm.calls
            break
    assert statuses[0] == "completed" and statuses[-1] == "cap_reached"
    await pipeline.submit_text("Please answer.")
    await asyncio.sleep(1)
    assert llm.calls == calls  # no call after the cap
    used = pipeline.usage_total
    assert used.llm_prompt_tokens + used.llm_completion_tokens <= 400
    assert [e.kind for e in events if isinstance(e, CapReached)] == ["llm"]
    assert any(isinstance(e, PipelineError) and e.message == CAP_NOTICE for e in events)
    capped_turn = [e for e in events if isinstance(e, TurnDone)][-1].turn_id
    assert any(isinstance(e, ReplyAudio) and e.turn_id == capped_turn for e in events)
    await pipeline.aclose()
