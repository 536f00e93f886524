"""A refused request body is answered in the server's error shape, naming the field and the rule
and never repeating the value: on every route, not only those that take a secret."""

from __future__ import annotations

from fastapi.testclient import TestClient

from voice_server.app import create_app
from voice_server.settings import Settings


def test_a_rejected_sign_in_names_the_field_and_never_echoes_the_password(tmp_path):
    app = create_app(Settings(storage={"data_dir": tmp_path}, auth={"secret": "s" * 32}))  # type: ignore[arg-type]
    # A password sent in the wrong shape: FastAPI's own 422 would quote it back.
    with TestClient(app, base_url="http://127.0.0.1:8765") as http:
        refused = http.post(
            "/v1/auth/sign-in", json={"username": "teacher1", "password": {"typed": "correct horse battery"}}
        )
    assert refused.status_code == 422
    body = refused.json()
    assert body["error"]["code"] == "invalid_request" and "password" in body["error"]["message"]
    assert "correct horse" not in refused.text and "detail" not in body
