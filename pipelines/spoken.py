"""Spoken-style text: what a voice may say and a caption may show, and when a reply repeats.

The model writes text; a child hears it. Lists, headings, markdown and line breaks mean nothing
aloud (Piper reads "1." as "one", captions show stray asterisks), so they are removed as the text
streams, before the sentence chunker sees it. Repetition is judged on word 3-grams: the collapse
this guards against ("every reply began with the same sentence, then the previous turn's text")
shares long runs of words, which 3-grams catch while different answers on one topic do not.
"""

from __future__ import annotations

import re

_LIST_MARKER = re.compile(r"^\s*(?:[-*\u2022+]|\d{1,2}[.)]|#{1,6}|>)(?:\s+|$)")
_LINE_DECIDED = re.compile(r"^\s*\S+\s")  # the line's first word is complete
_WORD = re.compile(r"[a-z0-9']+")
_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*(?:\s+|$)")
_MARKDOWN = re.compile(r"[*_`#|>]|^\s*(?:[-\u2022+]|\d{1,2}[.)])\s|\n")
_EMOJI = re.compile("[\U0001f000-\U0001faff\u2600-\u27bf\ufe0f]")
# A full stop after these ends no sentence ("Mr. Smith", "e.g. ten").
ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "e.g", "i.e", "no", "fig", "approx"}
)


def ends_in_abbreviation(text: str) -> bool:
    """`text` ends with an abbreviation's dot or an initial's ("J."), not a sentence's."""
    if not text.endswith("."):
        return False
    words = text[:-1].split()
    word = words[-1].lower().strip("(\"'") if words else ""
    if word in ABBREVIATIONS:
        return True
    return len(word) == 1 and word.isalpha() and word != "i"


class SpokenStyle:
    """Streams model text into spoken-style text: list markers and heading marks at the start
    of a line are dropped, and line breaks join lines into one paragraph (with a full stop where
    the line ended without one, so the chunker still ends the sentence there)."""

    def __init__(self) -> None:
        self._line = ""  # the start of a line, held until its first word shows whether it is a list item
        self._at_line_start = True
        self._newline_pending = False
        self._tail = ""  # the last characters emitted

    def push(self, text: str) -> str:
        out: list[str] = []
        for char in _EMOJI.sub("", text):
            if char in "\r\n":
                self._emit(out, self._decide_line())
                self._newline_pending = self._newline_pending or bool(self._tail.strip())
                self._at_line_start = True
            elif self._at_line_start:
                self._line += char
                if _LINE_DECIDED.match(self._line) or len(self._line) > 12:
                    self._emit(out, self._decide_line())
            else:
                self._emit(out, char)
        return "".join(out)

    def flush(self) -> str:
        out: list[str] = []
        self._emit(out, self._decide_line())
        return "".join(out)

    def _emit(self, out: list[str], text: str) -> None:
        if text:
            out.append(text)
            self._tail = (self._tail + text)[-8:]

    def _decide_line(self) -> str:
        line, self._line = self._line, ""
        was_start, self._at_line_start = self._at_line_start, False
        if not was_start:
            return ""
        line = _LIST_MARKER.sub("", line, count=1).lstrip()
        if not line:
            self._at_line_start = True  # a marker alone (or blank): still at the line's start
            return ""
        if self._newline_pending:
            self._newline_pending = False
            tail = re.sub(r"[*_`#|>]+", "", self._tail).rstrip()
            joiner = " " if not tail or tail[-1] in ".!?:;," else ". "
            return joiner + line
        return line


def spoken_style(text: str) -> str:
    """The whole of a text as it may be spoken: no list markers, markdown or line breaks."""
    style = SpokenStyle()
    joined = style.push(text) + style.flush()
    return " ".join(re.sub(r"[*_`#|>]+", "", joined).split())


def has_markdown(text: str) -> bool:
    """Anything a voice would read out wrongly or a caption would show as markup."""
    return bool(_MARKDOWN.search(text)) or any(_LIST_MARKER.match(s) for s in split_sentences(text)[1:])


def split_sentences(text: str) -> list[str]:
    """Sentences as a listener hears them: split after . ! or ? followed by a space or the end."""
    sentences, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        if match.end() < len(text) and ends_in_abbreviation(text[: match.end()].rstrip()):
            continue  # "Mr. Smith" is one sentence
        piece = text[start : match.end()].strip()
        if piece and _WORD.search(piece.lower()):
            sentences.append(piece)
        start = match.end()
    rest = text[start:].strip()
    if rest and _WORD.search(rest.lower()):
        sentences.append(rest)
    return sentences


def word_ngrams(text: str, n: int = 3) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def jaccard(a: set[tuple[str, ...]], b: set[tuple[str, ...]]) -> float:
    return len(a & b) / len(a | b) if a and b else 0.0


def near_duplicate(reply: str, earlier: str, *, threshold: float = 0.5) -> bool:
    """Two whole replies say much the same words (Jaccard of word 3-grams above `threshold`)."""
    return jaccard(word_ngrams(reply), word_ngrams(earlier)) > threshold


def repeats_earlier(partial: str, earlier: list[str], *, min_ngrams: int = 4, share: float = 0.5) -> bool:
    """A reply still being written already repeats an earlier one: most of its 3-grams (at least
    `min_ngrams` of them, so a short stock opener like "Good question!" is not judged) appear in
    one earlier reply. Containment, not Jaccard: the partial reply is shorter than the earlier.
    Checked on the whole reply too, it catches every pair `near_duplicate` would (a Jaccard above
    one half implies more than half of either side's 3-grams are shared)."""
    grams = word_ngrams(partial)
    if len(grams) < min_ngrams:
        return False
    return any(len(grams & word_ngrams(text)) / len(grams) >= share for text in earlier)


def opens_like(first_piece: str, earlier: list[str], *, min_words: int = 3) -> bool:
    """The first piece of a reply is how an earlier reply began, word for word: a tutor that
    opens every reply with the same sentence has begun to collapse, however short it is."""
    words = _WORD.findall(first_piece.lower())
    if len(words) < min_words:
        return False
    return any(_WORD.findall(old.lower())[: len(words)] == words for old in earlier)


def overlaps(text: str, reference: str, *, n: int = 6) -> bool:
    """Shares a run of `n` words with `reference` (e.g. the system prompt)."""
    return bool(word_ngrams(text, n) & word_ngrams(reference, n))
