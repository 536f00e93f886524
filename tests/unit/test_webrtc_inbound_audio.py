"""The server hears a WebRTC student's audio as soon as each Opus frame is known to be whole,
not after aiortc's playback-smoothing delay of four more frames (80 ms on every turn)."""

from __future__ import annotations

from aiortc import RTCPeerConnection
from aiortc.rtp import RtpPacket

from voice_server.settings import Settings
from voice_server.transports.webrtc import hold_back_frames

FRAME = 960  # 20 ms at 48 kHz, in RTP timestamp units


def _packets(receiver, count: int) -> list:
    """Feed `count` consecutive one-packet frames to the receiver's buffer; what each one released."""
    buffer = receiver._RTCRtpReceiver__jitter_buffer
    released = []
    for n in range(count):
        packet = RtpPacket(payload_type=111, sequence_number=n, timestamp=n * FRAME, payload=b"opus")
        packet._data = packet.payload
        released.append(buffer.add(packet)[1])
    return released


async def test_a_frame_is_decoded_when_the_next_one_arrives():
    pc = RTCPeerConnection()
    receiver = pc.addTransceiver("audio").receiver
    assert hold_back_frames(receiver, Settings().webrtc.inbound_jitter_frames)
    released = _packets(receiver, 3)
    assert released[0] is None  # a frame is whole once a later one starts
    assert [frame.timestamp for frame in released[1:]] == [0, FRAME]
    await pc.close()


async def test_aiortc_alone_would_hold_each_frame_for_four_more():
    pc = RTCPeerConnection()
    released = _packets(pc.addTransceiver("audio").receiver, 5)
    assert released[:4] == [None] * 4 and released[4].timestamp == 0
    await pc.close()


async def test_video_and_unknown_receivers_are_left_alone():
    pc = RTCPeerConnection()
    assert not hold_back_frames(pc.addTransceiver("video").receiver, 1)
    assert not hold_back_frames(object(), 1)
    assert not hold_back_frames(None, 1)
    await pc.close()
