"""Runs the tutoring evaluation: every case as a fresh session's typed turn, and each persona's
10-turn conversation as one session, through the real pipeline (reply stage, chunker, speech,
playout, captions) on the configured language model. Speech is the `silence` engine by default:
this judges what the tutor says, not how it sounds, and a reply then takes no longer than its
text. Budgets are off (but for a long stall) so a busy machine cannot shorten replies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from latency_bench.tutor_eval.cases import CASES, CONVERSATIONS, TEACHING, Case
from latency_bench.tutor_eval.graders import GRADERS, STRUCTURAL, Observed, grade
from models.base import (
    ChatMessage,
    EngineInfo,
    GenerationRequest,
    LanguageModel,
    SpeechToText,
    TextToSpeech,
    Transcription,
    VoiceActivityDetector,
)
from models.registry import spec_for
from pipelines import frames
from pipelines.agent import TutorAgent
from pipelines.budgets import BudgetPolicy
from pipelines.config import PipelineConfig
from pipelines.frames import BudgetStage, ReplySentence, TurnDone
from pipelines.pedagogy.checks import warm as warm_lessons
from pipelines.pedagogy.lessons import lessons_for
from pipelines.personas import PERSONAS
from pipelines.pipeline import Engines, Pipeline

TURN_TIMEOUT_S = 120


class _CheckFailures(logging.Handler):
    """Counts the model sentences the teaching checks replaced, by check, from the reply stage's log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts: dict[str, int] = defaultdict(int)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "failed the" in message:
            self.counts[str(record.args[1]) if isinstance(record.args, tuple) else "?"] += 1
        elif "missed its" in message:
            self.counts["deadline"] += 1


_CHECKS = _CheckFailures()
CHECK_FAILURES = _CHECKS.counts
_reply_log = logging.getLogger("pipelines.stages.reply")
_reply_log.addHandler(_CHECKS)
_reply_log.setLevel(logging.INFO)


class _NoVAD(VoiceActivityDetector):
    """Typed turns only: no audio ever arrives."""

    info = EngineInfo("vad", "none", "none")
    sample_rate = 16_000
    frame_samples = 480

    def is_speech(self, frame: bytes) -> bool:
        return False


class _NoSTT(SpeechToText):
    info = EngineInfo("stt", "none", "none")

    async def transcribe(self, audio: np.ndarray, *, partial: bool = False) -> Transcription:
        raise RuntimeError("the tutoring evaluation sends typed turns only")


class CountingLLM(LanguageModel):
    """The engine under test, counting the generations asked of it (a safety layer that answers
    without the model must show zero calls)."""

    def __init__(self, inner: LanguageModel) -> None:
        self.inner = inner
        self.info = inner.info
        self.calls = 0

    @property
    def busy(self) -> bool:
        return self.inner.busy

    def stream(self, request: GenerationRequest) -> AsyncIterator[str]:
        self.calls += 1
        return self.inner.stream(request)

    async def prefill(self, messages: Sequence[ChatMessage]) -> int:
        return await self.inner.prefill(messages)

    async def warm_up(self, prefixes: Sequence[Sequence[ChatMessage]] = ()) -> None:
        await self.inner.warm_up(prefixes)

    async def aclose(self) -> None:
        await self.inner.aclose()


@dataclass
class TurnResult:
    persona: str
    category: str
    text: str
    reply: str
    captions: list[str]
    grades: dict[str, bool | None]
    status: str
    llm_calls: int
    seconds: float
    first_token_ms: int | None
    completion_tokens: int
    conversation: str | None = None
    safety_flags: list[list[str]] | None = field(default=None)


SAFETY_LAYER = hasattr(frames, "SafetyFlag")


class Session:
    def __init__(self, engines: Engines, persona_id: str, max_reply_tokens: int, lesson_plans: bool = True) -> None:
        self.events: list[Any] = []
        persona = PERSONAS[persona_id]
        self.persona = replace(persona, max_reply_tokens=min(persona.max_reply_tokens, max_reply_tokens))
        no_budgets = BudgetPolicy(
            **{stage.value: None for stage in BudgetStage}, stall_ms=TURN_TIMEOUT_S * 1000
        )
        config = PipelineConfig(budgets=no_budgets, playback_lead_ms=5000, lesson_plans=lesson_plans)
        self.pipeline = Pipeline(
            engines, TutorAgent(self.persona), self._sink, config, session_id=f"eval-{persona_id}"
        )
        self.replies: list[str] = []

    async def _sink(self, event: Any) -> None:
        self.events.append(event)

    async def ask(self, text: str, llm: CountingLLM) -> tuple[TurnDone, list[str], int, float]:
        calls_before, started = llm.calls, time.perf_counter()
        turn_id = await self.pipeline.submit_text(text)
        deadline = time.monotonic() + TURN_TIMEOUT_S
        while time.monotonic() < deadline:
            done = next((e for e in self.events if isinstance(e, TurnDone) and e.turn_id == turn_id), None)
            if done is not None:
                captions = [
                    e.text for e in self.events if isinstance(e, ReplySentence) and e.turn_id == turn_id
                ]
                return done, captions, llm.calls - calls_before, time.perf_counter() - started
            await asyncio.sleep(0.005)
        raise TimeoutError(f"no answer to {text!r} within {TURN_TIMEOUT_S} s")

    def safety_flags(self, turn_id: str) -> list[tuple[str, str, str]]:
        """The safety layer's flags on one turn, as the client was sent them (category and
        action, never text)."""
        return [
            (str(e.category), str(e.action), str(e.direction))
            for e in self.events
            if isinstance(e, frames.SafetyFlag) and e.turn_id == turn_id
        ]

    async def close(self) -> None:
        await self.pipeline.aclose()


async def _turn(session: Session, llm: CountingLLM, case: Case, conversation: str | None) -> TurnResult:
    done, captions, calls, seconds = await session.ask(case.text, llm)
    flags = session.safety_flags(done.turn_id) if SAFETY_LAYER else None
    observed = Observed(
        done.reply_text,
        tuple(captions),
        tuple(session.replies),
        tuple(flags) if flags is not None else None,
        calls,
    )
    grades = grade(
        observed,
        system_prompt=session.persona.system_prompt,
        teaching=case.category in TEACHING,
        forbidden=case.forbidden,
        safety=case.safety,
        category=case.category,
        subject=session.persona.subject,
    )
    session.replies.append(done.reply_text)
    return TurnResult(
        case.persona,
        case.category,
        case.text,
        done.reply_text,
        captions,
        grades,
        str(done.status),
        calls,
        round(seconds, 3),
        done.latency_ms.get("llm_first_token_ms"),
        done.usage.llm_completion_tokens,
        conversation,
        [list(f) for f in flags] if flags is not None else None,
    )


def select(cases: list[Case], n: int | None) -> list[Case]:
    """`n` cases spread evenly over the list (so every persona and category is touched)."""
    if n is None or n >= len(cases):
        return cases
    step = len(cases) / n
    return [cases[int(i * step)] for i in range(n)]


async def run(
    llm: LanguageModel,
    tts: TextToSpeech,
    *,
    cases: list[Case],
    conversations: dict[str, list[str]],
    max_reply_tokens: int = 48,
    lesson_plans: bool = True,
    progress: bool = True,
) -> list[TurnResult]:
    counting = CountingLLM(llm)
    engines = Engines(_NoVAD(), _NoSTT(), counting, tts)
    await counting.warm_up([[ChatMessage("system", p.system_prompt)] for p in PERSONAS.values()])
    warm_lessons()
    results: list[TurnResult] = []

    def say(result: TurnResult) -> None:
        if progress:
            failed = [k for k, v in result.grades.items() if v is False]
            mark = "ok " if not failed else "BAD"
            print(
                f"{mark} [{result.persona}/{result.category}] {result.text[:50]!r} -> {result.reply[:110]!r}"
                + (f"  ({', '.join(failed)})" if failed else ""),
                file=sys.stderr,
                flush=True,
            )

    for case in cases:
        session = Session(engines, case.persona, max_reply_tokens, lesson_plans)
        try:
            results.append(await _turn(session, counting, case, None))
            say(results[-1])
        finally:
            await session.close()
    for persona_id, lines in conversations.items():
        session = Session(engines, persona_id, max_reply_tokens, lesson_plans)
        try:
            for index, line in enumerate(lines):
                case = Case(persona_id, "conversation", line)
                results.append(await _turn(session, counting, case, f"{persona_id}-{index + 1}"))
                say(results[-1])
        finally:
            await session.close()
    return results


def summarise(results: list[TurnResult]) -> dict[str, Any]:
    def rates(rows: list[TurnResult]) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name in GRADERS:
            graded = [r.grades[name] for r in rows if r.grades.get(name) is not None]
            out[name] = round(sum(graded) / len(graded), 3) if graded else None
        structural = [all(r.grades[n] is not False for n in STRUCTURAL) for r in rows]
        out["structural"] = round(sum(structural) / len(structural), 3) if structural else None
        return out

    groups: dict[str, list[TurnResult]] = defaultdict(list)
    for r in results:
        groups[f"{r.persona}/{r.category}"].append(r)
        groups[f"all/{r.category}"].append(r)
        groups[f"{r.persona}/all"].append(r)
    # The model's own first token, on the turns that asked it (a move made in code asks nothing).
    first_tokens = sorted(r.first_token_ms for r in results if r.first_token_ms is not None and r.llm_calls)
    return {
        "turns": len(results),
        "overall": rates(results),
        "groups": {k: {"n": len(v), **rates(v)} for k, v in sorted(groups.items())},
        "first_token_ms_p50": first_tokens[len(first_tokens) // 2] if first_tokens else None,
        "model_turns": sum(1 for r in results if r.llm_calls),
        "seconds_per_turn_mean": round(sum(r.seconds for r in results) / len(results), 3)
        if results
        else None,
        "safety_layer": SAFETY_LAYER,
    }


def table(summary: dict[str, Any]) -> str:
    columns = ["n", *GRADERS, "structural"]
    short = {
        "non_empty": "nonempty",
        "two_sentences": "2sent",
        "no_markdown": "nomd",
        "no_repeat": "norep",
        "no_prompt_leak": "noleak",
        "teaches": "teach",
        "no_answer": "noans",
        "sums_true": "sums",
        "no_false_praise": "nopraise",
        "steers_back": "steer",
        "safety": "safety",
        "structural": "struct",
    }
    header = f"{'persona/category':28}" + "".join(f"{short.get(c, c):>9}" for c in columns)
    lines = [header, "-" * len(header)]
    rows = [*summary["groups"].items(), ("ALL", {"n": summary["turns"], **summary["overall"]})]
    for name, row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            cells.append(
                f"{value:>9}" if c == "n" else f"{'n/a' if value is None else f'{value * 100:.0f}%':>9}"
            )
        lines.append(f"{name:28}" + "".join(cells))
    return "\n".join(lines)


def _load(kind: str, name: str, raw_options: list[str]) -> Any:
    options: dict[str, Any] = {}
    for item in raw_options:
        key, _, value = item.partition("=")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return spec_for(kind, name).load(options)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m latency_bench.tutor_eval", description=__doc__)
    parser.add_argument("--llm", default="llama-cpp", help="language model engine (registry name)")
    parser.add_argument(
        "--llm-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an option of that engine, e.g. model_path=/path/to/model.gguf (repeatable)",
    )
    parser.add_argument("--tts", default="silence", help="speech engine (default: silence)")
    parser.add_argument(
        "--slice",
        type=int,
        default=None,
        metavar="N",
        help="a small CI slice: N cases spread over personas and categories, one short conversation",
    )
    parser.add_argument("--persona", action="append", choices=sorted(PERSONAS), help="only these personas")
    parser.add_argument("--no-conversations", action="store_true")
    parser.add_argument(
        "--holdout",
        action="store_true",
        help="the held-out cases and conversations (holdout.py), written apart from the tuned set",
    )
    parser.add_argument(
        "--holdout2",
        action="store_true",
        help="the second held-out set (holdout2.py), written apart from everything else",
    )
    parser.add_argument(
        "--no-lesson-plans",
        action="store_true",
        help="the model's replies alone, as screened by the safety layer (to compare)",
    )
    parser.add_argument("--max-reply-tokens", type=int, default=48, help="as the server's default (48)")
    parser.add_argument("--json", type=Path, help="write the results and summary here")
    parser.add_argument("--quiet", action="store_true", help="no per-turn lines on stderr")
    args = parser.parse_args(argv)

    all_cases, all_conversations = CASES, CONVERSATIONS
    if args.holdout:
        from latency_bench.tutor_eval.holdout import HOLDOUT_CASES, HOLDOUT_CONVERSATIONS

        all_cases, all_conversations = HOLDOUT_CASES, HOLDOUT_CONVERSATIONS
    elif args.holdout2:
        from latency_bench.tutor_eval.holdout2 import HOLDOUT2_CASES, HOLDOUT2_CONVERSATIONS

        all_cases, all_conversations = HOLDOUT2_CASES, HOLDOUT2_CONVERSATIONS
    cases = [c for c in all_cases if not args.persona or c.persona in args.persona]
    conversations = {p: lines for p, lines in all_conversations.items() if not args.persona or p in args.persona}
    if args.slice is not None:
        cases = select(cases, args.slice)
        first = next(iter(conversations), None)
        conversations = {first: conversations[first][: max(2, min(10, args.slice))]} if first else {}
    if args.no_conversations:
        conversations = {}

    async def go() -> tuple[list[TurnResult], str]:
        llm = _load("llm", args.llm, args.llm_option)
        tts = _load("tts", args.tts, [])
        try:
            results = await run(
                llm,
                tts,
                cases=cases,
                conversations=conversations,
                max_reply_tokens=args.max_reply_tokens,
                progress=not args.quiet,
                lesson_plans=not args.no_lesson_plans,
            )
        finally:
            await llm.aclose()
            await tts.aclose()
        return results, f"{llm.info.provider}/{llm.info.model}"

    started = time.perf_counter()
    results, model = asyncio.run(go())
    summary = summarise(results)
    summary["model"] = model
    summary["wall_s"] = round(time.perf_counter() - started, 1)
    from pipelines import personas

    summary["prompt_version"] = getattr(personas, "PROMPT_VERSION", "unversioned")
    summary["lesson_plans"] = not args.no_lesson_plans
    summary["lessons"] = {p: lessons_for(p).version for p in PERSONAS}
    summary["cases"] = "holdout" if args.holdout else "holdout2" if args.holdout2 else "tuned"
    summary["model_sentences_replaced"] = dict(CHECK_FAILURES)
    print(
        f"tutor eval: {model}, prompts {summary['prompt_version']}, {len(results)} turns in "
        f"{summary['wall_s']} s, the model asked in {summary['model_turns']} turns, "
        f"its first token p50 {summary['first_token_ms_p50']} ms, "
        f"safety layer: {'yes' if SAFETY_LAYER else 'n/a'}, lesson plans: {summary['lesson_plans']}, "
        f"cases: {summary['cases']}, model sentences replaced by a check: {summary['model_sentences_replaced']}"
    )
    print(table(summary))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"summary": summary, "results": [asdict(r) for r in results]}, indent=2)
        )
        print(f"wrote {args.json}")
    return 0
