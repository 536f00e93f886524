"""How fast the tutor's language model answers: first-token latency and tokens per second, with 1
and with N students asking at once, on the prompts the tutor really sends (a persona, a lesson
card's fact to phrase, a student's question).

    python -m latency_bench.llm_speed [--llm llama-cpp] [--sessions 1 4] [--rounds 5] [--json out.json]

Each simulated session asks its questions one after another, as a student does; sessions run
concurrently. Numbers are wall-clock on this machine: run it on a quiet host, before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

from latency_bench.tutor_eval.cases import CASES
from latency_bench.tutor_eval.runner import _load
from models.base import ChatMessage, GenerationRequest, LanguageModel
from pipelines.pedagogy.lessons import lessons_for
from pipelines.personas import PERSONAS


def _prompts() -> list[list[ChatMessage]]:
    """The question cases, each as the tutor would send it: with the card's fact where one matches."""
    prompts = []
    for case in CASES:
        if case.category not in ("question", "dont_know"):
            continue
        persona = PERSONAS[case.persona]
        system = persona.system_prompt
        card = lessons_for(case.persona).find(case.text)
        if card is not None:
            system += (
                f"\n\nThe true fact to teach: {card.fact} Explain it to the student in one short sentence, "
                "in plain words. Do not ask a question."
            )
        prompts.append([ChatMessage("system", system), ChatMessage("user", case.text)])
    return prompts


async def _session(
    llm: LanguageModel, prompts: list[list[ChatMessage]], offset: int, rounds: int, max_tokens: int
) -> list[dict[str, float]]:
    out = []
    for i in range(rounds):
        messages = prompts[(offset + i) % len(prompts)]
        request = GenerationRequest(
            messages=messages, max_tokens=max_tokens, temperature=0.4, seed=offset * 100 + i
        )
        started = time.perf_counter()
        first = None
        async for _ in llm.stream(request):
            if first is None:
                first = time.perf_counter()
        ended = time.perf_counter()
        tokens = request.usage.completion_tokens
        decode_s = ended - (first or ended)
        out.append(
            {
                "first_token_ms": round(((first or ended) - started) * 1000, 1),
                "tokens": tokens,
                "tokens_per_s": round((tokens - 1) / decode_s, 1) if tokens > 1 and decode_s > 0 else 0.0,
                "prompt_tokens": request.usage.prompt_tokens,
            }
        )
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def measure(llm: LanguageModel, sessions: list[int], rounds: int, max_tokens: int) -> dict[str, Any]:
    prompts = _prompts()
    await llm.warm_up([[ChatMessage("system", p.system_prompt)] for p in PERSONAS.values()])
    results: dict[str, Any] = {}
    for n in sessions:
        started = time.perf_counter()
        runs = await asyncio.gather(*(_session(llm, prompts, k * 7, rounds, max_tokens) for k in range(n)))
        wall = time.perf_counter() - started
        rows = [row for run in runs for row in run]
        first = [r["first_token_ms"] for r in rows]
        speed = [r["tokens_per_s"] for r in rows if r["tokens_per_s"]]
        results[str(n)] = {
            "requests": len(rows),
            "first_token_ms_p50": _pct(first, 0.5),
            "first_token_ms_p95": _pct(first, 0.95),
            "tokens_per_s_per_session_p50": round(statistics.median(speed), 1) if speed else None,
            # All sessions' tokens over the level's wall time: what the machine delivers at once.
            "tokens_per_s_total": round(sum(r["tokens"] for r in rows) / wall, 1),
        }
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m latency_bench.llm_speed", description=__doc__)
    parser.add_argument("--llm", default="llama-cpp")
    parser.add_argument("--llm-option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rounds", type=int, default=6, help="questions per session")
    parser.add_argument("--max-tokens", type=int, default=40)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    async def go() -> tuple[dict[str, Any], str]:
        llm = _load("llm", args.llm, args.llm_option)
        try:
            return await measure(
                llm, args.sessions, args.rounds, args.max_tokens
            ), f"{llm.info.provider}/{llm.info.model}"
        finally:
            await llm.aclose()

    results, model = asyncio.run(go())
    print(f"llm speed: {model}")
    print(
        f"{'sessions':>8} {'requests':>8} {'first p50':>10} {'first p95':>10} {'tok/s each':>11} {'tok/s total':>12}"
    )
    for n, row in results.items():
        print(
            f"{n:>8} {row['requests']:>8} {row['first_token_ms_p50']:>8.0f}ms {row['first_token_ms_p95']:>8.0f}ms "
            f"{row['tokens_per_s_per_session_p50']!s:>11} {row['tokens_per_s_total']!s:>12}"
        )
    if args.json:
        args.json.write_text(json.dumps({"model": model, "sessions": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
