"""WebRTC without a browser: an in-process aiortc peer against the real server, on loopback."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from latency_bench.client import load_clip
from latency_bench.wer import word_error_rate
from tests.webrtc_peer import ClipTrack, Peer, post_json
from voice_server.transports.webrtc import use_host_addresses

pytestmark = pytest.mark.models

CLIP = "arctic_a0024.16k.wav"


@pytest.fixture(autouse=True)
def loopback_only() -> None:
    use_host_addresses(["127.0.0.1"])  # our side of the call stays on 127.0.0.1 too


def _gauge(server, name: str) -> float:
    text = server.text("/metrics", role="admin")
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


async def _until_no_peers(server, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await asyncio.to_thread(_gauge, server, "convergio_webrtc_peers") == 0:
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    raise AssertionError("the server kept a dead peer connection")


async def test_a_peer_speaks_over_webrtc_and_hears_the_tutor(
    server, speech_clips: Path, speech_manifest, assert_valid
):
    entry = next((e for e in speech_manifest if e["file"] == CLIP), speech_manifest[0])
    clip = load_clip(speech_clips / entry["file"])
    peer = Peer(server.base_url, ClipTrack(clip.pcm16, clip.sample_rate), token=server.token())
    answer = await peer.connect()
    assert "127.0.0.1" in answer["sdp"]
    started = await peer.wait_for("session.started")
    assert started["output_audio"]["sample_rate"] == 48000
    done = await peer.wait_for("turn.done", timeout=90)
    final = await peer.wait_for("transcript.final")
    assert word_error_rate([entry["transcript"]], [final["text"]]) < 0.25
    assert done["status"] == "completed" and done["reply_text"]
    assert peer.loud_frames * 20 >= 500, "less than 0.5 s of audible reply audio arrived"
    assert_valid(peer.messages)
    await peer.close()
    await _until_no_peers(server, 10)


async def test_bad_offers_get_400_before_aiortc_sees_them(server):
    url = server.base_url + "/v1/webrtc/offer"
    cases = [
        (None, b"not json"),
        ({"type": "answer", "sdp": "v=0\r\n"}, None),
        ({"type": "offer", "sdp": ""}, None),
        ({"type": "offer", "sdp": "hello world"}, None),
        ({"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=video 9 UDP 96\r\n"}, None),
        ({"type": "offer", "sdp": "v=0\r\n" + "a=x\r\n" * 40_000}, None),
    ]
    for body, raw in cases:
        status, reply = await asyncio.to_thread(post_json, url, body, raw, server.token())
        assert status == 400, (body, reply)
        assert reply["error"]["code"] in {"invalid_json", "invalid_sdp", "sdp_too_large"}
        assert reply["error"]["message"]
    assert await asyncio.to_thread(_gauge, server, "convergio_webrtc_peers") == 0


def _clip(speech_clips: Path, manifest: list[dict]):
    entry = next((e for e in manifest if e["file"] == CLIP), manifest[0])
    return load_clip(speech_clips / entry["file"])


async def test_a_peer_that_vanishes_is_cleaned_up_within_seconds(server, speech_clips: Path, speech_manifest):
    clip = _clip(speech_clips, speech_manifest)
    peer = Peer(server.base_url, ClipTrack(clip.pcm16, clip.sample_rate), token=server.token())
    await peer.connect()
    await peer.wait_for("session.started")
    assert await asyncio.to_thread(_gauge, server, "convergio_webrtc_peers") == 1
    peer.mic.vanished.set()  # stops sending, says nothing: a closed laptop lid
    took = await _until_no_peers(server, 15)
    assert took < 10
    assert await asyncio.to_thread(_gauge, server, "convergio_active_sessions") == 0
    await peer.close()


async def test_a_peer_stuck_connecting_is_closed(server, speech_clips: Path, speech_manifest):
    clip = _clip(speech_clips, speech_manifest)
    peer = Peer(server.base_url, ClipTrack(clip.pcm16, clip.sample_rate), token=server.token())
    await peer.pc.setLocalDescription(await peer.pc.createOffer())
    offer = {"type": "offer", "sdp": peer.pc.localDescription.sdp}
    status, _ = await asyncio.to_thread(
        post_json, server.base_url + "/v1/webrtc/offer", offer, None, server.token()
    )
    assert status == 200
    await peer.pc.close()  # never applies the answer, so the server's side never connects
    await _until_no_peers(server, 15)
