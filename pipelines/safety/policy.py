"""The one table of what the tutor does about each safety category.

`redirect`: the persona speaks its declared line and the model is never asked, so neither the
student's words nor an attack on the prompt reach it. `guide`: the model answers, with a steering
note added to its system context (never quoting the student). Output categories `replace` the
sentence with a safe line and end the reply there.

Lines are short, kind and spoken in the persona's voice (`{name}`, `{subject}`); distress always
points to a trusted adult. `remembered` is what the conversation memory keeps instead of the
student's words for a redirected turn, so a later prompt does not carry them to the model either.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.frames import SafetyAction, SafetyCategory

_UNSAFE_OUTPUT = "Let's talk about something else. What would you like to learn?"


@dataclass(frozen=True, slots=True)
class Response:
    action: SafetyAction  # for the student's words (`replace`: an output-only category)
    line: str = ""  # spoken by the persona (redirect)
    note: str = ""  # added to the system context (guide)
    remembered: str = ""  # kept in memory instead of the student's words (redirect)
    replacement: str = _UNSAFE_OUTPUT  # said instead of a sentence of the tutor's in this category

    def spoken(self, name: str, subject: str) -> str:
        return self.line.format(name=name, subject=subject)


TABLE: dict[SafetyCategory, Response] = {
    SafetyCategory.SELF_HARM: Response(
        SafetyAction.REDIRECT,
        line=(
            "I'm really glad you told me, and I'm sorry you feel this way. Please talk to a grown-up you "
            "trust today, like a parent, a teacher or the school counsellor, because you matter and you "
            "don't have to handle this alone."
        ),
        remembered="(The student shared something worrying and was encouraged to talk to a trusted adult.)",
    ),
    SafetyCategory.VIOLENCE: Response(
        SafetyAction.REDIRECT,
        line=(
            "That's not something I can help with, because it could hurt someone. "
            "Shall we get back to {subject}?"
        ),
        remembered="(The student asked about something harmful; the tutor steered back to learning.)",
    ),
    SafetyCategory.SEXUAL: Response(
        SafetyAction.REDIRECT,
        line=(
            "That's not something I can talk about with you, and a parent or teacher you trust is the best "
            "person to ask. Shall we get back to {subject}?"
        ),
        remembered="(The student asked about something not suitable; the tutor steered back to learning.)",
    ),
    SafetyCategory.PERSONAL_DATA: Response(
        SafetyAction.REDIRECT,
        line=(
            "Let's keep personal things like names, addresses, phone numbers and passwords private, even "
            "with me. What {subject} question can I help you with?"
        ),
        remembered="(The student mentioned personal details; the tutor reminded them to keep those private.)",
    ),
    SafetyCategory.CHEATING: Response(
        SafetyAction.GUIDE,
        note=(
            "Safety note: the student is asking for answers to hand in. Do not give the final answer. "
            "Kindly offer one small hint or a first step and ask the student to try it."
        ),
    ),
    SafetyCategory.ROLE_CHANGE: Response(
        SafetyAction.REDIRECT,
        line="I'm {name}, your {subject} tutor, and that's who I'll stay. What would you like to learn?",
        remembered="(The student asked the tutor to change its role or show its instructions; it declined.)",
    ),
    # Asked to send, search, save or book: the tutor has no tools, and says so.
    SafetyCategory.FALSE_ACTION: Response(
        SafetyAction.GUIDE,
        note=(
            "Safety note: you cannot send messages or email, browse or search the web, save, book or use "
            "any tools. Say so kindly in one sentence, never pretend to, and offer help with the subject."
        ),
        replacement="I can't do that from here, but I can help you work it out yourself.",
    ),
    # Only ever found in the tutor's own words.
    SafetyCategory.PROMPT_LEAK: Response(
        SafetyAction.REPLACE, replacement="Let's get back to our lesson. What would you like to try next?"
    ),
}


def replacement_for(category: SafetyCategory) -> str:
    """The safe line said instead of a sentence of the tutor's in this category."""
    return TABLE[category].replacement
