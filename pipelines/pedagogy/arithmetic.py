"""Sums worked out with the child, one small step at a time, never handed over.

Each strategy is the one primary teachers use: add the tens then the ones, count on or count up,
reach a times-table fact from one the child knows (times two, five or ten) and add the groups
that are left, count up in the divisor, and put fractions over one denominator. Every step is a
question with a known answer, so the next turn can say "yes" or "not quite" and be right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from pipelines.pedagogy.numbers import PART_NAMES, Expression, say

_ANCHORS = (10, 5, 2, 1)


@dataclass(frozen=True, slots=True)
class Step:
    question: str  # asked of the student; ends with "?"
    answer: Fraction
    hint: str  # a smaller nudge towards this step, said when the student is stuck or wrong


def _word(n: int | Fraction) -> str:
    return say(Fraction(n))


def _groups(n: int, of: int) -> str:
    return f"one more {_word(of)}" if n == 1 else f"{_word(n)} more {_plural(of)}"


def _plural(n: int) -> str:
    word = _word(n)
    return word + ("es" if word.endswith("x") else "s")


def steps(expression: Expression) -> list[Step]:
    """The steps that lead the student to `expression`'s value; the last step's answer is it."""
    op, a, b = expression.op, expression.left, expression.right
    total = expression.value
    assert total is not None
    whole = all(x is None or x.denominator == 1 for x in (a, b))
    if op == "half":
        return [
            Step(
                f"If you share {_word(a)} into two equal groups, how many are in each group?",
                total,
                f"Try splitting {_word(a)} into two piles that are the same size.",
            )
        ]
    if op == "double":
        return [Step(f"What is {_word(a)} plus {_word(a)}?", total, f"Double means two lots of {_word(a)}.")]
    assert b is not None
    if not whole:
        return _fraction_steps(expression)
    x, y = int(a), int(b)
    if op == "+":
        return _add(x, y, total)
    if op == "-":
        return _subtract(x, y, total)
    if op == "*":
        return _multiply(x, y, total)
    return _divide(x, y, total)


def _in_tens(way: str, start: int, tens: int) -> str:
    if tens == 10:
        return f"Count {way} {_word(start)} by one ten."
    return f"Count {way} {_word(start)} in tens, {_word(tens // 10)} tens in all."


def _add(x: int, y: int, total: Fraction) -> list[Step]:
    big, small = max(x, y), min(x, y)
    if small < 10 or big < 10:
        return [
            Step(
                f"If you start at {_word(big)} and count on {_word(small)} more, what number do you get to?",
                total,
                f"Hold {_word(big)} in your head and count on {_word(small)}, one finger at a time.",
            )
        ]
    tens, ones = small - small % 10, small % 10
    if not ones:
        return [
            Step(
                f"What is {_word(big)} plus {_word(tens)}?",
                total,
                _in_tens("on from", big, tens),
            )
        ]
    first = big + tens
    return [
        Step(
            f"First, what is {_word(big)} plus {_word(tens)}?",
            Fraction(first),
            _in_tens("on from", big, tens),
        ),
        Step(
            f"Now add the {_word(ones)} that's left: what is {_word(first)} plus {_word(ones)}?",
            total,
            f"Start at {_word(first)} and count on {_word(ones)} more.",
        ),
    ]


def _subtract(x: int, y: int, total: Fraction) -> list[Step]:
    if y > x:
        return [
            Step(
                f"If you start at {_word(x)} and count back {_word(y)}, going past zero, where do you land?",
                total,
                "Count back to zero first, then keep counting into the minus numbers.",
            )
        ]
    tens, ones = y - y % 10, y % 10
    # Close numbers are counted up; so is a difference equal to the tens taken away, which
    # "take away twenty" would already say.
    if y < 10 or x - y < 10 or x - y == tens:
        return [
            Step(
                f"How many do you count up from {_word(y)} to reach {_word(x)}?",
                total,
                f"Start at {_word(y)} and count up to {_word(x)} on your fingers.",
            )
        ]
    first = x - tens
    if not ones:
        return [
            Step(
                f"What is {_word(x)} take away {_word(tens)}?",
                total,
                _in_tens("back from", x, tens),
            )
        ]
    return [
        Step(
            f"First, what is {_word(x)} take away {_word(tens)}?",
            Fraction(first),
            _in_tens("back from", x, tens),
        ),
        Step(
            f"Now take away the {_word(ones)} that's left: what is {_word(first)} take away {_word(ones)}?",
            total,
            f"Start at {_word(first)} and count back {_word(ones)}.",
        ),
    ]


def _multiply(x: int, y: int, total: Fraction) -> list[Step]:
    if x == 0 or y == 0:
        return [
            Step(
                f"If you have {_word(max(x, y))} groups with nothing in each, how many do you have altogether?",
                total,
                "Think about how many things are in each group.",
            )
        ]
    if max(x, y) > 12 and min(x, y) > 1:
        # Split the bigger number into tens and ones (grid method).
        big, small = max(x, y), min(x, y)
        tens, ones = big - big % 10, big % 10
        if ones and tens:
            return [
                Step(
                    f"First, what is {_word(tens)} times {_word(small)}?",
                    Fraction(tens * small),
                    f"Work out {_word(tens // 10)} times {_word(small)}, then make it ten times bigger.",
                ),
                Step(
                    f"And what is {_word(ones)} times {_word(small)}?",
                    Fraction(ones * small),
                    f"Count up in {_plural(small)}, {_word(ones)} times.",
                ),
                Step(
                    f"Now add {_word(ones * small)} to {_word(tens * small)}: what do you get?",
                    total,
                    f"Add the hundreds and tens of {_word(tens * small)} first, then the rest.",
                ),
            ]
    # Reach a known fact: `groups` lots of `size`, from `anchor` lots, with the fewest groups left.
    best = None
    for size, groups in ((x, y), (y, x)):
        for anchor in _ANCHORS:
            if anchor <= groups:
                left = groups - anchor
                if best is None or left < best[0]:
                    best = (left, size, groups, anchor)
                break
    assert best is not None
    left, size, groups, anchor = best
    if left == 0 or anchor == 1:
        return [
            Step(
                f"If you count up in {_plural(size)}, {_word(groups)} times, what do you get to?",
                total,
                _count_up_hint(size, groups),
            )
        ]
    first = anchor * size
    return [
        Step(
            f"What is {_word(anchor)} times {_word(size)}?",
            Fraction(first),
            f"Count up in {_plural(size)}, {_word(anchor)} times.",
        ),
        Step(
            f"Now add {_groups(left, size)}: what do you get?",
            total,
            f"Start at {_word(first)} and count on {_groups(left, size)}.",
        ),
    ]


def _count_up_hint(size: int, groups: int) -> str:
    if groups <= 2:  # listing the multiples would already say the answer
        return f"Start at {_word(size)} and count on {_word(size)} more."
    return f"Count up in {_plural(size)}: {_word(size)}, {_word(2 * size)}, and keep going, {_word(groups)} numbers in all."


def _divide(x: int, y: int, total: Fraction) -> list[Step]:
    if y == 1:
        return [
            Step(
                f"If you share {_word(x)} between one person, how many do they get?",
                total,
                "One person gets everything.",
            )
        ]
    if total.denominator != 1:
        quotient = x // y
        return [
            Step(
                f"How many whole {_plural(y)} fit into {_word(x)}?",
                Fraction(quotient),
                f"Count up in {_plural(y)} until the next one would go past {_word(x)}.",
            )
        ]
    multiples = (y, 2 * y, 3 * y)
    if total in multiples:  # "two, four, six" would already say that eight has four twos
        hint = f"Count up in {_plural(y)} from {_word(y)} until you reach {_word(x)}, and keep track of how many you said."
    else:
        listed = ", ".join(_word(m) for m in multiples)
        hint = f"Count up in {_plural(y)}: {listed}, and keep going until you reach {_word(x)}."
    return [Step(f"How many {_plural(y)} make {_word(x)}?", total, hint)]


def _fraction_steps(expression: Expression) -> list[Step]:
    a, b = expression.left, expression.right
    assert b is not None
    total = expression.value
    assert total is not None
    if expression.op in ("+", "-") and a.denominator != b.denominator:
        common = math.lcm(a.denominator, b.denominator)
        # Rewrite the one that needs it in the other's parts.
        convert = a if a.denominator != common else b
        if common not in PART_NAMES:
            return [
                Step(
                    f"What is {expression.spoken()}?",
                    total,
                    "Put both fractions over the same bottom number first.",
                )
            ]
        many = PART_NAMES[common][1]
        count = convert * common
        word = "plus" if expression.op == "+" else "take away"
        other = b if convert is a else a
        first_words = f"{_word(int(count))} {many}"
        left, right = (first_words, say(other)) if convert is a else (say(other), first_words)
        return [
            Step(
                f"How many {many} are the same as {say(convert)}?",
                Fraction(int(count)),
                f"Picture {say(convert)} of a pizza cut into {many}.",
            ),
            Step(
                f"So what is {left} {word} {right}?",
                total,
                "When the bottoms are the same, add or take away the tops and keep the bottom.",
            ),
        ]
    if expression.op in ("+", "-"):
        word = "plus" if expression.op == "+" else "take away"
        return [
            Step(
                f"The bottoms are the same, so what is {say(a)} {word} {say(b)}?",
                total,
                "Add or take away the top numbers and keep the bottom number the same.",
            )
        ]
    return [
        Step(
            f"What is {expression.spoken()}?", total, "Think of it as a picture: draw it and count the parts."
        )
    ]
