"""Agent kernel: persona plus per-session conversation memory, turned into LLM messages.

Memory is bounded by tokens, not turns: one long typed message must not push the prompt past the
model's context (llama.cpp would then drop history from the middle of a cached prefix), and a
small model given a long history starts copying it instead of answering. What is remembered of a
reply is what the student heard, in the spoken style it was heard in.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from models.base import ChatMessage
from pipelines.personas import Persona
from pipelines.spoken import near_duplicate

# Used once a persona's own re-engaging questions have all been heard lately.
_ANY_SUBJECT_RE_ENGAGE = (
    "What would you try first?",
    "Can you tell me what you think so far?",
    "What part is tricky for you?",
)


def estimate_tokens(text: str) -> int:
    """About four characters a token for English text with BPE vocabularies (SmolLM2, Qwen,
    Llama), plus the chat template's few tokens per message. An estimate is enough: the bound
    only has to keep history well inside the context, and the adapter trims as a last resort."""
    return len(text) // 4 + 4


@dataclass(slots=True)
class Exchange:
    user: str
    assistant: str  # only what the student actually heard


@dataclass(slots=True)
class TutorAgent:
    persona: Persona
    # Enough recent context for follow-ups while keeping the prompt (and first-token time) small:
    # ~8 ms a prompt token here, so 400 tokens of history is ~3 s if it ever had to be re-read.
    max_history_tokens: int = 400
    max_exchanges: int = 8
    # The language model's tokenizer where the caller has one; the estimate otherwise.
    count_tokens: Callable[[str], int] = estimate_tokens
    history: list[Exchange] = field(default_factory=list)
    # Replies heard lately, kept past forgetting: a reply must not repeat one even once the
    # exchange it came from has left the prompt.
    recent_replies: deque[str] = field(default_factory=lambda: deque(maxlen=12))
    _reengaged: int = 0
    # A teacher's one-line note about this student ("working on fractions; slow down"): context
    # for every later turn, in the system prompt, so the output screen's leak check keeps the
    # tutor from reading it out.
    guidance: str = ""

    def messages_for(self, user_text: str) -> list[ChatMessage]:
        system = self.persona.system_prompt
        if self.guidance:
            system += f"\n\nA note from the student's teacher, to guide you (never repeat it): {self.guidance}"
        messages = [ChatMessage("system", system)]
        messages += [ChatMessage(m.role, m.content) for m in self.persona.example]
        for exchange in self.history:
            messages.append(ChatMessage("user", exchange.user))
            if exchange.assistant:
                messages.append(ChatMessage("assistant", exchange.assistant))
        messages.append(ChatMessage("user", user_text))
        return _merge_consecutive(messages)

    def remember(self, user_text: str, heard_reply: str) -> None:
        # A single message longer than half the budget keeps only its end (the question is usually last).
        keep = self.max_history_tokens * 2
        self.history.append(Exchange(user_text[-keep:], heard_reply.strip()))
        if heard_reply.strip():
            self.recent_replies.append(heard_reply.strip())
        if self.history_tokens() > self.max_history_tokens or len(self.history) > self.max_exchanges:
            # Forget in one big step, not one exchange per turn: a window that slides every turn
            # changes the prompt's start each time, and the LLM must then re-read all of it
            # instead of reusing its cached prefix. What is kept must be read again once (~8 ms a
            # token here), so keep little: a quarter of the budget, the last exchange or two.
            tokens, exchanges = self.max_history_tokens // 4, self.max_exchanges // 4
            while len(self.history) > 1 and (self.history_tokens() > tokens or len(self.history) > exchanges):
                del self.history[0]

    def history_tokens(self) -> int:
        return sum(self.count_tokens(e.user) + self.count_tokens(e.assistant) for e in self.history)

    def earlier_replies(self) -> list[str]:
        """The replies the student heard, oldest first: a new reply must not repeat one."""
        return list(self.recent_replies)

    def re_engage(self, earlier: list[str]) -> str:
        """A short question that brings the student back in, when the model could only repeat
        itself; never one the student has just heard."""
        lines = (*self.persona.re_engage, *_ANY_SUBJECT_RE_ENGAGE)
        for offset in range(len(lines)):
            line = lines[(self._reengaged + offset) % len(lines)]
            if not any(near_duplicate(line, old, threshold=0.3) or line in old for old in earlier):
                self._reengaged += offset + 1
                return line
        self._reengaged += 1
        return lines[self._reengaged % len(lines)]


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
