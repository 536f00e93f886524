"""Guards on the speech-to-text output: a transcript is never longer than its clip can hold, and a
sentence the decoder said twice is heard once. Pure functions; the real model runs elsewhere."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from models.faster_whisper_stt import MAX_TOKENS, MIN_TOKENS, collapse_repeats, restarts_itself, token_budget


def test_a_sentence_repeated_by_the_decoder_is_kept_once():
    assert collapse_repeats("Can you help me with fractions? Can you help me with fractions?") == (
        "Can you help me with fractions?"
    )
    assert collapse_repeats("10 of clubs. 10 of clubs. 10 of clubs.") == "10 of clubs."
    # cut off by the token budget in the middle of the repeat
    assert (
        collapse_repeats("Can you help me with fractions? Can you help") == "Can you help me with fractions?"
    )


def test_different_sentences_numbers_and_abbreviations_are_left_alone():
    for text in (
        "What is 3.5 times 2?",
        "Mr. Quilter is here.",
        "I think so. Is it four?",
        "yes yes",
        "",
        "Hi. Hi there.",
    ):
        assert collapse_repeats(text) == text


def test_the_token_budget_grows_with_the_clip_and_is_bounded():
    assert token_budget(0.2) == MIN_TOKENS
    assert token_budget(1.1) < 20  # a 1.1 s clip cannot hold "10 of clubs" 37 times
    assert token_budget(60) == MAX_TOKENS
    # Four words a second, about 1.3 tokens a word, always fit.
    assert all(token_budget(s) >= s * 4 * 1.3 for s in (1, 2, 5, 9, 19))


@given(st.floats(min_value=0, max_value=120), st.floats(min_value=0, max_value=120))
def test_a_longer_clip_never_gets_a_smaller_budget(a: float, b: float):
    short, long = sorted((a, b))
    assert token_budget(short) <= token_budget(long)


@given(st.text(alphabet="ab .?!", max_size=40))
def test_collapsing_is_idempotent_and_never_lengthens(text: str):
    once = collapse_repeats(text)
    assert collapse_repeats(once) == once and len(once) <= len(text.strip()) + 1


def test_a_decoder_that_starts_its_words_again_without_a_full_stop_is_caught():
    # Unseen LJ Speech through the streaming path: no full stop between the copies, so the
    # sentence check cannot see it; the last word is cut short by the token budget.
    assert restarts_itself(
        "and it is worth mention in passing that as an example of fine typography and it is worth m"
    )
    assert restarts_itself("Yes, yes, yes, yes, yes, yes, yes, yes.")


def test_ordinary_sentences_and_short_repeats_do_not_count_as_a_restart():
    for text in (
        "Printing, in the only sense with which we are at present concerned, differs from most.",
        "two plus two, two plus two",
        "I think, I think that it is four.",
        "What is seven times eight?",
        "",
    ):
        assert not restarts_itself(text)


@given(st.lists(st.sampled_from(["a", "b", "c", "the", "of"]), min_size=4, max_size=12))
def test_words_said_and_then_said_again_are_always_caught(words: list[str]):
    text = " ".join(words)
    assert restarts_itself(f"{text} {text}")
