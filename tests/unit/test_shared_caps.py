"""Caps shared by sessions (per student, classroom, key): the registry and the allowance logic.

The guarantee under test: however the calls of several sessions interleave (a call starting,
ending, its use being reported before or after it ends), what is used plus what is held for
calls in flight never passes a cap, so a call that would go over is never made; and once every
call is over and reported, nothing stays held and the quota's use is exactly what was reported.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.base import EngineError, EngineInfo
from pipelines.allowance import CAP_REACHED, AllowanceStage
from pipelines.caps import UsageCaps
from pipelines.control import Usage
from pipelines.frames import CapReached, UsageKind
from pipelines.quota import Quota, QuotaRegistry, ScopeCaps, period_start
from voice_server.ledger.prices import PriceTable
from voice_server.settings import BillingSettings

ENGINE = EngineInfo("tts", "cloud-tts", "voice-1")
CHARS = (UsageKind.TTS_CHARS, ENGINE.provider, ENGINE.model)
PRICES = PriceTable.model_validate(
    {
        "currency": "EUR",
        "price": [
            # 3 cents per started 10 characters: rounding makes cost jump, which the cap must respect.
            {"provider": "cloud-tts", "model": "*", "kind": "tts_chars", "minor_units": 3, "per": 10,
             "rounding": "started_block"},
        ],
    }
)


def _stage(*quotas: Quota) -> tuple[AllowanceStage, list]:
    told: list = []
    stage = AllowanceStage(UsageCaps(), {"tts": list(quotas)})
    stage.push = told.append  # type: ignore[method-assign] - no pipeline around it
    return stage, told


def test_periods_start_at_utc_midnight_and_the_first_of_the_month():
    now = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
    assert period_start("day", now) == datetime(2026, 3, 14, tzinfo=UTC)
    assert period_start("month", now) == datetime(2026, 3, 1, tzinfo=UTC)
    assert period_start("total", now) is None


def test_a_cost_cap_without_a_price_table_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="COST_MINOR is a cap in cost, which needs a price table"):
        BillingSettings(student_caps=ScopeCaps(cost_minor=100))  # type: ignore[call-arg]


def test_a_call_is_refused_by_the_scope_whose_cap_it_would_pass_and_the_client_is_told_once():
    student = Quota("student", "stu_a", ScopeCaps(tts_chars=100, period="day"))
    classroom = Quota("classroom", "cls_a", ScopeCaps(tts_chars=30))
    stage, told = _stage(student, classroom)
    stage.settle(stage.reserve("tts", {CHARS: 20}), {UsageKind.TTS_CHARS: 20})
    stage.on_system(Usage("t", None, UsageKind.TTS_CHARS, 20, ENGINE))
    for _ in range(2):
        with pytest.raises(EngineError) as refused:
            stage.reserve("tts", {CHARS: 11})
        assert refused.value.code == CAP_REACHED
    assert told == [CapReached("tts", "chars", 30, 20, "classroom", "month")]
    assert student.units("tts") == classroom.units("tts") == 20  # the refused call holds nothing


def test_a_hold_stays_until_the_use_is_reported_even_when_the_report_comes_after_the_call():
    quota = Quota("student", "stu_a", ScopeCaps(tts_chars=50))
    first, _ = _stage(quota)
    second, _ = _stage(quota)
    hold = first.reserve("tts", {CHARS: 40})
    first.settle(hold, {UsageKind.TTS_CHARS: 30})  # it used 30 of the 40 it held: 10 given back
    assert quota.held == {CHARS: 30} and quota.used == {}
    with pytest.raises(EngineError):  # the 30 are not reported yet, but they are not free either
        second.reserve("tts", {CHARS: 21})
    first.on_system(Usage("t", None, UsageKind.TTS_CHARS, 30, ENGINE))
    assert quota.held == {} and quota.used == {CHARS: 30}
    second.reserve("tts", {CHARS: 20})


def test_a_cost_cap_prices_the_call_before_it_is_made_with_the_tables_rounding():
    quota = Quota("student", "stu_a", ScopeCaps(cost_minor=9), PRICES)  # three started blocks
    stage, told = _stage(quota)
    stage.settle(stage.reserve("tts", {CHARS: 21}), {UsageKind.TTS_CHARS: 21})  # 9 cents
    stage.on_system(Usage("t", None, UsageKind.TTS_CHARS, 21, ENGINE))
    assert quota.cost() == 9
    stage.reserve("tts", {CHARS: 9})  # still within the third started block: free
    with pytest.raises(EngineError):
        stage.reserve("tts", {CHARS: 1})  # a fourth block: 12 cents
    assert told == [CapReached("tts", "minor_units", 9, 9, "student", "month", "EUR")]
    assert [(a.unit, a.limit, a.used, a.currency) for a in stage.allowances()] == [("minor_units", 9, 9, "EUR")]


def test_the_answer_is_cut_to_what_a_shared_cap_has_left():
    quota = Quota("classroom", "cls_a", ScopeCaps(llm_tokens=100))
    stage = AllowanceStage(UsageCaps(), {"llm": [quota]})
    prompt = {(UsageKind.LLM_PROMPT_TOKENS, "p", "m"): 70}
    assert stage.fit_answer(prompt, (UsageKind.LLM_COMPLETION_TOKENS, "p", "m"), 96) == 30


async def test_sessions_starting_together_share_one_quota_seeded_once():
    loads = []

    async def load(since):
        loads.append(since)
        await asyncio.sleep(0.01)
        return [(CHARS, 12)]

    registry = QuotaRegistry()
    caps = ScopeCaps(tts_chars=100, period="day")
    first, second = await asyncio.gather(
        registry.quota("student", "stu_a", caps, load), registry.quota("student", "stu_a", caps, load)
    )
    assert first is second and first.used == {CHARS: 12} and len(loads) == 1
    assert await registry.quota("student", "stu_b", caps, load) is not first


async def test_a_changed_cap_reaches_new_sessions_and_every_session_still_counts_in_one_book():
    loads = []

    async def load(since):
        loads.append(since)
        return [(CHARS, 40)]

    registry = QuotaRegistry()
    running = await registry.quota("student", "stu_a", ScopeCaps(tts_chars=100, period="day"), load)
    assert await registry.quota("student", "stu_a", ScopeCaps(tts_chars=100, period="day"), load) is running
    lowered = await registry.quota("student", "stu_a", ScopeCaps(tts_chars=50, period="day"), load)
    assert lowered is not running and len(loads) == 1 and len(registry) == 1  # not seeded again
    assert (running.caps.tts_chars, lowered.caps.tts_chars) == (100, 50)  # the running one keeps its cap
    running.hold({CHARS: 5})
    lowered.charge(CHARS, 3)
    assert running.units("tts") == lowered.units("tts") == 48  # used and held, counted once for both
    assert lowered.refusal({CHARS: 3}) is not None and running.refusal({CHARS: 3}) is None
    assert await registry.quota("student", "stu_a", ScopeCaps(tts_chars=50, period="day"), load) is lowered


async def test_a_seeding_that_fails_is_tried_again_by_the_next_session():
    async def broken(since):
        raise OSError("database away")

    async def works(since):
        return []

    registry = QuotaRegistry()
    with pytest.raises(OSError):
        await registry.quota("key", "key_a", ScopeCaps(llm_tokens=5), broken)
    assert (await registry.quota("key", "key_a", ScopeCaps(llm_tokens=5), works)).used == {}


# One step of one session's calls: start a call (it will really use `use` of the `need` it
# asks for), end a call, or report a call's use.
_steps = st.lists(
    st.tuples(st.sampled_from(["start", "end", "report"]), st.integers(0, 3), st.integers(0, 40), st.integers(0, 40)),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(_steps, st.integers(0, 120), st.integers(0, 30), st.booleans())
def test_no_interleaving_of_calls_from_several_sessions_passes_the_cap(steps, cap, seeded, in_cost):
    caps = ScopeCaps(cost_minor=cap) if in_cost else ScopeCaps(tts_chars=cap)
    quota = Quota("student", "stu_a", caps, PRICES if in_cost else None)
    quota.charge(CHARS, seeded)  # what the ledger held when the quota was opened
    sessions = [_stage(quota)[0] for _ in range(4)]
    calls: list[dict] = []  # each: session, hold, use, ended, reported

    def measure() -> int:
        return quota.cost() if in_cost else quota.units("tts")

    bound = max(cap, measure())  # a seed over the cap already: nothing more may be added to it

    def within() -> None:
        assert measure() <= bound, (quota.used, quota.held)

    for action, who, need, use in steps:
        open_calls = [c for c in calls if not (c["ended"] and c["reported"])]
        if action == "start":
            session = sessions[who]
            try:
                hold = session.reserve("tts", {CHARS: need})
            except EngineError:
                assert need > 0  # nothing is ever refused for asking nothing
                continue
            calls.append({"session": session, "hold": hold, "use": min(use, need), "ended": False, "reported": False})
        elif open_calls:
            call = open_calls[(need + use) % len(open_calls)]
            if action == "end" and not call["ended"]:
                call["ended"] = True
                call["session"].settle(call["hold"], {UsageKind.TTS_CHARS: call["use"]})
            elif action == "report" and not call["reported"]:
                call["reported"] = True
                call["session"].on_system(Usage("t", None, UsageKind.TTS_CHARS, call["use"], ENGINE))
        within()
    for call in calls:  # every call ends and is reported, in whatever order is left
        if not call["ended"]:
            call["session"].settle(call["hold"], {UsageKind.TTS_CHARS: call["use"]})
        if not call["reported"]:
            call["session"].on_system(Usage("t", None, UsageKind.TTS_CHARS, call["use"], ENGINE))
        within()
    assert quota.held == {}
    assert quota.used.get(CHARS, 0) == seeded + sum(c["use"] for c in calls)
