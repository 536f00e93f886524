"""One admission point: every WebSocket session and WebRTC peer holds one of max_sessions slots."""

from __future__ import annotations

import asyncio

import pytest

from voice_server.admission import SESSION_START_TIMEOUT_S, Admission


class Gauge:
    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount


async def test_sessions_and_peers_share_one_limit():
    gauge = Gauge()
    admission = Admission(3, gauge=gauge)
    slots = [admission.admit("websocket"), admission.admit("webrtc"), admission.admit("websocket")]
    assert all(slots) and admission.active == 3 and gauge.value == 3
    assert admission.admit("webrtc") is None
    assert admission.admit("websocket") is None
    assert admission.by_kind == {"websocket": 2, "webrtc": 1}
    slots[1].release()
    assert admission.admit("websocket") is not None
    for slot in slots:
        slot.release()


async def test_release_is_idempotent():
    gauge = Gauge()
    admission = Admission(1, gauge=gauge)
    slot = admission.admit("websocket")
    slot.release()
    slot.release()
    assert admission.active == 0 and gauge.value == 0
    assert admission.admit("websocket") is not None


async def test_a_connection_that_never_starts_its_session_frees_its_slot():
    expired: list[str] = []

    async def on_expired() -> None:
        expired.append("told")

    admission = Admission(1, start_timeout_s=0.05)
    slot = admission.admit("websocket", on_expired=on_expired)
    assert admission.admit("webrtc") is None
    await asyncio.sleep(0.1)
    assert slot.expired and slot.released and expired == ["told"]
    assert admission.active == 0
    newcomer = admission.admit("webrtc")
    assert newcomer is not None
    slot.release()  # the transport's own release afterwards changes nothing
    assert admission.active == 1
    newcomer.release()


async def test_a_started_session_keeps_its_slot_past_the_timeout():
    admission = Admission(1, start_timeout_s=0.05)
    slot = admission.admit("websocket", on_expired=lambda: pytest.fail("expired"))  # type: ignore[arg-type,return-value]
    slot.session_started()
    await asyncio.sleep(0.1)
    assert not slot.expired and admission.active == 1
    slot.release()
    assert admission.active == 0


async def test_a_slot_released_before_the_timeout_never_expires():
    admission = Admission(2, start_timeout_s=0.05)
    slot = admission.admit("webrtc", on_expired=lambda: pytest.fail("expired"))  # type: ignore[arg-type,return-value]
    slot.release()
    await asyncio.sleep(0.1)
    assert not slot.expired and admission.active == 0


def test_defaults_and_bad_limits():
    assert SESSION_START_TIMEOUT_S == 15.0
    with pytest.raises(ValueError):
        Admission(0)
    with pytest.raises(ValueError):
        Admission(1, start_timeout_s=0)
