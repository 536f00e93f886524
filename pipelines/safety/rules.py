"""The patterns that recognise each category, matched against `text.fold`ed text.

Rules, not a model: they run in microseconds on every turn and every sentence, they are read and
reviewed like the rest of the code, and a false positive is fixed by a test and one line here.
Each pattern names what makes the request harmful (a person as the target, making a weapon, an
explicit term), not a bare topic word, so "how do I kill the process", "the war killed millions"
and "what's a sexagesimal number" stay ordinary tutoring talk (see tests/unit/test_safety_rules.py).
"""

from __future__ import annotations

import re

from pipelines.frames import SafetyCategory

_PEOPLE = (
    r"(?:someone|somebody|anyone|anybody|people|a person|persons?|him|her|them|a human|humans|a kid|kids"
    r"|a child|children|a baby|an? (?:teacher|student|classmate|animal|dog|cat)|animals"
    r"|my (?:\w+ )?(?:brother|sister|mum|mom|mother|dad|father|parents?|teacher|friend|classmate|family"
    r"|neighbou?r|cousin|grandma|grandpa|dog|cat|pet|bully)s?|the (?:teacher|bully|neighbou?r)s?)"
)
# Things made to destroy: instructions for these are never given. (Guns and weapons in general are
# also history: only the student's own intent to make or get one counts, see _VIOLENCE.)
_DESTRUCTIVE = (
    r"(?:bombs?|explosives?|grenades?|molotovs?|napalm|pipe ?bombs?|thermite|dynamite|tnt|nerve gas"
    r"|mustard gas|ricin|anthrax)"
)
_WEAPON = rf"(?:{_DESTRUCTIVE}|guns?|firearms?|rifles?|pistols?|weapons?)"
# The student's own intent ("how do I", "teach me to", "I want to"): "how did the Romans make
# weapons" is a history question.
_I_WANT_TO = (
    r"(?:(?:how|where) (?:do|can|could|would|should|to) (?:i |we |you |someone |one )?"
    r"|(?:teach|show|tell) me (?:how )?(?:to )?"
    r"|i (?:want|need|wanna|am going|'m going|am gonna|'m gonna) to |let'?s |help me (?:to )?)"
)
_MAKE = r"(?:make|build|create|cook|assemble|craft|3d print)"
_GET = r"(?:get|buy|find|get hold of|steal)"

_SELF_HARM = (
    r"\b(?:kill|hurt|harm|cut|stab|shoot|starve|poison) (?:my ?self|myself)\b",
    r"\bsuicid(?:e|al)\b",
    r"\bself[- ]?harm",
    r"\b(?:want|wanna|going|planning|ready) to (?:die|end it all|end my life|disappear forever)\b",
    r"\bend (?:my life|it all)\b",
    r"\bwish i (?:was|were) (?:dead|never born)\b",
    r"\bdon'?t want to (?:live|be alive|be here anymore|wake up)\b",
    r"\b(?:no|not any) (?:reason|point) (?:to|in) (?:live|living|being alive)\b",
    r"\bi (?:really |just )?hate (?:my ?self|myself|my life)\b",
    r"\b(?:nobody|no one|no-one) (?:loves|cares about|likes|would miss) me\b",
    r"\bi(?:'m| am) (?:so |really |always )?(?:worthless|hopeless|depressed)\b",
    r"\bi(?:'m| am) (?:being )?(?:bullied|abused)\b",
    r"\b(?:someone|somebody|he|she|they|my \w+) (?:hits|beats|hurts|touches) me\b",
    r"\bi(?:'m| am) (?:scared|afraid) (?:of|to go) (?:home|my (?:dad|father|mum|mom|mother|step\w*|uncle))\b",
)

_VIOLENCE = (
    rf"\b{_I_WANT_TO}{_MAKE}\b.{{0,30}}\b{_WEAPON}\b",
    rf"\b{_I_WANT_TO}{_GET} (?:a |an |some |my own )?{_WEAPON}\b",
    rf"\b{_I_WANT_TO}{_MAKE} (?:something|a thing|stuff|things|it) (?:that |which )?"
    rf"(?:explodes?|blows? up|goes boom|go boom)\b",
    rf"\b(?:instructions|recipe|steps) (?:for|to) (?:making |building )?(?:a |an )?{_DESTRUCTIVE}\b",
    rf"\bhow (?:do|can|could|would|should|to) (?:i |you |we |someone |one )?"
    rf"(?:kill|murder|stab|shoot|strangle|poison|hurt|beat up|attack|torture) {_PEOPLE}\b",
    rf"\b(?:i(?:'m| am)? (?:going|gonna|want) to|i'?ll|let'?s) "
    rf"(?:kill|murder|stab|shoot|hurt|beat up) {_PEOPLE}\b",
    # Asking for violence as entertainment, not history: "tell me a gory story", "with lots of blood".
    r"\b(?:tell|write|give|read|make) (?:me |us )?(?:a|an|some)\b.{0,30}"
    r"\b(?:violent|gory|bloody|brutal|gruesome)\b.{0,20}\b(?:story|stories|tale|poem)\b",
    r"\b(?:story|stories|tale|poem)\b.{0,40}\b(?:lots|loads|full|tons) of (?:blood|gore|killing|guts)",
    r"\b(?:lots|loads|tons) of (?:blood|gore|guts)\b",
    r"\bshoot up (?:the|my|a) school\b",
    r"\b(?:bring|take) a (?:gun|knife|weapon) to school\b",
)

_SEXUAL = (
    r"\bporn\w*",
    r"\bnudes?\b",
    r"\bnaked (?:pic|pics|picture|pictures|photos?|selfies?|people|girls?|boys?|women|men)\b",
    r"\bsexy\b|\bhorny\b|\berotic\w*|\bhentai\b|\bonlyfans\b|\bmasturbat\w*|\bblow ?jobs?\b",
    r"\bsex\b(?! (?:cells?|chromosomes?|organs?|determination|ratio|linked|education|ed\b"
    r"|of (?:a|an|the)\b))",
    r"\b(?:have|having|had) sex\b|\bmake out with\b|\bsleep with me\b",
    r"\b(?:send|show) (?:me )?(?:a )?(?:pics?|pictures?|photos?) of (?:you|your body)\b",
    r"\b(?:boobs|tits|dick pic)\b",
)

# Contact details: never said by the student, nor made up by the tutor.
_CONTACT = (
    r"[\w.+-]+@[\w-]+\.[a-z]{2,}",  # an email address
    r"\+\d[\d\s().-]{8,}\d",  # an international phone number
    r"\b\d{3}[\s.-]\d{3}[\s.-]\d{4}\b",  # 555-123-4567
    r"\(\d{3,5}\)\s?\d{3,4}[\s.-]?\d{3,4}\b",  # (555) 123 4567
    r"\b0\d{4}\s?\d{6}\b",  # 07700 900123
    r"\b(?:phone|mobile|cell|telephone)(?: number)?(?: is|:)\s*[\d\s()+-]{6,}",
    r"\bcall me (?:at|on) \d",
    r"\b(?:my|our|his|her|their) (?:home |house |real )?address(?: is|:)",
    r"\b(?:i|we) live at (?:number )?\d",
    r"\b\d{1,5} [a-z]+(?: [a-z]+)? (?:street|road|avenue|lane|drive|close|crescent|boulevard|terrace)\b",
)

_PERSONAL_DATA = (
    *_CONTACT,
    r"\b(?:post ?code|zip ?code|zip)(?: is|:)",
    r"\bpass ?words?\b|\bpasscodes?\b|\bpin (?:number|code)\b|\bmy pin is\b",
    r"\b(?:my|his|her|their) (?:full |real |last |family |sur)name is\b|\bmy surname\b",
    r"\b(?:credit card|bank card|card number|social security|passport number)\b",
    r"\bwhere do you live\b|\byour (?:home )?address\b|\byour phone number\b",
)

# A first name alone is fine ("my name is Abi"); a first name and a surname is not. Matched on
# the original capitals, since a transcript or a typed name is capitalised.
FULL_NAME = re.compile(
    r"\b(?:[Mm]y|[Hh]is|[Hh]er|[Tt]heir) (?:\w+'s )?(?:full |real )?name(?:'s| is) "
    r"[A-Z][a-z]+ (?:[A-Z]\.? )?[A-Z][a-z]+"
)

_CHEATING = (
    r"\b(?:give|tell|show|send|get) me (?:all )?(?:of )?(?:the )?(?:(?:test|exam|quiz|homework|worksheet)"
    r" )?answers\b",
    r"\banswers? (?:to|for|of) (?:the|my|our|this|tomorrow'?s|today'?s|next week'?s) (?:\w+ )?"
    r"(?:test|exam|quiz|homework|worksheet|assignment)\b",
    r"\b(?:can|could|will|would) you (?:please )?(?:just )?(?:do|write|finish|complete|solve) "
    r"(?:all )?(?:of )?"
    r"my (?:\w+ )?(?:homework|essay|assignment|test|exam|worksheet|project|coursework)\b",
    r"\b(?:do|write|finish|complete|solve) (?:all )?(?:of )?my (?:\w+ )?"
    r"(?:homework|essay|assignment|test|exam|worksheet|project|coursework) for me\b",
    r"\bjust (?:tell|give|say) (?:me )?(?:the )?answers?\b",
    r"\banswer key\b|\bhelp me cheat\b|\bcheat(?:ing)? (?:on|in) (?:a|the|my) (?:test|exam|quiz)\b",
    r"\bso i can copy (?:it|them|the answers?) (?:in|into|onto|for) my\b",
)

_ROLE_CHANGE = (
    r"\b(?:ignore|disregard|forget|override|skip|bypass)\b.{0,20}\b(?:previous|prior|above|earlier|preceding"
    r"|former|all|your|any|system)\b.{0,15}\b(?:instructions?|prompts?|rules|messages?|directions"
    r"|programming|guidelines|orders)\b",
    r"\byou(?: are|'re) now (?:a|an|called|named|free|unfiltered|evil|in \w+ mode|dan)\b",
    r"\bfrom now on,? you(?: are|'re| will| must| should)\b|\byou(?: are|'re) no longer\b",
    # Play-acting a Roman soldier is good history; play-acting away the tutor's rules is not.
    r"\b(?:pretend|imagine|act (?:like|as if)|role ?-?play)\b.{0,30}"
    r"\b(?:no (?:rules|limits|filters|restrictions)"
    r"|not (?:a|my) tutor|(?:my|a) (?:girlfriend|boyfriend)|evil|unfiltered)\b",
    r"\bstop being (?:a|my) tutor\b|\byour (?:new|real|true) (?:role|persona|personality|instructions)\b",
    r"\bdeveloper mode\b|\bjailbreak\w*|\bdo anything now\b|\bunfiltered mode\b",
    r"\b(?:system|initial|original|hidden|secret|first|starting) (?:prompt|instructions?|message)\b",
    r"\byour (?:instructions|prompt|rules|programming|guidelines|configuration)\b",
    r"\b(?:repeat|print|reveal|show|recite|output|say|read|write|copy)\b.{0,40}"
    r"\b(?:above (?:this|the)|everything above|all (?:of )?the (?:text|words) above|before this line)\b",
    r"\bwhat (?:were|are) you (?:told|instructed|programmed)\b",
)

# The student asks for an action the tutor has no means to take.
_TOOL_REQUESTS = (
    r"\bsend (?:an? |the |my |this |that )?(?:email|e-mail|text|message|sms)\b",
    r"\b(?:email|text|message) (?:my|the) \w+ for me\b",
    r"\buse (?:your|a|the) (?:tools?|browser|internet|computer|phone|search)\b",
    r"\b(?:search|browse|google|look (?:it|this|that) up on) (?:the )?(?:web|internet|online|google)\b",
    r"\b(?:set|make) (?:me )?an? (?:reminder|alarm|appointment)\b",
    r"\bbook (?:me )?an? (?:\w+ )?(?:appointment|ticket|table)\b",
    r"\b(?:call|phone|ring) (?:my|the) \w+ for me\b|\bsave (?:this|that|it|my work) (?:for me|to a file)\b",
)

# Output only: the tutor claims something it cannot do (it has no tools, no web, no memory store).
_FALSE_ACTION = (
    r"\bi(?:'ve| have)? (?:just )?(?:sent|emailed|e-mailed|texted|messaged|saved|stored|booked|scheduled"
    r"|ordered|bought|downloaded|uploaded|posted|called|phoned|searched|googled|browsed|looked (?:it|that)"
    r" up online|set (?:a|an|the) (?:reminder|alarm|timer))\b",
    r"\bi(?:'ll| will| am going to|'m going to| can) (?:now )?(?:send|email|e-mail|text|book|order|buy|call"
    r"|phone|download|search the (?:web|internet)|browse|google|look (?:it|that) up online|set a reminder)\b",
    r"\bi(?:'m| am) (?:now )?(?:sending|emailing|e-mailing|texting|booking|ordering|calling|searching"
    r"|browsing|googling|downloading)\b",
    r"\b(?:sending|sent) (?:the|an|your|this) (?:email|e-mail|message|text)\b",
    r"\bi searched the (?:web|internet|online)\b|\baccording to (?:my|a) (?:web |google |internet )?search\b",
    r"\b(?:your|the) (?:email|e-mail|message) (?:has been|was) sent\b",
)

# Output only, besides the input rules: words a tutor must never say to a child.
_OUTPUT_HARM = (
    r"\b(?:kill|hurt|harm|cut|starve|poison) yourself\b",
    r"\byou should (?:die|disappear)\b",
    r"\b(?:your|my) password is\b",
)


def _compile(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(p) for p in patterns)


# In order of precedence: when a message matches several, the first decides what is said.
INPUT_RULES: dict[SafetyCategory, tuple[re.Pattern[str], ...]] = {
    SafetyCategory.SELF_HARM: _compile(_SELF_HARM),
    SafetyCategory.SEXUAL: _compile(_SEXUAL),
    SafetyCategory.VIOLENCE: _compile(_VIOLENCE),
    SafetyCategory.ROLE_CHANGE: _compile(_ROLE_CHANGE),
    SafetyCategory.PERSONAL_DATA: _compile(_PERSONAL_DATA),
    SafetyCategory.CHEATING: _compile(_CHEATING),
    SafetyCategory.FALSE_ACTION: _compile(_TOOL_REQUESTS),
}

OUTPUT_RULES: dict[SafetyCategory, tuple[re.Pattern[str], ...]] = {
    SafetyCategory.SELF_HARM: _compile(_OUTPUT_HARM[:2]),
    SafetyCategory.SEXUAL: INPUT_RULES[SafetyCategory.SEXUAL],
    SafetyCategory.VIOLENCE: _compile(
        (*_VIOLENCE, rf"\b(?:make|build|assemble|mix)\b (?:a |an |your own |homemade |some )?{_DESTRUCTIVE}")
    ),
    SafetyCategory.PERSONAL_DATA: _compile((*_CONTACT, _OUTPUT_HARM[2])),
    SafetyCategory.FALSE_ACTION: _compile(_FALSE_ACTION),
}


Rules = dict[SafetyCategory, tuple[re.Pattern[str], ...]]


def first_match(folded: str, rules: Rules) -> SafetyCategory | None:
    for category, patterns in rules.items():
        if any(p.search(folded) for p in patterns):
            return category
    return None
