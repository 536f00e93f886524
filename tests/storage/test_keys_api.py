"""The admin API for provider keys, served by a real app on each backend: a key's secret goes in
once and never comes back, not in a response, an error, the OpenAPI or the log (captured at DEBUG).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.auth.conftest import AuthApp, make_app
from voice_server.auth.tokens import Role

KEY = "azure-openai-key-NEVER-SHOWN-0123456789abcdef"
NEW_KEY = "azure-openai-key-ALSO-HIDDEN-fedcba9876543210"
SHORT = "SHORT-K3Y-x"


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[AuthApp]:
    app = make_app(tmp_path / "data", database_url=database_url)
    with TestClient(app, base_url="http://127.0.0.1:8765") as http:
        yield AuthApp(app, http)


def test_keys_are_created_listed_masked_replaced_and_deleted_and_the_secret_never_comes_back(
    api: AuthApp, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="aiosqlite")  # as `serve` sets it: it logs SQL parameters
    admin = api.bearer(Role.ADMIN)
    seen: list[str] = []

    def call(method: str, path: str, **kwargs: object):  # type: ignore[no-untyped-def]
        response = api.http.request(method, path, headers=admin, **kwargs)  # type: ignore[arg-type]
        seen.append(f"{response.headers} {response.text}")
        return response

    body = {"provider": "azure-openai", "label": "Hillside primary", "classroom_id": "cls_4b", "secret": KEY}
    created = call("POST", "/api/v1/keys", json=body)
    assert created.status_code == 201, created.text
    key = created.json()
    assert key["id"].startswith("key_") and key["fingerprint"] == KEY[-4:]
    assert set(key) == {"id", "provider", "label", "classroom_id", "fingerprint", "created_at", "rotated_at"}

    assert call("GET", "/api/v1/keys").json() == [key]
    assert call("GET", "/api/v1/keys?classroom_id=cls_other").json() == []

    replaced = call("PUT", f"/api/v1/keys/{key['id']}/secret", json={"secret": NEW_KEY})
    assert replaced.status_code == 200
    assert replaced.json()["fingerprint"] == NEW_KEY[-4:] and replaced.json()["rotated_at"]
    resolved = api.http.portal.call(api.app.state.keys.resolve, key["id"])
    assert resolved.get_secret_value() == NEW_KEY

    # Refused bodies name the field and the rule, not the value (FastAPI's own 422 would echo it).
    number = 12345678901234567890
    for bad in ({**body, "secret": SHORT}, {**body, "provider": "aws"}, {**body, "secret": number}):
        refused = call("POST", "/api/v1/keys", json=bad)
        assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_request"
    short = call("PUT", f"/api/v1/keys/{key['id']}/secret", json={"secret": SHORT})
    assert short.status_code == 422 and "16 to 4096" in short.json()["error"]["message"]
    assert call("PUT", "/api/v1/keys/key_nope/secret", json={"secret": KEY}).status_code == 404

    assert call("DELETE", f"/api/v1/keys/{key['id']}").status_code == 204
    assert call("DELETE", f"/api/v1/keys/{key['id']}").json()["error"]["code"] == "unknown_key"
    assert call("GET", "/api/v1/keys").json() == []

    seen.append(api.http.get("/openapi.json").text)
    everything = "\n".join(seen) + caplog.text
    for secret in (KEY, NEW_KEY, SHORT, "12345678901234567890"):
        assert secret not in everything
    assert f"provider key {key['id']}" in caplog.text  # the log says what happened, by id


def test_the_openapi_marks_a_key_secret_write_only_and_gives_no_example(api: AuthApp):
    spec = api.http.get("/openapi.json").json()
    secret = spec["components"]["schemas"]["NewKey"]["properties"]["secret"]
    assert secret["writeOnly"] is True and "example" not in secret and "examples" not in secret
    assert "secret" not in spec["components"]["schemas"]["KeyOut"]["properties"]
