"""The benchmark's turn-taking figures, from clip results alone (no server)."""

from __future__ import annotations

from latency_bench.__main__ import summarise_turn_taking, turn_taking_table
from latency_bench.client import ClipResult
from latency_bench.wer import word_recall

REFERENCES = {"a.wav": "in being comparatively modern", "b.wav": "he might even have been made amiable"}


def _result(clip: str, transcript: str, *, cut_off: bool, finals: int, v2v: float) -> ClipResult:
    return ClipResult(
        clip, transcript, "ok", v2v, {}, 100, [], voice_to_answer_ms=v2v, cut_off=cut_off, finals=finals
    )


def test_a_reply_inside_the_pause_is_a_false_cut_off_and_two_finals_are_not_one_transcript():
    results = [
        _result("a.wav", "In being comparatively modern.", cut_off=False, finals=1, v2v=400),
        _result("b.wav", "He might even. Have been made amiable.", cut_off=True, finals=2, v2v=900),
    ]
    summary = summarise_turn_taking(results, REFERENCES)
    assert summary["false_cutoffs"] == 1 and summary["false_cutoff_rate"] == 0.5
    assert summary["one_transcript_rate"] == 0.5
    assert summary["word_recall"] == 1.0  # every word was heard, even if in two turns
    assert summary["voice_to_voice_after_end_ms"]["p50"] is not None
    assert "false cut-offs 1/2" in turn_taking_table(results, summary)


def test_word_recall_counts_reference_words_found_in_the_joined_transcripts():
    assert word_recall("the cut on his chest", "The cut on his") == 0.8
    assert word_recall("In 1813", "in eighteen thirteen") == 1.0
