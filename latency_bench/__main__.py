"""python -m latency_bench --url ws://HOST:PORT/v1/ws --audio-dir DIR [--json PATH]

Streams each WAV clip of DIR as one turn, at real-time pace followed by silence, after one warm-up
turn that is not counted; prints a table and p50/p95 of voice-to-voice and of each stage. The JSON
written with --json is a stable interface:
  {"turns": [{"clip", "transcript", "reply_text", "voice_to_voice_ms", "stages": {STAGE: ms}}...],
   "summary": {...}}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from latency_bench.client import ClipResult, VoiceClient, load_clip
from latency_bench.stats import percentile
from latency_bench.wer import load_references, word_error_rate


async def run(url: str, clips: list[Path], persona: str | None) -> tuple[list[ClipResult], ClipResult]:
    loaded = [load_clip(p) for p in clips]
    warm = min(loaded, key=lambda c: c.duration_ms)
    async with VoiceClient(url, persona=persona) as client:
        warm_result = await client.play_clip(warm)
        results = []
        for clip in loaded:
            result = await client.play_clip(clip)
            results.append(result)
            v2v = f"{result.voice_to_voice_ms:.0f} ms" if result.voice_to_voice_ms is not None else "-"
            print(f"  {clip.name:52} {v2v:>9}", file=sys.stderr, flush=True)
    return results, warm_result


def summarise(results: list[ClipResult], references: dict[str, str]) -> dict[str, Any]:
    v2v = [r.voice_to_voice_ms for r in results if r.voice_to_voice_ms is not None]
    stage_names = sorted({s for r in results for s in r.stages})
    stages = {}
    for name in stage_names:
        values = [float(v) for r in results if (v := r.stages.get(name)) is not None]
        stages[name] = {"p50": percentile(values, 50), "p95": percentile(values, 95)}
    summary: dict[str, Any] = {
        "turns": len(results),
        "voice_to_voice_ms": {
            "p50": percentile(v2v, 50),
            "p95": percentile(v2v, 95),
            "mean": sum(v2v) / len(v2v) if v2v else None,
        },
        "server_stages_ms": stages,
    }
    scored = [(references[r.clip], r.transcript) for r in results if r.clip in references]
    if scored:
        refs, hyps = zip(*scored, strict=True)
        summary["word_error_rate"] = round(word_error_rate(list(refs), list(hyps)), 4)
    return summary


def table(results: list[ClipResult], summary: dict[str, Any]) -> str:
    names = list(summary["server_stages_ms"])
    head = f"{'clip':44} {'v2v':>6} " + " ".join(f"{n[:11]:>11}" for n in names)
    lines = [head, "-" * len(head)]
    for r in results:
        v2v = f"{r.voice_to_voice_ms:.0f}" if r.voice_to_voice_ms is not None else "-"
        cells = " ".join(f"{r.stages.get(n) if r.stages.get(n) is not None else '-':>11}" for n in names)
        lines.append(f"{r.clip[:44]:44} {v2v:>6} {cells}")
    for p in ("p50", "p95"):
        v = summary["voice_to_voice_ms"][p]
        cells = " ".join(f"{_fmt(summary['server_stages_ms'][n][p]):>11}" for n in names)
        lines.append(f"{p:44} {_fmt(v):>6} {cells}")
    if "word_error_rate" in summary:
        lines.append(f"word error rate (normalised): {summary['word_error_rate'] * 100:.1f}%")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="latency_bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="ws://HOST:PORT/v1/ws")
    parser.add_argument("--audio-dir", required=True, type=Path)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--persona")
    parser.add_argument("--limit", type=int, help="only the first N clips (by name)")
    args = parser.parse_args(argv)

    clips = sorted(args.audio_dir.glob("*.wav"))[: args.limit]
    if not clips:
        parser.error(f"no .wav files in {args.audio_dir}")
    references = load_references(args.audio_dir)
    print(f"streaming {len(clips)} clips (+1 warm-up) to {args.url} at real-time pace", file=sys.stderr)
    results, _ = asyncio.run(run(args.url, clips, args.persona))
    summary = summarise(results, references)
    print(table(results, summary))
    if args.json:
        payload = {
            "turns": [
                {
                    "clip": r.clip,
                    "transcript": r.transcript,
                    "reply_text": r.reply_text,
                    "voice_to_voice_ms": r.voice_to_voice_ms,
                    "stages": r.stages,
                    "reply_audio_ms": r.reply_audio_ms,
                }
                for r in results
            ],
            "summary": summary,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
