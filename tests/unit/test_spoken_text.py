"""Spoken-style text and repetition: what may reach a voice or a caption, and when a reply
counts as saying again what the student already heard."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pipelines.spoken import (
    SpokenStyle,
    has_markdown,
    near_duplicate,
    overlaps,
    repeats_earlier,
    split_sentences,
    spoken_style,
)

LISTY = "Here are three steps:\n1. Add the **tens**\n2. Add the ones\n\n- Check your answer\n# Done"


def streamed(text: str, cuts: list[int]) -> str:
    style = SpokenStyle()
    pieces, start = [], 0
    for cut in sorted(set(c % (len(text) + 1) for c in cuts)):
        pieces.append(style.push(text[start:cut]))
        start = cut
    pieces.append(style.push(text[start:]))
    return "".join(pieces) + style.flush()


def test_lists_headings_and_line_breaks_become_one_spoken_paragraph():
    assert spoken_style(LISTY) == "Here are three steps: Add the tens. Add the ones. Check your answer. Done"
    assert not has_markdown(spoken_style(LISTY))
    assert has_markdown(LISTY)


def test_numbers_and_hyphens_inside_a_sentence_are_kept():
    text = "Half of 3.5 is 1.75 - try it with twenty-one too."
    assert spoken_style(text) == text


@given(st.lists(st.integers(min_value=0, max_value=200), max_size=12))
def test_the_stream_gives_the_same_text_however_the_model_splits_it(cuts):
    assert streamed(LISTY, cuts) == streamed(LISTY, [])


def test_sentences_are_counted_as_a_listener_hears_them():
    assert split_sentences("Good try! What is 3.5 times 2? Think of halves") == [
        "Good try!",
        "What is 3.5 times 2?",
        "Think of halves",
    ]


def test_a_reply_that_says_the_same_words_again_is_a_near_duplicate():
    first = "That's a great example of how Abi can use her words to make the sentence more engaging."
    again = "That's a great example of how Abi can use her words to make a sentence engaging."
    assert near_duplicate(again, first)


def test_two_different_answers_on_one_topic_are_not_near_duplicates():
    first = "What do you get if you add the tens first?"
    second = "Nearly! Count the ones again and tell me what you get."
    assert not near_duplicate(second, first)


def test_the_start_of_a_collapsing_reply_is_caught_before_it_is_spoken():
    earlier = ["That's a great example of how Abi can use her words to add humour. Here's a revised version:"]
    assert repeats_earlier("That's a great example of how Abi", earlier)


def test_a_short_stock_opener_is_not_judged():
    assert not repeats_earlier("Good question!", ["Good question! What do you think?"])


def test_prompt_overlap_is_a_shared_run_of_six_words():
    prompt = "Never give the answer: give a small hint or ask a question."
    assert overlaps("Sure. Never give the answer: give a small hint, they said.", prompt)
    assert not overlaps("Give me a hint about the answer.", prompt)


def test_a_reply_that_opens_as_an_earlier_one_did_is_caught_however_short_the_opener():
    from pipelines.spoken import opens_like

    earlier = ["That's a great question! Where have you seen that happen at home?"]
    assert opens_like("That's a great question!", earlier)
    assert not opens_like("Good try!", earlier)  # too short to judge
    assert not opens_like("That is a fine idea.", earlier)


def test_a_title_or_an_initial_does_not_end_a_sentence():
    # Heard in the benchmark: "I think you're right, Mr." was said as the model's whole sentence.
    assert split_sentences("I think you're right, Mr. Darcy. What do you think?") == [
        "I think you're right, Mr. Darcy.",
        "What do you think?",
    ]
    assert split_sentences("J. K. Rowling wrote it. Read it.") == ["J. K. Rowling wrote it.", "Read it."]
    assert split_sentences("Apples, pears, etc.") == ["Apples, pears, etc."]
