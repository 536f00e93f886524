"""The ledger survives a crash: a real server process is killed with SIGKILL in the middle of a
turn and started again on the same database. The finished turn is neither lost nor counted
twice, and the turn that was in flight is settled with the units it had recorded."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
import websockets

from tests.conftest import TEST_SERVER_ENV, start_server, stop_server

pytestmark = pytest.mark.models

# Billed units of a turn, as turn.done reports them (speculative work is kept apart there too).
KINDS = ("stt_audio_ms", "llm_prompt_tokens", "llm_completion_tokens", "tts_chars")


async def _recv_json(ws) -> dict:
    while True:
        raw = await ws.recv()
        if isinstance(raw, str):
            return json.loads(raw)


def _billed(report: dict) -> dict[str, int]:
    totals = dict.fromkeys(KINDS, 0)
    for line in report["usage"]:
        if line["kind"] in totals and not line["speculative"]:
            totals[line["kind"]] += line["units"]
    return totals


async def test_a_killed_server_settles_the_turn_in_flight_and_keeps_the_finished_one(tmp_path: Path):
    server = start_server(tmp_path, env=TEST_SERVER_ENV)
    try:
        async with websockets.connect(server.ws_url, additional_headers=server.auth("student")) as ws:
            await _recv_json(ws)
            await ws.send(json.dumps({"type": "session.start"}))
            session_id = (await _recv_json(ws))["session_id"]
            await ws.send(json.dumps({"type": "input.text", "text": "What is two plus two?"}))
            while (done := await _recv_json(ws))["type"] != "turn.done":
                pass
            await asyncio.sleep(1.0)  # the ledger writes every 0.25 s
            status, before = server.get(f"/api/v1/usage/sessions/{session_id}", role="admin")
            assert status == 200 and before["turns"] == {"done": 1}
            # The second turn: killed once its first audio is on its way (its model call is over).
            await ws.send(json.dumps({"type": "input.text", "text": "And what is three plus three?"}))
            while not isinstance(await ws.recv(), bytes):
                pass
            await asyncio.sleep(1.0)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait(timeout=10)
    finally:
        if server.process.poll() is None:
            server.process.kill()

    restarted = start_server(tmp_path, env=TEST_SERVER_ENV)  # same data directory, same database
    try:
        status, after = restarted.get(f"/api/v1/usage/sessions/{session_id}", role="admin")
    finally:
        stop_server(restarted)
    print("ledger before the kill:", json.dumps(before), "\nledger after the restart:", json.dumps(after))
    assert status == 200
    assert after["turns"] == {"done": 1, "settled": 1}  # nothing left in flight
    first_turn = {kind: done["usage"][kind] for kind in KINDS}
    assert _billed(before) == first_turn  # the finished turn, exactly as the client was told
    billed = _billed(after)
    # Nothing lost, nothing doubled: the finished turn's units plus what the killed turn had used.
    assert all(billed[kind] >= first_turn[kind] for kind in KINDS)
    assert billed["llm_prompt_tokens"] < 2 * first_turn["llm_prompt_tokens"] + 200
    assert billed != first_turn  # the turn in flight had recorded its model call, and kept it
