"""The reply stage's hooks into the safety layer, one per point of the reply's path:

    transcript -> `admit` (neutralised, screened) -> `screen` (redirect: the persona's line, no
    model) -> `steer` (guide: a note in the system context) -> model -> `output` (each sentence
    screened before speech and captions) -> `remembered` (what memory keeps of a redirected turn)

Every decision is recorded on the attempt as a `SafetyFlag` (category and action, never text),
which the reply stage publishes and the metering stage puts on the turn.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

from models.base import ChatMessage
from pipelines.frames import SafetyAction, SafetyCategory, SafetyDirection, SafetyFlag
from pipelines.personas import Persona
from pipelines.safety.policy import TABLE, Response
from pipelines.safety.screen import OutputScreen, screen_input
from pipelines.safety.text import neutralise
from pipelines.turn import Attempt


class ReplyGuard:
    def __init__(self) -> None:
        self._categories: weakref.WeakKeyDictionary[Attempt, SafetyCategory] = weakref.WeakKeyDictionary()
        self._verdicts: weakref.WeakKeyDictionary[Attempt, Response] = weakref.WeakKeyDictionary()

    def admit(self, attempt: Attempt, text: str) -> str:
        """The student's words as they may enter a prompt, screened as they were said (template
        markers are themselves a sign of an attack, and neutralising removes them)."""
        if (category := screen_input(text)) is not None:
            self._categories[attempt] = category
        return neutralise(text)

    def screen(self, attempt: Attempt) -> SafetyFlag | None:
        """The verdict on the student's words takes effect: the flag to publish, once, if any."""
        category = self._categories.pop(attempt, None)
        if category is None:
            return None
        response = TABLE[category]
        self._verdicts[attempt] = response
        return record(attempt, category, response.action, SafetyDirection.INPUT)

    def redirect(self, attempt: Attempt, persona: Persona) -> str | None:
        """The persona's declared line when the category says the model must not be asked."""
        response = self._verdicts.get(attempt)
        if response is None or response.action is not SafetyAction.REDIRECT:
            return None
        return response.spoken(persona.name, persona.subject)

    def steer(self, attempt: Attempt, messages: list[ChatMessage]) -> list[ChatMessage]:
        """The prompt with the category's steering note added to the system context."""
        response = self._verdicts.get(attempt)
        if response is None or not response.note:
            return messages
        if messages and messages[0].role == "system":
            return [ChatMessage("system", f"{messages[0].content}\n\n{response.note}"), *messages[1:]]
        return [ChatMessage("system", response.note), *messages]

    def output(self, messages: Sequence[ChatMessage]) -> OutputScreen:
        """A screen for one reply, against the system context the model was given."""
        return OutputScreen(" ".join(m.content for m in messages if m.role == "system"))

    def remembered(self, attempt: Attempt) -> str:
        """What memory keeps of the student's words: a neutral summary for a redirected turn."""
        response = self._verdicts.get(attempt)
        if response is not None and response.action is SafetyAction.REDIRECT:
            return response.remembered
        return attempt.user_text


def record(
    attempt: Attempt, category: SafetyCategory, action: SafetyAction, direction: SafetyDirection
) -> SafetyFlag:
    flag = SafetyFlag(attempt.turn_id, category, action, direction)
    attempt.safety.append(flag)
    return flag
