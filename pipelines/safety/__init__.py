"""The safety layer for minors, in code: the student's words are neutralised and screened before
the model, each sentence of the reply is screened before speech and captions, and every decision
is a typed event (category and action, never the text). See `policy.TABLE` for what is done about
each category, and `guard` for where the reply stage calls in.
"""

from pipelines.safety.policy import TABLE, Response
from pipelines.safety.screen import OutputScreen, screen_input
from pipelines.safety.text import neutralise

__all__ = ["TABLE", "OutputScreen", "Response", "neutralise", "screen_input"]
