"""WebRTC transport (aiortc): Opus audio both ways, protocol-v1 events on a data channel.

Like the WebSocket transport it only adapts: inbound audio frames are resampled to the pipeline's
16 kHz mono with PyAV and handed to the session, reply audio is queued on an outbound track that
aiortc paces and encodes, and JSON events travel on the "events" data channel. The same
ProtocolSession does the rest; it tells the track to drop queued audio when a reply is cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import ipaddress
import logging
import re
import uuid
from typing import Any

import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.jitterbuffer import JitterBuffer
from aiortc.mediastreams import AudioStreamTrack, MediaStreamError

from voice_server.admission import Admission, Slot
from voice_server.engines import EngineHub
from voice_server.ledger.caps import SharedCaps
from voice_server.ledger.records import Attribution
from voice_server.ledger.writer import UsageLedger
from voice_server.metrics import VoiceMetrics
from voice_server.protocol import EndReason
from voice_server.classrooms.live import ClassroomLive
from voice_server.session import ProtocolSession
from voice_server.settings import Settings

log = logging.getLogger(__name__)

WEBRTC_RATE = 48_000
HANG_UP_GRACE_S = 0.5
_SDP_LINE = re.compile(r"^[a-z]=[\x20-\x7e]*$")


class SdpError(ValueError):
    """The offer is not something we will hand to aiortc (which accepts garbage silently)."""


def validate_offer(sdp: Any, kind: Any, *, max_bytes: int, allowed_networks: list[str]) -> str:
    """Check an SDP offer and drop candidates outside the allowed networks. Returns the SDP."""
    if kind != "offer":
        raise SdpError('"type" must be "offer"')
    if not isinstance(sdp, str) or not sdp.strip():
        raise SdpError('"sdp" must be a non-empty string')
    if len(sdp.encode()) > max_bytes:
        raise SdpError(f"SDP is larger than {max_bytes} bytes")
    lines = sdp.replace("\r\n", "\n").strip("\n").split("\n")
    if lines[0] != "v=0":
        raise SdpError("SDP must start with v=0")
    bad = next((line for line in lines if not _SDP_LINE.match(line)), None)
    if bad is not None:
        raise SdpError(f"malformed SDP line: {bad[:40]!r}")
    if not any(line.startswith("m=audio ") for line in lines):
        raise SdpError("the offer has no audio section")
    if not any(line.startswith("m=application ") for line in lines):
        raise SdpError("the offer has no data channel (events travel on one)")
    for needed in ("a=ice-ufrag:", "a=ice-pwd:", "a=fingerprint:"):
        if not any(line.startswith(needed) for line in lines):
            raise SdpError(f"the offer lacks {needed[2:-1]}")
    if allowed_networks:
        networks = [ipaddress.ip_network(n) for n in allowed_networks]
        lines = [line for line in lines if not line.startswith("a=candidate:") or _allowed(line, networks)]
    return "\r\n".join(lines) + "\r\n"


def _allowed(candidate: str, networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    parts = candidate.split()
    try:
        address = ipaddress.ip_address(parts[4])
    except (IndexError, ValueError):
        return False  # mDNS names and junk cannot be checked, so they are not used
    return any(address in network for network in networks)


def use_host_addresses(addresses: list[str]) -> None:
    """Offer exactly these host candidates. aioice skips 127.0.0.1, which a loopback-only test
    (or a server behind a known interface) needs."""
    import aioice.ice

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: list(addresses)


def hold_back_frames(receiver: Any, frames: int) -> bool:
    """Make the receiver decode each audio frame once `frames` later ones have arrived, instead of
    aiortc's 4 (80 ms, for smooth playback). aiortc has no option for it, so its receiver's buffer
    is replaced before any packet arrives; with an aiortc laid out differently nothing changes and
    False says so (the audio still flows, only later)."""
    attribute = "_RTCRtpReceiver__jitter_buffer"
    current = getattr(receiver, attribute, None)
    if not isinstance(current, JitterBuffer) or getattr(current, "_is_video", True):
        return False
    setattr(receiver, attribute, JitterBuffer(capacity=current.capacity, prefetch=frames))
    return True


class ReplyAudioTrack(AudioStreamTrack):
    """Outbound audio: 20 ms frames at 48 kHz, reply PCM when there is some, silence otherwise.

    aiortc's AudioStreamTrack keeps the clock (one frame per 20 ms of wall time, its timestamps);
    this track only fills the frames. Playback time is modelled once, by the pipeline's pacing,
    which hands over audio no more than its playback lead ahead, so this buffer stays that short.
    """

    def __init__(self) -> None:
        super().__init__()
        self._buffer = bytearray()

    def push(self, pcm16_48k: bytes) -> None:
        self._buffer += pcm16_48k

    def clear(self) -> None:
        """Barge-in or cancel: drop what the student has not heard yet."""
        self._buffer.clear()

    async def recv(self) -> av.AudioFrame:
        paced = await super().recv()  # a silent frame at its time; MediaStreamError once stopped
        scale = fractions.Fraction(WEBRTC_RATE, paced.sample_rate)
        size = int(paced.samples * scale) * 2
        chunk = bytes(self._buffer[:size]).ljust(size, b"\0")
        del self._buffer[:size]
        frame = av.AudioFrame.from_ndarray(
            np.frombuffer(chunk, dtype="<i2").reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = WEBRTC_RATE
        frame.pts = int(paced.pts * scale)
        frame.time_base = fractions.Fraction(1, WEBRTC_RATE)
        return frame


def ice_configuration(settings: Settings) -> RTCConfiguration:
    """Only the configured ICE servers: none by default (aiortc would use a public STUN server,
    which then learns every peer's address)."""
    return RTCConfiguration(iceServers=[RTCIceServer(urls=url) for url in settings.webrtc.ice_servers])


class ServerBusy(Exception):
    """Every session slot is taken."""


class WebRtcPeer:
    """One browser (or other WebRTC client): a peer connection, its session, its tasks."""

    def __init__(self, manager: WebRtcManager, slot: Slot, who: Attribution | None = None) -> None:
        self.id = f"peer_{uuid.uuid4().hex[:12]}"
        self.manager = manager
        self.slot = slot
        self.pc = RTCPeerConnection(ice_configuration(manager.settings))
        self.out_track = ReplyAudioTrack()
        self.session = ProtocolSession(
            manager.settings,
            manager.hub,
            self._send_text,
            self._send_bytes,
            observe=manager.metrics.observe,
            ledger=manager.ledger,
            who=who,
            shared_caps=manager.shared_caps,
            classrooms=manager.classrooms,
            hang_up=self._hang_up,
            clear_audio=self.out_track.clear,
            on_started=slot.session_started,
            fixed_input_rate=16_000,
            fixed_output_rate=WEBRTC_RATE,
        )
        self.channel: Any = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.closed = False
        self._inbox: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        self._resampler = av.AudioResampler(format="s16", layout="mono", rate=16_000)
        self.connected = asyncio.Event()

        @self.pc.on("datachannel")
        def on_datachannel(channel: Any) -> None:
            if channel.label != "events" or self.channel is not None:
                return
            self.channel = channel
            channel.on("message", self._inbox.put_nowait)
            channel.on("close", lambda: self._spawn(self.close("client")))
            self._spawn(self._run_session())

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio":
                receiver = next((t.receiver for t in self.pc.getTransceivers() if t.receiver.track is track), None)
                frames = manager.settings.webrtc.inbound_jitter_frames
                if not hold_back_frames(receiver, frames):
                    log.warning("this aiortc's jitter buffer was not set to %d frames: inbound audio is heard later", frames)
                self._spawn(self._read_audio(track))
            else:
                track.stop()  # a track nobody reads grows memory without bound

        @self.pc.on("connectionstatechange")
        async def on_state() -> None:
            state = self.pc.connectionState
            if state == "connected":
                self.connected.set()
            elif state in ("failed", "closed"):
                await self.close("client")

    async def _hang_up(self) -> None:
        self._spawn(self._close_soon())

    async def _close_soon(self) -> None:
        # The session has ended and said so; a moment lets its last message leave the data
        # channel before the connection goes.
        await asyncio.sleep(HANG_UP_GRACE_S)
        await self.close("client")

    async def _send_text(self, text: str) -> None:
        if self.channel is not None and self.channel.readyState == "open":
            self.channel.send(text)

    async def _send_bytes(self, pcm: bytes) -> None:
        self.out_track.push(pcm)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def answer(self, sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        self.pc.addTrack(self.out_track)
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self._spawn(self._expire_if_not_connected())
        return self.pc.localDescription.sdp

    async def _expire_if_not_connected(self) -> None:
        try:
            await asyncio.wait_for(self.connected.wait(), self.manager.settings.webrtc.connect_timeout_s)
        except TimeoutError:
            log.info("webrtc peer %s never connected; closing", self.id)
            await self.close("error")

    async def expire(self) -> None:
        """Admission gave up waiting for session.start."""
        await self.session.abort("session_start_timeout", "No session.start arrived in time; closing.")
        await self.close("error")

    async def _read_audio(self, track: MediaStreamTrack) -> None:
        timeout = self.manager.settings.webrtc.inbound_timeout_s
        try:
            while not self.closed:
                frame = await asyncio.wait_for(track.recv(), timeout)
                for out in self._resampler.resample(frame):
                    self.session.on_audio_16k(out.to_ndarray().tobytes())
        except TimeoutError:
            log.info("webrtc peer %s sent no audio for %.0f s; closing", self.id, timeout)
        except MediaStreamError:
            pass
        await self.close("client")

    async def _run_session(self) -> None:
        await self.session.start()
        while (message := await self._inbox.get()) is not None and not self.session.ended:
            await self.session.on_text(message)  # a binary message is read as UTF-8 JSON
        await self.close("client")

    async def close(self, reason: EndReason) -> None:
        if self.closed:
            return
        self.closed = True
        self.slot.release()
        self.manager.forget(self)
        self._inbox.put_nowait(None)
        with contextlib.suppress(Exception):
            await self.session.close(reason)
        self.out_track.stop()
        await self.pc.close()
        current = asyncio.current_task()
        for task in list(self.tasks):
            if task is not current:
                task.cancel()


class WebRtcManager:
    def __init__(
        self,
        settings: Settings,
        hub: EngineHub,
        metrics: VoiceMetrics,
        admission: Admission,
        *,
        ledger: UsageLedger | None = None,
        shared_caps: SharedCaps | None = None,
        classrooms: ClassroomLive | None = None,
    ) -> None:
        self.settings = settings
        self.classrooms = classrooms
        self.hub = hub
        self.metrics = metrics
        self.admission = admission
        self.ledger = ledger
        self.shared_caps = shared_caps
        self.peers: dict[str, WebRtcPeer] = {}
        if settings.webrtc.host_addresses:
            use_host_addresses(settings.webrtc.host_addresses)

    async def offer(self, sdp: str, who: Attribution | None = None) -> tuple[str, str]:
        """Answer an offer with a new peer, whose usage is `who`'s. Raises ServerBusy when no
        session slot is free."""
        peer: WebRtcPeer | None = None

        async def on_expired() -> None:
            if peer is not None:
                await peer.expire()

        slot = self.admission.admit("webrtc", on_expired=on_expired)
        if slot is None:
            raise ServerBusy
        peer = WebRtcPeer(self, slot, who)
        self.peers[peer.id] = peer
        self.metrics.webrtc_peers.inc()
        try:
            return peer.id, await peer.answer(sdp)
        except Exception:
            await peer.close("error")
            raise

    def forget(self, peer: WebRtcPeer) -> None:
        if self.peers.pop(peer.id, None) is not None:
            self.metrics.webrtc_peers.dec()

    async def aclose(self) -> None:
        for peer in list(self.peers.values()):
            await peer.close("server_shutdown")
