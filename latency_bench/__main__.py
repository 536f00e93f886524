"""python -m latency_bench --url ws://HOST:PORT/v1/ws --audio-dir DIR [--turns-dir DIR] [--json PATH]

Streams each WAV clip of DIR as one turn, at real-time pace followed by silence, after a warm-up
turn per session that is not counted; prints a table and p50/p95/p99 of voice-to-voice and of each
stage. `--concurrency 1,4` runs each level with that many simultaneous sessions; `--soak MINUTES`
keeps sessions talking and reports server memory over time. `--turns-dir` (e.g. ../shared/turns:
clips with a thinking pause inside one sentence) also runs those clips at each level and reports
turn-taking: the false cut-off rate (reply audio or a filler before the real end of speech), how
many clips gave exactly one final transcript, the share of reference words heard, and the latency
after the real end. The JSON written with --json is a stable interface:
  {"turns": [{"clip", "transcript", "reply_text", "voice_to_voice_ms", "stages": {STAGE: ms}}...],
   "summary": {...}, "levels": [...], "soak": {...} | null, "turn_taking": {...} | null}
(each level also carries "turn_taking" when --turns-dir is given).
With --report-dir it also writes report.json, latency.png and summary.md there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from latency_bench.client import Clip, ClipResult, VoiceClient, load_clip
from latency_bench.server_stats import ServerSampler
from latency_bench.stats import percentile
from latency_bench.wer import load_references, word_error_rate, word_recall

PCTS = (50, 95, 99)
TURN_TIMEOUT_S = 120
ClientFactory = Callable[[str, str | None], VoiceClient]


def client_factory(transport: str, token: str | None = None) -> ClientFactory:
    if transport == "webrtc":
        from latency_bench.webrtc_client import WebRtcVoiceClient

        return lambda url, persona: WebRtcVoiceClient(url, persona=persona, token=token)
    return lambda url, persona: VoiceClient(url, persona=persona, token=token)


async def run_session(
    make: ClientFactory, url: str, clips: list[Clip], persona: str | None, delay_s: float, label: str
) -> list[ClipResult]:
    await asyncio.sleep(delay_s)  # sessions in a classroom do not start in lockstep
    warm = min(clips, key=lambda c: c.duration_ms)
    async with make(url, persona) as client:
        await client.play_clip(warm)
        results = []
        for clip in clips:
            try:
                result = await client.play_clip(clip, timeout_s=TURN_TIMEOUT_S)
            except TimeoutError:
                # An overloaded server is a result, not a crash: record the turn as unanswered.
                result = ClipResult(clip.name, "", "", None, {}, 0, [])
                print(f"  {label} {clip.name:52} timed out", file=sys.stderr, flush=True)
                results.append(result)
                continue
            results.append(result)
            v2v = f"{result.voice_to_voice_ms:.0f} ms" if result.voice_to_voice_ms is not None else "-"
            print(f"  {label} {clip.name:52} {v2v:>9}", file=sys.stderr, flush=True)
    return results


async def run_level(
    make: ClientFactory,
    url: str,
    clips: list[Clip],
    persona: str | None,
    concurrency: int,
    sampler: ServerSampler,
) -> tuple[list[ClipResult], dict[str, Any]]:
    average_s = sum(c.duration_ms for c in clips) / len(clips) / 1000
    before = await sampler.sample()
    started = time.monotonic()
    async with sampler.watch() as samples:
        per_session = await asyncio.gather(
            *(
                run_session(make, url, clips, persona, i * average_s / concurrency, f"[{concurrency}:{i}]")
                for i in range(concurrency)
            )
        )
    wall = time.monotonic() - started
    after = await sampler.sample()
    resources = sampler.resources(before, after, samples, wall, concurrency)
    return [r for session in per_session for r in session], resources


async def run_soak(
    make: ClientFactory,
    url: str,
    clips: list[Clip],
    persona: str | None,
    concurrency: int,
    minutes: float,
    sampler: ServerSampler,
) -> dict[str, Any]:
    deadline = time.monotonic() + minutes * 60

    async def loop(index: int) -> int:
        await asyncio.sleep(index * 1.5)
        turns = 0
        async with make(url, persona) as client:
            while time.monotonic() < deadline:
                await client.play_clip(clips[turns % len(clips)])
                turns += 1
        return turns

    before = await sampler.sample()
    started = time.monotonic()
    async with sampler.watch(interval_s=5) as samples:
        turns = await asyncio.gather(*(loop(i) for i in range(concurrency)))
    after = await sampler.sample()
    rss = [(round(t - started, 1), m) for t, m in samples]
    growth = (rss[-1][1] - rss[0][1]) / max(rss[-1][0] - rss[0][0], 1) * 60 if len(rss) > 1 else 0.0
    return {
        "minutes": minutes,
        "concurrency": concurrency,
        "turns": sum(turns),
        "rss_mb_over_time": rss,
        "rss_growth_mb_per_min": round(growth, 2),
        **sampler.resources(before, after, samples, time.monotonic() - started, concurrency),
    }


def summarise(results: list[ClipResult], references: dict[str, str]) -> dict[str, Any]:
    v2v = [r.voice_to_voice_ms for r in results if r.voice_to_voice_ms is not None]
    v2a = [r.voice_to_answer_ms for r in results if r.voice_to_answer_ms is not None]
    stage_names = sorted({s for r in results for s in r.stages})
    stages = {}
    for name in stage_names:
        values = [float(v) for r in results if (v := r.stages.get(name)) is not None]
        stages[name] = {f"p{p}": percentile(values, p) for p in PCTS}
    summary: dict[str, Any] = {
        "turns": len(results),
        "unanswered": sum(1 for r in results if r.voice_to_voice_ms is None),
        "voice_to_voice_ms": {f"p{p}": percentile(v2v, p) for p in PCTS}
        | {"mean": round(sum(v2v) / len(v2v), 1) if v2v else None},
        "voice_to_answer_ms": {f"p{p}": percentile(v2a, p) for p in PCTS},
        "server_stages_ms": stages,
        "budget_misses": sum(len(t.budget_misses) for r in results for t in r.turns),
    }
    scored = [(references[r.clip], r.transcript) for r in results if r.clip in references]
    if scored:
        refs, hyps = zip(*scored, strict=True)
        summary["word_error_rate"] = round(word_error_rate(list(refs), list(hyps)), 4)
    return summary


def summarise_turn_taking(results: list[ClipResult], references: dict[str, str]) -> dict[str, Any]:
    """Patience and speed together: a tutor that never cuts off but answers late fails too."""
    n = len(results)
    after_end = [r.voice_to_voice_ms for r in results if r.voice_to_voice_ms is not None]
    answer = [r.voice_to_answer_ms for r in results if r.voice_to_answer_ms is not None]
    recalls = [word_recall(references[r.clip], r.transcript) for r in results if r.clip in references]
    summary: dict[str, Any] = {
        "clips": n,
        "false_cutoffs": sum(r.cut_off for r in results),
        "false_cutoff_rate": round(sum(r.cut_off for r in results) / n, 4) if n else None,
        "one_transcript_rate": round(sum(r.finals == 1 for r in results) / n, 4) if n else None,
        "word_recall": round(sum(recalls) / len(recalls), 4) if recalls else None,
        "voice_to_voice_after_end_ms": {f"p{p}": percentile(after_end, p) for p in PCTS},
        "voice_to_answer_after_end_ms": {f"p{p}": percentile(answer, p) for p in PCTS},
    }
    scored = [(references[r.clip], r.transcript) for r in results if r.clip in references]
    if scored:
        refs, hyps = zip(*scored, strict=True)
        summary["word_error_rate"] = round(word_error_rate(list(refs), list(hyps)), 4)
    return summary


def turn_taking_table(results: list[ClipResult], summary: dict[str, Any]) -> str:
    head = f"{'clip':52} {'cut-off':>7} {'finals':>6} {'v2v':>6} {'answer':>6}"
    lines = [head, "-" * len(head)]
    for r in results:
        cut = "YES" if r.cut_off else "no"
        v2v, v2a = _fmt(r.voice_to_voice_ms), _fmt(r.voice_to_answer_ms)
        lines.append(f"{r.clip[:52]:52} {cut:>7} {r.finals:>6} {v2v:>6} {v2a:>6}")
    v, a = summary["voice_to_voice_after_end_ms"], summary["voice_to_answer_after_end_ms"]
    lines.append(
        f"false cut-offs {summary['false_cutoffs']}/{summary['clips']} "
        f"({summary['false_cutoff_rate'] * 100:.0f}%), "
        f"one transcript {summary['one_transcript_rate'] * 100:.0f}% of clips, "
        f"words heard {(summary['word_recall'] or 0) * 100:.1f}%, "
        f"after the real end: v2v p50 {_fmt(v['p50'])} p95 {_fmt(v['p95'])}, "
        f"answer p50 {_fmt(a['p50'])} p95 {_fmt(a['p95'])} ms"
    )
    if "word_error_rate" in summary:
        lines.append(f"word error rate on the paused clips: {summary['word_error_rate'] * 100:.1f}%")
    return "\n".join(lines)


def table(results: list[ClipResult], summary: dict[str, Any]) -> str:
    names = list(summary["server_stages_ms"])
    head = f"{'clip':44} {'v2v':>6} {'answer':>6} " + " ".join(f"{n[:11]:>11}" for n in names)
    lines = [head, "-" * len(head)]
    for r in results:
        cells = " ".join(f"{_fmt(r.stages.get(n)):>11}" for n in names)
        lines.append(f"{r.clip[:44]:44} {_fmt(r.voice_to_voice_ms):>6} {_fmt(r.voice_to_answer_ms):>6} {cells}")
    for p in PCTS:
        v = summary["voice_to_voice_ms"][f"p{p}"]
        a = summary["voice_to_answer_ms"][f"p{p}"]
        cells = " ".join(f"{_fmt(summary['server_stages_ms'][n][f'p{p}']):>11}" for n in names)
        lines.append(f"{'p' + str(p):44} {_fmt(v):>6} {_fmt(a):>6} {cells}")
    if "word_error_rate" in summary:
        lines.append(f"word error rate (normalised): {summary['word_error_rate'] * 100:.1f}%")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _turn_json(r: ClipResult) -> dict[str, Any]:
    return {
        "clip": r.clip,
        "transcript": r.transcript,
        "reply_text": r.reply_text,
        "voice_to_voice_ms": r.voice_to_voice_ms,
        "voice_to_answer_ms": r.voice_to_answer_ms,
        "stages": r.stages,
        "reply_audio_ms": r.reply_audio_ms,
        "cut_off": r.cut_off,
        "finals": r.finals,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="latency_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="ws://HOST:PORT/v1/ws")
    parser.add_argument("--audio-dir", required=True, type=Path)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--turns-dir", type=Path, help="turn-taking clips with a thinking pause (e.g. ../shared/turns)"
    )
    parser.add_argument("--report-dir", type=Path, help="write report.json, latency.png, summary.md")
    parser.add_argument("--persona")
    parser.add_argument("--limit", type=int, help="only the first N clips (by name)")
    parser.add_argument("--concurrency", default="1", help="comma-separated session counts, e.g. 1,4")
    parser.add_argument("--soak", type=float, metavar="MINUTES", help="memory over time instead")
    parser.add_argument(
        "--transport",
        choices=("websocket", "webrtc"),
        default="websocket",
        help="webrtc: Opus audio and a data channel via aiortc, as a browser would",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("CONVERGIO_BENCH_TOKEN"),
        help="a signed access token for the sessions (or CONVERGIO_BENCH_TOKEN); omit for `serve --open`",
    )
    parser.add_argument(
        "--metrics-token",
        default=os.environ.get("CONVERGIO_BENCH_METRICS_TOKEN"),
        help="the scrape token (or an admin token) for /metrics, for CPU and memory",
    )
    args = parser.parse_args(argv)
    make = client_factory(args.transport, args.token)

    paths = sorted(args.audio_dir.glob("*.wav"))[: args.limit]
    if not paths:
        parser.error(f"no .wav files in {args.audio_dir}")
    clips = [load_clip(p) for p in paths]
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    references = load_references(args.audio_dir)
    sampler = ServerSampler(args.url, args.metrics_token)
    payload: dict[str, Any] = {
        "transport": args.transport,
        "turns": [],
        "summary": {},
        "levels": [],
        "soak": None,
        "turn_taking": None,
    }
    turn_paths = sorted(args.turns_dir.glob("*.wav"))[: args.limit] if args.turns_dir else []
    turn_clips = [load_clip(p) for p in turn_paths]
    turn_references = load_references(args.turns_dir) if args.turns_dir else {}

    if args.soak:
        print(f"soak: {levels[-1]} session(s) for {args.soak} min against {args.url}", file=sys.stderr)
        payload["soak"] = asyncio.run(
            run_soak(make, args.url, clips, args.persona, levels[-1], args.soak, sampler)
        )
        soak = payload["soak"]
        print(f"turns {soak['turns']}, RSS growth {soak['rss_growth_mb_per_min']} MB/min")
    else:
        for n in levels:
            print(
                f"level {n}: {n} session(s) x {len(clips)} clips (+1 warm-up each), real-time pace",
                file=sys.stderr,
            )
            results, resources = asyncio.run(run_level(make, args.url, clips, args.persona, n, sampler))
            summary = summarise(results, references)
            print(f"\n== {n} concurrent session(s)\n" + table(results, summary))
            print(
                f"server CPU {resources['cpu_cores_per_session']:.2f} cores/session, "
                f"RSS {resources['rss_peak_mb']:.0f} MB peak"
            )
            level: dict[str, Any] = {
                "concurrency": n,
                "summary": summary,
                "resources": resources,
                "turns": [_turn_json(r) for r in results],
            }
            if turn_clips:
                print(f"level {n}: turn-taking, {len(turn_clips)} clips with a pause", file=sys.stderr)
                paused, _ = asyncio.run(run_level(make, args.url, turn_clips, args.persona, n, sampler))
                taking = summarise_turn_taking(paused, turn_references)
                print(f"\n== turn-taking, {n} concurrent session(s)\n" + turn_taking_table(paused, taking))
                level["turn_taking"] = {"summary": taking, "turns": [_turn_json(r) for r in paused]}
            payload["levels"].append(level)
        first = payload["levels"][0]
        payload["turns"], payload["summary"] = first["turns"], first["summary"]
        payload["turn_taking"] = first.get("turn_taking")

    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2))
    if args.report_dir:
        from latency_bench.report import write_reports

        written = write_reports(payload, args.report_dir)
        print("reports: " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
