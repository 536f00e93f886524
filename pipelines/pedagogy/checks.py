"""Checks on what the model wrote, sentence by sentence, before anyone hears it.

The safety screen (`pipelines.safety`) keeps out what is harmful; these keep out what is wrong or
makes no sense to a child, which a 135M model writes often ("Fermat's Little Theorem",
"quaternions", "six times seven is forty three"):

- a sum stated with the wrong answer;
- an answer the student is meant to work out (the plan's `forbidden` values);
- a word a child would not know that neither the student, the lesson cards nor the plan's fact
  used: rare words (by `wordfreq`'s Zipf frequency, offline, from its own wheel) are where a small
  model's invented facts show;
- on a topic with a vetted fact, a sentence that drifts away from it;
- an apology or refusal ("I'm sorry for any confusion"), which a small model says when lost.

A sentence that fails is not spoken; the plan's fallback (the vetted fact or hint) is said instead.
"""

from __future__ import annotations

import enum
import functools
import re
from fractions import Fraction

from pipelines.pedagogy.numbers import find_numbers, find_sum, mentions, tokens
from pipelines.pedagogy.planner import Plan

# Zipf frequency below which a word is "rare" (3 = once per million words): "quaternion" 1.9,
# "Fermat" 2.1, "divisors" 2.1, "multiplicative" 2.5; "denominator" 3.1 and "adjective" 3.3 pass.
RARE_ZIPF = 2.6
# Share of the vetted fact's content words a phrasing of it must keep.
FACT_KEPT = 0.5
_WORD = re.compile(r"[A-Za-z][A-Za-z']+")
_FILLER = re.compile(
    r"^\s*(?:(?:a|what a|that's a|that is a|such a)\s+)?(?:great|good|wise|nice|excellent|interesting|fun|wonderful)"
    r"\s+question\s*[.!]?\s*$|^\s*(?:sure|okay|ok|of course|absolutely|certainly)\s*[.!,]?\s*$",
    re.IGNORECASE,
)
# A stock opener, or the model's own "Ah, let's see:" (it copies the plan's lead, which has just
# been said: "Right, let's see: Ah, let's see: you're welcome to try").
_OPENER = re.compile(
    r"^\s*(?:(?:in simple words|in plain words|simply put|to put it simply|well)\s*,\s*"
    r"|(?:(?:ah|oh|hmm|okay|ok|right|well|so)\s*,?\s*)?let(?:'s| me| us)\s+(?:see|think)\s*[:,.!]\s*)",
    re.IGNORECASE,
)
_UNHELPFUL = re.compile(
    r"^\W*(?:i'?m (?:so |very )?sorry|sorry|i apologi[sz]e|i (?:can'?t|cannot|am unable to|'m unable to) help|"
    r"as an ai|i'?m (?:just )?an ai|i don'?t (?:know|have)|i'?m not sure)\b|\bconfusion\b",
    re.IGNORECASE,
)
_STOP = frozenset(
    "a an the and or but of to in on at by for with from is are was were be been it its it's this that these "
    "those as so if then than there their they them you your we our us he she his her i me my not no yes do "
    "does did can could will would should may might must have has had one two very more most some any all "
    "each every just only also too into about over under up down out what which who how why when where".split()
)


class Failed(enum.StrEnum):
    WRONG_SUM = "wrong_sum"
    GAVE_ANSWER = "gave_answer"
    RARE_WORD = "rare_word"
    OFF_FACT = "off_fact"
    INVENTED_NUMBER = "invented_number"  # a date or amount nobody gave it ("born in 1285 BC")
    UNHELPFUL = "unhelpful"  # an apology or refusal a tutor has no reason to make


def tidy(sentence: str) -> str:
    """A model sentence without its stock opener ("A great question." alone says nothing;
    "In simple words, ..." is dropped); empty when nothing is left."""
    if _FILLER.match(sentence):
        return ""
    stripped = _OPENER.sub("", sentence)
    return stripped[:1].upper() + stripped[1:] if stripped != sentence else sentence


def check(sentence: str, plan: Plan) -> Failed | None:
    if _UNHELPFUL.search(sentence):
        return Failed.UNHELPFUL
    said = find_sum(sentence)
    if said is not None and said.claimed is not None and said.claimed != said.expression.value:
        return Failed.WRONG_SUM
    if any(mentions(sentence, value) for value in plan.forbidden):
        return Failed.GAVE_ANSWER
    if invented_numbers(sentence, f"{plan.grounding} {plan.fact} {plan.note}"):
        return Failed.INVENTED_NUMBER
    if rare_words(sentence, plan.grounding):
        return Failed.RARE_WORD
    if plan.fact and _kept(plan.fact, sentence) < FACT_KEPT:
        return Failed.OFF_FACT
    return None


def invented_numbers(sentence: str, grounding: str) -> list[Fraction]:
    """Numbers above ten (dates, ages, amounts) that nothing the model was given contains: a
    small model's numbers are where its made-up facts hide."""
    known = {n.value for n in find_numbers(tokens(grounding))}
    said = find_sum(sentence)
    if said is not None and said.claimed is not None and said.claimed == said.expression.value:
        known.add(said.claimed)  # a sum worked out right is not made up
    return [n.value for n in find_numbers(tokens(sentence)) if n.value > 10 and n.value not in known]


def rare_words(sentence: str, grounding: str) -> list[str]:
    known = _stems(grounding)
    return [
        word
        for word in _WORD.findall(sentence)
        if _stem(word) not in known and _zipf(word.lower().strip("'")) < RARE_ZIPF
    ]


def _kept(fact: str, sentence: str) -> float:
    wanted = {w for w in _stems(fact) if w not in _STOP and len(w) > 2}
    return len(wanted & _stems(sentence)) / len(wanted) if wanted else 1.0


def _stems(text: str) -> set[str]:
    return {_stem(w) for w in _WORD.findall(text)}


def _stem(word: str) -> str:
    word = word.lower().strip("'").removesuffix("'s")
    for suffix in ("ies", "es", "s", "ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def zipf(word: str) -> float:
    """How common an English word is: 7 for "the", 3 for once in a million words, 0 if unknown."""
    return _zipf(word)


@functools.lru_cache(maxsize=20_000)
def _zipf(word: str) -> float:
    return _frequency()(word, "en")


@functools.cache
def _frequency():  # type: ignore[no-untyped-def]
    from wordfreq import zipf_frequency

    return zipf_frequency


def warm() -> None:
    """Load the word list and the lesson cards now (about a second), not on a student's first reply."""
    from pipelines.pedagogy.lessons import LESSONS_DIR, lessons_for

    _zipf("tutor")
    for path in LESSONS_DIR.glob("*.toml"):
        lessons_for(path.stem)
