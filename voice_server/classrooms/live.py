"""A classroom, live: its sessions' events out to the teacher's console, the teacher's commands in.

Both cross server processes on the event bus (PostgreSQL LISTEN/NOTIFY with a shared database):
a session publishes what happens in it on `classroom_events`, wherever it runs; every process
keeps a small view of each session from those events, so a console connected to any replica
gets the whole picture; a teacher's command goes out on `session_commands` and the process that
runs the session carries it out.

A session never waits on any of this: what it reports is queued and sent by a task of its own,
and a console that cannot keep up loses old events, not the student's turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine

from pipelines.caps import UsageCaps
from voice_server import protocol
from voice_server.classrooms import audit, store, transcripts
from voice_server.classrooms.bus import EventBus
from voice_server.classrooms.store import Classroom, SessionRow

log = logging.getLogger(__name__)

CLASSROOM_EVENTS = "classroom_events"
SESSION_COMMANDS = "session_commands"
COMMANDS = ("pause", "resume", "end", "guidance", "caps")
# What one session's view keeps (the console shows the recent past; the database has the rest).
MAX_VIEW_LINES = 400
MAX_VIEW_ITEMS = 200
MAX_VIEWS = 2000
# A session's last reports get this long to reach the bus and the database when it ends.
DRAIN_TIMEOUT_S = 5.0


class SessionControls(Protocol):
    """What a teacher can do to a running session (ProtocolSession implements it)."""

    async def pause(self) -> None: ...
    async def resume(self) -> None: ...
    async def end_by(self, reason: str) -> None: ...
    def set_guidance(self, text: str) -> None: ...
    def set_caps(self, caps: UsageCaps) -> None: ...


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class SessionView:
    """One session as the console shows it (the contract's SessionView)."""

    session_id: str
    classroom_id: str
    student_id: str
    nickname: str | None
    persona: str
    status: str
    started_at: str
    caps: dict[str, int | None]
    end_reason: str | None = None
    transcript: list[dict[str, Any]] = field(default_factory=list)
    turns: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    allowances: list[dict[str, Any]] = field(default_factory=list)
    budget_events: list[dict[str, Any]] = field(default_factory=list)
    safety_flags: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "student_id": self.student_id,
            "nickname": self.nickname,
            "persona": self.persona,
            "status": self.status,
            "started_at": self.started_at,
            "end_reason": self.end_reason,
            "transcript": list(self.transcript),
            "turns": list(self.turns),
            "usage": self.usage,
            "allowances": list(self.allowances),
            "caps": dict(self.caps),
            "budget_events": list(self.budget_events),
            "safety_flags": list(self.safety_flags),
        }

    def apply(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "transcript":
            line = {k: event[k] for k in ("turn_id", "speaker", "text", "interrupted")}
            # A turn's line is replaced when it is heard again (a student who went on talking).
            for i, old in enumerate(self.transcript):
                if old["turn_id"] == line["turn_id"] and old["speaker"] == line["speaker"]:
                    self.transcript[i] = line
                    break
            else:
                self.transcript.append(line)
                del self.transcript[:-MAX_VIEW_LINES]
        elif kind == "turn.latency":
            self.turns.append(
                {k: event.get(k) for k in ("turn_id", "status", "voice_to_voice_ms", "voice_to_answer_ms")}
            )
            del self.turns[:-MAX_VIEW_ITEMS]
        elif kind == "usage":
            self.usage, self.allowances = event.get("usage"), list(event.get("allowances") or [])
        elif kind == "budget":
            self.budget_events.append(
                {k: event.get(k) for k in ("turn_id", "stage", "budget_ms", "elapsed_ms", "action")}
            )
            del self.budget_events[:-MAX_VIEW_ITEMS]
        elif kind == "safety":
            self.safety_flags.append(
                {k: event.get(k) for k in ("turn_id", "category", "action", "direction")}
            )
            del self.safety_flags[:-MAX_VIEW_ITEMS]
        elif kind == "session.status":
            self.status = event["status"]
            if self.status == "ended":
                self.end_reason = event.get("reason")
        elif kind == "caps":
            self.caps = dict(event["caps"])


def _caps_dict(caps: UsageCaps) -> dict[str, int | None]:
    return {"stt_audio_ms": caps.stt_audio_ms, "llm_tokens": caps.llm_tokens, "tts_chars": caps.tts_chars}


class ClassroomLive:
    def __init__(self, engine: AsyncEngine, bus: EventBus, *, instance: str) -> None:
        self.engine = engine
        self.bus = bus
        self.instance = instance
        self._views: dict[str, SessionView] = {}
        self._local: dict[str, SessionControls] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._ready = asyncio.Event()

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        # Sessions this server ran before it stopped (or crashed) are not live any more.
        ended = await store.end_sessions_of_instance(self.engine, self.instance, "server_restart")
        if ended:
            log.info("marked %d classroom sessions of an earlier run as ended", ended)
        subscribed = [asyncio.Event(), asyncio.Event()]
        self._tasks = [
            asyncio.create_task(self._follow(CLASSROOM_EVENTS, self._on_event, subscribed[0])),
            asyncio.create_task(self._follow(SESSION_COMMANDS, self._on_command, subscribed[1])),
        ]
        await asyncio.gather(*(s.wait() for s in subscribed))

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _follow(
        self, channel: str, handle: Callable[[dict[str, Any]], Any], subscribed: asyncio.Event
    ) -> None:
        while True:
            try:
                async with self.bus.subscribe(channel) as messages:
                    subscribed.set()
                    async for message in messages:
                        try:
                            result = handle(message)
                            if asyncio.iscoroutine(result):
                                await result
                        except Exception:
                            log.exception("could not handle a message on %s", channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("lost the %s subscription; subscribing again", channel)
                await asyncio.sleep(1.0)

    def _on_event(self, event: dict[str, Any]) -> None:
        session_id = event.get("session_id")
        if event.get("type") == "session.started":
            data = dict(event["session"])
            self._views[data["session_id"]] = SessionView(
                session_id=data["session_id"],
                classroom_id=event["classroom_id"],
                student_id=data["student_id"],
                nickname=data.get("nickname"),
                persona=data["persona"],
                status=data["status"],
                started_at=data["started_at"],
                caps=dict(data.get("caps") or {}),
            )
            self._prune()
        elif session_id in self._views:
            self._views[session_id].apply(event)

    def _prune(self) -> None:
        if len(self._views) <= MAX_VIEWS:
            return
        for session_id in [s for s, v in self._views.items() if v.status == "ended"][
            : len(self._views) - MAX_VIEWS
        ]:
            del self._views[session_id]

    async def _on_command(self, command: dict[str, Any]) -> None:
        controls = self._local.get(str(command.get("session_id")))
        if controls is None:
            return  # another process runs it (or it has ended)
        match command.get("command"):
            case "pause":
                await controls.pause()
            case "resume":
                await controls.resume()
            case "end":
                await controls.end_by(str(command.get("reason") or "teacher"))
            case "guidance":
                controls.set_guidance(str(command.get("text") or ""))
            case "caps":
                controls.set_caps(UsageCaps.model_validate(command.get("caps") or {}))

    # -------------------------------------------------------------------------- the session side

    async def join(
        self,
        session_id: str,
        room: Classroom,
        student_id: str,
        persona: str,
        caps: UsageCaps,
        controls: SessionControls,
    ) -> SessionWatch:
        started = await store.session_started(
            self.engine,
            session_id=session_id,
            classroom_id=room.id,
            student_id=student_id,
            persona=persona,
            instance=self.instance,
        )
        nickname = await store.nickname_of(self.engine, student_id)
        self._local[session_id] = controls
        watch = SessionWatch(self, session_id, room, student_id)
        view = SessionView(
            session_id=session_id,
            classroom_id=room.id,
            student_id=student_id,
            nickname=nickname,
            persona=persona,
            status="live",
            started_at=started.isoformat(),
            caps=_caps_dict(caps),
        )
        watch.publish({"type": "session.started", "session": view.as_dict()})
        return watch

    def leave(self, session_id: str) -> None:
        self._local.pop(session_id, None)

    async def publish(self, event: dict[str, Any]) -> None:
        await self.bus.publish(CLASSROOM_EVENTS, event)

    # -------------------------------------------------------------------------- the console side

    async def snapshot(self, room: Classroom) -> dict[str, Any]:
        """The classroom and its sessions (live, paused and ended in the last day), for a console
        that has just connected. Its later events come from `events`."""
        since = datetime.now(UTC) - timedelta(days=1)
        sessions = []
        for row in await store.sessions_of(self.engine, room.id, ended_since=since):
            view = self._views.get(row.session_id)
            if view is None:  # began before this process did: its transcript is in the database
                view = await self._view_from_database(row, room)
            else:
                # The database is the truth for status (a command carried out on another replica).
                view.status, view.end_reason = row.status, row.end_reason
            sessions.append(view.as_dict())
        return {"type": "snapshot", "classroom": room, "sessions": sessions}

    async def _view_from_database(self, row: SessionRow, room: Classroom) -> SessionView:
        lines = await transcripts.read(self.engine, row.session_id)
        return SessionView(
            session_id=row.session_id,
            classroom_id=row.classroom_id,
            student_id=row.student_id,
            nickname=row.nickname,
            persona=row.persona,
            status=row.status,
            started_at=row.started_at.isoformat(),
            end_reason=row.end_reason,
            caps=_caps_dict(room.caps),
            transcript=[
                {"turn_id": x.turn_id, "speaker": x.speaker, "text": x.text, "interrupted": x.interrupted}
                for x in lines[-MAX_VIEW_LINES:]
            ],
        )

    @contextlib.asynccontextmanager
    async def events(self, classroom_id: str) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
        """The classroom's events from now on (subscribe before taking the snapshot, so nothing
        falls between them; the console applies an event twice harmlessly)."""
        async with self.bus.subscribe(CLASSROOM_EVENTS) as messages:

            async def mine() -> AsyncIterator[dict[str, Any]]:
                async for event in messages:
                    if event.get("classroom_id") == classroom_id:
                        yield event

            yield mine()

    async def command(self, session_id: str, command: str, **args: Any) -> None:
        if command not in COMMANDS:
            raise ValueError(f"unknown command {command!r}")
        await self.bus.publish(SESSION_COMMANDS, {"session_id": session_id, "command": command, **args})


class SessionWatch:
    """One classroom session's reporter: turns its outgoing protocol messages into classroom
    events and transcript lines, in order, off the session's own path."""

    def __init__(self, live: ClassroomLive, session_id: str, room: Classroom, student_id: str) -> None:
        self.live = live
        self.session_id = session_id
        self.classroom_id = room.id
        self.student_id = student_id
        self._seq = 0
        self._queue: asyncio.Queue[Callable[[], Any] | None] = asyncio.Queue()
        self._worker = asyncio.create_task(self._work())

    def publish(self, event: dict[str, Any]) -> None:
        event = {**event, "classroom_id": self.classroom_id, "session_id": self.session_id, "at": _now()}
        self._queue.put_nowait(lambda: self.live.publish(event))

    def seen(self, message: BaseModel) -> None:
        """Called with every message the session sends its student (never blocks)."""
        if isinstance(message, protocol.TranscriptFinalMsg):
            if not message.text.strip():
                return  # a turn with nothing heard ("no speech") has no line
            self._line(message.turn_id, "student", message.text)
        elif isinstance(message, protocol.TurnDoneMsg):
            lines = []
            if message.user_text.strip():
                lines.append(transcripts.Line(message.turn_id, "student", message.user_text))
            if message.reply_text.strip():
                cut = message.status in ("interrupted", "cancelled")
                lines.append(transcripts.Line(message.turn_id, "tutor", message.reply_text, cut))
            for line in lines:
                self._line(line.turn_id, line.speaker, line.text, interrupted=line.interrupted)
            self._store(lines)
            self.publish(
                {
                    "type": "turn.latency",
                    "turn_id": message.turn_id,
                    "status": message.status,
                    "voice_to_voice_ms": message.latency.voice_to_voice_ms,
                    "voice_to_answer_ms": message.latency.voice_to_answer_ms,
                }
            )
        elif isinstance(message, protocol.UsageUpdatedMsg):
            usage = message.usage.model_dump(mode="json", exclude={"speculative"})
            allowances = [a.model_dump(mode="json") for a in message.allowances]
            self.publish({"type": "usage", "usage": usage, "allowances": allowances})
        elif isinstance(message, protocol.BudgetExceededMsg):
            self.publish(
                {
                    "type": "budget",
                    "turn_id": message.turn_id,
                    "stage": message.stage,
                    "budget_ms": message.budget_ms,
                    "elapsed_ms": message.elapsed_ms,
                    "action": message.action,
                }
            )
        elif isinstance(message, protocol.SafetyFlagMsg):
            flag = {
                "turn_id": message.turn_id,
                "category": str(message.category),
                "action": str(message.action),
                "direction": str(message.direction),
            }
            self.publish({"type": "safety", **flag})  # first: the console hears of it at once
            self._queue.put_nowait(
                lambda: audit.record(
                    self.live.engine,
                    None,
                    "safety.flag",
                    classroom_id=self.classroom_id,
                    session_id=self.session_id,
                    target_id=self.student_id,
                    detail=flag,
                )
            )

    def status(self, status: str, reason: str | None = None) -> None:
        self._queue.put_nowait(
            lambda: store.set_session_status(self.live.engine, self.session_id, status, reason=reason)
        )
        self.publish({"type": "session.status", "status": status, "reason": reason})

    def caps(self, caps: UsageCaps) -> None:
        self.publish({"type": "caps", "caps": _caps_dict(caps)})

    async def ended(self, reason: str) -> None:
        self.live.leave(self.session_id)
        self.status("ended", reason)
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._worker), DRAIN_TIMEOUT_S)
        except TimeoutError:
            log.warning("session %s: its last classroom reports did not go out in time", self.session_id)

    def _line(self, turn_id: str, speaker: str, text: str, *, interrupted: bool = False) -> None:
        self.publish(
            {
                "type": "transcript",
                "turn_id": turn_id,
                "speaker": speaker,
                "text": text[: transcripts.MAX_LINE_CHARS],
                "interrupted": interrupted,
            }
        )

    def _store(self, lines: list[transcripts.Line]) -> None:
        if not lines:
            return
        first, self._seq = self._seq, self._seq + len(lines)
        self._queue.put_nowait(
            lambda: transcripts.append(
                self.live.engine,
                self.session_id,
                first,
                lines,
                classroom_id=self.classroom_id,
                student_id=self.student_id,
            )
        )

    async def _work(self) -> None:
        while (job := await self._queue.get()) is not None:
            try:
                result = job()
                if asyncio.iscoroutine(result):
                    await result
            except Exception:
                # A report lost is a console that misses a line; the session itself goes on.
                log.exception("session %s: a classroom report failed", self.session_id)
