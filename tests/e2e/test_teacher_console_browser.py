"""The teacher console in a real browser, next to a student's page in the same Chromium: the teacher
signs in, creates a classroom and reads its code; a student joins with it and talks (a real speech
clip over the fake microphone); the console shows the session live (transcript as heard, usage),
the teacher pauses it, sends the tutor a guidance note and ends it, and the student's page says so.
axe-core checks the console in every state; the whole teacher flow is also done from the keyboard
alone; a safety flag raised in the student's session is on the console in under a second.

The console reads the classroom's server-sent events (pushed, never polled), so every wait here is
for the page to change by itself."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from tests.conftest import REPO_ROOT, RunningServer
from tests.e2e.test_web_client_browser import AXE, CHROMIUM, _args, _axe, _phase, spoken_clip  # noqa: F401

pytestmark = pytest.mark.models

PASSWORD = "a console teacher's long password"
# What the safety layer recognises as distress in a child's words (pipelines/safety/rules.py).
DISTRESS = "nobody likes me at school"


@pytest.fixture(scope="module")
def teacher(server: RunningServer) -> str:
    """A teacher account on the test server, made as an admin would (`convergio-voice admin create`)."""
    username = "console.teacher"
    made = subprocess.run(
        [sys.executable, "-m", "voice_server.cli", "admin", "create", username, "--role", "teacher",
         "--password-stdin"],
        input=PASSWORD + "\n", capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
        env={**os.environ, "CONVERGIO_STORAGE__DATA_DIR": str(server.data_dir)},
    )
    assert made.returncode == 0, made.stderr
    return username


@pytest.fixture
async def two_pages(speech_clips, spoken_clip) -> AsyncIterator[tuple]:  # noqa: F811
    """One Chromium (fake microphone playing the clip), a tab for the teacher and one for the student."""
    from playwright.async_api import async_playwright

    assert AXE.is_file(), "axe-core is installed by scripts/test.sh (npm install)"
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=CHROMIUM, args=_args(speech_clips / spoken_clip["file"])
        )
        context = await browser.new_context()
        teacher_page = await context.new_page()
        student_page = await context.new_page()
        yield teacher_page, student_page
        await browser.close()


# ------------------------------------------------------------------------------ helpers


async def _view(page, view: str, timeout_s: float = 15) -> None:
    await page.wait_for_function(f"document.body.dataset.view === '{view}'", timeout=timeout_s * 1000)


async def _announced(page, words: str, timeout_s: float = 15) -> None:
    """The polite live region said `words` (each announcement is kept for the test, too)."""
    await page.wait_for_function(
        "w => window.convergioConsole.announcements.some(a => a.includes(w))", arg=words,
        timeout=timeout_s * 1000,
    )


async def _no_alert(page) -> None:
    assert await page.text_content("#error") == "", await page.text_content("#error")


async def _card_status(page, status: str, timeout_s: float = 15) -> None:
    await page.wait_for_selector(f"article.session[data-status='{status}']", timeout=timeout_s * 1000)


async def _student_status(page, words: str, timeout_s: float = 15) -> None:
    await page.wait_for_function(
        "w => document.getElementById('status').textContent.includes(w)", arg=words, timeout=timeout_s * 1000
    )


async def _create_classroom(page, name: str) -> str:
    """Through the form, with two of the tutors; returns the join code the console shows."""
    await page.fill("#create-name", name)
    await page.uncheck("#persona-language")
    await page.uncheck("#persona-history")
    await page.fill("#create-cap-stt", "600")
    await page.fill("#create-cap-llm", "50000")
    await page.fill("#create-patience", "1.5")
    await page.click("#create-submit")
    await _view(page, "classroom")
    code = (await page.text_content("#join-code .code")).strip()
    assert code
    # How students use it: the student page, and a link that fills the code in.
    home = page.url.split("/teacher.html")[0]
    assert await page.get_attribute("#join-help a", "href") == f"{home}/#join={code}"
    return code


async def _student_joins(page, server: RunningServer, code: str, nickname: str) -> None:
    """The student types the class code and a nickname, and sees only that class's tutors."""
    await page.goto(server.base_url + "/")
    await _phase(page, "signin", 15)
    await page.fill("#class-code", code)
    await page.fill("#nickname", nickname)
    await page.click("#class-join")
    await page.wait_for_selector("#persona option", state="attached")
    await _phase(page, "idle", 10)
    tutors = await page.eval_on_selector_all("#persona option", "options => options.map(o => o.value)")
    assert sorted(tutors) == ["maths", "science"], tutors
    assert "Your class:" in await page.text_content("#classroom-line")


async def _usage_shows(page, pattern: str, timeout_s: float = 90) -> None:
    try:
        await page.wait_for_function(
            "p => new RegExp(p).test(document.querySelector('article.session .usage-list').textContent)",
            arg=pattern, timeout=timeout_s * 1000,
        )
    except Exception:
        shown = await page.text_content("article.session .usage-list")
        caps = await page.evaluate(
            "[...window.convergioConsole.sessions.values()].map(e => e.view.caps)"
        )
        raise AssertionError(f"usage {shown!r} is not {pattern!r}; the session's caps: {caps}") from None


async def _tab_until(page, selector: str, limit: int = 80) -> None:
    for _ in range(limit):
        if await page.evaluate("s => !!document.activeElement?.matches(s)", selector):
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"{selector} cannot be reached with Tab")


# ------------------------------------------------------------------------------ the tests


async def test_a_teacher_watches_a_student_talk_guides_the_tutor_and_ends_the_session(
    server, teacher, two_pages, spoken_clip  # noqa: F811
):
    console, student = two_pages

    # Signed out: the sign-in form, a link to the privacy statement.
    await console.goto(server.base_url + "/teacher.html")
    await _view(console, "signin")
    assert await console.get_attribute("footer a[href='/privacy']", "href") == "/privacy"
    await _axe(console, "signed out")
    await console.fill("#username", teacher)
    await console.fill("#password", PASSWORD)
    await console.click("#signin-submit")
    await _view(console, "list")
    assert await console.evaluate("sessionStorage.getItem('convergio.console.token') !== null")
    assert await console.input_value("#password") == ""
    await _axe(console, "classroom list")

    code = await _create_classroom(console, "Year 5 science")
    await _announced(console, "Classroom Year 5 science created")
    assert "No students are in a session yet" in await console.text_content("#sessions-summary")
    assert await console.get_attribute("#stream-status", "data-state") == "open"
    await _axe(console, "classroom with no sessions")

    # The student joins with the code the console shows, and talks.
    await _student_joins(student, server, code, "Robin")
    await student.click("#start")
    await _phase(student, "listening", 30)
    card = console.locator("article.session", has_text="Robin")
    await card.wait_for(timeout=15_000)
    await _announced(console, "Robin started a session")
    await _card_status(console, "live")

    # The console shows what was heard, the tutor's reply, the turn's latency and the usage, live.
    await console.wait_for_selector("article.session .line.student", timeout=90_000)
    heard = (await console.text_content("article.session .line.student")).lower()
    words = [w.strip(".,!?'") for w in spoken_clip["transcript"].lower().split() if len(w) > 4]
    assert sum(w in heard for w in words) >= len(words) // 2, heard
    await console.wait_for_selector("article.session .line.tutor", timeout=90_000)
    await console.wait_for_selector("article.session .latency-list li", timeout=90_000)
    # Usage against the classroom's own per-session cap (600 s of speech, set when it was made).
    await _usage_shows(console, r"Speech listened to: [0-9.]*[1-9][0-9.]* s of 600\.0 s")
    # None of that is announced: the transcript is there to read, not read out.
    assert not any("Robin:" in a for a in await console.evaluate("window.convergioConsole.announcements"))
    await _axe(console, "a live session")

    # Pause: the student's page says so; resume.
    await card.locator("button.pause").click()
    await _card_status(console, "paused")
    await _announced(console, "Robin's session is paused")
    await _student_status(student, "Your teacher paused the session")
    assert await student.is_disabled("#send")
    await _axe(console, "a paused session")
    await _axe(student, "the student's page, paused by the teacher")
    await card.locator("button.pause").click()
    await _card_status(console, "live")
    await _student_status(student, "Your teacher resumed the session")

    # A one-line guidance note for the tutor: accepted, and the console says so politely.
    await card.locator(".note-form input").fill("They are working on fractions; slow down.")
    await card.locator(".note-form button").click()
    await _announced(console, "Note sent")
    assert "working on fractions" in await card.locator(".notes-sent").text_content()
    assert await card.locator(".note-form input").input_value() == ""
    await _no_alert(console)

    # The teacher ends the session; the student's page says who ended it.
    await card.locator("button", has_text="End session").click()
    await _card_status(console, "ended")
    await _announced(console, "Robin's session ended")
    await _student_status(student, "Your teacher ended the session")
    await _phase(student, "ended", 10)
    assert await student.text_content("[role=alert]") == ""  # not an error
    await _axe(student, "the student's page, ended by the teacher")
    assert await card.locator("button.pause").is_hidden()  # nothing left to control
    await _no_alert(console)
    await _axe(console, "an ended session")


async def test_the_whole_teacher_flow_from_the_keyboard_alone(server, teacher, two_pages):
    console, student = two_pages
    keys = console.keyboard
    await console.goto(server.base_url + "/teacher.html")
    await _view(console, "signin")

    # Sign in: Tab to the fields, type, Enter.
    await _tab_until(console, "#username")
    await keys.type(teacher)
    await _tab_until(console, "#password")
    await keys.type(PASSWORD)
    await keys.press("Enter")
    await _view(console, "list")
    assert await console.evaluate("document.activeElement.id") == "list-heading"  # focus moved on

    # Create a classroom: name, two tutors unticked with Space, a cap, Enter on the button.
    await _tab_until(console, "#create-name")
    await keys.type("Year 6 maths")
    for tutor in ("language", "history"):
        await _tab_until(console, f"#persona-{tutor}")
        await keys.press(" ")
        assert not await console.is_checked(f"#persona-{tutor}")
    await _tab_until(console, "#create-cap-llm")
    await keys.type("50000")
    await _tab_until(console, "#create-submit")
    await keys.press("Enter")
    await _view(console, "classroom")
    assert await console.evaluate("document.activeElement.id") == "classroom-heading"
    code = (await console.text_content("#join-code .code")).strip()

    # A student joins (the student's page is not the subject here) in push-to-talk mode.
    await _student_joins(student, server, code, "Kim")
    await student.check("#mode-push-to-talk")
    await student.click("#start")
    await _phase(student, "listening", 30)
    await console.wait_for_selector("article.session", timeout=15_000)

    # Pause with Space and resume with Enter on the same button.
    await _tab_until(console, "article.session button.pause")
    await keys.press(" ")
    await _card_status(console, "paused")
    await _student_status(student, "Your teacher paused the session")
    await keys.press("Enter")
    await _card_status(console, "live")
    await _student_status(student, "Your teacher resumed the session")

    # A guidance note: type it, Enter.
    await _tab_until(console, "article.session .note-form input")
    await keys.type("Kim finds word problems hard; one step at a time.")
    await keys.press("Enter")
    await _announced(console, "Note sent")

    # A new cap for this session: Tab selects the old value, typing replaces it.
    await _tab_until(console, "article.session .caps-form input[id$='cap-llm_tokens']")
    await keys.type("8000")
    await _tab_until(console, "article.session .caps-form button")
    await keys.press("Enter")
    await _announced(console, "New limits saved")
    await _usage_shows(console, "Answer tokens: [0-9,]+ of 8,000")

    # End the session; focus lands on the session's name, not on the page's start.
    await _tab_until(console, "article.session button.danger")
    await keys.press("Enter")
    await _card_status(console, "ended")
    await _student_status(student, "Your teacher ended the session")
    assert await console.evaluate("document.activeElement.tagName") == "H4"

    # The student starts again; the teacher closes the classroom, confirming in the dialog.
    await student.click("#start")
    await _phase(student, "listening", 30)
    await console.wait_for_selector("article.session[data-status='live']", timeout=15_000)
    await _tab_until(console, "#close-classroom")
    await keys.press("Enter")
    assert await console.evaluate("document.getElementById('close-dialog').open")
    assert await console.evaluate("document.activeElement.id") == "close-cancel"  # the safe choice first
    await _axe(console, "closing: the confirmation")
    await keys.press("Tab")
    assert await console.evaluate("document.activeElement.id") == "close-confirm"
    await keys.press("Enter")
    await console.wait_for_function("document.getElementById('classroom-view').dataset.closed === 'true'")
    await _announced(console, "The classroom is closed")
    await _student_status(student, "Your teacher closed the class")
    await _card_status(console, "ended")
    assert await console.evaluate("document.activeElement.id") == "classroom-heading"
    await _no_alert(console)
    await _axe(console, "a closed classroom")


async def test_a_safety_flag_is_on_the_console_within_a_second_and_announced_politely(
    server, teacher, two_pages
):
    console, student = two_pages
    await console.goto(server.base_url + "/teacher.html")
    await console.fill("#username", teacher)
    await console.fill("#password", PASSWORD)
    await console.click("#signin-submit")
    await _view(console, "list")
    code = await _create_classroom(console, "Year 4 wellbeing check")

    await _student_joins(student, server, code, "Alex")
    await student.check("#mode-push-to-talk")  # the microphone stays off: only typed words
    await student.click("#start")
    await _phase(student, "listening", 30)
    await console.wait_for_selector("article.session", timeout=15_000)

    # Both clocks are the browser's (Date.now() is one clock for both tabs): the student's send,
    # then the moment the flag is in the console's DOM.
    await console.evaluate(
        """() => {
            window.flagSeenAt = null;
            new MutationObserver((_, observer) => {
                if (document.querySelector('article.session .safety-flag')) {
                    window.flagSeenAt = Date.now();
                    observer.disconnect();
                }
            }).observe(document.getElementById('sessions'), {childList: true, subtree: true});
        }"""
    )
    await student.fill("#message", DISTRESS)
    sent_at = await student.evaluate(
        "() => { const t = Date.now(); document.getElementById('typed').requestSubmit(); return t; }"
    )
    await console.wait_for_function("window.flagSeenAt !== null", timeout=10_000)
    seen_at = await console.evaluate("window.flagSeenAt")
    elapsed_ms = seen_at - sent_at
    print(f"safety flag on the console {elapsed_ms} ms after the student's send")
    assert elapsed_ms < 1000, f"the flag took {elapsed_ms} ms to reach the console"

    # Shown in words (not only in colour), announced politely, never as an alert.
    flag = (await console.text_content("article.session .safety-flag")).lower()
    assert "distress" in flag and "what the student said" in flag, flag
    assert "Safety flag" in await console.text_content("article.session .flag-badge")
    await _announced(console, "Safety flag for Alex")
    assert await console.get_attribute("#announce", "aria-live") == "polite"
    assert await console.get_attribute("#announce", "role") == "status"
    await _no_alert(console)
    # The student's words are not on the flag, nor in the announcement.
    assert DISTRESS not in flag
    assert not any(DISTRESS in a for a in await console.evaluate("window.convergioConsole.announcements"))
    await _axe(console, "a session with a safety flag")

    # The flag is in the audit log too, for admins: which session, which student, what kind, and
    # never the student's words.
    classroom_id = await console.evaluate("window.convergioConsole.classroom.id")
    session_id = await console.get_attribute("article.session", "data-session")
    for _ in range(50):
        status, entries = server.get(f"/api/v1/audit?classroom_id={classroom_id}", role="admin")
        assert status == 200, entries
        flags = [e for e in entries if e["action"] == "safety.flag" and e["session_id"] == session_id]
        if flags:
            break
        await asyncio.sleep(0.1)
    assert flags and flags[0]["detail"]["category"] == "self_harm", entries
    assert DISTRESS not in json.dumps(entries)
