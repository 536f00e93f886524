"""Two server processes on one PostgreSQL: a teacher connected to one follows, live, a student
session running on the other, and stays in control of it.

Two real `convergio-voice serve` processes, as two replicas behind a load balancer would run:
the same database (CONVERGIO_TEST_POSTGRES_URL, which CI always sets; without it this test fails
in CI and is skipped elsewhere, like the storage tests' PostgreSQL half), the same signing secret
and secrets key, a distinct instance name each. The schema is applied once beforehand with
`convergio-voice db upgrade`, as the README says to do before starting replicas.

A teacher account made with the CLI signs in on replica B and uses that token on replica A:
creates a classroom there and opens its console's event stream. A student joins with the code on
replica B and speaks a real clip in a WebSocket session there. Everything crosses the processes
through PostgreSQL itself (LISTEN/NOTIFY): the console on A shows the session starting, the
student's words as heard, the tutor's reply, the turn's latency and its usage, while the session
is running; the teacher's pause and end, sent to A, reach the student's socket on B.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from latency_bench.client import VoiceClient, load_clip
from latency_bench.wer import word_error_rate
from tests.conftest import REPO_ROOT, TEST_SERVER_ENV, RunningServer, start_server, stop_server
from tests.storage.conftest import backend_url, reset_postgres
from voice_server.classrooms.transcripts import MAX_LINE_CHARS
from voice_server.store.engine import create_engine
from voice_server.store.schema import classroom_sessions

pytestmark = pytest.mark.models

CLIP = "arctic_a0024.16k.wav"  # "It was my reports from the north which chiefly induced people to buy."
TEACHER, PASSWORD = "ms_rivera", "a-long-test-password-for-two-replicas"
SECRETS_KEY = "two-replicas-share-this-secrets-key-" + "0123456789abcdef" * 2
WAIT_S = 60  # only so a broken replica fails the test instead of hanging it


def _cli(database_url: str, *args: str, stdin: str | None = None) -> str:
    """`convergio-voice ...` from this checkout, on the shared database."""
    done = subprocess.run(
        [sys.executable, "-m", "voice_server.cli", *args], input=stdin, capture_output=True, text=True,
        cwd=REPO_ROOT, env={**os.environ, "CONVERGIO_STORAGE__URL": database_url}, timeout=120,
    )
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done.stdout


class Console:
    """The teacher's console: the classroom's server-sent events, read as they come."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.arrived: list[float] = []  # time.monotonic() of each event
        self._changed = asyncio.Condition()

    async def read(self, response: httpx.Response) -> None:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                async with self._changed:
                    self.events.append(json.loads(line.removeprefix("data: ")))
                    self.arrived.append(time.monotonic())
                    self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        def found() -> dict[str, Any] | None:
            return next((e for e in self.events if predicate(e)), None)

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: found() is not None), WAIT_S)
        event = found()
        assert event is not None
        return event


async def _received(client: VoiceClient, kind: str) -> dict[str, Any]:
    async def poll() -> dict[str, Any]:
        while not (found := [m for m in client.messages if m["type"] == kind]):
            await asyncio.sleep(0.02)
        return found[0]

    return await asyncio.wait_for(poll(), WAIT_S)


async def _replicas(tmp_path: Path, database_url: str) -> tuple[RunningServer, RunningServer]:
    """Replicas A and B, started side by side (each loads the models)."""

    def replica(name: str) -> RunningServer:
        env = {
            **TEST_SERVER_ENV,  # the same CONVERGIO_AUTH__SECRET on both
            "CONVERGIO_STORAGE__URL": database_url,
            "CONVERGIO_STORAGE__INSTANCE": f"replica-{name}",
            "CONVERGIO_SECRETS__KEY": SECRETS_KEY,
        }
        folder = tmp_path / name
        folder.mkdir()
        return start_server(folder, env=env)

    started = await asyncio.gather(
        asyncio.to_thread(replica, "a"), asyncio.to_thread(replica, "b"), return_exceptions=True
    )
    failed = [s for s in started if isinstance(s, BaseException)]
    if failed:
        for running in started:
            if isinstance(running, RunningServer):
                stop_server(running)
        raise failed[0]
    a, b = started
    assert isinstance(a, RunningServer) and isinstance(b, RunningServer)
    return a, b


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[tuple[RunningServer, RunningServer, str]]:
    database_url = backend_url("postgresql", tmp_path)  # fails in CI without it, skips elsewhere
    await reset_postgres(database_url)
    print(_cli(database_url, "db", "upgrade").strip())
    account = ("admin", "create", TEACHER, "--role", "teacher", "--password-stdin")
    print(_cli(database_url, *account, stdin=PASSWORD + "\n").strip())
    a, b = await _replicas(tmp_path, database_url)
    try:
        yield a, b, database_url
    finally:
        stop_server(a)
        stop_server(b)
        for name, server in (("A", a), ("B", b)):
            # Neither replica lost a classroom report or a bus message on the way.
            for trouble in ("a classroom report failed", "could not handle a message", "lost the"):
                assert trouble not in server.log(), f"replica {name}: {trouble!r}\n{server.log()[-4000:]}"


async def test_a_teacher_on_one_replica_follows_and_controls_a_session_on_the_other(
    replicas: tuple[RunningServer, RunningServer, str], speech_clips: Path, speech_manifest: list[dict]
) -> None:
    a, b, database_url = replicas
    entry = next((e for e in speech_manifest if e["file"] == CLIP), speech_manifest[0])
    clip = load_clip(speech_clips / entry["file"])

    async with httpx.AsyncClient(base_url=a.base_url, timeout=30) as on_a, \
            httpx.AsyncClient(base_url=b.base_url, timeout=30) as on_b:
        # The teacher's account is in the shared database; a token from B's sign-in is good on A.
        signed_in = await on_b.post("/v1/auth/sign-in", json={"username": TEACHER, "password": PASSWORD})
        assert signed_in.status_code == 200, signed_in.text
        teacher = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}

        created = await on_a.post("/api/v1/classrooms", headers=teacher, json={"name": "Year 5 science"})
        assert created.status_code == 201, created.text
        room = created.json()
        base = f"/api/v1/classrooms/{room['id']}"

        # The code made on A lets the student in on B.
        joined = await on_b.post("/v1/auth/join", json={"code": room["join_code"], "nickname": "Sam"})
        assert joined.status_code == 200, joined.text
        assert joined.json()["classroom"]["id"] == room["id"]

        console = Console()
        async with on_a.stream("GET", f"{base}/events", headers=teacher, timeout=None) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            reader = asyncio.create_task(console.read(stream))
            try:
                snapshot = await console.wait_for(lambda e: e["type"] == "snapshot")
                assert snapshot["classroom"]["id"] == room["id"] and snapshot["sessions"] == []

                finals: dict[str, float] = {}  # turn id -> when the student got its transcript.final

                def timed(message: dict[str, Any]) -> None:
                    if message["type"] == "transcript.final":
                        finals.setdefault(message["turn_id"], time.monotonic())

                token = joined.json()["access_token"]
                async with VoiceClient(b.ws_url, token=token, on_message=timed) as student:
                    session_id = student.started["session_id"]

                    def of_session(kind: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
                        return lambda e: (
                            e["type"] == kind and e.get("session_id") == session_id
                            and all(e.get(k) == v for k, v in fields.items())
                        )

                    started = await console.wait_for(of_session("session.started"))
                    assert started["classroom_id"] == room["id"]
                    assert started["session"]["nickname"] == "Sam"
                    assert started["session"]["status"] == "live"

                    # The student speaks on B; the console on A follows the turn as it happens.
                    result = await student.play_clip(clip)
                    turn = next(t for t in result.turns if t.status != "no_speech")
                    assert turn.status == "completed", turn
                    wer = word_error_rate([entry["transcript"]], [result.transcript])
                    assert wer < 0.25, result.transcript
                    turn_id = turn.turn_id
                    heard = await console.wait_for(
                        of_session("transcript", turn_id=turn_id, speaker="student")
                    )
                    assert heard["text"] == turn.transcript and heard["interrupted"] is False
                    reply = await console.wait_for(of_session("transcript", turn_id=turn_id, speaker="tutor"))
                    assert reply["text"] == turn.reply_text[:MAX_LINE_CHARS] and reply["text"].strip()
                    latency = await console.wait_for(of_session("turn.latency", turn_id=turn_id))
                    assert latency["status"] == "completed"
                    assert latency["voice_to_voice_ms"] == turn.latency["voice_to_voice_ms"]
                    # The session's usage as the student was told it, on the teacher's console.
                    await student.wait_for(lambda m: m["type"] == "usage.updated", timeout_s=WAIT_S)
                    told = [m for m in student.messages if m["type"] == "usage.updated"][-1]
                    assert told["usage"]["stt_audio_ms"] >= turn.usage["stt_audio_ms"] > 0
                    expected = {k: v for k, v in told["usage"].items() if k != "speculative"}
                    await console.wait_for(lambda e: of_session("usage")(e) and e["usage"] == expected)
                    # Live: the student's words reached A while the session still ran on B; how long
                    # after the student read them on B is printed, not asserted.
                    delay_ms = (console.arrived[console.events.index(heard)] - finals[turn_id]) * 1000
                    print(f"transcript on A {delay_ms:.0f} ms after the student's transcript.final on B; "
                          f"{len(console.events)} console events while the session ran")

                    # The teacher pauses on A; B stops listening and tells the student.
                    paused = await on_a.post(f"{base}/sessions/{session_id}/pause", headers=teacher)
                    assert paused.status_code == 202, paused.text
                    notice = await student.wait_for(lambda m: m["type"] == "session.paused", timeout_s=WAIT_S)
                    assert notice["reason"] == "teacher"
                    await console.wait_for(of_session("session.status", status="paused"))
                    await student.send_json({"type": "input.text", "text": "Are you still there?"})
                    refused = await student.wait_for(lambda m: m["type"] == "error", timeout_s=WAIT_S)
                    assert refused["code"] == "session_paused"

                    # The teacher ends it on A; the student's socket on B hears why.
                    ended = await on_a.post(f"{base}/sessions/{session_id}/end", headers=teacher)
                    assert ended.status_code == 202, ended.text
                    # (Waited for without streaming silence: the server closes the socket after it.)
                    over = await _received(student, "session.ended")
                    assert over["reason"] == "teacher"
                    status = await console.wait_for(of_session("session.status", status="ended"))
                    assert status["reason"] == "teacher"
            finally:
                reader.cancel()

        # Either replica now tells the same story from the shared database.
        for client in (on_a, on_b):
            sessions = (await client.get(f"{base}/sessions", headers=teacher)).json()
            assert [(s["session_id"], s["status"], s["end_reason"]) for s in sessions] == [
                (session_id, "ended", "teacher")
            ]
            lines = [(line["speaker"], line["text"]) for line in sessions[0]["transcript"]]
            assert ("student", turn.transcript) in lines and ("tutor", reply["text"]) in lines

    # The session ran on B, and the database names B as the replica that ran it.
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            row = (await connection.execute(
                select(classroom_sessions.c.instance, classroom_sessions.c.end_reason)
                .where(classroom_sessions.c.session_id == session_id)
            )).one()
    finally:
        await engine.dispose()
    assert tuple(row) == ("replica-b", "teacher")
