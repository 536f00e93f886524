"""The web client in a real browser: Debian chromium, fake microphone playing a real clip, WebRTC
on loopback, axe-core in every state, and a whole session from the keyboard alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from latency_bench.browser import CHROMIUM_ARGS

pytestmark = pytest.mark.models

REPO = Path(__file__).resolve().parents[2]
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CLIP = "arctic_a0024.16k.wav"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


def _args(clip: Path) -> list[str]:
    return [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={clip}%noloop"]


@pytest.fixture
def spoken_clip(speech_clips: Path, speech_manifest: list[dict]) -> dict:
    return next((e for e in speech_manifest if e["file"] == CLIP), speech_manifest[0])


@pytest.fixture
async def browser_page(speech_clips: Path, spoken_clip: dict):
    from playwright.async_api import async_playwright

    assert AXE.is_file(), "axe-core is installed by scripts/test.sh (npm install)"
    clip = speech_clips / spoken_clip["file"]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=_args(clip))
        page = await browser.new_page()
        yield page
        await browser.close()


async def _axe(page, state: str) -> None:
    await page.add_script_tag(path=str(AXE))
    result = await page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG_TAGS
    )
    violations = [(v["id"], v["help"], [n["target"] for n in v["nodes"]]) for v in result["violations"]]
    assert violations == [], f"axe violations in state {state!r}: {violations}"


async def _phase(page, phase: str, timeout_s: float = 60) -> None:
    await page.wait_for_function(f"document.body.dataset.phase === '{phase}'", timeout=timeout_s * 1000)


async def _inbound_audio_bytes(page) -> int:
    return await page.evaluate(
        """async () => {
            let bytes = 0;
            (await window.convergio.pc.getStats()).forEach(r => {
                if (r.type === 'inbound-rtp' && r.kind === 'audio') bytes += r.bytesReceived;
            });
            return bytes;
        }"""
    )


async def test_a_student_talks_to_the_tutor_in_the_browser_and_every_state_is_accessible(
    server, browser_page, spoken_clip, server_message_validator
):
    page = browser_page
    await page.goto(server.signin_url())
    await page.wait_for_selector("#persona option", state="attached")
    await _axe(page, "idle")

    # Hold the offer back a moment so the connecting state can be checked.
    async def slow_offer(route):
        await page.wait_for_timeout(1500)
        await route.continue_()

    await page.route("**/v1/webrtc/offer", slow_offer)
    await page.click("#start")
    await _phase(page, "connecting", 5)
    await _axe(page, "connecting")
    await _phase(page, "listening", 30)
    await _axe(page, "listening")

    # The fake microphone plays the clip: the student's caption, then the tutor's voice.
    await page.wait_for_selector("#captions li:has-text('You:')", timeout=60_000)
    await _phase(page, "speaking", 60)
    await _axe(page, "tutor speaking")
    await page.wait_for_function(
        "[...document.querySelectorAll('#captions li')].some(li => !li.textContent.startsWith('You:'))",
        timeout=60_000,
    )
    student = (await page.text_content("#captions li:first-child")).lower()
    words = [w.strip(".,!?'") for w in spoken_clip["transcript"].lower().split() if len(w) > 4]
    assert sum(w in student for w in words) >= len(words) // 2, student  # the clip was heard
    await page.wait_for_timeout(1500)
    assert await _inbound_audio_bytes(page) > 4000, "no reply audio arrived over WebRTC"
    # Each turn's latency is shown, discreetly, once the turn is done.
    await page.wait_for_function("document.getElementById('latency').textContent !== ''", timeout=60_000)
    # So is the session's usage (usage.updated after the turn), not in a live region.
    await page.wait_for_selector("#usage:not([hidden])", timeout=30_000)
    assert "This session:" in await page.text_content("#usage-totals")
    assert await page.get_attribute("#usage", "aria-live") is None
    await _axe(page, "usage shown")
    await _shared_cap_reached(page, server_message_validator)

    # Errors are announced with role=alert, and that state is accessible too.
    await page.click("#end")
    await page.unroute("**/v1/webrtc/offer")
    await page.route(
        "**/v1/webrtc/offer",
        lambda route: route.fulfill(
            status=503,
            content_type="application/json",
            body='{"error": {"code": "server_busy", "message": "Too many sessions; try again later."}}',
        ),
    )
    await page.click("#start")
    await _phase(page, "error", 15)
    assert "Too many sessions" in await page.text_content("[role=alert]")
    await _axe(page, "error")


async def _shared_cap_reached(page, validator) -> None:
    """What a capped student sees. This server has no caps, so the two events are handed to the
    page's own channel handler exactly as a capped server sends them (checked against the schema
    the server publishes); tests/session and tests/storage show the server sending them."""
    usage = {"stt_audio_ms": 2100, "stt_partial_audio_ms": 0, "llm_prompt_tokens": 180,
             "llm_completion_tokens": 24, "tts_chars": 60, "tts_audio_ms": 3900, "providers": {}}
    events = [
        {"type": "usage.updated", "usage": usage, "allowances": [
            {"scope": "student", "kind": "llm", "unit": "tokens", "limit": 20000, "used": 19990,
             "remaining": 10, "period": "day"},
            {"scope": "classroom", "kind": None, "unit": "minor_units", "limit": 500, "used": 125,
             "remaining": 375, "period": "month", "currency": "EUR"},
        ]},
        {"type": "usage.cap_reached", "kind": "llm", "unit": "tokens", "limit": 20000, "used": 19990,
         "scope": "student", "period": "day"},
    ]
    for event in events:
        assert not list(validator.iter_errors(event)), event
        await page.evaluate("e => window.convergio.channel.onmessage({data: JSON.stringify(e)})", event)
    items = await page.locator("#usage-allowances li").all_text_contents()
    assert items[0].startswith("Your limit for answers for today: 10 tokens left of 20,000"), items
    assert "left of" in items[1] and "spending limit" in items[1], items
    notice = page.locator("#usage-notice")
    assert await notice.get_attribute("aria-live") == "polite"
    assert "Your limit for answers for today is reached" in await notice.text_content()
    assert await page.text_content("[role=alert]") == ""  # polite, not an alert
    await _axe(page, "cap reached")


async def _tab_to(page, element_id: str, limit: int = 40) -> None:
    for _ in range(limit):
        if await page.evaluate("document.activeElement && document.activeElement.id") == element_id:
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"#{element_id} cannot be reached with Tab")


async def test_a_whole_session_from_the_keyboard_alone(server, browser_page):
    page = browser_page
    await page.goto(server.signin_url())
    await page.wait_for_selector("#persona option", state="attached")
    # Push-to-talk mode, chosen with the arrow keys in the radio group.
    await _tab_to(page, "mode-hands-free")
    await page.keyboard.press("ArrowDown")
    assert await page.is_checked("#mode-push-to-talk")
    await _tab_to(page, "start")
    await page.keyboard.press("Enter")
    await _phase(page, "listening", 30)

    # Hold Space on the Talk button while the fake microphone plays the clip.
    await _tab_to(page, "talk")
    await page.keyboard.down(" ")
    assert await page.get_attribute("#talk", "aria-pressed") == "true"
    await page.wait_for_timeout(4500)
    await page.keyboard.up(" ")
    await page.wait_for_selector("#captions li:has-text('You:')", timeout=60_000)
    await _phase(page, "speaking", 60)

    # Stop is first in the tab order and silences the tutor at once.
    await _tab_to(page, "stop")
    await page.keyboard.press("Enter")
    await _phase(page, "listening", 10)
    assert await page.evaluate("document.getElementById('tutor-audio').muted")

    # A typed message instead of speech.
    await _tab_to(page, "message")
    await page.keyboard.type("What is ten plus five?")
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#captions li:has-text('What is ten plus five?')", timeout=30_000)
    await _phase(page, "speaking", 60)

    await _tab_to(page, "end")
    await page.keyboard.press("Enter")
    await _phase(page, "ended", 10)
    assert (await page.text_content("#status")).startswith("Session ended")
