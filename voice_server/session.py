"""Protocol version 1 session: wire messages in, pipeline calls; pipeline events out, wire messages.

Network-free: a transport hands it decoded text or bytes and gives it two send callbacks. Bad
input is answered with an `error` message and never ends the session (oversized frames are
refused by the transport before they are buffered).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, replace
from typing import Any

from pydantic import ValidationError

from pipelines.agent import TutorAgent
from pipelines.audio import PIPELINE_SAMPLE_RATE, SUPPORTED_INPUT_RATES, PcmResampler
from pipelines.frames import (
    BudgetMiss,
    Interrupted,
    PipelineError,
    PipelineEvent,
    ReplyAudio,
    ReplyAudioDone,
    ReplyAudioStarted,
    ReplySentence,
    ReplyTextDelta,
    SpeechStarted,
    SpeechStopped,
    TranscriptFinal,
    TranscriptPartial,
    TurnDone,
    TurnUsage,
)
from pipelines.personas import PERSONAS, Persona
from pipelines.config import PipelineConfig
from pipelines.pipeline import Pipeline as VoicePipeline
from voice_server import __version__, protocol
from voice_server.engines import EngineHub
from voice_server.settings import Settings

log = logging.getLogger(__name__)

SendJson = Callable[[dict[str, Any]], Awaitable[None]]
SendBytes = Callable[[bytes], Awaitable[None]]


class ProtocolSession:
    def __init__(
        self,
        settings: Settings,
        hub: EngineHub,
        send_json: SendJson,
        send_bytes: SendBytes,
        *,
        observe: Callable[[PipelineEvent], None] | None = None,
        fixed_input_rate: int | None = None,
        fixed_output_rate: int | None = None,
    ) -> None:
        self.settings = settings
        self._observe = observe
        # Set by transports that own the audio format (WebRTC): session.start cannot change it.
        self._fixed_input_rate = fixed_input_rate
        self._fixed_output_rate = fixed_output_rate
        self.hub = hub
        self._send_json = send_json
        self._send_bytes = send_bytes
        self.session_id: str | None = None
        self.pipeline: VoicePipeline | None = None
        self._in_resampler: PcmResampler | None = None
        self._out_resampler: PcmResampler | None = None
        self._out_rate = 0
        self.ended = False

    # ------------------------------------------------------------------------------- lifecycle

    def hello(self) -> dict[str, Any]:
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
            personas=[
                protocol.PersonaInfo(id=p.id, name=p.name, subject=p.subject) for p in PERSONAS.values()
            ],
            input_sample_rates=list(SUPPORTED_INPUT_RATES),
            output_audio=protocol.OutputAudioFormat(sample_rate=tts_rate),
        ).model_dump(mode="json")

    async def start(self) -> None:
        await self._send_json(self.hello())

    async def close(self, reason: str = "client") -> None:
        if self.ended:
            return
        self.ended = True
        if self.pipeline is not None:
            await self.pipeline.aclose()
            await self._send_json(
                protocol.SessionEndedMsg(
                    session_id=self.session_id or "",
                    reason=reason,  # type: ignore[arg-type]
                    usage=_usage(self.pipeline.usage_total),
                ).model_dump(mode="json")
            )

    # ----------------------------------------------------------------------------------- input

    async def on_text(self, raw: str) -> None:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            await self._error("invalid_json", f"Message is not valid JSON: {exc.msg} at {exc.pos}.")
            return
        if not isinstance(data, dict) or not isinstance(data.get("type"), str):
            await self._error("invalid_message", 'Every message is a JSON object with a string "type".')
            return
        if data["type"] not in protocol.CLIENT_TYPES:
            known = ", ".join(sorted(protocol.CLIENT_TYPES))
            await self._error("unknown_message_type", f"Unknown type {data['type']!r}; known: {known}.")
            return
        try:
            message = protocol.CLIENT_ADAPTER.validate_python(data)
        except ValidationError as exc:
            await self._invalid(data["type"], exc)
            return
        await self._dispatch(message)

    async def on_bytes(self, frame: bytes) -> None:
        if self.pipeline is None or self._in_resampler is None:
            await self._error("session_not_started", "Send session.start before audio frames.")
            return
        if len(frame) % 2:
            await self._error("invalid_audio_frame", "PCM16 frames must have an even number of bytes.")
            return
        self.pipeline.push_audio(self._in_resampler.process(frame))

    async def _dispatch(self, message: Any) -> None:
        if isinstance(message, protocol.SessionStart):
            await self._start_session(message)
        elif self.pipeline is None:
            await self._error("session_not_started", f"Send session.start before {message.type}.")
        elif isinstance(message, protocol.InputText):
            await self._input_text(message.text)
        elif isinstance(message, protocol.ResponseCancel):
            await self.pipeline.cancel_reply()
        elif isinstance(message, protocol.ResponseRepeat):
            if not await self.pipeline.repeat_last():
                await self._error("nothing_to_repeat", "The tutor has not said anything yet.")
        elif isinstance(message, protocol.SessionUpdate):
            if message.voice_rate is not None:
                self.pipeline.set_voice_rate(message.voice_rate)
        elif isinstance(message, protocol.SessionEnd):
            await self.close("client")

    async def _start_session(self, start: protocol.SessionStart) -> None:
        if self.pipeline is not None:
            await self._error("session_already_started", "This connection already has a session.")
            return
        if not self.hub.ready or self.hub.engines is None:
            await self._error("server_not_ready", "Models are still loading; try again shortly.")
            return
        persona_id = start.persona or self.settings.default_persona
        persona = PERSONAS.get(persona_id)
        if persona is None:
            await self._error(
                "unknown_persona", f"Unknown persona {persona_id!r}; known: {', '.join(PERSONAS)}."
            )
            return
        engines = self.hub.engines
        turn = self.settings.turn
        end_ms = start.turn.end_of_turn_silence_ms or turn.end_of_turn_silence_ms
        config = PipelineConfig(
            turn=turn.model_validate({**turn.model_dump(), "end_of_turn_silence_ms": end_ms}),
            playback_lead_ms=self.settings.playback_lead_ms,
            budgets=self.settings.budgets.with_overrides(
                {stage: o.model_dump() for stage, o in start.budgets.items()}
            ),
        )
        agent = TutorAgent(persona=_with_reply_limit(persona, self.settings.max_reply_tokens))
        in_rate = self._fixed_input_rate or start.input_audio.sample_rate
        self._in_resampler = PcmResampler(in_rate, PIPELINE_SAMPLE_RATE)
        self._out_rate = self._fixed_output_rate or start.output_audio.sample_rate or engines.tts.sample_rate
        self._out_resampler = None
        self.session_id = f"sess_{uuid.uuid4().hex[:16]}"
        self.pipeline = VoicePipeline(engines, agent, self._on_event, config, session_id=self.session_id)
        log.info(
            "session %s started persona=%s in_rate=%d",
            self.session_id,
            persona.id,
            start.input_audio.sample_rate,
        )
        await self._send_json(
            protocol.SessionStarted(
                session_id=self.session_id,
                persona=protocol.PersonaInfo(id=persona.id, name=persona.name, subject=persona.subject),
                input_audio=start.input_audio,
                output_audio=protocol.OutputAudioFormat(sample_rate=self._out_rate),
                end_of_turn_silence_ms=end_ms,
            ).model_dump(mode="json")
        )

    async def _input_text(self, text: str) -> None:
        limit = self.settings.limits.max_text_chars
        if len(text) > limit:
            await self._error(
                "text_too_long",
                f"Typed messages are limited to {limit} characters; this one has {len(text)}.",
            )
            return
        if not text.strip():
            await self._error("invalid_message", "input.text needs some text.")
            return
        assert self.pipeline is not None
        await self.pipeline.submit_text(text)

    async def _invalid(self, type_: str, exc: ValidationError) -> None:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"][1:])
        if type_ == "session.start" and where.startswith("input_audio"):
            rates = ", ".join(str(r) for r in SUPPORTED_INPUT_RATES)
            await self._error(
                "unsupported_audio_format",
                f"Unsupported input audio ({where}: {first['msg']}). "
                f"Send pcm16, mono, at one of: {rates} Hz.",
            )
        elif type_ == "session.start" and where == "protocol_version":
            await self._error(
                "unsupported_protocol_version",
                f"This server speaks protocol version {protocol.PROTOCOL_VERSION}.",
            )
        else:
            await self._error("invalid_message", f"Invalid {type_}: {where or 'message'}: {first['msg']}.")

    async def _error(
        self, code: str, message: str, *, fatal: bool = False, turn_id: str | None = None
    ) -> None:
        log.info("protocol error %s in session %s", code, self.session_id)
        await self._send_json(
            protocol.ErrorMsg(code=code, message=message, fatal=fatal, turn_id=turn_id).model_dump(
                mode="json"
            )  # type: ignore[arg-type]
        )

    # ---------------------------------------------------------------------------------- output

    async def _on_event(self, event: PipelineEvent) -> None:
        if self._observe is not None:
            self._observe(event)
        if isinstance(event, ReplyAudio):
            if self._out_resampler is None or self._out_resampler.in_rate != event.sample_rate:
                self._out_resampler = PcmResampler(event.sample_rate, self._out_rate)
            pcm = self._out_resampler.process(event.pcm16)
            if pcm:
                await self._send_bytes(pcm)
            return
        message = _to_message(event, self._out_rate)
        if message is not None:
            await self._send_json(message.model_dump(mode="json", exclude_none=False))


def _to_message(event: PipelineEvent, out_rate: int) -> Any:
    match event:
        case SpeechStarted(turn_id, stream_ms):
            return protocol.SpeechStartedMsg(turn_id=turn_id, stream_ms=stream_ms)
        case SpeechStopped(turn_id, stream_ms):
            return protocol.SpeechStoppedMsg(turn_id=turn_id, stream_ms=stream_ms)
        case TranscriptPartial(turn_id, text):
            return protocol.TranscriptPartialMsg(turn_id=turn_id, text=text)
        case TranscriptFinal(turn_id, text, source):
            return protocol.TranscriptFinalMsg(turn_id=turn_id, text=text, source=source)
        case ReplyTextDelta(turn_id, delta):
            return protocol.ReplyTextDeltaMsg(turn_id=turn_id, delta=delta)
        case ReplySentence(turn_id, text):
            return protocol.ReplySentenceMsg(turn_id=turn_id, text=text)
        case ReplyAudioStarted(turn_id, _):
            return protocol.ReplyAudioStartedMsg(
                turn_id=turn_id, format=protocol.OutputAudioFormat(sample_rate=out_rate)
            )
        case ReplyAudioDone(turn_id, audio_ms):
            return protocol.ReplyAudioDoneMsg(turn_id=turn_id, audio_ms=audio_ms)
        case Interrupted(turn_id, reason, heard):
            return protocol.ReplyInterruptedMsg(turn_id=turn_id, reason=reason, heard_text=heard)
        case TurnDone():
            return protocol.TurnDoneMsg(
                turn_id=event.turn_id,
                status=event.status,
                user_text=event.user_text,
                reply_text=event.reply_text,
                latency=protocol.Latency(**event.latency_ms),
                usage=_usage(event.usage),
                budget_misses=[
                    protocol.BudgetMissMsg(
                        stage=m.stage, budget_ms=m.budget_ms, elapsed_ms=m.elapsed_ms, action=m.action
                    )
                    for m in event.budget_misses
                ],
            )
        case BudgetMiss(turn_id, stage, budget_ms, elapsed_ms, action):
            return protocol.BudgetExceededMsg(
                turn_id=turn_id, stage=stage, budget_ms=budget_ms, elapsed_ms=elapsed_ms, action=action
            )
        case PipelineError(code, message, turn_id):
            return protocol.ErrorMsg(code=code, message=message, turn_id=turn_id)  # type: ignore[arg-type]
    return None


def _usage(usage: TurnUsage) -> protocol.Usage:
    return protocol.Usage.model_validate(asdict(usage))


def _with_reply_limit(persona: Persona, max_tokens: int) -> Persona:
    return replace(persona, max_reply_tokens=min(persona.max_reply_tokens, max_tokens))
