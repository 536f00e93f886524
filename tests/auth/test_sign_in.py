"""Signing in: a teacher or admin with a password, a student with a one-time link; `admin create`
takes the password from a prompt or stdin, never argv; open mode only on loopback."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.auth.conftest import AuthApp
from voice_server import cli
from voice_server.auth import accounts
from voice_server.auth.tokens import Role

PASSWORD = "a long enough password"


def test_a_teacher_signs_in_with_a_password_and_gets_a_token_for_an_opaque_id(auth_app: AuthApp):
    # The app's database engine lives on the TestClient's event loop: the account is made there.
    account = auth_app.http.portal.call(
        accounts.create_account, auth_app.app.state.database, "ms.rivera", PASSWORD, Role.TEACHER
    )
    response = auth_app.http.post("/v1/auth/sign-in", json={"username": "ms.rivera", "password": PASSWORD})
    assert response.status_code == 200
    body = response.json()
    assert body["role"] == "teacher" and body["token_type"] == "bearer" and body["expires_in"] == 3600
    claims = auth_app.app.state.auth.issuer.verify(body["access_token"])
    assert claims.subject == account.id and "rivera" not in claims.subject


@pytest.mark.parametrize("username,password", [("ms.rivera", "wrong password!!"), ("nobody", PASSWORD)])
def test_a_wrong_password_or_unknown_name_gets_the_same_refusal(auth_app: AuthApp, username, password):
    auth_app.http.portal.call(
        accounts.create_account, auth_app.app.state.database, "ms.rivera", PASSWORD, Role.TEACHER
    )
    response = auth_app.http.post("/v1/auth/sign-in", json={"username": username, "password": password})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"


def test_a_student_sign_in_link_works_once(auth_app: AuthApp):
    teacher = {"authorization": f"Bearer {auth_app.token(Role.TEACHER)}"}
    link = auth_app.http.post("/v1/auth/signin-links", headers=teacher).json()
    assert link["path"] == f"/#signin={link['code']}"  # a fragment: never sent to a server log
    first = auth_app.http.post("/v1/auth/redeem", json={"code": link["code"]})
    assert first.status_code == 200 and first.json()["role"] == "student"
    subject = auth_app.app.state.auth.issuer.verify(first.json()["access_token"]).subject
    assert subject.startswith("stu_")
    again = auth_app.http.post("/v1/auth/redeem", json={"code": link["code"]})
    assert again.status_code == 401 and again.json()["error"]["code"] == "invalid_code"


def test_admin_create_reads_the_password_from_stdin(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("CONVERGIO_STORAGE__DATA_DIR", str(tmp_path))
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli.main(["admin", "create", "head.teacher", "--password-stdin"]) == 0
    out = capsys.readouterr().out
    assert "created admin account 'head.teacher'" in out and PASSWORD not in out
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert cli.main(["admin", "create", "head.teacher", "--password-stdin"]) == 2  # exists already
    assert "already exists" in capsys.readouterr().err


def test_admin_create_refuses_a_short_password_and_has_no_password_argument(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CONVERGIO_STORAGE__DATA_DIR", str(tmp_path))
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli.main(["admin", "create", "root", "--password-stdin"]) == 2
    assert "at least 12 characters" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["admin", "create", "root", "--password", PASSWORD])


def test_admin_create_without_a_terminal_asks_for_password_stdin(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CONVERGIO_STORAGE__DATA_DIR", str(tmp_path))
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert cli.main(["admin", "create", "root"]) == 2
    assert "--password-stdin" in capsys.readouterr().err


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "tutor.school.example"])
def test_serve_open_is_refused_off_loopback(host: str, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CONVERGIO_STORAGE__DATA_DIR", str(tmp_path))
    monkeypatch.setattr("uvicorn.Server.run", lambda self: pytest.fail("an open server started"))
    assert cli.main(["serve", "--open", "--host", host]) == 2
    assert "loopback" in capsys.readouterr().err
    monkeypatch.setenv("CONVERGIO_AUTH__MODE", "open")  # the environment's way, refused alike
    assert cli.main(["serve", "--host", host]) == 2


def test_open_mode_on_loopback_needs_no_token(tmp_path):
    from fastapi.testclient import TestClient

    from tests.auth.conftest import make_app

    app = make_app(tmp_path, mode="open")
    with TestClient(app) as http:
        assert http.get("/v1/personas").status_code == 200
        assert http.get("/metrics").status_code == 200


def test_an_app_is_not_built_open_off_loopback(tmp_path):
    from voice_server.app import create_app
    from voice_server.auth.guard import OpenModeRefused
    from voice_server.settings import Settings

    with pytest.raises(OpenModeRefused):
        create_app(Settings(host="0.0.0.0", storage={"data_dir": tmp_path}, auth={"mode": "open"}))  # type: ignore[arg-type]
