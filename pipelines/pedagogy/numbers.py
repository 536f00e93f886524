"""Numbers as children say them, and sums as they ask them.

A transcript says "seven times eight is fifty four" or "what is 144 divided by 12"; the tutor must
know what was asked and whether a claim is right, because the embedded model cannot do arithmetic
and a tutor that praises a wrong times-table answer does harm. Values are `Fraction`s so "a half
plus a quarter" is exact. Only what children say aloud is understood: whole numbers to the
millions, simple fractions (halves to tenths) and the four operations, "half of" and "double".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

_UNITS = {
    "zero": 0,
    "nought": 0,
    "oh": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fourty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
# Denominator words, singular and plural ("a third", "two thirds").
_PARTS = {
    "half": 2,
    "halves": 2,
    "third": 3,
    "thirds": 3,
    "quarter": 4,
    "quarters": 4,
    "fourth": 4,
    "fourths": 4,
    "fifth": 5,
    "fifths": 5,
    "sixth": 6,
    "sixths": 6,
    "seventh": 7,
    "sevenths": 7,
    "eighth": 8,
    "eighths": 8,
    "ninth": 9,
    "ninths": 9,
    "tenth": 10,
    "tenths": 10,
}
PART_NAMES = {
    2: ("half", "halves"),
    3: ("third", "thirds"),
    4: ("quarter", "quarters"),
    5: ("fifth", "fifths"),
    6: ("sixth", "sixths"),
    7: ("seventh", "sevenths"),
    8: ("eighth", "eighths"),
    9: ("ninth", "ninths"),
    10: ("tenth", "tenths"),
}

# Operators in the words children use, longest first; the value is the operator's symbol.
_OPERATORS = [
    ("multiplied by", "*"),
    ("times by", "*"),
    ("lots of", "*"),
    ("groups of", "*"),
    ("times", "*"),
    ("x", "*"),
    ("×", "*"),
    ("*", "*"),
    ("divided by", "/"),
    ("divide by", "/"),
    ("shared between", "/"),
    ("shared by", "/"),
    ("÷", "/"),
    ("/", "/"),
    ("take away", "-"),
    ("takeaway", "-"),
    ("minus", "-"),
    ("subtract", "-"),
    ("-", "-"),
    ("−", "-"),
    ("plus", "+"),
    ("add", "+"),
    ("+", "+"),
]
_CLAIM = ("is", "equals", "makes", "are", "=", "is it", "its", "it's", "equal")
_TOKEN = re.compile(r"\d+(?:\.\d+)?(?:/\d+)?|[a-z]+(?:'[a-z]+)?|[+\-−×÷*/=]")


@dataclass(frozen=True, slots=True)
class Num:
    value: Fraction
    start: int  # token index
    end: int  # token index after it


def tokens(text: str) -> list[str]:
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text.lower())  # "1,000"
    text = re.sub(r"(?<=[a-z])-(?=[a-z])", " ", text)  # "fifty-four"
    return _TOKEN.findall(text)


def _whole(words: list[str], i: int) -> tuple[int, int] | None:
    """A whole number said in words from words[i]: (value, next index), or None."""
    total, current, j, seen = 0, 0, i, False
    while j < len(words):
        w = words[j]
        if w in _UNITS and not (w == "oh" and not seen):
            if current % 100 >= 20 and current % 10 == 0 and _UNITS[w] < 10:
                current += _UNITS[w]  # "fifty four"
            elif current % 100 == 0:
                current += _UNITS[w]
            else:
                break
        elif w in _TENS and current % 100 == 0:
            current += _TENS[w]
        elif w in _SCALES and (seen or w == "hundred"):
            scale = _SCALES[w]
            current = max(current, 1)
            if scale == 100:
                current *= 100
            else:
                total += current * scale
                current = 0
        elif (
            w == "and"
            and seen
            and j + 1 < len(words)
            and (words[j + 1] in _UNITS or words[j + 1] in _TENS)
            and (current % 100 == 0 and current > 0 or total > 0)
        ):
            pass  # "one hundred and forty four"
        elif w == "a" and j + 1 < len(words) and words[j + 1] in _SCALES and not seen:
            current = 1
        else:
            break
        seen = seen or w not in ("a", "and")
        j += 1
    if not seen:
        return None
    while j > i and words[j - 1] in ("and", "a"):
        j -= 1
    return total + current, j


def find_numbers(words: list[str]) -> list[Num]:
    found: list[Num] = []
    i = 0
    while i < len(words):
        w = words[i]
        if re.fullmatch(r"\d+/\d+", w):
            top, bottom = w.split("/")
            if int(bottom):
                found.append(Num(Fraction(int(top), int(bottom)), i, i + 1))
            i += 1
            continue
        if re.fullmatch(r"\d+(?:\.\d+)?", w):
            value = Fraction(w)
            if i + 1 < len(words) and words[i + 1] in _PARTS and value.denominator == 1:
                found.append(Num(value / _PARTS[words[i + 1]], i, i + 2))
                i += 2
            else:
                found.append(Num(value, i, i + 1))
                i += 1
            continue
        if w in ("a", "one", "an") and i + 1 < len(words) and words[i + 1] in _PARTS:
            found.append(Num(Fraction(1, _PARTS[words[i + 1]]), i, i + 2))
            i += 2
            continue
        if w in ("half",) and not (i + 1 < len(words) and words[i + 1] == "of"):
            found.append(Num(Fraction(1, 2), i, i + 1))
            i += 1
            continue
        whole = _whole(words, i)
        if whole is not None:
            value, j = whole
            if j < len(words) and words[j] in _PARTS and value:
                found.append(Num(Fraction(value, _PARTS[words[j]]), i, j + 1))
                i = j + 1
            else:
                found.append(Num(Fraction(value), i, j))
                i = j
            continue
        i += 1
    return found


@dataclass(frozen=True, slots=True)
class Expression:
    """A sum a child asked or stated: `left op right`, or `half`/`double` of `left`."""

    op: str  # "+", "-", "*", "/", "half", "double"
    left: Fraction
    right: Fraction | None = None

    @property
    def value(self) -> Fraction | None:
        a, b = self.left, self.right
        if self.op == "half":
            return a / 2
        if self.op == "double":
            return a * 2
        assert b is not None
        if self.op == "+":
            return a + b
        if self.op == "-":
            return a - b
        if self.op == "*":
            return a * b
        return a / b if b else None

    def spoken(self) -> str:
        if self.op == "half":
            return f"half of {say(self.left)}"
        if self.op == "double":
            return f"double {say(self.left)}"
        name = {"+": "plus", "-": "take away", "*": "times", "/": "divided by"}[self.op]
        assert self.right is not None
        return f"{say(self.left)} {name} {say(self.right)}"


@dataclass(frozen=True, slots=True)
class Sum:
    """What a sentence says about a sum: the expression, and the answer claimed for it if any."""

    expression: Expression
    claimed: Fraction | None


def _operator_at(words: list[str], i: int) -> tuple[str, int] | None:
    for phrase, symbol in _OPERATORS:
        parts = phrase.split()
        if words[i : i + len(parts)] == parts:
            return symbol, i + len(parts)
    return None


def find_sum(text: str) -> Sum | None:
    """The first sum in `text` ("what is 6 x 7", "half of ten is two", "7 times 8 = 54?")."""
    words = tokens(text)
    numbers = find_numbers(words)
    by_start = {n.start: n for n in numbers}
    for number in numbers:
        expression: Expression | None = None
        after = number.end
        # "half of ten", "double six"
        if number.start >= 2 and words[number.start - 2 : number.start] == ["half", "of"]:
            expression = Expression("half", number.value)
        elif number.start >= 1 and words[number.start - 1] in ("double", "doubled"):
            expression = Expression("double", number.value)
        else:
            operator = _operator_at(words, number.end) if number.end < len(words) else None
            if operator is None and number.end < len(words) and words[number.end] == "and":
                # "two thirds and one third makes one whole": "and" adds, when an answer is claimed.
                right = by_start.get(number.end + 1)
                if right is not None and _claim_after(words, right.end, by_start) is not None:
                    operator = ("+", number.end + 1)
            if operator is not None and operator[1] in by_start:
                symbol, at = operator
                right = by_start[at]
                expression = Expression(symbol, number.value, right.value)
                after = right.end
        if expression is None:
            continue
        if expression.value is None:
            return None
        claimed = _claim_after(words, after, by_start)
        return Sum(expression, claimed)
    return None


def _claim_after(words: list[str], i: int, by_start: dict[int, Num]) -> Fraction | None:
    j = i
    while j < len(words) and words[j] in (
        "is",
        "equals",
        "equal",
        "makes",
        "are",
        "=",
        "it",
        "its",
        "it's",
        "to",
        "that",
        "so",
        "then",
    ):
        j += 1
    if j > i and j in by_start:
        return by_start[j].value
    return None


def last_number(text: str) -> Fraction | None:
    """The number a short answer gives ("is it forty?", "oh, 42", "three quarters")."""
    numbers = find_numbers(tokens(text))
    return numbers[-1].value if numbers else None


_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS_NAMES = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _say_whole(n: int) -> str:
    if n < 0:
        return f"minus {_say_whole(-n)}"
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS_NAMES[tens] + (f" {_ONES[ones]}" if ones else "")
    if n < 1000:
        hundreds, rest = divmod(n, 100)
        return f"{_ONES[hundreds]} hundred" + (f" and {_say_whole(rest)}" if rest else "")
    if n < 1_000_000:
        thousands, rest = divmod(n, 1000)
        return f"{_say_whole(thousands)} thousand" + (
            f" and {_say_whole(rest)}" if 0 < rest < 100 else f" {_say_whole(rest)}" if rest else ""
        )
    return str(n)


def say(value: Fraction) -> str:
    """A value as a child would say it: "forty two", "three quarters", "two and a half"."""
    if value.denominator == 1:
        return _say_whole(int(value))
    whole, part = divmod(value.numerator, value.denominator)
    if value.denominator in PART_NAMES:
        one, many = PART_NAMES[value.denominator]
        fraction = f"a {one}" if part == 1 else f"{_say_whole(part)} {many}"
        return f"{_say_whole(whole)} and {fraction}" if whole else fraction
    return f"{float(value):g}"


def spoken_forms(value: Fraction) -> tuple[str, ...]:
    """Ways a reply could state `value`, to keep an answer out of what the tutor says."""
    forms = {say(value), say(value).replace(" ", "-")}
    if value.denominator == 1:
        forms.add(str(int(value)))
    else:
        forms.add(f"{value.numerator}/{value.denominator}")
        forms.add(f"{float(value):g}")
    return tuple(sorted(forms))


def mentions(text: str, value: Fraction) -> bool:
    """`text` states `value` (as digits or words), not merely contains its digits in a bigger number."""
    return any(n.value == value for n in find_numbers(tokens(text)))
