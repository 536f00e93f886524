"""Speech servers for the tests of the OpenAI audio engines (models/openai_audio.py).

`start_faster_whisper_server` starts the REAL faster-whisper-server 0.0.3 from PyPI on the bundled
tiny.en (transcription only; see its docstring for what that version does differently).

`OpenAIAudioStandIn` is a STAND-IN for an OpenAI-compatible speech server (faster-whisper-server,
Speaches, vLLM, OpenAI), not one of them: a small stdlib HTTP server, written for the tests,
that follows OpenAI's documented audio API and serves this project's REAL engines behind it.

- `POST /v1/audio/transcriptions`: multipart/form-data with `file` (here: a WAV, which must be
  16-bit mono; OpenAI takes more formats), `model`, `language`, `response_format` (`json`, the
  default, answers `{"text": ...}`; `text` answers the bare text). The transcript is the real
  faster-whisper engine's (models/faster_whisper_stt.py) on the samples received.
- `POST /v1/audio/speech`: JSON with `model`, `input`, `voice`, `response_format` and `speed`.
  The audio is the real Piper engine's (models/piper_tts.py), streamed as Piper produces it
  (chunked transfer encoding). `pcm` is raw 16-bit mono little-endian at 24 kHz, as OpenAI
  documents it (Piper's 22.05 kHz resampled with soxr, streaming); `wav` is Piper's own rate in a
  streamed WAV whose sizes are the unknown-length placeholder 0xFFFFFFFF. Other formats (mp3, the
  API's default, opus, aac, flac) are refused with 400: the stand-in does not encode them.
- A bearer key, when one is set: a wrong one gets 401 with OpenAI's error body, which echoes the
  key it was given (as OpenAI echoes part of it), so a test can prove the engine never repeats it.
- An unknown model gets 404 with OpenAI's `model_not_found` body.
- Scripted failures: any status and error body (429s), or a stall before answering.

It records every request (path, headers, form fields or JSON, and for transcriptions the WAV's
format), so a test can check what the engine sent.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import queue
import re
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import wave
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from models.base import SpeechToText, TextToSpeech, VoiceSettings
from tests.llm_servers import free_port

OPENAI_PCM_RATE = 24_000


@dataclass
class AudioCall:
    path: str
    headers: dict[str, str]  # lower-case names
    fields: dict[str, Any] = field(default_factory=dict)  # form fields or the JSON body
    wav: dict[str, int] | None = None  # a transcription's file: rate, channels, sample width, frames
    samples: np.ndarray | None = None  # its samples, as the engine behind was given them
    answered: str | None = None  # the transcript sent back
    audio_bytes: int = 0  # speech sent back (without a WAV header)
    client_went_away: bool = False
    finished: bool = False


@dataclass
class AudioScript:
    status: int = 200
    error_body: dict[str, Any] | None = None
    stall_s: float = 0.0  # wait this long before answering at all (a timeout)


class OpenAIAudioStandIn:
    """STAND-IN speech server with real engines behind it (see the module docstring)."""

    def __init__(
        self,
        stt: SpeechToText | None,
        tts: TextToSpeech | None,
        *,
        api_key: str | None = None,
        stt_model: str = "tiny.en",
        tts_model: str = "piper-joe-medium",
        voices: tuple[str, ...] = ("alloy", "onyx"),
    ) -> None:
        self.stt, self.tts = stt, tts
        self.api_key = api_key
        self.stt_model, self.tts_model, self.voices = stt_model, tts_model, voices
        self.script = AudioScript()
        self.calls: list[AudioCall] = []
        self._closed = False
        # The engines run on a loop of their own, so the stand-in answers whatever the test's loop
        # is doing (a test awaiting the engine under test on its own loop included).
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._loop_thread.start()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                try:
                    stand_in._handle(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout): nobody to answer

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------ requests

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        body = _read_body(handler)
        call = AudioCall(handler.path, {k.lower(): v for k, v in handler.headers.items()})
        self.calls.append(call)
        time.sleep(self.script.stall_s)
        if self._closed:  # the test is over (a client that timed out in a stall left this behind)
            return
        if self.api_key is not None:
            given = call.headers.get("authorization", "").removeprefix("Bearer ")
            if given != self.api_key:
                _json(handler, 401, {"error": {
                    "message": f"Incorrect API key provided: {given}.", "type": "invalid_request_error",
                    "param": None, "code": "invalid_api_key"}})
                return
        if self.script.status != 200:
            _json(handler, self.script.status, self.script.error_body or {})
            return
        if handler.path == "/v1/audio/transcriptions" and self.stt is not None:
            self._transcribe(handler, call, body)
        elif handler.path == "/v1/audio/speech" and self.tts is not None:
            self._speak(handler, call, body)
        else:
            _json(handler, 404, {"error": {"message": f"Invalid URL (POST {handler.path})",
                                           "type": "invalid_request_error", "param": None, "code": None}})

    def _transcribe(self, handler: BaseHTTPRequestHandler, call: AudioCall, body: bytes) -> None:
        fields, files = _multipart(handler.headers.get("content-type", ""), body)
        call.fields = fields
        if fields.get("model") != self.stt_model:
            _model_missing(handler, fields.get("model"))
            return
        if "file" not in files:
            _invalid(handler, "file", "Missing required parameter: 'file'.")
            return
        try:
            with wave.open(io.BytesIO(files["file"]), "rb") as wav:
                call.wav = {"rate": wav.getframerate(), "channels": wav.getnchannels(),
                            "width": wav.getsampwidth(), "frames": wav.getnframes()}
                pcm = wav.readframes(wav.getnframes())
        except (wave.Error, EOFError) as exc:
            _invalid(handler, "file", f"Invalid file format: {exc}")
            return
        if call.wav["channels"] != 1 or call.wav["width"] != 2 or call.wav["rate"] != self.stt.sample_rate:
            _invalid(handler, "file", f"this stand-in reads only 16-bit mono {self.stt.sample_rate} Hz WAV")
            return
        call.samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        result = asyncio.run_coroutine_threadsafe(self.stt.transcribe(call.samples), self._loop).result(120)
        call.answered = result.text
        if fields.get("response_format", "json") == "text":
            _send(handler, 200, "text/plain; charset=utf-8", result.text.encode())
        else:
            _json(handler, 200, {"text": result.text})
        call.finished = True

    def _speak(self, handler: BaseHTTPRequestHandler, call: AudioCall, body: bytes) -> None:
        request = json.loads(body or b"{}")
        call.fields = request
        if request.get("model") != self.tts_model:
            _model_missing(handler, request.get("model"))
            return
        if request.get("voice") not in self.voices:
            _invalid(handler, "voice", f"Unknown voice {request.get('voice')!r}.")
            return
        response_format = request.get("response_format", "mp3")
        if response_format not in ("pcm", "wav"):
            _invalid(handler, "response_format", f"this stand-in sends only pcm and wav, not {response_format!r}")
            return
        text = request.get("input") or ""
        voice = VoiceSettings(rate=float(request.get("speed", 1.0)))
        assert self.tts is not None
        native = self.tts.sample_rate
        chunks: queue.Queue[bytes | None | BaseException] = queue.Queue()

        async def produce() -> None:
            try:
                async for chunk in self.tts.synthesize(text, voice):
                    chunks.put(chunk.pcm16)
                chunks.put(None)
            except BaseException as exc:  # noqa: BLE001 - handed to the writer
                chunks.put(exc)
                raise

        production = asyncio.run_coroutine_threadsafe(produce(), self._loop)
        resampler = None
        if response_format == "pcm" and native != OPENAI_PCM_RATE:
            import soxr

            resampler = soxr.ResampleStream(native, OPENAI_PCM_RATE, 1, dtype="int16")
        handler.send_response(200)
        handler.send_header("content-type", "audio/pcm" if response_format == "pcm" else "audio/wav")
        handler.send_header("transfer-encoding", "chunked")
        handler.end_headers()
        try:
            if response_format == "wav":
                _chunk(handler, _streamed_wav_header(native))
            while (item := chunks.get(timeout=120)) is not None:
                if isinstance(item, BaseException):
                    raise item
                data = item
                if resampler is not None:
                    data = resampler.resample_chunk(np.frombuffer(item, dtype="<i2")).astype("<i2").tobytes()
                if data:
                    _chunk(handler, data)
                    call.audio_bytes += len(data)
            if resampler is not None:
                tail = resampler.resample_chunk(np.zeros(0, dtype="<i2"), last=True).astype("<i2").tobytes()
                if tail:
                    _chunk(handler, tail)
                    call.audio_bytes += len(tail)
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
            call.finished = True
        except (BrokenPipeError, ConnectionResetError):
            call.client_went_away = True  # the client closed the response: stop synthesising
            production.cancel()

    def close(self) -> None:
        self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._loop_thread.join(timeout=5)


# ---------------------------------------------------------------------------------- HTTP bits


def _read_body(handler: BaseHTTPRequestHandler) -> bytes:
    if handler.headers.get("transfer-encoding", "").lower() == "chunked":
        data = b""
        while True:
            size = int(handler.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                handler.rfile.readline()
                return data
            data += handler.rfile.read(size)
            handler.rfile.readline()
    return handler.rfile.read(int(handler.headers.get("content-length", 0)))


def _multipart(content_type: str, body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    """Form fields and files of a multipart/form-data body (RFC 7578), byte for byte: a file's
    bytes are never decoded or re-encoded on the way."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        return {}, {}
    delimiter = b"\r\n--" + match.group(1).encode("latin-1")
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    # The first delimiter may open the body without the CRLF before it.
    for part in (b"\r\n" + body).split(delimiter)[1:]:
        if part.startswith(b"--"):  # the closing delimiter
            break
        head, _, content = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        disposition = next((line for line in head.decode("latin-1").split("\r\n")
                            if line.lower().startswith("content-disposition:")), "")
        name = re.search(r'\bname="([^"]*)"', disposition)
        if name is None:
            continue
        if re.search(r'\bfilename="', disposition):
            files[name.group(1)] = content
        else:
            fields[name.group(1)] = content.decode()
    return fields, files


def _send(handler: BaseHTTPRequestHandler, status: int, content_type: str, payload: bytes) -> None:
    handler.send_response(status)
    handler.send_header("content-type", content_type)
    handler.send_header("content-length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)


def _json(handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any]) -> None:
    _send(handler, status, "application/json", json.dumps(body).encode())


def _invalid(handler: BaseHTTPRequestHandler, param: str, message: str) -> None:
    _json(handler, 400, {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": None}})


def _model_missing(handler: BaseHTTPRequestHandler, model: Any) -> None:
    _json(handler, 404, {"error": {"message": f"The model `{model}` does not exist or you do not have access to it.",
                                   "type": "invalid_request_error", "param": None, "code": "model_not_found"}})


def _chunk(handler: BaseHTTPRequestHandler, data: bytes) -> None:
    handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    handler.wfile.flush()


def _streamed_wav_header(rate: int) -> bytes:
    """A 16-bit mono WAV header for a stream of unknown length (sizes 0xFFFFFFFF)."""
    unknown = 0xFFFFFFFF
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return b"RIFF" + struct.pack("<I", unknown) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + \
        b"data" + struct.pack("<I", unknown)


# ------------------------------------------------------------------ the real faster-whisper-server

FWS_MODEL = "whisper-1"  # the name it serves the model under (see start_faster_whisper_server)


@dataclass
class FasterWhisperServer:
    """The REAL `faster-whisper-server` 0.0.3 from PyPI, in a subprocess."""

    base_url: str  # .../v1
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def start_faster_whisper_server(tmp: Path, *, timeout_s: float = 60) -> FasterWhisperServer:
    """`python -m faster_whisper_server --config ...` on the bundled tiny.en (a local folder:
    nothing is downloaded), one CPU thread, int8, and the decoding options of the local engine's
    full-window path (models/faster_whisper_stt.py with trim_window off): greedy, no timestamps,
    no conditioning on earlier text, no VAD filter. Its transcripts are then comparable word for
    word with the local engine's.

    Two things about 0.0.3 seen in its source: it has no authentication, and it reads the model
    from a form field named `model_name`, not OpenAI's `model`, so whatever a client asks for,
    it serves the model named `whisper-1` in its config (its default)."""
    from models.locate import whisper_tiny_en_dir

    port = free_port()
    config = tmp / "faster-whisper-server.yaml"
    config.write_text(json.dumps({  # JSON is YAML
        "models": [{
            "name": FWS_MODEL,
            "path": str(whisper_tiny_en_dir()),
            "model_options": {"device": "cpu", "compute_type": "int8", "cpu_threads": 1, "num_workers": 1},
            "transcribe_options": {"beam_size": 1, "best_of": 1, "temperature": 0.0, "without_timestamps": True,
                                   "condition_on_previous_text": False, "vad_filter": False},
        }],
    }))
    log_path = tmp / f"faster-whisper-server-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "faster_whisper_server", "--config", str(config),
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "info"],
            stdout=log_file, stderr=subprocess.STDOUT,
            # Offline for certain: the model is a local folder, and the hub may not be asked.
            env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"},
        )
    server = FasterWhisperServer(f"http://127.0.0.1:{port}/v1", process, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"faster-whisper-server exited with {process.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"faster-whisper-server not ready within {timeout_s} s:\n{server.log()}")
