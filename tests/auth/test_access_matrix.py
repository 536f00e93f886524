"""Who may call what: every endpoint and the WebSocket × every role × a missing, expired, forged
or otherwise bad token. Only the allowed cells get through; the others get 401 (who are you?) or
403 (not for your role), in the server's usual error shape.

Classroom cells: student and teacher tokens name a classroom (OWN); usage and caps of another
classroom (OTHER) are for admins only, and a teacher whose token names no classroom reads none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from starlette.websockets import WebSocketDisconnect

from tests.auth.conftest import OTHER_SECRET, SECRET, AuthApp
from voice_server.auth.tokens import AUDIENCE, Role, TokenIssuer

STUDENT, TEACHER, ADMIN = Role.STUDENT, Role.TEACHER, Role.ADMIN
EVERYONE = frozenset(Role)
ADMINS, TEACHERS = frozenset({ADMIN}), frozenset({TEACHER, ADMIN})
# The classroom every student and teacher token of the matrix names, and another one.
OWN, OTHER = "cls_own", "cls_other"
RANGE = "start=2026-01-01T00:00:00&end=2026-01-02T00:00:00"
CLASSROOMS, STUDENTS = "/api/v1/usage/classrooms", "/api/v1/usage/students"
ROOMS = "/api/v1/classrooms"
OWNER_CAPS, STUDENT_USAGE = "/api/v1/caps/{scope}/{owner_id}", f"{STUDENTS}/{{student_id}}"


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    allowed: frozenset[Role]
    body: object = None
    route: str = ""  # the route's template, where the path fills it in

    @property
    def template(self) -> str:
        return self.route or self.path.split("?")[0]

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


# Every HTTP route that is not public. A route added without an entry here fails
# test_every_route_is_in_the_matrix_or_public.
ENDPOINTS = [
    Endpoint("GET", "/v1/personas", EVERYONE),
    # Allowed means the offer is looked at: this one is then refused as bad SDP (400).
    Endpoint("POST", "/v1/webrtc/offer", EVERYONE, {"type": "offer", "sdp": "not sdp"}),
    Endpoint("POST", "/v1/auth/ws-ticket", EVERYONE),
    Endpoint("POST", "/v1/auth/signin-links", frozenset({TEACHER, ADMIN})),
    Endpoint("GET", "/metrics", frozenset({ADMIN})),
    Endpoint("GET", "/api/v1/usage?start=2026-01-01T00:00:00&end=2026-01-02T00:00:00", frozenset({ADMIN})),
    Endpoint(
        "GET", "/api/v1/usage/sessions/sess_x", frozenset({ADMIN}),
        route="/api/v1/usage/sessions/{session_id}",
    ),
    Endpoint("POST", "/v1/auth/sign-out", EVERYONE),
    Endpoint(
        "POST", "/api/v1/subjects/stu_someone/revoke", frozenset({ADMIN}),
        route="/api/v1/subjects/{subject_id}/revoke",
    ),
    Endpoint(
        "POST", "/api/v1/keys", frozenset({ADMIN}),
        {"provider": "azure-speech", "label": "matrix", "secret": "matrix-test-key-0123456789"},
    ),
    Endpoint("GET", "/api/v1/keys", frozenset({ADMIN})),
    # Allowed means the key is looked for: there is none (404).
    Endpoint(
        "PUT", "/api/v1/keys/key_x/secret", frozenset({ADMIN}), {"secret": "matrix-test-key-0123456789"},
        route="/api/v1/keys/{key_id}/secret",
    ),
    Endpoint("DELETE", "/api/v1/keys/key_x", frozenset({ADMIN}), route="/api/v1/keys/{key_id}"),
    # Usage per classroom and student, and caps: admins everywhere; a teacher only in the classroom
    # their token names (every teacher and student token of the matrix names OWN).
    Endpoint("GET", f"{CLASSROOMS}/{OWN}?{RANGE}", TEACHERS, route=f"{CLASSROOMS}/{{classroom_id}}"),
    Endpoint("GET", f"{CLASSROOMS}/{OTHER}?{RANGE}", ADMINS, route=f"{CLASSROOMS}/{{classroom_id}}"),
    # A teacher reads a student's usage as recorded in their own classroom, named or not.
    Endpoint("GET", f"{STUDENTS}/stu_x?{RANGE}", TEACHERS, route=STUDENT_USAGE),
    Endpoint("GET", f"{STUDENTS}/stu_x?{RANGE}&classroom_id={OWN}", TEACHERS, route=STUDENT_USAGE),
    Endpoint("GET", f"{STUDENTS}/stu_x?{RANGE}&classroom_id={OTHER}", ADMINS, route=STUDENT_USAGE),
    Endpoint("GET", "/api/v1/caps", ADMINS),
    Endpoint("PUT", "/api/v1/caps/session", ADMINS, {"llm_tokens": 1000}),
    # Allowed means a stored cap is looked for: there is none (404).
    Endpoint("DELETE", "/api/v1/caps/session", ADMINS),
    Endpoint("PUT", "/api/v1/caps/classroom", ADMINS, {"llm_tokens": 1000}, route="/api/v1/caps/{scope}"),
    Endpoint("DELETE", "/api/v1/caps/classroom", ADMINS, route="/api/v1/caps/{scope}"),
    Endpoint("GET", f"/api/v1/caps/classroom/{OWN}", TEACHERS, route=OWNER_CAPS),
    Endpoint("GET", f"/api/v1/caps/classroom/{OTHER}", ADMINS, route=OWNER_CAPS),
    Endpoint("GET", "/api/v1/caps/student/stu_x", ADMINS, route=OWNER_CAPS),
    # Reading their classroom's caps is not setting them: that is for the admin (who pays).
    Endpoint("PUT", f"/api/v1/caps/classroom/{OWN}", ADMINS, {"llm_tokens": 1000}, route=OWNER_CAPS),
    Endpoint("DELETE", f"/api/v1/caps/classroom/{OWN}", ADMINS, route=OWNER_CAPS),
    # Classrooms: a teacher acts on the classrooms they created (OWN, in the database), never on
    # another teacher's (OTHER); students only join (public, with the code). Commands name a
    # live session of the classroom; they are carried out wherever it runs.
    Endpoint("POST", "/api/v1/classrooms", TEACHERS, {"name": "matrix"}),
    Endpoint("GET", "/api/v1/classrooms", TEACHERS),
    *(
        Endpoint(method, f"{ROOMS}/{room}{tail}", allowed, body, route=f"{ROOMS}/{{classroom_id}}{route_tail}")
        for room, allowed, session in ((OWN, TEACHERS, "sess_own"), (OTHER, ADMINS, "sess_other"))
        for method, tail, route_tail, body in (
            ("GET", "", "", None),
            ("GET", "/sessions", "/sessions", None),
            ("GET", "/events", "/events", None),
            ("POST", f"/sessions/{session}/pause", "/sessions/{session_id}/pause", None),
            ("POST", f"/sessions/{session}/resume", "/sessions/{session_id}/resume", None),
            ("POST", f"/sessions/{session}/guidance", "/sessions/{session_id}/guidance", {"text": "slow down"}),
            ("PUT", f"/sessions/{session}/caps", "/sessions/{session_id}/caps", {"llm_tokens": 500}),
            ("POST", f"/sessions/{session}/end", "/sessions/{session_id}/end", None),
            ("POST", "/close", "/close", None),
        )
    ),
    Endpoint("GET", "/api/v1/audit", ADMINS),
    # Deletion on request: a student's data by their classroom's teacher, a whole classroom's by admins.
    Endpoint("DELETE", f"{ROOMS}/{OWN}/students/stu_x/data", TEACHERS,
             route=f"{ROOMS}/{{classroom_id}}/students/{{student_id}}/data"),
    Endpoint("DELETE", f"{ROOMS}/{OTHER}/students/stu_x/data", ADMINS,
             route=f"{ROOMS}/{{classroom_id}}/students/{{student_id}}/data"),
    Endpoint("DELETE", f"{ROOMS}/{OWN}/data", ADMINS, route=f"{ROOMS}/{{classroom_id}}/data"),
]
PUBLIC = {"/healthz", "/readyz", "/v1/protocol.json", "/openapi.json", "/docs", "/docs/oauth2-redirect",
          "/redoc", "/v1/auth/sign-in", "/v1/auth/redeem", "/v1/auth/join", "/privacy"}


def _payload(**overrides: object) -> dict[str, object]:
    now = datetime.now(UTC)
    return {"aud": AUDIENCE, "sub": "stu_x", "role": "admin", "iat": now,
            "exp": now + timedelta(minutes=5), "jti": "j1"} | overrides


# A bad credential, and the header that carries it (None: no header at all).
BAD_CREDENTIALS: dict[str, str | None] = {
    "missing": None,
    "expired": f"Bearer {TokenIssuer(SECRET, ttl_s=60).mint(ADMIN, 'adm_x', ttl_s=-1)}",
    "forged (another secret)": f"Bearer {TokenIssuer(OTHER_SECRET, ttl_s=60).mint(ADMIN, 'adm_x')}",
    "unsigned (alg none)": "Bearer " + jwt.encode(_payload(), None, algorithm="none"),
    "another audience": "Bearer " + jwt.encode(_payload(aud="other-service"), SECRET, algorithm="HS256"),
    "unknown role": "Bearer " + jwt.encode(_payload(role="superuser"), SECRET, algorithm="HS256"),
    "no expiry": "Bearer " + jwt.encode(
        {k: v for k, v in _payload().items() if k != "exp"}, SECRET, algorithm="HS256"),
    "garbage": "Bearer not.a.token",
    "not bearer": "Basic YWRtaW46YWRtaW4=",
}


def _call(api: AuthApp, endpoint: Endpoint, authorization: str | None):
    headers = {"authorization": authorization} if authorization else {}
    if endpoint.template.endswith("/events"):
        # An event stream does not end; asked for JSON, the route answers with its snapshot alone.
        headers["accept"] = "application/json"
    return api.http.request(endpoint.method, endpoint.path, headers=headers, json=endpoint.body)


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
@pytest.mark.parametrize("role", list(Role), ids=str)
def test_each_role_gets_exactly_the_endpoints_allowed_to_it(
    auth_app: AuthApp, endpoint: Endpoint, role: Role
):
    token = auth_app.token(role, classroom=None if role is ADMIN else OWN)
    response = _call(auth_app, endpoint, f"Bearer {token}")
    if role in endpoint.allowed:
        assert response.status_code not in (401, 403), response.text
    else:
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "forbidden"


CLASSROOM_SCOPED = [
    e for e in ENDPOINTS if e.allowed == TEACHERS and e.template.startswith(("/api/v1/usage", "/api/v1/caps", ROOMS + "/"))
]


@pytest.mark.parametrize("endpoint", CLASSROOM_SCOPED, ids=str)
def test_a_teacher_of_no_classroom_reads_or_changes_no_classroom(auth_app: AuthApp, endpoint: Endpoint):
    # Neither named in their token nor created by them: another teacher's classroom.
    response = _call(auth_app, endpoint, f"Bearer {auth_app.token(TEACHER, subject='tch_of_nothing')}")
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
@pytest.mark.parametrize("credential", BAD_CREDENTIALS, ids=str)
def test_a_bad_or_missing_token_is_refused_everywhere(auth_app: AuthApp, endpoint: Endpoint, credential: str):
    response = _call(auth_app, endpoint, BAD_CREDENTIALS[credential])
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] in {"unauthenticated", "invalid_token"}


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=str)
@pytest.mark.parametrize("how", ["signed out", "subject revoked"])
def test_a_revoked_token_is_refused_everywhere(auth_app: AuthApp, endpoint: Endpoint, how: str):
    # Every endpoint admits an admin, so a refusal here is the revocation's.
    token = auth_app.token(ADMIN, subject="adm_revoked")
    if how == "signed out":
        signed_out = auth_app.http.post("/v1/auth/sign-out", headers={"authorization": f"Bearer {token}"})
        assert signed_out.status_code == 204
    else:
        revoke = auth_app.http.post("/api/v1/subjects/adm_revoked/revoke", headers=auth_app.bearer(ADMIN))
        assert revoke.status_code == 200
    response = _call(auth_app, endpoint, f"Bearer {token}")
    assert response.status_code == 401
    assert response.json()["error"] == {
        "code": "invalid_token", "message": "Sign in again: the token was revoked."
    }


def test_metrics_also_take_the_scrape_token_from_configuration(auth_app: AuthApp):
    from tests.auth.conftest import METRICS_TOKEN

    response = auth_app.http.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    assert response.status_code == 200 and "convergio_" in response.text
    wrong = auth_app.http.get("/metrics", headers={"authorization": f"Bearer {METRICS_TOKEN}x"})
    assert wrong.status_code == 401


def test_public_endpoints_need_no_token(auth_app: AuthApp):
    for path in ("/healthz", "/v1/protocol.json", "/openapi.json", "/", "/app.js", "/style.css"):
        assert auth_app.http.get(path).status_code == 200, path
    assert auth_app.http.get("/readyz").status_code in (200, 503)  # no models here


def test_every_route_is_in_the_matrix_or_public(auth_app: AuthApp):
    # The OpenAPI lists routers' routes too; app.routes adds those kept out of it (/docs ...).
    served = set(auth_app.http.get("/openapi.json").json()["paths"])
    served |= {route.path for route in auth_app.app.routes if getattr(route, "methods", None)}
    assert "/api/v1/usage/sessions/{session_id}" in served
    in_matrix = {endpoint.template for endpoint in ENDPOINTS}
    assert served - in_matrix - PUBLIC == set()


def test_the_openapi_states_a_security_scheme_for_every_route(auth_app: AuthApp):
    spec = auth_app.http.get("/openapi.json").json()
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
        "description": "An access token from POST /v1/auth/sign-in or POST /v1/auth/redeem.",
    }
    protected = {endpoint.template for endpoint in ENDPOINTS}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            expected = [{"bearerAuth": []}] if path in protected else []
            assert operation.get("security") == expected, f"{method.upper()} {path}"


# ------------------------------------------------------------------------------ WebSocket


def _ws_accepts(api: AuthApp, path: str = "/v1/ws", **headers: str) -> bool:
    headers.setdefault("host", "127.0.0.1:8765")  # where a browser would have sent it
    try:
        with api.http.websocket_connect(path, headers=headers) as ws:
            return ws.receive_json()["type"] == "server.hello"
    except WebSocketDisconnect:
        return False


@pytest.mark.parametrize("role", list(Role), ids=str)
def test_every_role_may_open_the_websocket_with_a_bearer_header(auth_app: AuthApp, role: Role):
    assert _ws_accepts(auth_app, authorization=f"Bearer {auth_app.token(role)}")


@pytest.mark.parametrize("credential", BAD_CREDENTIALS, ids=str)
def test_the_websocket_refuses_a_bad_or_missing_token(auth_app: AuthApp, credential: str):
    authorization = BAD_CREDENTIALS[credential]
    assert not _ws_accepts(auth_app, **({"authorization": authorization} if authorization else {}))


def test_the_websocket_refuses_a_revoked_token(auth_app: AuthApp):
    token = auth_app.token(STUDENT, subject="stu_revoked")
    signed_out = auth_app.http.post("/v1/auth/sign-out", headers={"authorization": f"Bearer {token}"})
    assert signed_out.status_code == 204
    assert not _ws_accepts(auth_app, authorization=f"Bearer {token}")


def _ticket(api: AuthApp, role: Role = STUDENT) -> str:
    response = api.http.post("/v1/auth/ws-ticket", headers={"authorization": f"Bearer {api.token(role)}"})
    assert response.status_code == 200
    return response.json()["ticket"]


def test_a_browser_opens_the_websocket_with_a_one_time_ticket_once(auth_app: AuthApp):
    ticket = _ticket(auth_app)
    assert _ws_accepts(auth_app, f"/v1/ws?ticket={ticket}", origin="http://127.0.0.1:8765")
    assert not _ws_accepts(auth_app, f"/v1/ws?ticket={ticket}", origin="http://127.0.0.1:8765")
    assert not _ws_accepts(auth_app, "/v1/ws?ticket=made-up")


def test_a_ticket_from_one_replica_opens_the_websocket_on_another_once(tmp_path):
    """Replicas behind a load balancer: the ticket is signed, not kept in one server's memory,
    and its use is recorded in the database they share."""
    from fastapi.testclient import TestClient

    from tests.auth.conftest import make_app

    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    first, second = make_app(tmp_path / "a", database_url=url), make_app(tmp_path / "b", database_url=url)
    with TestClient(first, base_url="http://127.0.0.1:8765") as http_a, \
            TestClient(second, base_url="http://127.0.0.1:8765") as http_b:
        a, b = AuthApp(first, http_a), AuthApp(second, http_b)
        ticket = _ticket(a)
        assert _ws_accepts(b, f"/v1/ws?ticket={ticket}")
        assert not _ws_accepts(a, f"/v1/ws?ticket={ticket}")  # used: on every replica
        # A ticket is not an access token, and an access token is not a ticket.
        assert not _ws_accepts(a, authorization=f"Bearer {_ticket(a)}")
        assert a.http.get("/v1/personas", headers={"authorization": f"Bearer {_ticket(a)}"}).status_code == 401
        assert not _ws_accepts(b, f"/v1/ws?ticket={a.token(STUDENT)}")


def test_a_ticket_of_a_token_revoked_since_is_refused(auth_app: AuthApp):
    token = auth_app.token(STUDENT, subject="stu_leaving")
    response = auth_app.http.post("/v1/auth/ws-ticket", headers={"authorization": f"Bearer {token}"})
    ticket = response.json()["ticket"]
    auth_app.http.post("/v1/auth/sign-out", headers={"authorization": f"Bearer {token}"})
    assert not _ws_accepts(auth_app, f"/v1/ws?ticket={ticket}")


def test_an_access_token_in_the_websocket_url_is_refused(auth_app: AuthApp):
    # It would land in access logs and browser history; tickets exist for that.
    assert not _ws_accepts(auth_app, f"/v1/ws?token={auth_app.token(STUDENT)}")
    assert not _ws_accepts(auth_app, f"/v1/ws?access_token={auth_app.token(STUDENT)}")


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://evil.example:8765",  # DNS rebinding: a foreign name resolving to this server
        "http://127.0.0.1:9999",  # another port is another origin
        "null",  # a sandboxed frame or a file:// page
    ],
)
def test_a_foreign_origin_is_refused_even_with_a_valid_token(auth_app: AuthApp, origin: str):
    assert not _ws_accepts(auth_app, origin=origin, authorization=f"Bearer {auth_app.token(STUDENT)}")


@pytest.mark.parametrize("origin", ["http://127.0.0.1:8765", "http://localhost:8765"])
def test_the_servers_own_origin_may_open_the_websocket(tmp_path, origin: str):
    from fastapi.testclient import TestClient

    from tests.auth.conftest import make_app

    app = make_app(tmp_path)
    host = origin.removeprefix("http://")
    with TestClient(app, base_url=origin) as http:
        api = AuthApp(app, http)
        assert _ws_accepts(api, origin=origin, host=host, authorization=f"Bearer {api.token(STUDENT)}")


def test_a_configured_origin_may_open_the_websocket(tmp_path):
    from fastapi.testclient import TestClient

    from tests.auth.conftest import make_app

    app = make_app(tmp_path, allowed_origins=["https://tutor.school.example"])
    with TestClient(app, base_url="http://127.0.0.1:8765") as http:
        api = AuthApp(app, http)
        token = f"Bearer {api.token(STUDENT)}"
        assert _ws_accepts(api, origin="https://tutor.school.example", authorization=token)
        assert not _ws_accepts(api, origin="https://other.school.example", authorization=token)
