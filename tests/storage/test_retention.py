"""Retention and deletion (issue 13), on SQLite and PostgreSQL.

What was said is kept for its classroom's period and then purged, by a job that runs at start and
then on an interval and survives a failed run; the usage ledger and the audit log are never purged.
A student's or a classroom's data is deleted on request, by whom the role matrix allows, and the
deletion leaves exactly one audit entry; after it no row of any table names the student except
that audit entry (their usage rows stay for billing, the student id replaced by 'deleted')."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.routing import Mount, NoMatchFound

from tests.auth.conftest import AuthApp, make_app
from voice_server.auth.tokens import Claims, Role
from voice_server.classrooms import audit, data_routes
from voice_server.classrooms.retention import RetentionJob, purge_expired
from voice_server.store import migrate
from voice_server.store.schema import (
    classroom_sessions,
    classroom_students,
    classrooms,
    guidance_notes,
    metadata,
    transcript_lines,
    usage_records,
)

# Ages are counted back from now: the app's own retention job purges at start, by the real clock.
NOW = datetime.now(UTC).replace(microsecond=0)
STUDENT_DATA = "/api/v1/classrooms/{classroom_id}/students/{student_id}/data"
CLASSROOM_DATA = "/api/v1/classrooms/{classroom_id}/data"


def ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


# ---------------------------------------------------------------------------------------- rows


def classroom(cid: str, *, days: int = 30, teacher: str = "tch_a") -> dict[str, Any]:
    return {
        "id": cid, "name": f"Class {cid}", "teacher_id": teacher, "join_code": f"J{cid}"[:16],
        "personas": "[]", "stt_audio_ms": None, "llm_tokens": None, "tts_chars": None,
        "patience_ms": None, "retention_days": days, "created_at": ago(800), "closed_at": None,
    }


def member(student: str, cid: str, nickname: str | None) -> dict[str, Any]:
    return {"student_id": student, "classroom_id": cid, "nickname": nickname, "joined_at": ago(60)}


def session(
    sid: str, cid: str, student: str, *, started: float, ended: float | None
) -> dict[str, Any]:
    return {
        "session_id": sid, "classroom_id": cid, "student_id": student, "persona": "tutor",
        "instance": "server-a", "status": "live" if ended is None else "ended",
        "started_at": ago(started), "ended_at": None if ended is None else ago(ended),
        "end_reason": None if ended is None else "client",
    }


def line(
    sid: str, seq: int, *, days: float, cid: str | None, student: str | None, text: str = "a line"
) -> dict[str, Any]:
    return {
        "session_id": sid, "seq": seq, "turn_id": f"turn_{seq}", "classroom_id": cid,
        "student_id": student, "speaker": "student" if seq % 2 else "tutor", "text": text,
        "interrupted": False, "said_at": ago(days),
    }


def note(
    nid: str, sid: str, cid: str, student: str, *, days: float, text: str = "go slowly"
) -> dict[str, Any]:
    return {
        "id": nid, "session_id": sid, "classroom_id": cid, "student_id": student,
        "teacher_id": "tch_a", "text": text, "created_at": ago(days),
    }


def usage(
    sid: str, kind: str, amount: int, *, cid: str | None, student: str | None, days: float
) -> dict[str, Any]:
    return {
        "session_id": sid, "turn_id": "turn_1", "attempt": 1, "kind": kind, "provider": "fake",
        "model": "m", "amount": amount, "speculative": False, "student_id": student,
        "classroom_id": cid, "key_id": None, "recorded_at": ago(days), "updated_at": ago(days),
    }


async def put(engine: AsyncEngine, rows: dict[Any, list[dict[str, Any]]]) -> None:
    async with engine.begin() as connection:
        for table, values in rows.items():
            if values:
                await connection.execute(insert(table), values)


async def dump(engine: AsyncEngine) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table the app has."""
    async with engine.connect() as connection:
        return {
            table.name: [dict(r) for r in (await connection.execute(select(table))).mappings()]
            for table in metadata.sorted_tables
        }


def keys(rows: list[dict[str, Any]], *columns: str) -> set[tuple[Any, ...]]:
    return {tuple(r[c] for c in columns) for r in rows}


# ------------------------------------------------------------------------------- the purge


async def test_records_older_than_their_classrooms_window_are_purged_and_newer_ones_kept(engine: AsyncEngine):
    await migrate.ensure_schema(engine)
    await put(engine, {
        classrooms: [classroom("cls_week", days=7), classroom("cls_month"), classroom("cls_year", days=365)],
        transcript_lines: [
            line("s_w", 1, days=8, cid="cls_week", student="stu_w"),  # purged: past 7 days
            line("s_w", 2, days=6, cid="cls_week", student="stu_w"),
            line("s_m", 1, days=8, cid="cls_month", student="stu_m"),  # 8 days is within 30
            line("s_m", 2, days=31, cid="cls_month", student="stu_m"),  # purged
            line("s_y", 1, days=31, cid="cls_year", student="stu_y"),  # 31 days is within 365
            line("s_y", 2, days=366, cid="cls_year", student="stu_y"),  # purged
            # No classroom, or one that is gone: the default period (30 days).
            line("s_none", 1, days=31, cid=None, student=None),  # purged
            line("s_none", 2, days=29, cid=None, student=None),
            line("s_gone", 1, days=31, cid="cls_gone", student="stu_g"),  # purged
            line("s_gone", 2, days=29, cid="cls_gone", student="stu_g"),
        ],
        guidance_notes: [
            note("n_w_old", "s_w", "cls_week", "stu_w", days=8),  # purged
            note("n_w_new", "s_w", "cls_week", "stu_w", days=6),
            note("n_m_old", "s_m", "cls_month", "stu_m", days=31),  # purged
            note("n_m_new", "s_m", "cls_month", "stu_m", days=8),
            note("n_gone", "s_gone", "cls_gone", "stu_g", days=31),  # purged
        ],
        classroom_sessions: [
            session("s_w_old", "cls_week", "stu_w", started=9, ended=8),  # purged
            session("s_w", "cls_week", "stu_w", started=7, ended=6),  # started before, ended within
            session("s_m", "cls_month", "stu_m", started=9, ended=8),
            session("s_m_old", "cls_month", "stu_m", started=32, ended=31),  # purged
            session("s_m_live", "cls_month", "stu_m", started=40, ended=None),  # not ended: kept
            session("s_gone", "cls_gone", "stu_g", started=32, ended=31),  # purged
        ],
        # Billing and the record of actions are never purged, however old.
        usage_records: [
            usage("s_m_old", "llm_completion_tokens", 40, cid="cls_month", student="stu_m", days=400)
        ],
    })
    admin = Claims("adm_1", Role.ADMIN, None, NOW + timedelta(hours=1), "jti_1")
    await audit.record(engine, admin, "classroom.closed", classroom_id="cls_week", at=ago(400))

    counts = await purge_expired(engine, now=NOW)

    assert counts == {"transcript_lines": 5, "guidance_notes": 3, "classroom_sessions": 3}
    left = await dump(engine)
    assert keys(left["transcript_lines"], "session_id", "seq") == {
        ("s_w", 2), ("s_m", 1), ("s_y", 1), ("s_none", 2), ("s_gone", 2)
    }
    assert keys(left["guidance_notes"], "id") == {("n_w_new",), ("n_m_new",)}
    assert keys(left["classroom_sessions"], "session_id") == {("s_w",), ("s_m",), ("s_m_live",)}
    assert len(left["usage_records"]) == 1 and len(left["audit_log"]) == 1
    assert len(left["classrooms"]) == 3  # classrooms themselves are not purged

    # Nothing more to do at the same moment; a shorter default catches the lines of no classroom.
    assert await purge_expired(engine, now=NOW) == dict.fromkeys(counts, 0)
    assert await purge_expired(engine, now=NOW, default_days=10) == {
        "transcript_lines": 2, "guidance_notes": 0, "classroom_sessions": 0
    }


async def until(condition: Callable[[], bool], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "the job did not get there"
        await asyncio.sleep(0.01)


async def test_the_retention_job_purges_at_start_then_every_interval_and_retries_after_a_failed_run(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="voice_server.classrooms.retention")
    clock = [NOW]
    job = RetentionJob(engine, interval_s=0.05, clock=lambda: clock[0])
    words = "my address is 12 Example Street"
    try:
        await job.start()
        # The database has no tables yet: the run at start fails, is logged, and the job goes on.
        await until(lambda: job.runs >= 1)
        assert job.last is None
        assert "retention purge failed" in caplog.text

        await migrate.ensure_schema(engine)
        await put(engine, {
            classrooms: [classroom("cls_week", days=7)],
            transcript_lines: [line("s_1", 1, days=6, cid="cls_week", student="stu_1", text=words)],
        })
        await until(lambda: job.last is not None)
        assert job.last == {"transcript_lines": 0, "guidance_notes": 0, "classroom_sessions": 0}

        clock[0] = NOW + timedelta(days=2)  # the line is now 8 days old
        await until(lambda: bool(job.last and job.last["transcript_lines"]))
        assert job.last == {"transcript_lines": 1, "guidance_notes": 0, "classroom_sessions": 0}
    finally:
        await job.aclose()
    assert (await dump(engine))["transcript_lines"] == []
    runs = job.runs
    await asyncio.sleep(0.2)
    assert job.runs == runs  # stopped
    assert "transcript_lines=1" in caplog.text  # counts are logged...
    assert words not in caplog.text and "Example" not in caplog.text  # ...never content


# ------------------------------------------------------------------------- deletion on request


def world() -> dict[Any, list[dict[str, Any]]]:
    """Two classrooms: cls_a (teacher tch_a) with stu_1 'Ada' and stu_2 'Bo', cls_b (tch_b) with stu_3."""
    return {
        classrooms: [classroom("cls_a", teacher="tch_a"), classroom("cls_b", teacher="tch_b")],
        classroom_students: [
            member("stu_1", "cls_a", "Ada"), member("stu_2", "cls_a", "Bo"), member("stu_3", "cls_b", None),
        ],
        classroom_sessions: [
            session("s_1a", "cls_a", "stu_1", started=3, ended=2),
            session("s_1b", "cls_a", "stu_1", started=1, ended=None),
            session("s_2", "cls_a", "stu_2", started=1, ended=1),
            session("s_3", "cls_b", "stu_3", started=1, ended=1),
        ],
        transcript_lines: [
            line("s_1a", 1, days=2, cid="cls_a", student="stu_1", text="Ada's first question"),
            line("s_1a", 2, days=2, cid="cls_a", student="stu_1", text="the answer Ada heard"),
            # A line stored without the student's id is still theirs: it is of their session.
            line("s_1b", 1, days=1, cid="cls_a", student=None, text="Ada again"),
            line("s_2", 1, days=1, cid="cls_a", student="stu_2", text="Bo's question"),
            line("s_3", 1, days=1, cid="cls_b", student="stu_3", text="a question in class b"),
        ],
        guidance_notes: [
            note("note_1", "s_1a", "cls_a", "stu_1", days=2, text="Ada is on fractions"),
            note("note_2", "s_2", "cls_a", "stu_2", days=1),
            note("note_3", "s_3", "cls_b", "stu_3", days=1),
        ],
        usage_records: [
            usage("s_1a", "stt_audio_ms", 3000, cid="cls_a", student="stu_1", days=2),
            usage("s_1a", "llm_completion_tokens", 50, cid="cls_a", student="stu_1", days=2),
            usage("s_1b", "tts_chars", 80, cid="cls_a", student="stu_1", days=1),
            usage("s_2", "tts_chars", 60, cid="cls_a", student="stu_2", days=1),
            usage("s_3", "tts_chars", 70, cid="cls_b", student="stu_3", days=1),
        ],
    }


# Their id, their nickname (also in their lines and notes) and their note's id. (Usage rows keep
# their opaque session ids; the sessions those name are deleted.)
STU_1_TRACES = ("stu_1", "Ada", "note_1")


def mentions(rows: dict[str, list[dict[str, Any]]], *needles: str) -> list[tuple[str, dict[str, Any]]]:
    """Rows, outside the audit log, with a value that contains one of `needles`."""
    return [
        (table, row)
        for table, table_rows in rows.items()
        if table != "audit_log"
        for row in table_rows
        if any(isinstance(v, str) and any(n in v for n in needles) for v in row.values())
    ]


def usage_totals(rows: dict[str, list[dict[str, Any]]]) -> dict[str | None, int]:
    totals: dict[str | None, int] = {}
    for r in rows["usage_records"]:
        totals[r["classroom_id"]] = totals.get(r["classroom_id"], 0) + r["amount"]
    return totals


class Api(AuthApp):
    def delete(self, path: str, role: Role | None, subject: str | None = None, **ids: str) -> Any:
        headers = {} if role is None else self.bearer(role, subject=subject)
        return self.http.delete(path.format(**ids), headers=headers)

    def rows(self) -> dict[str, list[dict[str, Any]]]:
        return self.http.portal.call(dump, self.app.state.database)  # type: ignore[union-attr]

    def audit(self) -> list[audit.AuditEntry]:
        return self.http.portal.call(lambda: audit.read(self.app.state.database))  # type: ignore[union-attr]


@pytest.fixture
def api(database_url: str, tmp_path: Path) -> Iterator[Api]:
    app = make_app(tmp_path / "data", database_url=database_url)
    try:
        app.url_path_for("delete_student_data", classroom_id="c", student_id="s")
    except NoMatchFound:
        # Until app.py includes the router: ahead of the web client's files, mounted at "/".
        app.include_router(data_routes.router)
        static = next(r for r in app.router.routes if isinstance(r, Mount) and r.path == "")
        app.router.routes.remove(static)
        app.router.routes.append(static)
    with TestClient(app, base_url="http://127.0.0.1:8765") as http:
        http.portal.call(put, app.state.database, world())  # type: ignore[union-attr]
        yield Api(app, http)


def test_deleting_a_students_data_removes_every_row_of_theirs_and_leaves_one_audit_entry(api: Api):
    before = api.rows()
    assert len(mentions(before, *STU_1_TRACES)) == 10  # in every table that holds a student's data

    response = api.delete(STUDENT_DATA, Role.TEACHER, "tch_a", classroom_id="cls_a", student_id="stu_1")

    assert response.status_code == 200, response.text
    counts = response.json()
    assert counts == {
        "deleted": {
            "transcript_lines": 3, "guidance_notes": 1, "classroom_sessions": 2, "classroom_students": 1
        },
        "anonymised": {"usage_records": 3},
    }
    after = api.rows()
    # Their tokens were revoked first, so nothing more of theirs is written: that record (an
    # opaque id and a time, gone once every token it refuses would have expired) is all that
    # names them. No other row names the student, their nickname, their sessions or their notes...
    revoked = after.pop("subject_revocations")
    assert [r["subject"] for r in revoked] == ["stu_1"]
    assert mentions(after, *STU_1_TRACES) == []
    left = {r["session_id"] for r in after["transcript_lines"] + after["classroom_sessions"]}
    assert not {"s_1a", "s_1b"} & left
    # ...while everything of the others is untouched.
    for table in ("transcript_lines", "guidance_notes", "classroom_sessions", "classroom_students"):
        others = [r for r in before[table] if not mentions({table: [r]}, *STU_1_TRACES)]
        assert sorted(map(repr, after[table])) == sorted(map(repr, others)), table
    # The usage ledger keeps every row, so the bill adds up, but no longer says whose they were.
    assert usage_totals(after) == usage_totals(before)
    assert sorted(r["student_id"] for r in after["usage_records"]) == ["deleted"] * 3 + ["stu_2", "stu_3"]

    [entry] = api.audit()
    assert (entry.action, entry.actor_id, entry.actor_role) == ("student.data_deleted", "tch_a", "teacher")
    assert (entry.classroom_id, entry.target_id, entry.session_id) == ("cls_a", "stu_1", None)
    assert entry.detail == counts  # how much, never what
    # Asked again: nothing of that student is left in the classroom, and nothing more is audited.
    again = api.delete(STUDENT_DATA, Role.ADMIN, classroom_id="cls_a", student_id="stu_1")
    assert again.status_code == 404 and again.json()["error"]["code"] == "student_not_found"
    assert len(api.audit()) == 1


def test_deleting_a_classrooms_data_removes_all_of_it_and_nobody_can_join_it_again(api: Api):
    before = api.rows()
    response = api.delete(CLASSROOM_DATA, Role.ADMIN, "adm_1", classroom_id="cls_a")

    assert response.status_code == 200, response.text
    assert response.json() == {
        "deleted": {
            "transcript_lines": 4, "guidance_notes": 2, "classroom_sessions": 3, "classroom_students": 2
        },
        "anonymised": {"usage_records": 4},
    }
    after = api.rows()
    assert mentions(after, *STU_1_TRACES, "stu_2", "Bo", "note_2") == []
    for table in ("transcript_lines", "guidance_notes", "classroom_sessions", "classroom_students"):
        assert {r["classroom_id"] for r in after[table]} == {"cls_b"}, table
        assert len(after[table]) == len([r for r in before[table] if r["classroom_id"] == "cls_b"]), table
    assert usage_totals(after) == usage_totals(before)  # the classroom's usage still adds up
    assert {r["student_id"] for r in after["usage_records"] if r["classroom_id"] == "cls_a"} == {"deleted"}
    # The classroom stays, closed, and its join code is gone.
    kept = {r["id"]: r for r in after["classrooms"]}
    assert kept["cls_a"]["closed_at"] is not None and kept["cls_a"]["name"] == "Class cls_a"
    assert kept["cls_a"]["join_code"] != "Jcls_a"
    assert kept["cls_b"] == next(r for r in before["classrooms"] if r["id"] == "cls_b")

    [entry] = api.audit()
    assert (entry.action, entry.actor_id, entry.actor_role) == ("classroom.data_deleted", "adm_1", "admin")
    assert entry.classroom_id == "cls_a" and entry.detail == response.json()


def test_who_may_delete_data_its_own_teacher_or_an_admin_for_a_student_only_an_admin_for_a_classroom(
    api: Api,
):
    def refused(status: int, code: str, path: str, role: Role | None, subject: str | None = None, **ids: str):
        response = api.delete(path, role, subject, **ids)
        assert response.status_code == status, (path, role, subject, ids, response.text)
        assert response.json()["error"]["code"] == code
        assert set(response.json()["error"]) == {"code", "message"}

    before = api.rows()
    student = {"classroom_id": "cls_a", "student_id": "stu_1"}
    refused(401, "unauthenticated", STUDENT_DATA, None, **student)
    refused(403, "forbidden", STUDENT_DATA, Role.STUDENT, "stu_1", **student)  # not even their own
    refused(403, "forbidden", STUDENT_DATA, Role.TEACHER, "tch_b", **student)  # another classroom's
    unknown = {"classroom_id": "cls_x", "student_id": "stu_1"}
    refused(404, "classroom_not_found", STUDENT_DATA, Role.TEACHER, "tch_a", **unknown)
    # stu_3 is cls_b's: its teacher cannot reach them through their own classroom.
    elsewhere = {"classroom_id": "cls_a", "student_id": "stu_3"}
    refused(404, "student_not_found", STUDENT_DATA, Role.TEACHER, "tch_a", **elsewhere)
    refused(401, "unauthenticated", CLASSROOM_DATA, None, classroom_id="cls_a")
    refused(403, "forbidden", CLASSROOM_DATA, Role.STUDENT, "stu_1", classroom_id="cls_a")
    refused(403, "forbidden", CLASSROOM_DATA, Role.TEACHER, "tch_a", classroom_id="cls_a")  # even its own
    refused(404, "classroom_not_found", CLASSROOM_DATA, Role.ADMIN, "adm_1", classroom_id="cls_x")
    assert api.rows() == before and not api.audit()  # nothing deleted, nothing audited

    teacher = api.delete(STUDENT_DATA, Role.TEACHER, "tch_b", classroom_id="cls_b", student_id="stu_3")
    admin = api.delete(STUDENT_DATA, Role.ADMIN, "adm_1", **student)
    classroom_ = api.delete(CLASSROOM_DATA, Role.ADMIN, "adm_1", classroom_id="cls_b")
    assert [teacher.status_code, admin.status_code, classroom_.status_code] == [200, 200, 200]
    assert [r.json()["deleted"]["classroom_students"] for r in (teacher, admin)] == [1, 1]
    assert [(e.action, e.actor_id, e.target_id) for e in api.audit()] == [
        ("student.data_deleted", "tch_b", "stu_3"),
        ("student.data_deleted", "adm_1", "stu_1"),
        ("classroom.data_deleted", "adm_1", "cls_b"),
    ]

    # Both routes are in the served OpenAPI, with their answer and refusals.
    paths = api.app.openapi()["paths"]
    for path in (STUDENT_DATA, CLASSROOM_DATA):
        responses = paths[path]["delete"]["responses"]
        assert {"200", "401", "403", "404"} <= set(responses), path
        schema = responses["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": "#/components/schemas/DataDeleted"}
