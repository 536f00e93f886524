"""GET /api/v1/usage/students/{id} and /api/v1/usage/classrooms/{id}: one owner's usage in a time
range, priced, on SQLite and PostgreSQL. The totals are checked against sums made here from the
rows put in the ledger (range edges, other owners and other classrooms included), and a teacher
sees only what was recorded in their own classroom."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from fastapi.testclient import TestClient

from tests.auth.conftest import AuthApp, make_app
from voice_server.auth.tokens import Role
from voice_server.ledger.prices import PriceTable
from voice_server.store.schema import usage_records

T0 = datetime(2026, 3, 10, tzinfo=UTC)
T1 = T0 + timedelta(days=1)
WINDOW = {"start": T0.isoformat(), "end": T1.isoformat()}
PRICES = PriceTable.model_validate(
    {"currency": "EUR", "price": [
        {"provider": "cloud", "model": "*", "kind": "llm_completion_tokens", "minor_units": 3, "per": 1000,
         "rounding": "pro_rata_up"},
        {"provider": "cloud", "model": "*", "kind": "llm_prompt_tokens", "minor_units": 1, "per": 1000,
         "rounding": "pro_rata_up"},
        {"provider": "cloud-tts", "model": "*", "kind": "tts_chars", "minor_units": 2, "per": 100,
         "rounding": "started_block"},
    ]}
)


class Row(NamedTuple):
    student: str | None
    classroom: str | None
    kind: str
    provider: str
    amount: int
    at: datetime
    speculative: bool = False


ROWS = [
    Row("stu_a", "cls_1", "llm_completion_tokens", "cloud", 1500, T0),  # the range's first instant
    Row("stu_a", "cls_1", "llm_prompt_tokens", "cloud", 4000, T0 + timedelta(hours=1)),
    Row("stu_a", "cls_1", "llm_completion_tokens", "cloud", 700, T0 + timedelta(hours=2), speculative=True),
    Row("stu_a", "cls_2", "llm_completion_tokens", "cloud", 300, T0 + timedelta(hours=3)),  # another class
    Row("stu_b", "cls_1", "tts_chars", "cloud-tts", 120, T0 + timedelta(hours=4)),
    Row("stu_a", None, "stt_audio_ms", "local", 5000, T0 + timedelta(hours=5)),  # no price: cost unknown
    Row("stu_a", "cls_1", "llm_completion_tokens", "cloud", 999, T1),  # end is exclusive
    Row("stu_a", "cls_1", "llm_completion_tokens", "cloud", 111, T0 - timedelta(microseconds=1)),
    Row("stu_a", "cls_1", "llm_completion_tokens", "cloud", 2222, T0 + timedelta(hours=6)),
]


def _expected(keep: Any) -> dict[tuple[str, str, bool], int]:
    """What the ledger holds for the owner in [T0, T1), summed here, not by the server."""
    sums: dict[tuple[str, str, bool], int] = {}
    for row in ROWS:
        if T0 <= row.at < T1 and keep(row):
            key = (row.kind, row.provider, row.speculative)
            sums[key] = sums.get(key, 0) + row.amount
    return sums


def _got(body: dict[str, Any]) -> dict[tuple[str, str, bool], int]:
    return {(line["kind"], line["provider"], line["speculative"]): line["units"] for line in body["usage"]}


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[AuthApp]:
    app = make_app(tmp_path / "data", database_url=database_url)
    app.state.prices = PRICES
    with TestClient(app, base_url="http://127.0.0.1:8765") as http:
        engine = app.state.database

        async def put_rows() -> None:
            async with engine.begin() as connection:
                await connection.execute(
                    usage_records.insert(),
                    [
                        {"session_id": f"sess_{i}", "turn_id": "t1", "attempt": 0, "kind": r.kind,
                         "provider": r.provider, "model": "m1", "amount": r.amount,
                         "speculative": r.speculative,
                         "student_id": r.student, "classroom_id": r.classroom, "key_id": None,
                         "recorded_at": r.at, "updated_at": r.at}
                        for i, r in enumerate(ROWS)
                    ],
                )

        http.portal.call(put_rows)
        yield AuthApp(app, http)


def _get(api: AuthApp, path: str, role: Role = Role.ADMIN, classroom: str | None = None, **params: str):
    headers = api.bearer(role, classroom=classroom)
    return api.http.get(path, params=WINDOW | params, headers=headers)


def test_a_classrooms_usage_is_exactly_its_rows_in_the_range_with_their_cost(api: AuthApp):
    for role, classroom in ((Role.ADMIN, None), (Role.TEACHER, "cls_1")):
        response = _get(api, "/api/v1/usage/classrooms/cls_1", role, classroom)
        assert response.status_code == 200, response.text
        body = response.json()
        assert (body["scope"], body["owner_id"], body["classroom_id"]) == ("classroom", "cls_1", "cls_1")
        assert _got(body) == _expected(lambda r: r.classroom == "cls_1")
        cost = {(line["kind"], line["speculative"]): line["cost_minor_units"] for line in body["usage"]}
        # 3,722 answer tokens at 3 cents per 1K (12), 700 thrown away (3), 4,000 prompt tokens at
        # 1 cent per 1K (4), 120 characters at 2 cents per started 100 (4).
        assert cost == {
            ("llm_completion_tokens", False): 12, ("llm_completion_tokens", True): 3,
            ("llm_prompt_tokens", False): 4, ("tts_chars", False): 4,
        }
        assert body["cost"] == {"currency": "EUR", "total_minor_units": 23, "complete": True}


def test_a_students_usage_is_every_classroom_for_an_admin_and_the_teachers_own_for_a_teacher(api: AuthApp):
    everywhere = _get(api, "/api/v1/usage/students/stu_a").json()
    assert everywhere["classroom_id"] is None
    assert _got(everywhere) == _expected(lambda r: r.student == "stu_a")
    # 4,022 answer tokens (13), 700 thrown away (3), prompt (4); 5 s of local speech has no price.
    assert everywhere["cost"] == {"currency": "EUR", "total_minor_units": 20, "complete": False}

    in_one = _get(api, "/api/v1/usage/students/stu_a", classroom_id="cls_2").json()
    assert _got(in_one) == _expected(lambda r: r.student == "stu_a" and r.classroom == "cls_2") != {}

    for classroom in ("cls_1", "cls_2"):
        seen = _get(api, "/api/v1/usage/students/stu_a", Role.TEACHER, classroom)
        assert seen.status_code == 200, seen.text
        assert seen.json()["classroom_id"] == classroom
        mine = _expected(lambda r, c=classroom: r.student == "stu_a" and r.classroom == c)
        assert _got(seen.json()) == mine
    in_cls_2 = _get(api, "/api/v1/usage/students/stu_a", Role.TEACHER, "cls_2").json()
    assert in_cls_2["cost"]["total_minor_units"] == 1  # 300 answer tokens at 3 cents per 1K, rounded up


def test_nobody_else_reads_a_classroom_and_an_unknown_owner_has_used_nothing(api: AuthApp):
    refused = [
        _get(api, "/api/v1/usage/classrooms/cls_2", Role.TEACHER, "cls_1"),
        _get(api, "/api/v1/usage/students/stu_a", Role.TEACHER, "cls_1", classroom_id="cls_2"),
        _get(api, "/api/v1/usage/classrooms/cls_1", Role.TEACHER),  # a token naming no classroom
        _get(api, "/api/v1/usage/classrooms/cls_1", Role.STUDENT, "cls_1"),
        _get(api, "/api/v1/usage/students/stu_a", Role.STUDENT, "cls_1"),
    ]
    for response in refused:
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    nobody = _get(api, "/api/v1/usage/students/stu_nobody").json()
    assert nobody["usage"] == []
    assert nobody["cost"] == {"currency": "EUR", "total_minor_units": 0, "complete": True}


def test_a_bad_range_is_refused(api: AuthApp):
    backwards = {"start": WINDOW["end"], "end": WINDOW["start"]}
    response = api.http.get(
        "/api/v1/usage/classrooms/cls_1", params=backwards, headers=api.bearer(Role.ADMIN)
    )
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_range"
    too_long = {"start": "2025-01-01T00:00:00Z", "end": "2026-03-01T00:00:00Z"}
    response = api.http.get("/api/v1/usage/students/stu_a", params=too_long, headers=api.bearer(Role.ADMIN))
    assert response.status_code == 400


def test_the_served_openapi_documents_the_owner_routes_and_their_security(api: AuthApp):
    paths = api.http.get("/openapi.json").json()["paths"]
    for path in ("/api/v1/usage/students/{student_id}", "/api/v1/usage/classrooms/{classroom_id}"):
        operation = paths[path]["get"]
        assert operation["security"] == [{"bearerAuth": []}]
        assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "/OwnerUsage"
        )
        assert {"400", "403"} <= set(operation["responses"])
        assert {p["name"] for p in operation["parameters"]} >= {"start", "end"}
