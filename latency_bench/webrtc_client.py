"""The benchmark's microphone over WebRTC (aiortc): the same turns as VoiceClient, but audio goes
through Opus both ways and events through the "events" data channel, as from a browser.

Voice-to-voice here is what a listener hears: from sending the last voiced sample to the first
audible 20 ms frame of reply decoded on this side (jitter buffer and codec included).
"""

from __future__ import annotations

import asyncio
import fractions
import json
import time
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import av
import numpy as np
import soxr
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from latency_bench.client import SAMPLE_RATE, VoiceClient

RATE = 48_000
FRAME = RATE // 50
AUDIBLE = 200  # mean absolute sample value of a frame that is not silence


class MicrophoneTrack(MediaStreamTrack):
    """Plays what the client queues, in real time, and silence in between, like a microphone."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue = np.zeros(0, dtype="<i2")
        self._pts = 0
        self._start: float | None = None
        self.drained = asyncio.Event()
        self.last_sent_at = 0.0

    def queue(self, pcm16_16k: bytes) -> None:
        samples = np.frombuffer(pcm16_16k, dtype="<i2")
        upsampled = soxr.resample(samples, SAMPLE_RATE, RATE).astype("<i2")
        self._queue = np.concatenate([self._queue, upsampled])
        self.drained.clear()

    async def recv(self) -> av.AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        wait = self._start + self._pts / RATE - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        chunk, self._queue = self._queue[:FRAME], self._queue[FRAME:]
        if len(chunk):
            self.last_sent_at = time.monotonic()
        if not len(self._queue):
            self.drained.set()
        chunk = np.pad(chunk, (0, FRAME - len(chunk)))
        frame = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self._pts, fractions.Fraction(1, RATE)
        self._pts += FRAME
        return frame


class WebRtcVoiceClient(VoiceClient):
    async def __aenter__(self) -> WebRtcVoiceClient:
        parts = urlsplit(self.url)
        scheme = "https" if parts.scheme == "wss" else "http"
        offer_url = f"{scheme}://{parts.netloc}/v1/webrtc/offer"
        if parts.hostname in ("127.0.0.1", "localhost"):
            # A server on this machine: keep media on loopback too (aioice skips 127.0.0.1).
            import aioice.ice

            aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
        self._pc = RTCPeerConnection()
        self._mic = MicrophoneTrack()
        self._pc.addTrack(self._mic)
        channel = self._pc.createDataChannel("events")
        self._channel = channel
        started = asyncio.Event()

        def on_message(raw: str) -> None:
            message = json.loads(raw)
            if message["type"] == "server.hello":
                self.hello = message
            elif message["type"] == "session.started":
                self.started = message
                self.output_rate = message["output_audio"]["sample_rate"]
                started.set()
            self._handle(message)

        channel.on("message", on_message)
        self._readers: list[asyncio.Task[None]] = []
        self._pc.on("track", lambda track: self._readers.append(asyncio.ensure_future(self._listen(track))))
        await self._pc.setLocalDescription(await self._pc.createOffer())
        body = json.dumps({"type": "offer", "sdp": self._pc.localDescription.sdp}).encode()
        answer = await asyncio.to_thread(_post, offer_url, body, self.token)
        await self._pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        opened = asyncio.Event()
        channel.on("open", opened.set)
        if channel.readyState != "open":
            await asyncio.wait_for(opened.wait(), 15)
        start: dict[str, Any] = {"type": "session.start"}
        if self.persona:
            start["persona"] = self.persona
        if self.end_of_turn_silence_ms:
            start["turn"] = {"end_of_turn_silence_ms": self.end_of_turn_silence_ms}
        channel.send(json.dumps(start))
        await asyncio.wait_for(started.wait(), 15)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._channel.readyState == "open":
            self._channel.send(json.dumps({"type": "session.end"}))
            await asyncio.sleep(0.2)
        for reader in self._readers:
            reader.cancel()
        await self._pc.close()

    async def _listen(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except Exception:  # noqa: BLE001 - the call ended
                return
            if np.abs(frame.to_ndarray().astype(np.int32)).mean() > AUDIBLE:
                self._reply_audio(FRAME * 2 * self.output_rate // RATE)

    async def send_audio(self, pcm16: bytes) -> float:
        self._mic.queue(pcm16)
        await self._mic.drained.wait()
        return self._mic.last_sent_at

    async def send_json(self, message: dict[str, Any]) -> None:
        self._channel.send(json.dumps(message))


def _post(url: str, body: bytes, token: str | None) -> dict[str, Any]:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())
