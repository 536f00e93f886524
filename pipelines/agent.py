"""Agent kernel: persona plus per-session conversation memory, turned into LLM messages."""

from __future__ import annotations

from dataclasses import dataclass, field

from models.base import ChatMessage
from pipelines.personas import Persona


@dataclass(slots=True)
class Exchange:
    user: str
    assistant: str  # only what the student actually heard


@dataclass(slots=True)
class TutorAgent:
    persona: Persona
    # Enough recent context for follow-ups while keeping the prompt (and first-token time) small.
    max_exchanges: int = 8
    history: list[Exchange] = field(default_factory=list)

    def messages_for(self, user_text: str) -> list[ChatMessage]:
        messages = [ChatMessage("system", self.persona.system_prompt)]
        for exchange in self.history:
            messages.append(ChatMessage("user", exchange.user))
            if exchange.assistant:
                messages.append(ChatMessage("assistant", exchange.assistant))
        messages.append(ChatMessage("user", user_text))
        return _merge_consecutive(messages)

    def remember(self, user_text: str, heard_reply: str) -> None:
        self.history.append(Exchange(user_text, heard_reply.strip()))
        if len(self.history) > self.max_exchanges:
            # Forget in one big step, not one exchange per turn: a window that slides every turn
            # changes the prompt's start each time, and the LLM must then re-read all of it
            # instead of reusing its cached prefix.
            del self.history[: len(self.history) - self.max_exchanges // 2]


def _merge_consecutive(messages: list[ChatMessage]) -> list[ChatMessage]:
    """A reply the student cut off before hearing anything leaves two user turns in a row;
    chat templates expect alternation, so join them."""
    merged: list[ChatMessage] = []
    for message in messages:
        if merged and merged[-1].role == message.role == "user":
            merged[-1] = ChatMessage("user", f"{merged[-1].content} {message.content}")
        else:
            merged.append(message)
    return merged
