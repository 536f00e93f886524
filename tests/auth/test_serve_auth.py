"""`convergio-voice serve` as a school runs it: sign-in on, no secret configured. The secret is
made once and kept, the console gets a one-time student link, and no secret, token, ticket or
password ever reaches the server's log. Light engines (echo LLM, silent TTS): no answer quality
is tested here, only access."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

from websockets.sync.client import connect

from tests.conftest import REPO_ROOT, TEST_SERVER_ENV, RunningServer, start_server, stop_server

PASSWORD = "the admin's long password"
PROVIDER_KEY = "school-azure-key-IN-NO-LOG-0123456789abcdef"
WRONG_PASSWORD = "a guess that is wrong"
LIGHT = ("--llm", "echo", "--tts", "silence", "--turn", "none")
# The test server's settings, less the known secret: this server makes and keeps its own.
ENV = {k: v for k, v in TEST_SERVER_ENV.items() if k != "CONVERGIO_AUTH__SECRET"}
ENV["CONVERGIO_LOG_LEVEL"] = "debug"  # the most a server logs


def _post(
    server: RunningServer, path: str, body: object = None, token: str | None = None
) -> tuple[int, dict]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    status, raw = server.request("POST", path, body=body, headers=headers)
    return status, json.loads(raw or b"null")


def test_serve_keeps_its_secret_hands_out_a_one_time_link_and_logs_no_credential(tmp_path: Path):
    made = subprocess.run(
        [sys.executable, "-m", "voice_server.cli", "admin", "create", "root", "--password-stdin"],
        input=PASSWORD + "\n", capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
        env={**os.environ, "CONVERGIO_STORAGE__DATA_DIR": str(tmp_path / "data")},
    )
    assert made.returncode == 0, made.stderr
    server = start_server(tmp_path, *LIGHT, env=ENV)
    try:
        secret_file = tmp_path / "data" / "auth-secret"
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        secret = secret_file.read_text().strip()

        announced = r"student sign-in link \(works once, for 10 min\): (\S+)/#signin=(\S+)"
        link = re.search(announced, server.log())
        assert link and link.group(1) == server.base_url
        code = link.group(2)
        status, student = _post(server, "/v1/auth/redeem", {"code": code})
        assert status == 200 and student["role"] == "student"
        assert _post(server, "/v1/auth/redeem", {"code": code})[0] == 401  # once only

        assert _post(server, "/v1/auth/sign-in", {"username": "root", "password": WRONG_PASSWORD})[0] == 401
        status, admin = _post(server, "/v1/auth/sign-in", {"username": "root", "password": PASSWORD})
        assert status == 200 and admin["role"] == "admin"
        server.secret = secret
        assert "convergio_" in server.text("/metrics", role="admin")

        school_key = {"provider": "azure-speech", "label": "Hillside", "secret": PROVIDER_KEY}
        status, stored = _post(server, "/api/v1/keys", school_key, token=admin["access_token"])
        assert status == 201 and stored["fingerprint"] == PROVIDER_KEY[-4:]
        secrets_file = tmp_path / "data" / "secrets-key"
        assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600

        status, ticket = _post(server, "/v1/auth/ws-ticket", token=student["access_token"])
        assert status == 200
        with connect(f"{server.ws_url}?ticket={ticket['ticket']}") as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "server.hello"
        status, _ = server.request(
            "GET", "/v1/personas", headers={"authorization": f"Bearer {student['access_token']}"}
        )
        assert status == 200
    finally:
        stop_server(server)

    # A restart signs with the kept secret: the student's token is still good, the stored key is
    # still listed; once signed out, the admin's token is refused.
    again = start_server(tmp_path, *LIGHT, env=ENV)
    admin_header = {"authorization": f"Bearer {admin['access_token']}"}
    try:
        status, _ = again.request(
            "GET", "/v1/personas", headers={"authorization": f"Bearer {student['access_token']}"}
        )
        assert status == 200
        status, listed = again.request("GET", "/api/v1/keys", headers=admin_header)
        assert status == 200 and [k["id"] for k in json.loads(listed)] == [stored["id"]]
        assert _post(again, "/v1/auth/sign-out", token=admin["access_token"])[0] == 204
        assert again.request("GET", "/api/v1/keys", headers=admin_header)[0] == 401
    finally:
        stop_server(again)

    log = server.log() + again.log()
    assert "WebSocket /v1/ws?ticket=[redacted]" in log  # the access log saw the socket, not its ticket
    for credential in (secret, PASSWORD, WRONG_PASSWORD, student["access_token"], admin["access_token"],
                       ticket["ticket"], PROVIDER_KEY, secrets_file.read_text().strip()):
        assert credential not in log
    # The one-time code is shown once, on the console line meant for it, and nowhere else.
    assert [line for line in log.splitlines() if code in line] == [link.group(0)]
