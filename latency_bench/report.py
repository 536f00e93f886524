"""Writes the benchmark's report files: report.json, latency.png and summary.md."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STAGES = (
    "endpointing", "stt", "llm_first_token", "first_sentence", "tts_first_audio", "voice_to_voice",
    "voice_to_answer",
)
# Measured by the client (the others are the server's own stage timings).
CLIENT_SIDE = {"voice_to_voice": "voice_to_voice_ms", "voice_to_answer": "voice_to_answer_ms"}


def write_reports(payload: dict[str, Any], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    report = folder / "report.json"
    report.write_text(json.dumps(payload, indent=2))
    plot = folder / "latency.png"
    _plot(payload, plot)
    summary = folder / "summary.md"
    summary.write_text(_markdown(payload))
    return [report, plot, summary]


def _plot(payload: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    soak = payload.get("soak")
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    if soak:
        times = [t / 60 for t, _ in soak["rss_mb_over_time"]]
        axes[0].plot(times, [m for _, m in soak["rss_mb_over_time"]], marker=".")
        axes[0].set(
            title=f"Server memory, {soak['concurrency']} session(s)", xlabel="minutes", ylabel="RSS (MB)"
        )
        axes[1].axis("off")
        axes[1].text(
            0, 0.5, f"{soak['turns']} turns\nRSS growth {soak['rss_growth_mb_per_min']} MB/min", fontsize=14
        )
    else:
        levels = payload["levels"]
        data, labels = [], []
        for level in levels:
            for stage in STAGES:
                key = CLIENT_SIDE.get(stage)
                values = [t.get(key) if key else t["stages"].get(stage) for t in level["turns"]]
                values = [v for v in values if v is not None]
                if values:
                    data.append(values)
                    labels.append(f"{stage}\n×{level['concurrency']}" if len(levels) > 1 else stage)
        axes[0].boxplot(data, showfliers=True)
        axes[0].set_xticks(range(1, len(labels) + 1), labels, rotation=60, fontsize=7)
        axes[0].set(title="Latency per stage (ms)", ylabel="ms")
        concurrency = [lv["concurrency"] for lv in levels]
        for p in ("p50", "p95", "p99"):
            axes[1].plot(
                concurrency, [lv["summary"]["voice_to_voice_ms"][p] for lv in levels], marker="o", label=p
            )
        for p in ("p50", "p95"):
            answer = [(lv["summary"].get("voice_to_answer_ms") or {}).get(p) for lv in levels]
            axes[1].plot(concurrency, answer, marker="x", linestyle="--", label=f"answer {p}")
        axes[1].set(
            title="Voice-to-voice vs concurrent sessions", xlabel="sessions", ylabel="ms", xticks=concurrency
        )
        axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown(payload: dict[str, Any]) -> str:
    lines = ["# Latency benchmark", ""]
    soak = payload.get("soak")
    if soak:
        lines += [
            f"Soak: {soak['concurrency']} session(s) for {soak['minutes']} min, {soak['turns']} turns.",
            f"Server RSS {soak['rss_start_mb']} MB → {soak['rss_end_mb']} MB "
            f"(peak {soak['rss_peak_mb']} MB), growth {soak['rss_growth_mb_per_min']} MB/min; "
            f"CPU {soak['cpu_cores_per_session']} cores per session.",
            "",
        ]
        return "\n".join(lines)
    lines += [
        "| sessions | turns | v2v p50 | v2v p95 | v2v p99 | answer p50 | answer p95 | WER "
        "| budget misses | CPU cores/session | RSS peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for level in payload["levels"]:
        s, r = level["summary"], level["resources"]
        v = s["voice_to_voice_ms"]
        a = s.get("voice_to_answer_ms") or {"p50": None, "p95": None}
        wer = f"{s['word_error_rate'] * 100:.1f}%" if "word_error_rate" in s else "-"
        lines.append(
            f"| {level['concurrency']} | {s['turns']} | {_ms(v['p50'])} | {_ms(v['p95'])} | "
            f"{_ms(v['p99'])} | {_ms(a['p50'])} | {_ms(a['p95'])} | {wer} | {s['budget_misses']} | {r['cpu_cores_per_session']} | "
            f"{r['rss_peak_mb']} |"
        )
    levels = payload["levels"]
    taking = [(lv["concurrency"], lv["turn_taking"]["summary"]) for lv in levels if lv.get("turn_taking")]
    if taking:
        lines += [
            "",
            "Turn-taking on clips with a thinking pause (latency from the real end of speech):",
            "",
            "| sessions | clips | false cut-offs | one transcript | words heard | v2v p50 | v2v p95 "
            "| answer p50 | answer p95 |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for n, t in taking:
            v, a = t["voice_to_voice_after_end_ms"], t["voice_to_answer_after_end_ms"]
            lines.append(
                f"| {n} | {t['clips']} | {t['false_cutoffs']} ({t['false_cutoff_rate'] * 100:.0f}%) | "
                f"{t['one_transcript_rate'] * 100:.0f}% | {(t['word_recall'] or 0) * 100:.1f}% | "
                f"{_ms(v['p50'])} | {_ms(v['p95'])} | {_ms(a['p50'])} | {_ms(a['p95'])} |"
            )
    lines += ["", "Per stage (ms, p50 / p95):", ""]
    for level in payload["levels"]:
        stages = level["summary"]["server_stages_ms"]
        cells = ", ".join(f"{k} {_ms(v['p50'])}/{_ms(v['p95'])}" for k, v in stages.items())
        lines.append(f"- {level['concurrency']} session(s): {cells}")
    return "\n".join(lines) + "\n"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"
