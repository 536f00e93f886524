"""Splits streamed reply text into speakable pieces, so speech starts at the first clause.

The first piece may end at a clause boundary (comma, colon, semicolon, dash) once it has a few
words; later pieces end at sentence boundaries, which sound more natural. A sentence end is only
trusted once the next character arrives, so "3.5" and "Mr. Smith" are not split.
"""

from __future__ import annotations

import re

from pipelines.spoken import ends_in_abbreviation

_SENTENCE_END = re.compile(r"[.!?]+[\"')\]]*(?=\s)")
_CLAUSE_END = re.compile(r"[,;:\u2014]+(?=\s)|\s[\u2013-]\s")
# Where a spoken clause may begin without punctuation: the first piece can end just before these.
_CONJUNCTION = re.compile(r"\s(?=(?:and|but|so|because|which|that|when|if|or)\s)", re.IGNORECASE)
_MARKDOWN = re.compile(r"[*_`#>|]+")


def speakable(text: str) -> str:
    """Strip markdown symbols a voice should not read aloud and collapse whitespace."""
    return " ".join(_MARKDOWN.sub("", text).split())


class SentenceChunker:
    def __init__(
        self, *, first_clause_min_words: int = 2, first_piece_max_words: int = 4, max_chars: int = 240
    ) -> None:
        self._buffer = ""
        self._emitted = 0
        self.first_clause_min_words = first_clause_min_words
        # Speech should start soon even when the model writes a long first sentence: every word
        # of the first piece is ~25 ms of generation and ~30 ms of synthesis before any sound.
        # 2 to 4 words is the shortest piece that still sounds like a phrase, not a stammer.
        self.first_piece_max_words = first_piece_max_words
        self.max_chars = max_chars

    def push(self, text: str) -> list[str]:
        self._buffer += text
        pieces: list[str] = []
        while (cut := self._next_cut()) is not None:
            piece = speakable(self._buffer[:cut])
            self._buffer = self._buffer[cut:].lstrip()
            if piece:
                pieces.append(piece)
                self._emitted += 1
        return pieces

    def flush(self) -> list[str]:
        piece = speakable(self._buffer)
        self._buffer = ""
        return [piece] if piece else []

    def _next_cut(self) -> int | None:
        buf = self._buffer
        for match in _SENTENCE_END.finditer(buf):
            if not self._is_abbreviation(buf, match.start()):
                return match.end()
        if self._emitted == 0:
            for match in _CLAUSE_END.finditer(buf):
                if len(buf[: match.start()].split()) >= self.first_clause_min_words:
                    return match.end()
            for match in _CONJUNCTION.finditer(buf):
                # Only once the conjunction's word is complete (followed by a space).
                if len(buf[: match.start()].split()) >= self.first_clause_min_words:
                    return match.start()
            words = list(re.finditer(r"\S+\s", buf))
            if len(words) > self.first_piece_max_words:
                return words[self.first_piece_max_words - 1].end()
        if len(buf) > self.max_chars:
            space = buf.rfind(" ", 0, self.max_chars)
            return space if space > 0 else self.max_chars
        return None

    @staticmethod
    def _is_abbreviation(buf: str, dot: int) -> bool:
        return ends_in_abbreviation(buf[: dot + 1])


def spoken_pieces(line: str) -> list[str]:
    """A whole line (a vetted line of the plan, a reply said again) cut as if it were streamed:
    pushed at once, its first sentence would be one piece, and its audio would start only once
    the whole sentence is synthesised."""
    chunker = SentenceChunker()
    pieces = [piece for word in line.split(" ") for piece in chunker.push(word + " ")]
    return pieces + chunker.flush()
