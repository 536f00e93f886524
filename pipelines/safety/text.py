"""Student text made harmless before it reaches a prompt, and a folded form for matching rules.

`neutralise` keeps what the student meant and removes what could steer the model: chat-template
markers of the common templates (ChatML, Llama 2 and 3, Mistral, Gemma, Phi, Zephyr), control and
invisible format characters, and lone surrogates (one kept in memory would break every later
prompt). The llama.cpp adapter also tokenises message content without special tokens; this is the
same guard for every other engine, whose servers apply templates we do not see.
"""

from __future__ import annotations

import re
import unicodedata

# Full-width and small look-alikes of < > | are folded first, so "＜|im_start|＞" is caught too.
_LOOKALIKES = str.maketrans({"＜": "<", "＞": ">", "｜": "|", "﹤": "<", "﹥": ">", "［": "[", "］": "]"})

TEMPLATE_MARKERS = re.compile(
    r"<\s*\|[^<>|\n]{0,40}\|\s*>"  # <|im_start|>, <|eot_id|>, <|start_header_id|>, <|system|> ...
    r"|</?\s*s\s*>"  # <s> </s>
    r"|\[\s*/?\s*(?:INST|SYS|SYSTEM_PROMPT|AVAILABLE_TOOLS|TOOL_CALLS)\s*\]"  # [INST] [/INST]
    r"|<<\s*/?\s*SYS\s*>>"  # <<SYS>>
    r"|<\s*/?\s*(?:start_of_turn|end_of_turn|bos|eos|pad|unk|sep|cls|mask|think|tool_call)\s*>",
    re.IGNORECASE,
)


def _drop(char: str) -> bool:
    category = unicodedata.category(char)
    # Cc: control characters; Cf: zero-width and direction marks (they also hide words from the
    # rules); Cs: lone surrogates; Co/Cn: private-use and unassigned code points.
    return category in ("Cc", "Cf", "Cs", "Co", "Cn")


def neutralise(text: str) -> str:
    """The student's text with template markers, control characters and lone surrogates gone."""
    text = "".join(" " if c in "\t\r\n\v\f" else c for c in text if c in "\t\r\n\v\f" or not _drop(c))
    folded = text.translate(_LOOKALIKES)
    if TEMPLATE_MARKERS.search(folded):
        text = TEMPLATE_MARKERS.sub(" ", folded)
    return " ".join(text.split())


def has_template_markers(text: str) -> bool:
    """Whether the raw text carries chat-template markers: a student has no reason to type them."""
    cleaned = "".join(c for c in text if not _drop(c) or c in "\t\r\n")
    return bool(TEMPLATE_MARKERS.search(cleaned.translate(_LOOKALIKES)))


_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u00b4": "'"})


def fold(text: str) -> str:
    """Lower case, compatibility forms folded (full-width letters), apostrophes straightened and
    spacing collapsed: what the rules match against."""
    text = "".join(c for c in text if not _drop(c) or c in "\t\r\n")
    text = unicodedata.normalize("NFKC", text).translate(_APOSTROPHES).casefold()
    return " ".join(text.split())


def words(text: str) -> list[str]:
    """Plain words for n-gram comparison: letters and digits only."""
    return re.findall(r"[a-z0-9]+", fold(text))
