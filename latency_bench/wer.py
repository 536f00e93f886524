"""Word error rate with the normalisation the shared clips need (casing, punctuation, numbers)."""

from __future__ import annotations

import json
import re
from pathlib import Path

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SPELLING = {"mr": "mister", "mrs": "missus", "dr": "doctor", "st": "saint", "etc": "et cetera"}


def _below_100(n: int) -> str:
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")


def number_words(n: int) -> str:
    """Spoken form, reading 1100-1999 and 2010+ four-digit numbers as years ("eighteen thirteen")."""
    if n < 100:
        return _below_100(n)
    if 1100 <= n <= 9999 and not (2000 <= n <= 2009) and n % 100 != 0:
        high, low = divmod(n, 100)
        return f"{_below_100(high)} " + (f"oh {_ONES[low]}" if low < 10 else _below_100(low))
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {_below_100(rest)}" if rest else "")
    if n < 1_000_000:
        thousands, rest = divmod(n, 1000)
        return f"{number_words(thousands)} thousand" + (f" {number_words(rest)}" if rest else "")
    return " ".join(_ONES[int(d)] for d in str(n))


def normalise(text: str) -> str:
    text = text.lower().replace("-", " ")
    text = re.sub(r"\d+", lambda m: f" {number_words(int(m.group()))} ", text)
    text = re.sub(r"[^a-z' ]+", " ", text).replace("'", "")
    words = [_SPELLING.get(w, w) for w in text.split()]
    return " ".join(" ".join(words).split())


def word_error_rate(references: list[str], hypotheses: list[str]) -> float:
    import jiwer

    refs = [normalise(r) for r in references]
    hyps = [normalise(h) for h in hypotheses]
    return float(jiwer.wer(refs, hyps))


def load_references(audio_dir: Path) -> dict[str, str]:
    """file name -> reference transcript, from the folder's manifest.json if it has one."""
    manifest = audio_dir / "manifest.json"
    if not manifest.is_file():
        return {}
    data = json.loads(manifest.read_text(encoding="utf-8"))
    entries = data["clips"] if isinstance(data, dict) and "clips" in data else data
    return {e["file"]: e["transcript"] for e in entries}


def word_recall(reference: str, hypothesis: str) -> float:
    """Share of the reference's words the hypothesis holds (as a multiset, order ignored): a turn
    cut in two and answered twice still scores high here, so read it with the count of finals."""
    from collections import Counter

    ref, hyp = Counter(normalise(reference).split()), Counter(normalise(hypothesis).split())
    total = sum(ref.values())
    return sum((ref & hyp).values()) / total if total else 1.0
