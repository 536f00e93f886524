"""Screening: the student's words before the model, the tutor's sentences before speech and captions.

Both are pure and cheap (a few regular expressions and a set of n-grams): they run on every turn
and every sentence on two shared cores, so no model is loaded for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.frames import SafetyCategory
from pipelines.safety.policy import replacement_for
from pipelines.safety.rules import FULL_NAME, INPUT_RULES, OUTPUT_RULES, SCHOOL_AND_TOWN, first_match, spoken_phone_number
from pipelines.safety.text import fold, has_template_markers, words

# A run of this many words shared with the system prompt is a leak; shorter runs occur naturally.
LEAK_NGRAM = 6


def screen_input(text: str) -> SafetyCategory | None:
    """The category the student's words fall in, or None for ordinary tutoring talk."""
    if has_template_markers(text):
        return SafetyCategory.ROLE_CHANGE  # nobody types <|im_start|> to ask about fractions
    folded = fold(text)
    category = first_match(folded, INPUT_RULES)
    if category is None and (FULL_NAME.search(text) or SCHOOL_AND_TOWN.search(text) or spoken_phone_number(folded)):
        category = SafetyCategory.PERSONAL_DATA
    return category


def ngrams(tokens: list[str], n: int = LEAK_NGRAM) -> set[tuple[str, ...]]:
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


@dataclass(frozen=True, slots=True)
class Checked:
    text: str  # the sentence to speak and show: the original, or the safe line
    category: SafetyCategory | None = None  # why it was replaced


@dataclass(slots=True)
class OutputScreen:
    """Screens one reply, sentence by sentence. After the first blocked sentence the reply ends:
    what follows a leak or an unsafe sentence is not worth the risk."""

    system_prompt: str
    blocked: SafetyCategory | None = None
    spoken: list[str] = field(default_factory=list)  # what passed, and the safe line
    _prompt_ngrams: set[tuple[str, ...]] = field(default_factory=set)
    _tail: list[str] = field(default_factory=list)
    _previous: str = ""

    def __post_init__(self) -> None:
        self._prompt_ngrams = ngrams(words(self.system_prompt))

    def check(self, sentence: str) -> Checked:
        category = self._category(sentence)
        if category is None:
            self.spoken.append(sentence)
            return Checked(sentence)
        line = replacement_for(category)
        self.blocked = category
        self.spoken.append(line)
        return Checked(line, category)

    def _category(self, sentence: str) -> SafetyCategory | None:
        tokens = words(sentence)
        # The previous piece counts too: the first piece is cut short for speed, so "Sure, I have"
        # and "sent the email." arrive apart, as may a leak.
        if self._prompt_ngrams and ngrams(self._tail + tokens) & self._prompt_ngrams:
            return SafetyCategory.PROMPT_LEAK
        self._tail = (self._tail + tokens)[-(LEAK_NGRAM - 1) :]
        joined, self._previous = f"{self._previous} {sentence}", sentence
        return first_match(fold(joined), OUTPUT_RULES)

    @property
    def text(self) -> str:
        return " ".join(self.spoken)
