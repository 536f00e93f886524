"""The tutor on the embedded model: a long conversation does not collapse, captions are spoken
text, and a slice of the tutoring evaluation runs and passes its structural checks."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from latency_bench.tutor_eval.cases import CONVERSATIONS
from latency_bench.tutor_eval.runner import Session
from models.silence_tts import SilenceTTS
from pipelines.spoken import has_markdown, near_duplicate

pytestmark = pytest.mark.models

ROOT = Path(__file__).resolve().parents[2]


async def test_ten_typed_turns_give_no_near_duplicate_replies_and_no_markdown_in_captions(real_engines):
    from latency_bench.tutor_eval.runner import CountingLLM

    llm = CountingLLM(real_engines.llm)
    engines = replace(real_engines, llm=llm, tts=SilenceTTS())
    session = Session(engines, "maths", max_reply_tokens=48)
    replies, captions = [], []
    try:
        for line in CONVERSATIONS["maths"]:
            done, shown, _, _ = await session.ask(line, llm)
            assert done.status == "completed"
            replies.append(done.reply_text)
            captions += shown
    finally:
        await session.close()
    assert all(replies), replies
    for i, reply in enumerate(replies):
        assert not any(near_duplicate(reply, earlier) for earlier in replies[:i]), replies
    assert captions and not any(has_markdown(text) for text in captions), captions


def test_a_slice_of_the_tutoring_evaluation_writes_its_report_and_passes_the_structural_checks(tmp_path):
    report = tmp_path / "tutor-eval.json"
    command = [sys.executable, "-m", "latency_bench.tutor_eval", "--slice", "12", "--quiet"]
    # Light on memory: the suite has its own engines loaded too.
    command += ["--json", str(report), "--llm-option", "contexts=2"]
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "persona/category" in run.stdout  # the table was printed
    data = json.loads(report.read_text())
    summary, results = data["summary"], data["results"]
    assert len(results) >= 12 and summary["prompt_version"] != "unversioned"
    overall = summary["overall"]
    # Guaranteed by code whatever the model writes: an answer, spoken text, no repeats.
    assert overall["non_empty"] == 1.0 and overall["no_markdown"] == 1.0 and overall["no_repeat"] == 1.0
    # The teaching plan's guarantees, whatever the model writes: every teaching reply asks or
    # hints, and no sum the tutor states is wrong.
    assert summary["lesson_plans"] and overall["teaches"] == 1.0 and overall["sums_true"] in (1.0, None), summary
    # Up to the model (a 135M one): most replies still meet every structural check.
    assert overall["structural"] >= 0.75, summary
