from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.speech import manifest, speech_dir, turns_dir

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def speech_clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speech_dir(tmp_path_factory.mktemp("speech"))


@pytest.fixture(scope="session")
def turn_clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Clips with a thinking pause inside one sentence (../shared/turns, or synthesised)."""
    return turns_dir(tmp_path_factory.mktemp("turns"))


@pytest.fixture(scope="session")
def speech_manifest(speech_clips: Path) -> list[dict]:
    return manifest(speech_clips)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# The test server signs with this secret, so tests mint the tokens each role would get.
TEST_AUTH_SECRET = "convergio-test-secret-" + "0123456789abcdef" * 3


@dataclass
class RunningServer:
    base_url: str
    ws_url: str
    process: subprocess.Popen[str]
    log_path: Path
    # The signing secret the server was given (None: open mode or a secret the tests do not know).
    secret: str | None = None
    data_dir: Path | None = None  # its database, for `convergio-voice admin create` in tests

    def token(self, role: str = "student", *, ttl_s: int = 900, classroom: str | None = None) -> str:
        """An access token as the server would issue it to `role` (signed with its secret)."""
        from voice_server.auth.tokens import Role, TokenIssuer

        assert self.secret, "this server's secret is unknown to the tests"
        return TokenIssuer(self.secret, ttl_s=ttl_s).mint(Role(role), f"test_{role}", classroom=classroom)

    def auth(self, role: str | None = "student") -> dict[str, str]:
        """The Authorization header of a `role` (none for role None or an open server)."""
        return {"Authorization": f"Bearer {self.token(role)}"} if role and self.secret else {}

    def request(
        self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url + path, data=data, method=method,
            headers={"content-type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as err:
            return err.code, err.read()

    def get(self, path: str, role: str | None = None) -> tuple[int, Any]:
        """GET as `role` (None: without a token, as for the public endpoints)."""
        status, raw = self.request("GET", path, headers=self.auth(role))
        return status, json.loads(raw or b"null")

    def text(self, path: str, role: str = "admin") -> str:
        status, raw = self.request("GET", path, headers=self.auth(role))
        assert status == 200, (status, raw[:200])
        return raw.decode()

    def ws_ticket_url(self, role: str = "student") -> str:
        """The WebSocket URL with a fresh one-time ticket, as a browser page would open it."""
        if not self.secret:
            return self.ws_url
        status, raw = self.request("POST", "/v1/auth/ws-ticket", headers=self.auth(role))
        assert status == 200, raw
        return f"{self.ws_url}?ticket={json.loads(raw)['ticket']}"

    def signin_url(self) -> str:
        """A fresh single-use student sign-in link, as a teacher would hand out."""
        status, raw = self.request("POST", "/v1/auth/signin-links", headers=self.auth("teacher"))
        assert status == 200, raw
        return self.base_url + json.loads(raw)["path"]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(
    tmp: Path, *extra: str, env: dict[str, str] | None = None, timeout_s: float = 180
) -> RunningServer:
    """Start the server exactly as the README does (`convergio-voice serve`), wait for /readyz."""
    port = _free_port()
    # `convergio-voice` is this entry point; run as a module from this checkout, so the server
    # under test is this code even where the installed script belongs to another checkout.
    command = [sys.executable, "-m", "voice_server.cli"]
    log_path = tmp / f"server-{port}.log"
    log_file = log_path.open("w")
    process = subprocess.Popen(
        [*command, "serve", "--host", "127.0.0.1", "--port", str(port), *extra],
        stdout=log_file,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO_ROOT,
        # Each server keeps its database in its own directory, never in the user's data directory.
        env={**os.environ, "CONVERGIO_STORAGE__DATA_DIR": str(tmp / "data"), **(env or {})},
    )
    secret = (env or {}).get("CONVERGIO_AUTH__SECRET")
    server = RunningServer(
        f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/v1/ws", process, log_path, secret, tmp / "data"
    )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()}")
        try:
            if server.get("/readyz")[0] == 200:
                return server
        except OSError:
            pass
        time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"server not ready within {timeout_s} s:\n{server.log()}")


def stop_server(server: RunningServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.process.kill()


# Media stays on loopback: the server offers 127.0.0.1 and uses only the client's loopback
# candidates, and peers that vanish or never connect are given up quickly.
TEST_SERVER_ENV = {
    "CONVERGIO_WEBRTC__HOST_ADDRESSES": '["127.0.0.1"]',
    "CONVERGIO_WEBRTC__ALLOWED_CANDIDATE_NETWORKS": '["127.0.0.0/8"]',
    "CONVERGIO_WEBRTC__CONNECT_TIMEOUT_S": "4",
    "CONVERGIO_WEBRTC__INBOUND_TIMEOUT_S": "3",
    # Sign-in is on, as by default; tests authenticate with tokens signed with this secret.
    "CONVERGIO_AUTH__SECRET": TEST_AUTH_SECRET,
}


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("server"), env=TEST_SERVER_ENV)
    yield running
    stop_server(running)


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """`serve --open` on loopback: no sign-in. Only for clients that cannot authenticate yet
    (the latency benchmark, until it takes a token)."""
    running = start_server(tmp_path_factory.mktemp("open-server"), "--open", env=TEST_SERVER_ENV)
    running.secret = None
    yield running
    stop_server(running)


@pytest.fixture(scope="session")
def server_message_validator(server: RunningServer) -> jsonschema.Draft202012Validator:
    """Validates against the schema the server publishes, not the one in our source tree."""
    status, schema = server.get("/v1/protocol.json")
    assert status == 200
    root = {"$ref": "#/$defs/ServerMessage", "$defs": schema["$defs"]}
    jsonschema.Draft202012Validator.check_schema(root)
    return jsonschema.Draft202012Validator(root)


@pytest.fixture
def assert_valid(server_message_validator: jsonschema.Draft202012Validator):
    def check(messages: list[dict]) -> None:
        for message in messages:
            errors = sorted(server_message_validator.iter_errors(message), key=str)
            assert not errors, f"{message.get('type')} violates the published schema: {errors[0].message}"

    return check


@pytest.fixture(scope="session")
async def real_engines():
    """The embedded engines loaded in-process once, for pipeline tests that wrap them."""
    from voice_server.engines import EngineHub
    from voice_server.settings import Settings

    hub = EngineHub(Settings())
    engines = await hub.load(progress=lambda _: None)
    yield engines
    await hub.aclose()


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory):
    """llama-cpp-python's own OpenAI-compatible server on the bundled GGUF (one thread), for
    the openai-compatible and azure-openai engines' tests; stopped at the end of the session."""
    from tests.llm_servers import start_llama_server

    running = start_llama_server(tmp_path_factory.mktemp("llama-server"))
    yield running
    running.stop()


# ------------------------------------------------------------------ no key in any captured output

# The school keys, provider keys and secrets the tests store, send or configure (parts of them,
# enough to be unique). Keys must never appear in logs, API responses or error messages: beyond the
# tests that look for them where they might leak, the captured output and logs of every test of
# the run are searched, and a run where one shows up fails.
TEST_KEYS = (
    "azure-openai-key-NEVER-SHOWN",
    "azure-openai-key-ALSO-HIDDEN",
    "azure-speech-key-TEST-0123",
    "azure-speech-key-NEXT-fedc",
    "school-azure-key-IN-NO-LOG",
    "sk-school-key-9f8e7d6c5b4a",
    "sk-school-audio-key-1a2b",
    "sk-school-0123456789abcdef",
    "doctor-test-secret-key",
)
_leaks: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    for section, content in report.sections:  # captured stdout, stderr and log, every outcome
        for key in TEST_KEYS:
            found = f"{report.nodeid} ({section}): {key}"
            if key in content and found not in _leaks:  # a phase's report repeats earlier sections
                _leaks.append(found)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _leaks:
        print("\nA test key appeared in captured output or logs:\n  " + "\n  ".join(_leaks), file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
