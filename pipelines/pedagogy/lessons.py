"""Lesson cards: the vetted facts, hints and questions each tutor teaches from (`lessons/*.toml`).

A card is found from the student's words (its `match` words, on word boundaries); the longest
match wins, so "long division" beats "division". Cards are data a teacher can read and correct,
versioned per file; the tutoring evaluation reports the versions with its results.
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

LESSONS_DIR = Path(__file__).parent / "lessons"


@dataclass(frozen=True, slots=True)
class Misconception:
    pattern: re.Pattern[str]
    correction: str


@dataclass(frozen=True, slots=True)
class Card:
    persona: str
    topic: str
    match: tuple[str, ...]
    fact: str
    hint: str
    question: str
    accept: tuple[str, ...] = ()
    misconceptions: tuple[Misconception, ...] = ()

    def accepts(self, answer: str) -> bool:
        """The student's answer contains one of the right answers to `question`."""
        text = f" {_normalise(answer)} "
        return any(f" {_normalise(word)} " in text for word in self.accept)

    @property
    def words(self) -> str:
        """All of the card's text: the vocabulary a reply on this topic may use."""
        return " ".join((self.topic, *self.match, self.fact, self.hint, self.question))


@dataclass(frozen=True, slots=True)
class Lessons:
    persona: str
    version: str
    cards: tuple[Card, ...]

    def find(self, text: str) -> Card | None:
        """The card the student's words are about: the one with most of its `match` phrases
        said, then the one named first ("the area of a rectangle" is about area), then the
        longest phrase ("long division" beats "division")."""
        said = f" {_normalise(text)} "
        best: tuple[int, int, int] | None = None
        found: Card | None = None
        for card in self.cards:
            hits = [
                (said.find(f" {_normalise(p)} "), len(p)) for p in card.match if f" {_normalise(p)} " in said
            ]
            if not hits:
                continue
            score = (len(hits), -min(pos for pos, _ in hits), max(length for _, length in hits))
            if best is None or score > best:
                best, found = score, card
        return found

    def misconception(self, text: str) -> tuple[Card, Misconception] | None:
        for card in self.cards:
            for wrong in card.misconceptions:
                if wrong.pattern.search(text):
                    return card, wrong
        return None

    @property
    def vocabulary(self) -> str:
        return " ".join(card.words for card in self.cards)


def _normalise(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower().replace("’", "'")))


@functools.cache
def lessons_for(persona: str) -> Lessons:
    """The persona's cards; a persona without a file has none (the model answers alone)."""
    path = LESSONS_DIR / f"{persona}.toml"
    if not path.exists():
        return Lessons(persona, "none", ())
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    cards = tuple(
        Card(
            persona=persona,
            topic=raw["topic"],
            match=tuple(raw["match"]),
            fact=raw["fact"],
            hint=raw["hint"],
            question=raw["question"],
            accept=tuple(str(a) for a in raw.get("accept", ())),
            misconceptions=tuple(
                Misconception(re.compile(m["pattern"], re.IGNORECASE), m["correction"])
                for m in raw.get("misconception", ())
            ),
        )
        for raw in data.get("card", ())
    )
    return Lessons(persona, str(data.get("version", "unversioned")), cards)
