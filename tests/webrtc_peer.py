"""An in-process aiortc peer that behaves like a browser: microphone audio from a real clip,
reply audio measured on arrival, protocol-v1 events on the "events" data channel."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from typing import Any

import av
import numpy as np
import soxr
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription

from latency_bench.client import SAMPLE_RATE
from latency_bench.webrtc_client import MicrophoneTrack


class ClipTrack(MicrophoneTrack):
    """The benchmark's microphone with a clip queued, then silence; `vanished` makes it go quiet
    without a goodbye, like a laptop lid closing."""

    def __init__(self, pcm16: bytes, sample_rate: int) -> None:
        super().__init__()
        samples = np.frombuffer(pcm16, dtype="<i2")
        self.queue(soxr.resample(samples, sample_rate, SAMPLE_RATE).astype("<i2").tobytes())
        self.vanished = asyncio.Event()

    async def recv(self) -> av.AudioFrame:
        if self.vanished.is_set():
            await asyncio.Event().wait()  # no more packets, no goodbye
        return await super().recv()


class Peer:
    def __init__(self, base_url: str, mic: ClipTrack, *, token: str | None = None) -> None:
        self.base_url = base_url
        self.token = token
        self.pc = RTCPeerConnection()
        self.mic = mic
        self.pc.addTrack(mic)
        self.channel = self.pc.createDataChannel("events")
        self.messages: list[dict[str, Any]] = []
        self.loud_frames = 0  # 20 ms reply frames with audible sound
        self._readers: list[asyncio.Task[None]] = []
        self.channel.on("message", lambda raw: self.messages.append(json.loads(raw)))

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self._readers.append(asyncio.ensure_future(self._listen(track)))

    async def _listen(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except Exception:  # noqa: BLE001 - the call ended
                return
            level = np.abs(frame.to_ndarray().astype(np.int32)).mean()
            self.loud_frames += level > 200

    async def connect(self, persona: str = "maths") -> dict[str, Any]:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = {"type": "offer", "sdp": self.pc.localDescription.sdp}
        url = self.base_url + "/v1/webrtc/offer"
        status, answer = await asyncio.to_thread(post_json, url, offer, None, self.token)
        assert status == 200, answer
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        opened = asyncio.Event()
        self.channel.on("open", opened.set)
        if self.channel.readyState != "open":
            await asyncio.wait_for(opened.wait(), 15)
        self.channel.send(json.dumps({"type": "session.start", "persona": persona}))
        return answer

    async def wait_for(self, kind: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages:
                if message["type"] == kind:
                    return message
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {kind}; got {[m['type'] for m in self.messages]}")

    async def close(self) -> None:
        for reader in self._readers:
            reader.cancel()
        await self.pc.close()


def post_json(url: str, body: Any, raw: bytes | None = None, token: str | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else json.dumps(body).encode()
    headers = {"content-type": "application/json"} | ({"authorization": f"Bearer {token}"} if token else {})
    request = urllib.request.Request(url, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")
