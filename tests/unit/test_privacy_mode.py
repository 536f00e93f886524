"""Privacy mode: a cloud engine or an ICE server is refused at configuration, and at run time the
server process cannot open a connection or look up a name that would leave the machine. The
run-time lock is an audit hook that cannot be removed, so it is tested in child processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import replace

import pytest
from pydantic import ValidationError

import voice_server.settings as settings_module
from models.registry import spec_for
from voice_server.privacy import is_local_address
from voice_server.settings import Settings
from voice_server.transports.webrtc import ice_configuration


def test_without_privacy_mode_nothing_changes_and_no_stun_server_is_used_by_default():
    settings = Settings()
    assert not settings.privacy.mode
    assert ice_configuration(settings).iceServers == []  # aiortc's default would be a public STUN server
    configured = Settings(webrtc={"ice_servers": ["stun:stun.example.org:3478"]})
    assert [s.urls for s in ice_configuration(configured).iceServers] == ["stun:stun.example.org:3478"]


def test_privacy_mode_accepts_the_offline_defaults():
    assert Settings(privacy={"mode": True}).privacy.mode


def test_privacy_mode_refuses_an_engine_that_is_not_local(monkeypatch):
    def cloud_llm(kind: str, name: str):
        spec = spec_for(kind, name)
        return replace(spec, local=False) if kind == "llm" else spec

    monkeypatch.setattr(settings_module, "spec_for", cloud_llm)
    with pytest.raises(
        ValidationError, match="privacy mode allows only engines that run on this machine.*llm"
    ):
        Settings(privacy={"mode": True})
    assert not Settings().privacy.mode  # the same engine is fine without privacy mode


def test_privacy_mode_refuses_an_ice_server():
    with pytest.raises(ValidationError, match="no ICE"):
        Settings(privacy={"mode": True}, webrtc={"ice_servers": ["stun:stun.l.google.com:19302"]})


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", True),
        ("192.0.2.7", False),
        ("10.0.0.5", False),
        ("api.openai.com", False),
    ],
)
def test_what_counts_as_this_machine(host: str, local: bool):
    assert is_local_address(host) is local


def _child(code: str) -> subprocess.CompletedProcess[str]:
    script = (
        "from voice_server.privacy import fail_closed\nfail_closed(['db.school.lan'])\n"
        + textwrap.dedent(code)
    )
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)


def test_at_run_time_a_connection_or_lookup_that_would_leave_the_machine_is_refused():
    result = _child(
        """
        import socket, urllib.error, urllib.request
        from voice_server.privacy import OutboundRefused
        for attempt in (
            lambda: socket.create_connection(("192.0.2.7", 443), timeout=2),  # an inference service
            lambda: socket.getaddrinfo("api.openai.com", 443),  # even the lookup
            lambda: urllib.request.urlopen("http://192.0.2.7/v1/chat/completions", timeout=2),
        ):
            try:
                attempt()
            except OutboundRefused as exc:
                print("refused:", exc)
            except urllib.error.URLError as exc:  # an HTTP client reports it as its own error
                print("refused:" if isinstance(exc.reason, OutboundRefused) else "NOT REFUSED:", exc.reason)
            except Exception as exc:
                print("NOT REFUSED:", type(exc).__name__, exc)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("refused: privacy mode") == 3 and "NOT REFUSED" not in result.stdout


def test_at_run_time_this_machine_the_configured_database_and_udp_media_still_work():
    result = _child(
        """
        import socket
        from voice_server.privacy import OutboundRefused
        server = socket.create_server(("127.0.0.1", 0))
        socket.create_connection(server.getsockname(), timeout=2).close()  # loopback: a local engine server
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.sendto(b"rtp", ("192.0.2.7", 9))  # media to a student's browser is not a service call
        socket.getaddrinfo("192.0.2.7", 9)  # a numeric address is not looked up anywhere
        try:
            socket.getaddrinfo("db.school.lan", 5432)  # named by the configuration: allowed to try
        except OutboundRefused:
            print("REFUSED the configured database")
        except OSError:
            pass  # no such host here; what matters is that privacy mode let it try
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok") and "REFUSED" not in result.stdout
