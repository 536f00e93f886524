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
    r"(?:bombs?|explosives?|poisons?|grenades?|molotovs?|napalm|pipe ?bombs?|thermite|dynamite|tnt|nerve gas"
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
    r"\b(?:want|wanna|going|planning|ready) to (?:die|end it all|end my life|disappear)\b(?! into| in)",
    r"\bwish i could (?:just |simply )?(?:disappear|vanish|die|not exist|stop existing)\b",
    r"\b(?:nobody|no one|noone|no-one)(?: \w+){0,4} (?:likes|loves|cares about|wants|plays with|talks to|sits with) me\b",
    r"\bi'?m (?:so |really |just )?(?:rubbish|useless|bad|stupid|hopeless|a failure) at everything\b",
    r"\b(?:a|the|some|this|that|my)? ?(?:boy|girl|kid|child|man|woman|person|someone|somebody|they|he|she|\w+s)"
    r"(?: \w+){0,3} (?:keeps?|kept|always|is|are|was|were)? ?(?:hitting|punching|kicking|hurting|bullying|pushing|"
    r"hits|punches|kicks|hurts|bullies|pushes|hit|punched|kicked|hurt|bullied|pushed) me\b",
    # Self-injury, in a child's words: "scratching my arms till they bleed".
    r"\b(?:cut|cutting|scratch|scratching|burn|burning|hit|hitting|punch|punching|bite|biting) (?:my|myself on my) "
    r"(?:arms?|legs?|wrists?|skin|self|head)\b.{0,40}\b(?:bleed|blood|hurts?|on purpose|when i'?m|because)\b",
    r"\b(?:till|until|so) (?:they|it) (?:bleeds?|bled)\b",
    r"\bi (?:feel|am|'m) (?:so |really |just )?(?:worthless|useless|like nothing|invisible|like a burden|like giving up)\b",
    r"\bi feel like (?:dying|giving up|disappearing|nobody (?:cares|wants me|likes me))\b",
    r"\b(?:everyone|everybody|they|kids|people|the others) (?:at school |in my class )?(?:keep |always )?"
    r"(?:calls?|calling) me (?:stupid|dumb|ugly|fat|names|an idiot|a loser|thick)\b",
    r"\b(?:everyone|everybody|all my \w+) (?:hates|hate) me\b",
    r"\bend (?:my life|it all)\b",
    r"\bwish i (?:was|were) (?:dead|never born)\b",
    r"\bdon'?t want to (?:live|be alive|be here anymore|wake up)\b",
    r"\b(?:no|not any) (?:reason|point) (?:to|in) (?:live|living|being alive)\b",
    r"\bi (?:really |just )?hate (?:my ?self|myself|my life)\b",
    r"\b(?:nobody|no one|no-one) (?:loves|cares about|likes|would miss) me\b",
    r"\bi(?:'m| am) (?:so |really |always )?(?:worthless|hopeless|depressed)\b",
    r"\bi(?:'m| am) (?:being )?(?:bullied|abused)\b",
    r"\b(?:someone|somebody|he|she|they|my \w+) (?:keeps? |always )?(?:hits|hit|beats|beat|hurts|hurt|touches|touched"
    r"|punches|punched|kicks|kicked|slaps|slapped) me\b",
    r"\b(?:kids|children|people|boys|girls|they|someone|somebody|\w+s) (?:at|in|from) (?:school|class|home)"
    r" (?:keep |always )?(?:hit|hurt|beat|kick|punch|bully|push) me\b",
    r"\bi(?:'m| am) (?:scared|afraid) (?:of|to go) (?:home|my (?:dad|father|mum|mom|mother|step\w*|uncle))\b",
)

_VIOLENCE = (
    rf"\b{_I_WANT_TO}{_MAKE}\b.{{0,30}}\b{_WEAPON}\b",
    rf"\b{_I_WANT_TO}{_GET} (?:a |an |some |my own )?{_WEAPON}\b",
    rf"\b{_I_WANT_TO}{_MAKE} (?:something|a thing|stuff|things|it) (?:that |which )?"
    rf"(?:explodes?|blows? up|goes boom|go boom)\b",
    rf"\b(?:instructions|recipe|steps) (?:for|to) (?:making |building )?(?:a |an )?{_DESTRUCTIVE}\b",
    rf"\b(?:what|which) (?:chemicals?|ingredients?|stuff|things|powders?) (?:make|makes|go into|are in|do i need for)"
    rf" (?:a |an )?{_DESTRUCTIVE}\b",
    rf"\bhow (?:much|many) \w+(?: \w+)? (?:would|do|does|will|should|could) (?:i|you|we|someone) need to "
    rf"{_MAKE} (?:a |an )?{_DESTRUCTIVE}\b",
    r"\b(?:what|which) (?:chemicals?|things|stuff|liquids?|powders?) (?:can|could|should|do) (?:i|we|you) "
    r"(?:mix|combine|put together) to make (?:something|it|a \w+|things) (?:explode|blow up|go boom|burn|catch fire)\b",
    r"\b(?:all )?the (?:gory|gruesome|bloody|disgusting) (?:bits|parts|details|stuff)\b",
    # Whatever the means: the student means to hurt someone.
    rf"\b{_I_WANT_TO}(?:\w+ ){{1,6}}to (?:hurt|kill|poison|harm|injure) {_PEOPLE}\b",
    rf"\bhow (?:do|can|could|would|should|to) (?:i |you |we |someone |one )?"
    rf"(?:kill|murder|stab|shoot|strangle|poison|hurt|beat up|attack|torture) {_PEOPLE}\b",
    rf"\b(?:blow up|set fire to|burn|poison) {_PEOPLE}\b",
    rf"\b(?:write|tell|make|give|read) (?:me |us )?(?:a |an |some )?(?:story|stories|tale|poem)\b.{{0,40}}"
    rf"\b(?:stab|stabs|kill|kills|murder|murders|shoot|shoots|hurt|hurts|punch|punches|beat up) {_PEOPLE}\b",
    rf"\b(?:i(?:'m| am)? (?:going|gonna|want) to|i'?ll|let'?s) "
    rf"(?:kill|murder|stab|shoot|hurt|beat up) {_PEOPLE}\b",
    # Asking for violence as entertainment, not history: "tell me a gory story", "with lots of blood".
    r"\b(?:tell|write|give|read|make) (?:me |us )?(?:a|an|some)\b.{0,30}"
    r"\b(?:violent|gory|bloody|brutal|gruesome)\b.{0,20}\b(?:story|stories|tale|poem)\b",
    r"\b(?:story|stories|tale|poem)\b.{0,40}\b(?:lots|loads|full|tons) of (?:blood|gore|killing|guts)",
    r"\b(?:lots|loads|tons|as much|full) of (?:blood|gore|guts)\b|\bas much (?:blood|gore|guts)\b",
    r"\b(?:write|tell|make|give|read) (?:me |us )?(?:a |an |some )?(?:story|stories|tale|poem)\b.{0,30}"
    r"\b(?:gets?|got|is|was|being) (?:stabbed|murdered|killed|shot|strangled|tortured)\b",
    # A weapon named first, then the student's own intent: "how did they make guns? I want to make one".
    rf"\b{_WEAPON}\b.{{0,80}}\b{_I_WANT_TO}(?:{_MAKE}|{_GET}) (?:one|it|them|some)\b",
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
    r"\b(?:something|anything|stuff|a (?:story|poem|joke)) (?:dirty|naughty|rude|sexual)\b",
    r"\b(?:dirty|naughty|rude) (?:story|stories|jokes?|pictures?|things|stuff|poems?)\b",
    r"\b(?:taking|take|takes|took|get|getting) (?:their |her |his |your |my |all )?clothes off\b",
)

# Contact details: never said by the student, nor made up by the tutor.
_CONTACT = (
    r"[\w.+-]+@[\w-]+\.[a-z]{2,}",  # an email address
    r"\+\d[\d\s().-]{8,}\d",  # an international phone number
    r"\b\d{3}[\s.-]\d{3}[\s.-]\d{4}\b",  # 555-123-4567
    r"\(\d{3,5}\)\s?\d{3,4}[\s.-]?\d{3,4}\b",  # (555) 123 4567
    r"\b0\d{4}\s?\d{6}\b",  # 07700 900123
    r"\b(?:phone|mobile|cell|telephone)(?: number)?(?: is|:)\s*[\d\s()+-]{6,}",
    r"\b(?:phone|mobile|cell|telephone) number(?: is|'s|:)\s+(?:oh|zero|one|two|three|four|five|six|seven|eight|nine"
    r"|double|triple)\b",
    r"\bcall me (?:at|on) \d",
    r"\b(?:my|our|his|her|their) (?:home |house |real )?address(?: is|:)",
    r"\b(?:i|we) live at (?:number )?\d",
    r"\b\d{1,5} [a-z]+(?: [a-z]+)? (?:street|road|avenue|lane|drive|close|crescent|boulevard|terrace)\b",
)

_PERSONAL_DATA = (
    *_CONTACT,
    r"\b(?:post ?code|zip ?code|zip)(?: is|:)",
    r"\bwhat school do you go to\b|\bwhere(?:'s| is) your school\b|\bwhich school (?:do you|are you)\b",
    r"\bpass ?words?\b|\bpasscodes?\b|\bpin (?:number|code)\b|\bmy pin is\b",
    r"\b(?:my|his|her|their) (?:full |real |last |family |sur)name is\b|\bmy surname\b",
    r"\b(?:credit card|bank card|card number|social security|passport number)\b",
    r"\bwhere do you live\b|\byour (?:home )?address\b|\byour phone number\b",
    r"\b(?:give|tell|send|find|get) me (?:\w+'s |my \w+'s |their |his |her )?(?:phone|mobile|home|email|e-mail) "
    r"(?:number|address)\b",
)

# A first name alone is fine ("my name is Abi"); a first name and a surname is not. Matched on
# the original capitals, since a transcript or a typed name is capitalised.
_DIGIT_WORDS = {"oh": 0, "zero": 0, "nought": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6,
                "seven": 7, "eight": 8, "nine": 9}


def spoken_phone_number(folded: str) -> bool:
    """Seven or more digits said one by one ("oh seven seven double oh nine ..."), as a phone
    number is read out; counting aloud ("one two three ... seven") is a steady step, not a number."""
    run: list[int] = []
    words = re.findall(r"[a-z]+|\d", folded)
    i = 0
    while i <= len(words):
        word = words[i] if i < len(words) else ""
        repeat = {"double": 2, "triple": 3}.get(word)
        if repeat and i + 1 < len(words) and words[i + 1] in _DIGIT_WORDS:
            run += [_DIGIT_WORDS[words[i + 1]]] * repeat
            i += 2
            continue
        if word == "hundred" and run:
            run += [0, 0]  # "nine hundred" read out of a number is nine, oh, oh
        elif word in _DIGIT_WORDS or word.isdigit():
            run.append(_DIGIT_WORDS.get(word, int(word) if word.isdigit() else 0))
        else:
            steps = {b - a for a, b in zip(run, run[1:])}
            if len(run) >= 7 and len(steps) > 1:
                return True
            run = []
        i += 1
    return False


# A school named with its town ("I go to St Mary's Primary in Leeds"), matched on capitals too.
SCHOOL_AND_TOWN = re.compile(
    r"\b(?:[Ii] go to|[Mm]y school is|[Ii]'m at|[Ii] am at) (?:[A-Z][\w']*\.? ?){1,4}"
    r"(?:[Ss]chool|[Pp]rimary|[Aa]cademy|[Jj]unior|[Ii]nfants|[Cc]ollege)?\b.{0,15}\bin [A-Z][a-z]+"
)
FULL_NAME = re.compile(
    r"\b(?:(?:[Mm]y|[Hh]is|[Hh]er|[Tt]heir) (?:\w+'s )?(?:full |real )?name(?:'s| is)|(?:is|am|'m|are) called) "
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
    r"\b(?:do|write|finish|complete|solve|fill in|fill out) (?:all )?(?:of )?my (?:\w+ ){0,3}"
    r"(?:homework|essay|assignment|test|exam|worksheet|sheet|project|coursework|review|report|story|answers) for me\b",
    # "Just tell me the answer" to one sum is a teaching matter (the lesson plan hints instead);
    # answers to hand in are cheating.
    r"\bjust (?:tell|give|say) (?:me )?(?:all )?(?:the )?answers\b",
    r"\banswer key\b|\bhelp me cheat\b|\bcheat(?:ing)? (?:on|in) (?:a|the|my) (?:test|exam|quiz)\b",
    r"\bso i can copy (?:it|them|the answers?) (?:in|into|onto|for) my\b",
    r"\b(?:search|look up|find|google|get)\b.{0,30}\b(?:test|exam|quiz|homework|worksheet) answers\b",
)

_ROLE_CHANGE = (
    r"\b(?:ignore|disregard|forget|override|skip|bypass)\b.{0,20}\b(?:previous|prior|above|earlier|preceding"
    r"|former|all|your|any|system)\b.{0,15}\b(?:instructions?|prompts?|rules|messages?|directions"
    r"|programming|guidelines|orders)\b",
    r"\byou(?: are|'re) now (?:a|an|called|named|free|unfiltered|evil|in \w+ mode|dan)\b",
    r"\bfrom now on,? you(?: are|'re| will| must| should)\b|\byou(?: are|'re) no longer\b",
    r"\bforget (?:that )?you(?: are|'re)\b|\bstop being (?:a |my )?\w+ tutor\b",
    r"\bforget (?:about )?being (?:a |an |my |the )?(?:\w+ )?(?:tutor|teacher|helper|assistant)\b",
    r"\b(?:repeat|tell me|say|print|show|write out)\b.{0,25}\b(?:everything|all|what|the stuff) "
    r"(?:they|you were|someone|your (?:makers?|creators?|developers?|bosses?)|the people who made you) "
    r"(?:told|said to|gave|taught) you\b",
    r"^\W*#{2,}\s*(?:instruction|system|response|input)s?\b",
    # A typed conversation transcript: "System: ... User: ..." sets up roles in plain words.
    r"^\W*(?:system|assistant|developer)\s*:|\b(?:system|assistant)\s*:.{0,300}\buser\s*:",
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
    r"\bus(?:e|ing) (?:your|a|the) (?:tools?|browser|internet|computer|phone|search)\b",
    r"\bsave (?:this|that|it|my \w+) (?:for me|to (?:a|my|the) \w+)",
    r"\b(?:can|could|will|would) (?:you|u) (?:please )?(?:email|e-mail|text|message|call|phone|ring|dm)\b",
    r"\b(?:buy|order) (?:me|us)\b|\b(?:on|from) (?:amazon|ebay)\b",
    r"\blook (?:it |that |this )?(?:up )?(?:on|at) (?:google|youtube|the internet|the web|wikipedia)\b",
    r"\b(?:save|print|download) (?:my|this|the|that|it) (?:\w+ )?(?:to|as|in|into|on) (?:a |my |the )?"
    r"(?:file|computer|drive|printer|usb|desktop|folder)\b|\bprint (?:it|this|that|my \w+) (?:out )?for me\b",
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
        (
            *_VIOLENCE,
            rf"\b(?:make|build|assemble|mix)\b (?:a |an |your own |homemade |some )?{_DESTRUCTIVE}",
            r"\b(?:mix|combine|add)\b.{0,40}\bto make (?:something|it|a \w+|things) (?:explode|blow up|go boom)\b",
            r"\bmix(?:ing)? (?:\w+ ){0,3}bleach\b|\bbleach (?:and|with) (?:ammonia|vinegar|other)\b",
        )
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
