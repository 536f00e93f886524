"""Voice-to-answer as a student hears it in a real browser: Debian chromium, the project's web
client, WebRTC, the clip played by chromium's fake microphone.

The aiortc client (`python -m latency_bench --transport webrtc`) times the server; this times the
browser's whole path as well: capture, echo cancellation and noise suppression, Opus both ways,
chromium's jitter buffer and decoder. Both ends are heard in the page by one AudioWorklet on one
clock: the last loud block of the microphone before the reply, and the first loud block of the
tutor's voice after it. Next to each turn it prints the server's own voice-to-answer, so the
difference is the browser's share.

    python -m latency_bench.browser --url http://127.0.0.1:8799/ --audio-dir ../shared/speech

Needs `serve --open` (the page starts a session without signing in), the `playwright` package and
a chromium binary (never `playwright install`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import wave
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from latency_bench.stats import percentile

LOUD_DBFS = -45.0  # a 128-sample block of the tutor's voice above this is sound
MIC_LOUD_DBFS = -35.0  # ... and of the microphone, speech
CHROMIUM_ARGS = [
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

# Events from the data channel, kept for the benchmark (the page's own handler is untouched).
_CAPTURE_EVENTS = """
(() => {
  window.__events = [];
  const create = RTCPeerConnection.prototype.createDataChannel;
  RTCPeerConnection.prototype.createDataChannel = function (...args) {
    const channel = create.apply(this, args);
    channel.addEventListener("message", (e) => {
      try { window.__events.push(JSON.parse(e.data)); } catch (_) {}
    });
    return channel;
  };
})();
"""

# Block levels of the microphone (input 0) and the tutor's voice (input 1), on the audio clock.
_WORKLET = """
class Levels extends AudioWorkletProcessor {
  process(inputs) {
    const out = [];
    for (const input of inputs) {
      const ch = input[0];
      let sum = 0;
      if (ch) for (let i = 0; i < ch.length; i++) sum += ch[i] * ch[i];
      out.push(ch ? 10 * Math.log10(sum / ch.length + 1e-12) : -120);
    }
    this.port.postMessage([currentTime, out[0], out[1]]);
    return true;
  }
}
registerProcessor("levels", Levels);
"""

_LISTEN = """
async (worklet) => {
  const s = window.convergio;
  const remote = s.pc.getReceivers().find(r => r.track && r.track.kind === "audio").track;
  const ctx = new AudioContext();
  const url = URL.createObjectURL(new Blob([worklet], { type: "application/javascript" }));
  await ctx.audioWorklet.addModule(url);
  const node = new AudioWorkletNode(ctx, "levels", { numberOfInputs: 2, numberOfOutputs: 0 });
  ctx.createMediaStreamSource(new MediaStream([s.mic])).connect(node, 0, 0);
  ctx.createMediaStreamSource(new MediaStream([remote])).connect(node, 0, 1);
  window.__levels = [];
  node.port.onmessage = (e) => window.__levels.push(e.data);
  window.__ctx = ctx;
  return ctx.sampleRate;
}
"""


@dataclass(slots=True)
class BrowserTurn:
    clip: str
    voice_to_answer_ms: float | None  # microphone's last speech to the tutor's first sound, in the page
    server_voice_to_answer_ms: float | None  # the same turn as the server counts it
    transcript: str
    reply_text: str


def _clip_seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def measure(levels: list[list[float]]) -> float | None:
    """Milliseconds from the microphone's last loud block before the reply to the reply's first
    loud block. None if either never came. The microphone's threshold is higher than the reply's:
    chromium's gain control lifts its noise floor to about -40 dBFS once the clip has ended."""
    start = next((t for t, near, _ in levels if near > MIC_LOUD_DBFS), None)
    if start is None:
        return None
    reply = next((t for t, _, far in levels if far > LOUD_DBFS and t > start), None)
    if reply is None:
        return None
    block = levels[1][0] - levels[0][0]  # a block's time is its start; speech ends at its end
    end = max(t for t, near, _ in levels if near > MIC_LOUD_DBFS and t < reply) + block
    return round((reply - end) * 1000, 1)


async def run_clip(playwright: Any, chromium: str, url: str, clip: Path, persona: str) -> BrowserTurn:
    args = [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={clip.resolve()}%noloop"]
    browser = await playwright.chromium.launch(executable_path=chromium, args=args)
    try:
        page = await browser.new_page()
        await page.add_init_script(_CAPTURE_EVENTS)
        await page.goto(url)
        await page.wait_for_selector("#persona option", state="attached")
        await page.select_option("#persona", persona)
        await page.click("#start")
        # The microphone starts with getUserMedia, just before the session listens.
        await page.wait_for_function("window.convergio && window.convergio.mic", timeout=30_000)
        await page.evaluate(_LISTEN, _WORKLET)
        timeout_ms = (_clip_seconds(clip) + 30) * 1000
        # A turn heard as no words (a click as the microphone opens) gets no reply: wait for one that does.
        await page.wait_for_function(
            "window.__events.some(m => m.type === 'turn.done' && m.status !== 'no_speech')",
            timeout=timeout_ms,
        )
        await page.wait_for_timeout(300)
        levels = await page.evaluate("window.__levels")
        events = await page.evaluate("window.__events")
    finally:
        await browser.close()
    done = next(m for m in events if m["type"] == "turn.done" and m["status"] != "no_speech")
    finals = [
        m["text"] for m in events if m["type"] == "transcript.final" and m["turn_id"] == done["turn_id"]
    ]
    return BrowserTurn(
        clip=clip.name,
        voice_to_answer_ms=measure(levels),
        server_voice_to_answer_ms=(done.get("latency") or {}).get("voice_to_answer_ms"),
        transcript=" ".join(finals),
        reply_text=done.get("reply_text", ""),
    )


async def main_async(args: argparse.Namespace) -> int:
    from playwright.async_api import async_playwright

    clips = sorted(Path(args.audio_dir).glob("*.wav"))
    if args.limit:
        clips = clips[: args.limit]
    if not clips:
        print(f"no .wav clips in {args.audio_dir}", file=sys.stderr)
        return 2
    turns: list[BrowserTurn] = []
    async with async_playwright() as playwright:
        for clip in clips:
            turn = await run_clip(playwright, args.chromium, args.url, clip, args.persona)
            turns.append(turn)
            print(
                f"{turn.clip[:44]:44s} browser {turn.voice_to_answer_ms!s:>7} ms  "
                f"server {turn.server_voice_to_answer_ms!s:>7} ms  | {turn.transcript[:50]}",
                flush=True,
            )
    pairs = [(t.voice_to_answer_ms, t.server_voice_to_answer_ms) for t in turns]
    pairs = [(b, s) for b, s in pairs if b is not None and s is not None]
    if pairs:
        browser = [b for b, _ in pairs]
        share = [b - s for b, s in pairs]
        print(
            f"\nvoice-to-answer in the browser p50 {statistics.median(browser):.0f} "
            f"p95 {percentile(browser, 95):.0f} ms "
            f"({len(pairs)} turns); the browser's share (browser minus server) "
            f"p50 {statistics.median(share):.0f} ms, range {min(share):.0f} to {max(share):.0f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"turns": [asdict(t) for t in turns]}, indent=1))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m latency_bench.browser", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--url", default="http://127.0.0.1:8799/", help="the web client of a `serve --open` server"
    )
    parser.add_argument(
        "--audio-dir", default="../shared/speech", help="16-bit PCM WAV clips, one session each"
    )
    parser.add_argument("--persona", default="maths")
    parser.add_argument("--limit", type=int, default=0, help="only the first N clips")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--json", help="write every turn here")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
