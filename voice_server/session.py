"""Protocol version 1 session: wire messages in, pipeline calls; pipeline events out, wire messages.

Network-free: a transport hands it text, binary frames or decoded audio, and gives it callbacks to
send text and bytes. Nothing a client sends can end or poison it: every decoding and validation
error is answered with an `error` message, an unexpected failure with `internal_error`, and the
session goes on (oversized frames are refused by the transport before they are buffered).
"""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from pipelines.agent import TutorAgent
from pipelines.audio import PIPELINE_SAMPLE_RATE, SUPPORTED_INPUT_RATES, PcmResampler
from pipelines.caps import UsageCaps
from pipelines.config import PipelineConfig, TurnConfig
from pipelines.frames import Interrupted, PipelineEvent, ReplyAudio
from pipelines.personas import PERSONAS, Persona
from pipelines.pipeline import Pipeline
from voice_server import __version__, outbound, protocol
from voice_server.classrooms import store as classroom_store
from voice_server.classrooms.live import ClassroomLive, SessionWatch
from voice_server.engines import EngineHub
from voice_server.ledger.caps import SessionCaps, SharedCaps, with_engine_keys
from voice_server.ledger.records import Attribution
from voice_server.ledger.writer import UsageLedger
from voice_server.protocol import ErrorCode, ProtocolError
from voice_server.settings import Settings

log = logging.getLogger(__name__)

SendText = Callable[[str], Awaitable[None]]
SendBytes = Callable[[bytes], Awaitable[None]]


def encode(message: BaseModel) -> str:
    """A message as JSON text that is always valid UTF-8."""
    try:
        return message.model_dump_json()
    except PydanticSerializationError:
        # A lone surrogate in some string (clients cannot send one, an engine might produce
        # one): escaped by json.dumps rather than crashing the transport's UTF-8 encoder.
        return json.dumps(message.model_dump(mode="json"))


def fatal_error(code: ErrorCode, message: str) -> str:
    """The last message of a connection refused before it has a session (server busy)."""
    return encode(protocol.ErrorMsg(code=code, message=message, fatal=True))


class ProtocolSession:
    def __init__(
        self,
        settings: Settings,
        hub: EngineHub,
        send_text: SendText,
        send_bytes: SendBytes,
        *,
        observe: Callable[[PipelineEvent], None] | None = None,
        clear_audio: Callable[[], None] | None = None,
        on_started: Callable[[], None] | None = None,
        fixed_input_rate: int | None = None,
        fixed_output_rate: int | None = None,
        ledger: UsageLedger | None = None,
        who: Attribution | None = None,
        shared_caps: SharedCaps | None = None,
        classrooms: ClassroomLive | None = None,
        hang_up: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self.hub = hub
        self._send_text = send_text
        self._send_bytes = send_bytes
        self._observe = observe
        # A transport that buffers reply audio itself (WebRTC) drops it when the reply is cut.
        self._clear_audio = clear_audio
        self._on_started = on_started
        self._ledger = ledger  # durable usage, written as each turn runs
        # Whose usage this is (opaque ids from the access token; None in open mode), and the caps
        # it shares with the student's, the classroom's and the keys' other sessions.
        self._who = who or Attribution()
        self._shared_caps = shared_caps
        # Set by transports that own the audio format (WebRTC): session.start cannot change it.
        self._fixed_input_rate = fixed_input_rate
        self._fixed_output_rate = fixed_output_rate
        self.session_id: str | None = None
        self.pipeline: Pipeline | None = None
        self._in_resampler: PcmResampler | None = None
        self._out_resampler: PcmResampler | None = None
        self._outbound = outbound.Context(out_rate=0)
        self.ended = False
        # A classroom session: its teacher's console follows it and can pause, resume or end it
        # (the transport's `hang_up` then closes the connection).
        self._classrooms = classrooms
        self._hang_up = hang_up
        self._watch: SessionWatch | None = None
        self._agent: TutorAgent | None = None
        self.paused = False

    @property
    def started(self) -> bool:
        return self.pipeline is not None

    # ------------------------------------------------------------------------------- lifecycle

    def hello(self) -> protocol.ServerHello:
        tts_rate = self._fixed_output_rate or (
            self.hub.engines.tts.sample_rate if self.hub.engines else 22_050
        )
        return protocol.ServerHello(
            server=f"convergio-voice/{__version__}",
            ready=self.hub.ready,
            limits=protocol.Limits(
                max_frame_bytes=self.settings.limits.max_frame_bytes,
                max_text_chars=self.settings.limits.max_text_chars,
            ),
            personas=[_persona_info(p) for p in PERSONAS.values()],
            input_sample_rates=list(SUPPORTED_INPUT_RATES),
            output_audio=protocol.OutputAudioFormat(sample_rate=tts_rate),
        )

    async def start(self) -> None:
        await self._send(self.hello())

    async def close(self, reason: protocol.EndReason = "client") -> None:
        if self.ended:
            return
        self.ended = True
        if self.pipeline is not None:
            await self.pipeline.aclose()
            try:
                await self._send(
                    protocol.SessionEndedMsg(
                        session_id=self.session_id or "",
                        reason=reason,
                        usage=protocol.Usage.model_validate(asdict(self.pipeline.usage_total)),
                    )
                )
            finally:  # a client already gone still used what it used
                if self._ledger is not None and self.session_id is not None:
                    await self._ledger.end_session(self.session_id)
                if self._watch is not None:
                    await self._watch.ended(reason)

    async def abort(self, code: ErrorCode, message: str) -> None:
        """End the session with a fatal error; the transport hangs up after this."""
        if self.ended:
            return
        await self._error(code, message, fatal=True)
        await self.close("error")

    # ----------------------------------------------------------------------------------- input

    async def on_text(self, raw: str | bytes) -> None:
        """A JSON message (bytes are read as UTF-8 JSON)."""
        await self._guarded(self._handle_text, raw)

    async def on_bytes(self, frame: bytes) -> None:
        """A binary frame: PCM16 at the session's input rate."""
        await self._guarded(self._handle_audio, frame)

    def on_audio_16k(self, pcm16: bytes) -> None:
        """Audio a transport decoded itself, already 16 kHz mono PCM16 (WebRTC). Microphones
        stream before the client starts its session; until then the audio is dropped."""
        if self.pipeline is not None and not self.ended and not self.paused:
            self.pipeline.push_audio(pcm16)

    async def _guarded(self, handle: Callable[[Any], Awaitable[None]], data: Any) -> None:
        if self.ended:
            return  # the pipeline is closed; a transport still delivering input is about to stop
        try:
            await handle(data)
        except ProtocolError as exc:
            await self._error(exc.code, exc.message)
        except Exception:
            log.exception("session %s failed to handle a message; it goes on", self.session_id)
            # If the transport itself is gone this send fails too; its receive loop then ends.
            with contextlib.suppress(Exception):
                await self._error("internal_error", "The server failed to handle that message.")

    async def _handle_text(self, raw: str | bytes) -> None:
        message = protocol.parse_client_message(raw)
        if isinstance(message, protocol.SessionStart):
            await self._start_session(message)
            return
        pipeline = self.pipeline
        if pipeline is None:
            raise ProtocolError("session_not_started", f"Send session.start before {message.type}.")
        if self.paused and isinstance(message, (protocol.InputText, protocol.ResponseRepeat)):
            raise ProtocolError("session_paused", "Your teacher paused the session; wait until it goes on.")
        if isinstance(message, protocol.InputText):
            await pipeline.submit_text(self._checked_text(message.text))
        elif isinstance(message, protocol.ResponseCancel):
            await pipeline.cancel_reply()
        elif isinstance(message, protocol.ResponseRepeat):
            if not await pipeline.repeat_last():
                raise ProtocolError("nothing_to_repeat", "The tutor has not said anything yet.")
        elif isinstance(message, protocol.SessionUpdate):
            if message.voice_rate is not None:
                pipeline.set_voice_rate(message.voice_rate)
        elif isinstance(message, protocol.SessionEnd):
            await self.close("client")

    async def _handle_audio(self, frame: bytes) -> None:
        if self.pipeline is None or self._in_resampler is None:
            raise ProtocolError("session_not_started", "Send session.start before audio frames.")
        if len(frame) % 2:
            raise ProtocolError("invalid_audio_frame", "PCM16 frames must have an even number of bytes.")
        if self.paused:
            return  # the teacher paused the session: the microphone is not heard
        self.pipeline.push_audio(self._in_resampler.process(frame))

    def _checked_text(self, text: str) -> str:
        limit = self.settings.limits.max_text_chars
        if len(text) > limit:
            raise ProtocolError(
                "text_too_long",
                f"Typed messages are limited to {limit} characters; this one has {len(text)}.",
            )
        if not text.strip():
            raise ProtocolError("invalid_message", "input.text needs some text.")
        return text

    async def _start_session(self, start: protocol.SessionStart) -> None:
        if self.pipeline is not None:
            raise ProtocolError("session_already_started", "This connection already has a session.")
        if not self.hub.ready or self.hub.engines is None:
            raise ProtocolError("server_not_ready", "Models are still loading; try again shortly.")
        # A classroom held to privacy mode gets only the engines that run on this machine.
        engines = self.hub.engines_for(self._who.classroom_id)
        room = await self._classroom()
        persona_id = start.persona or self.settings.default_persona
        if room is not None and start.persona is None and not room.allows(persona_id):
            persona_id = room.personas[0]  # the classroom's first tutor is its default
        persona = PERSONAS.get(persona_id)
        if persona is None:
            raise ProtocolError(
                "unknown_persona",
                f"Unknown persona {protocol._quote(persona_id)}; known: {', '.join(PERSONAS)}.",
            )
        if room is not None and not room.allows(persona.id):
            raise ProtocolError(
                "persona_not_allowed",
                f"This classroom's tutors are {', '.join(room.personas)}; {protocol._quote(persona.id)} is not one.",
            )
        config = self._pipeline_config(start, room)
        agent = TutorAgent(persona=_with_reply_limit(persona, self.settings.max_reply_tokens))
        in_rate = self._fixed_input_rate or start.input_audio.sample_rate
        out_rate = self._fixed_output_rate or start.output_audio.sample_rate or engines.tts.sample_rate
        self._in_resampler = PcmResampler(in_rate, PIPELINE_SAMPLE_RATE)
        self._out_resampler = None
        self._outbound = outbound.Context(out_rate=out_rate)
        self._who = with_engine_keys(self._who, engines)
        caps = await self._open_caps()
        if self.ended:
            return  # the connection went while the ledger was read
        quotas = None
        if caps is not None:  # the caps in force now: the settings' with those stored at run time
            # ... and a classroom's own per-session caps (in config already) bound them too.
            config = config.model_copy(update={"caps": caps.session.tighter(config.caps)})
            quotas = caps.quotas
        self.session_id = f"sess_{uuid.uuid4().hex[:16]}"
        self._agent = agent
        self.pipeline = Pipeline(
            engines, agent, self._on_event, config, session_id=self.session_id, quotas=quotas,
            adjustable_caps=room is not None,  # a teacher may change a classroom session's caps
        )
        if room is not None and self._classrooms is not None and self._who.student_id is not None:
            self._watch = await self._classrooms.join(
                self.session_id, room, self._who.student_id, persona.id, config.caps, self
            )
        log.info("session %s started persona=%s in_rate=%d", self.session_id, persona.id, in_rate)
        await self._send(
            protocol.SessionStarted(
                session_id=self.session_id,
                persona=_persona_info(persona),
                input_audio=start.input_audio,
                output_audio=protocol.OutputAudioFormat(sample_rate=out_rate),
                end_of_turn_silence_ms=config.turn.end_of_turn_silence_ms,
            )
        )
        if self._on_started is not None:
            self._on_started()

    async def _classroom(self) -> classroom_store.Classroom | None:
        """The session's classroom (from the student's token), which must still be open."""
        if self._classrooms is None or self._who.classroom_id is None:
            return None
        room = await classroom_store.get_classroom(self._classrooms.engine, self._who.classroom_id)
        if room is None:
            return None  # a classroom id from elsewhere (a token minted for billing only): no console
        if not room.open:
            raise ProtocolError("classroom_closed", "This classroom is closed. Ask your teacher for a new code.")
        return room

    # ------------------------------------------------------------------ the teacher's controls

    async def pause(self) -> None:
        if self.paused or self.ended or self.pipeline is None:
            return
        self.paused = True
        await self.pipeline.cancel_reply()
        await self._send(protocol.SessionPausedMsg())
        if self._watch is not None:
            self._watch.status("paused")

    async def resume(self) -> None:
        if not self.paused or self.ended:
            return
        self.paused = False
        await self._send(protocol.SessionResumedMsg())
        if self._watch is not None:
            self._watch.status("live")

    async def end_by(self, reason: str) -> None:
        ended: protocol.EndReason = "classroom_closed" if reason == "classroom_closed" else "teacher"
        await self.close(ended)
        if self._hang_up is not None:
            await self._hang_up()

    def set_guidance(self, text: str) -> None:
        """The teacher's note reaches the tutor's next turn as context, never as words to say:
        it goes into the system prompt, whose runs of words the output screen refuses to speak."""
        if self._agent is not None:
            self._agent.guidance = text.strip()

    def set_caps(self, caps: UsageCaps) -> None:
        if self.pipeline is not None and not self.ended:
            self.pipeline.set_caps(caps)
            if self._watch is not None:
                self._watch.caps(caps)

    async def _open_caps(self) -> SessionCaps | None:
        """Read once per session start: a cap changed later applies to later sessions only."""
        if self._shared_caps is None:
            return None
        try:
            return await self._shared_caps.open(self._who)
        except Exception:
            # Fail closed: a cap that cannot be checked is not a cap.
            log.exception("could not read the caps, or the usage they start from")
            raise ProtocolError(
                "server_not_ready",
                "Usage records cannot be read right now, so no session can start; try again shortly.",
            ) from None

    def _pipeline_config(
        self, start: protocol.SessionStart, room: classroom_store.Classroom | None = None
    ) -> PipelineConfig:
        """The session's pipeline settings: the server's, with what session.start overrides.
        Rules the schema cannot express (an action a stage cannot take) are refused here."""
        turn = self.settings.turn
        try:
            budgets = self.settings.budgets.with_overrides(
                {stage: o.model_dump(exclude_none=True) for stage, o in start.budgets.items()}
            )
        except ValueError as exc:  # pydantic's ValidationError included
            message = f"Invalid session.start: budgets: {_reason(exc)}."
            raise ProtocolError("invalid_message", message) from None
        if room is not None and room.patience_ms is not None:
            turn = turn.model_copy(update=_patience(turn, room.patience_ms))
        chosen = start.turn.model_dump(exclude_none=True)
        if chosen:
            try:
                turn = TurnConfig.model_validate({**turn.model_dump(), **chosen})
            except ValueError as exc:
                raise ProtocolError("invalid_message", f"Invalid session.start: turn: {_reason(exc)}.") from None
        caps = self.settings.billing.session_caps
        if room is not None:
            caps = caps.tighter(room.caps)
        return PipelineConfig(
            turn=turn,
            budgets=budgets,
            caps=caps,
            playback_lead_ms=self.settings.playback_lead_ms,
            lesson_plans=self.settings.lesson_plans,
        )

    async def _error(
        self, code: ErrorCode, message: str, *, fatal: bool = False, turn_id: str | None = None
    ) -> None:
        log.info("protocol error %s in session %s", code, self.session_id)
        await self._send(protocol.ErrorMsg(code=code, message=message, fatal=fatal, turn_id=turn_id))

    # ---------------------------------------------------------------------------------- output

    async def _send(self, message: BaseModel) -> None:
        if self._watch is not None:
            self._watch.seen(message)  # queues only: the console never slows the student down
        await self._send_text(encode(message))

    async def _on_event(self, event: PipelineEvent) -> None:
        if self._ledger is not None:
            self._ledger.observe(self.session_id, event, self._who)  # buffers only; never waits
        if isinstance(event, ReplyAudio):
            if self._observe is not None:
                self._observe(event)
            await self._send_audio(event)
            return
        if isinstance(event, Interrupted) and self._clear_audio is not None:
            self._clear_audio()  # before the message: the student must not hear the rest
        try:
            if self._observe is not None:
                self._observe(event)
            message = outbound.to_message(event, self._outbound)
        except Exception:
            # Our bug, not the client's: report it, and keep the pipeline (and session) alive.
            log.exception("session %s could not convert %s", self.session_id, type(event).__name__)
            message = protocol.ErrorMsg(
                code="internal_error", message="The server failed to report an event."
            )
        if message is not None:
            await self._send(message)

    async def _send_audio(self, event: ReplyAudio) -> None:
        out_rate = self._outbound.out_rate
        if self._out_resampler is None or self._out_resampler.in_rate != event.sample_rate:
            self._out_resampler = PcmResampler(event.sample_rate, out_rate)
        pcm = self._out_resampler.process(event.pcm16)
        if pcm:
            await self._send_bytes(pcm)


def _patience(turn: TurnConfig, patience_ms: int) -> dict[str, int]:
    """A classroom's patience for a thinking student; after a question the tutor waits as much
    longer as it does by default, and no pause is allowed to outlast either."""
    question = min(30_000, patience_ms + max(0, turn.question_patience_ms - turn.patience_ms))
    return {
        "patience_ms": patience_ms,
        "question_patience_ms": question,
        "max_silence_ms": min(60_000, max(turn.max_silence_ms, question + 1000)),
    }


def _persona_info(persona: Persona) -> protocol.PersonaInfo:
    return protocol.PersonaInfo(id=persona.id, name=persona.name, subject=persona.subject)


def _reason(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False, include_input=False)[0]
        return f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
    return str(exc)


def _with_reply_limit(persona: Persona, max_tokens: int) -> Persona:
    return replace(persona, max_reply_tokens=min(persona.max_reply_tokens, max_tokens))
