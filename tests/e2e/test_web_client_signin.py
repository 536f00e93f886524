"""Signing in from the web client: by keyboard alone, errors announced, every state accessible;
a sign-in link is redeemed at once and leaves the address bar; the token stays out of the page's
globals."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from tests.e2e import test_web_client_browser as browser
from tests.e2e.test_web_client_browser import _axe, _phase, _tab_to

# The same Chromium with a fake microphone as the session tests.
browser_page = browser.browser_page
spoken_clip = browser.spoken_clip

pytestmark = pytest.mark.models


async def test_a_student_joins_with_a_code_from_the_keyboard_and_errors_are_announced(
    server, browser_page
):
    page = browser_page
    await page.goto(server.base_url + "/")
    await page.wait_for_selector("#signin:not([hidden])")
    await _phase(page, "signin", 10)
    assert await page.is_hidden("#session-panel")
    await _axe(page, "sign-in")

    await _tab_to(page, "join-code")
    await page.keyboard.type("a-code-nobody-issued")
    await page.keyboard.press("Enter")
    await page.wait_for_function(
        "document.querySelector('[role=alert]').textContent.includes('Could not sign in')"
    )
    await _axe(page, "sign-in refused")

    # Focus is back on the field with the wrong code selected: typing the right one replaces it.
    assert await page.evaluate("document.activeElement.id") == "join-code"
    assert await page.get_attribute("#join-code", "aria-invalid") == "true"
    code = server.signin_url().split("#signin=")[1]
    await page.keyboard.type(code)
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#persona option", state="attached")
    await _phase(page, "idle", 10)
    assert await page.evaluate("document.activeElement.id") == "persona"  # focus moves on
    assert await page.is_hidden("#signin")
    assert await page.text_content("[role=alert]") == ""
    assert "token" not in await page.evaluate("Object.keys(window.convergio).join(' ')")
    await _axe(page, "signed in")


async def test_a_sign_in_link_is_redeemed_at_once_and_leaves_the_address_bar(server, browser_page):
    page = browser_page
    await page.goto(server.signin_url())
    await page.wait_for_selector("#persona option", state="attached")
    assert await page.evaluate("location.hash") == ""
    assert await page.evaluate("sessionStorage.getItem('convergio.token') !== null")
    # A reload in the same tab stays signed in; the used link would not work twice.
    await page.reload()
    await page.wait_for_selector("#persona option", state="attached")
    await _phase(page, "idle", 10)


async def test_a_teacher_signs_in_with_a_password_from_the_keyboard(server, browser_page):
    password = "a teacher's long password"
    made = subprocess.run(
        [sys.executable, "-m", "voice_server.cli", "admin", "create", "ms.lee", "--role", "teacher",
         "--password-stdin"],
        input=password + "\n", capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
        env={**os.environ, "CONVERGIO_STORAGE__DATA_DIR": str(server.data_dir)},
    )
    assert made.returncode == 0, made.stderr
    page = browser_page
    await page.goto(server.base_url + "/")
    await _phase(page, "signin", 10)
    await _tab_to(page, "username")
    await page.keyboard.type("ms.lee")
    await _tab_to(page, "password")
    await page.keyboard.type("not the password")
    await page.keyboard.press("Enter")
    await page.wait_for_function(
        "document.querySelector('[role=alert]').textContent.includes('username or password is wrong')"
    )
    assert await page.evaluate("document.activeElement.id") == "password"  # cleared, ready to retype
    assert await page.input_value("#password") == ""
    await _axe(page, "password refused")
    await page.keyboard.type(password)
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#persona option", state="attached")
    assert await page.evaluate("document.activeElement.id") == "persona"
    assert await page.input_value("#password") == ""  # not left in the page
