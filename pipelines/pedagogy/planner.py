"""The teaching move for each turn: what the tutor says first, whether the model writes a
sentence and on which fact, and the question the reply ends with.

The model phrases; this decides. A 135M model cannot check a sum, keeps no lesson plan and
invents facts, so the moves that must be right are made here: a claimed sum is checked, a sum the
student asks for is worked out with them step by step (never handed over), the answer to the
tutor's own last question is judged against what it expected, a known misconception gets its
vetted correction, an off-topic turn is steered back, and every teaching reply ends with a
question. Where the model speaks, it is given a vetted fact to phrase (`lessons`), and what it
writes is checked (`checks`) before anyone hears it. A larger engine gets the same plan and
simply phrases better.

Plans are pure: the stage commits one (`Teacher.commit`) only once its reply was heard, so a
speculative reply that was thrown away does not move the lesson on.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass, field, replace
from fractions import Fraction

from pipelines.pedagogy.arithmetic import Step, steps
from pipelines.pedagogy.lessons import Card, Lessons, lessons_for
from pipelines.pedagogy.numbers import Expression, find_numbers, find_sum, last_number, say, tokens
from pipelines.personas import Persona
from pipelines.spoken import near_duplicate

_DONT_KNOW = re.compile(
    r"\b(i )?(do ?n[o']?t|dont) (know|get|understand|remember)\b|\bdunno\b|\bno idea\b|\bnot sure\b|"
    r"\bi'?m (stuck|confused|lost)\b|\bno clue\b|\bi can'?t (do|think|work|get|figure)\b",
    re.IGNORECASE,
)
_TELL_ME = re.compile(
    r"\bjust (tell|give|say|show|do|fix|write)\b|\b(tell|give|show) me the answers?\b|\bwhat'?s the answer\b|"
    r"\b(do|fix|write|finish|solve) (it|this|that|my \w+)( for me)?\b.*\bfor me\b|\bfor me\b.*\b(do|fix|write|solve)\b|"
    r"\bcan you just\b|\bwrite my\b",
    re.IGNORECASE,
)
_OFF_TOPIC = re.compile(
    r"\b(favou?rite|do you like|do you love|what do you (eat|like)|your (name|age|pet|family)|how old are you|"
    r"are you (real|a robot|human)|play a game|let'?s play|video ?games?|minecraft|fortnite|roblox|football|soccer|"
    r"youtubers?|tiktok|pizza|breakfast|lunch|dinner|a joke|tell me a story|pokemon|my (dog|cat|pet)|"
    r"talk about something else|can we talk about|instead\b|bored|what did you do|"
    r"(?:who|what)(?:'s| is| are) (?:the )?(?:best|coolest|funniest|greatest)|who would win|sing me|your birthday)\b",
    re.IGNORECASE,
)
_GOODBYE = re.compile(
    r"\b(bye|goodbye|good bye|see you|next time|that'?s all|i have to go|i'?ve got to go|gotta go)\b", re.IGNORECASE
)
_GREETING = re.compile(r"^\W*(hi|hello|hey|hiya|good (morning|afternoon|evening))\b", re.IGNORECASE)
# Chat about the tutor itself ("do you like snow?"), even when a topic word is in it.
_ABOUT_TUTOR = re.compile(
    r"\b(do you (like|love|have|eat|play|watch)|have you (ever )?(watched|seen|played|been|read|got)|your favou?rite|"
    r"are you (real|a robot|human)|how old are you)\b",
    re.IGNORECASE,
)
# Someone telling their own news: "I got a new puppy", "my cat sat on my homework".
_NEWS = re.compile(
    r"\b(my|we'?re|we are|we went|we had|i'?m|i am|i got|i have|i had|i went|i saw|i did|i like|i love)\b",
    re.IGNORECASE,
)
# Words that open a question, with or without its question mark ("is it a hour or an hour").
_ASKS = re.compile(
    r"^\W*(?:(?:and|so|but|um|uh|oh|ok|okay|hmm|well|miss|sir)\W+){0,2}"
    r"(?:what|whats|why|how|hows|when|where|who|whose|which|is|isn'?t|are|aren'?t|am|was|were|do|does|did|"
    r"can|could|should|would|will|has|have)\b",
    re.IGNORECASE,
)
# Asking the tutor to do something ("teach me some swear words", "search the internet for ..."):
# not news to thank the student for.
_REQUEST = re.compile(
    r"^\W*(?:please\W+)?(?:teach|tell|give|show|help|find|search|look|explain|make|write|read|say|sing|"
    r"google|send|play|draw|do|let'?s)\b|\bplease\b",
    re.IGNORECASE,
)
_LOW = re.compile(
    r"\b(sad|upset|unhappy|lonely|crying|scared|afraid|frightened|worried|miserable|bullied|"
    r"nobody likes|no one likes|hate my|hates me|rubbish at|left out|no friends)\b",
    re.IGNORECASE,
)
# Someone may be hurt ("the cut on his chest is still dripping blood"): whoever it is, a child
# who says so hears care and a grown-up's name before any lesson.
_HURT = re.compile(
    r"\b(bleeding|bled|(?:dripping|covered in|lots of|losing) blood|"
    r"blood (?:everywhere|coming out|on (?:my|his|her))|injured|injury|bruised|sprained|concussion|broke my|hurt my|"
    r"broken (?:arm|leg|bone|wrist|ankle|finger|nose)|hurt (?:him|her|my|them)sel(?:f|ves))\b",
    re.IGNORECASE,
)
_NEXT = re.compile(
    r"\bwhat (should|can|shall) (i|we) (do|learn|practi[sc]e|try|study|look at|work on)\b.{0,20}\bnext\b|\bwhat next\b",
    re.IGNORECASE,
)
# A new question of the student's, not an answer to the tutor's ("is it forty?" is an answer).
_ANSWER_TAGS = frozenset({"right", "yes", "i", "think", "maybe", "is", "it", "isn't", "isnt", "miss", "sir"})
_NEW_QUESTION = re.compile(
    r"^\W*(?:(?:and|so|but|um|oh|ok|okay|bye|thanks|thank you|hi|hey|miss|sir)\W+){0,2}"
    r"(?:what|why|how|when|where|who|which|can|could|should"
    r"|(?:did|does|do|was|were|will|would|has|have|are|is) (?:they|he|she|you|we|people|the|a|an|there)\b)\b",
    re.IGNORECASE,
)

_PRAISE = ("Yes, that's right!", "That's it, well done!", "Yes, spot on!", "Exactly right, nice work!")
_NOT_QUITE = ("Not quite, ", "Close, but not quite: ", "Good try, but not quite: ")
_STUCK = ("That's okay, ", "No problem, ", "That's fine, let's go slowly: ")
_WORK_IT_OUT = (
    "Let's work it out together.",
    "We can find that one step at a time.",
    "Let's crack it together, step by step.",
)
_HAND_OVER = (
    "I won't just give you the answer, but I'll help you find it.",
    "You can get this yourself, and I'll help.",
    "I'd rather help you find it than tell you.",
)
_REFLECT = (
    "How did you work that out?",
    "Can you tell me why that works?",
    "How would you explain that to a friend?",
)
_PRACTICE = (
    "Now can you try this one: what is {sum}?",
    "Here's another: what is {sum}?",
    "Next one: what is {sum}?",
)
# The model's sentence must be ready by the time its lead has been said (it plays meanwhile), or
# the fallback is said instead: no silence opens up in the middle of a reply.
# About a second and a half at most: long enough for a sentence on a quiet machine, short enough
# that the silence after the lead stays short.
SPOKEN_S_PER_CHAR = 0.065  # Piper's joe voice at rate 1.0, measured on the leads below


def _deadline(lead: str) -> float:
    return min(1.5, max(0.6, SPOKEN_S_PER_CHAR * len(lead)))


# Said at once while the model writes; the sentence that follows completes it.
_OPEN_LEAD = ("Okay, let me think:", "Right, let's see:", "Hmm, let me think:", "Well, let's see:")
_EXPLAIN_LEAD = ("Here's the idea:", "Good question, so:", "Let's see:", "Here's how it works:")
_EXPLAIN_SLIP = (
    "Can you tell me how you worked it out, so we can find the slip together?",
    "Talk me through how you got that, step by step?",
)
_WHY = (
    "What makes you think that?",
    "Can you tell me more about your idea?",
    "How could we find out if that's true?",
)
_OPEN_CLOSE = (
    "What do you think?",
    "What do you already know about that?",
    "Can you tell me a bit more about what you're working on?",
    "Which part would you like to look at first?",
)
_NEXT_LEAD = ("How about {topic} next?", "Let's look at {topic} next.", "You could try {topic} next.")


class Move(enum.StrEnum):
    SUM_RIGHT = "sum_right"  # a claimed sum is right
    SUM_WRONG = "sum_wrong"  # a claimed sum is wrong: not told, worked out
    WORK_IT_OUT = "work_it_out"  # a sum the student asked for: worked out with them
    STEP_RIGHT = "step_right"  # the answer to the tutor's last step is right
    STEP_WRONG = "step_wrong"
    STUCK = "stuck"  # "I don't know" to the tutor's own question: a smaller hint
    EXPLAIN = "explain"  # a topic question: the model phrases the card's fact
    MISCONCEPTION = "misconception"  # a known wrong belief: its vetted correction
    CARD_RIGHT = "card_right"  # the answer to a card's question is right
    CARD_WRONG = "card_wrong"
    CARD_OPEN = "card_open"  # an idea in answer to an open question: built on, no verdict
    HINT = "hint"  # "just tell me" on a topic: the card's hint, not the answer
    OFF_TOPIC = "off_topic"
    NO_TOOLS = "no_tools"  # asked to send, browse or save: it can't, and says so
    NEXT = "next"  # "what should I learn next?"
    GREETING = "greeting"
    GOODBYE = "goodbye"
    CHECK_IN = "check_in"  # sounds unhappy: a kind word and a grown-up to talk to
    OPEN = "open"  # nothing to teach from: the model answers, then a question


@dataclass(frozen=True, slots=True)
class PendingSum:
    """A sum the tutor is working out with the student: the step just asked (-1: the whole sum)."""

    expression: Expression
    steps: tuple[Step, ...]
    index: int
    misses: int = 0  # wrong answers to this step so far
    stuck: int = 0  # "I don't know"s to this step so far

    @property
    def asked(self) -> Fraction:
        assert self.expression.value is not None
        return self.expression.value if self.index < 0 else self.steps[self.index].answer


@dataclass(frozen=True, slots=True)
class Plan:
    move: Move
    lead: str = ""  # said first, before the model
    model: bool = False  # the model writes one sentence
    note: str = ""  # the fact to phrase: the model then sees only the persona, this and the question
    fallback: str = ""  # said instead when the model's sentence fails its checks or is empty
    close: str = ""  # the question that ends the reply (unless the reply already asked one)
    fact: str = ""  # the vetted fact the model's sentence must stay close to
    grounding: str = ""  # words a model sentence may use beyond everyday English
    forbidden: tuple[Fraction, ...] = ()  # values no sentence of the model may state
    # Seconds the model has for its sentence, from the start of the reply (the lead plays
    # meanwhile); missed, the fallback is said. None: no deadline.
    deadline_s: float | None = None
    # The lesson's state once this reply is heard.
    pending_sum: PendingSum | None = None
    pending_card: Card | None = None
    topic: Card | None = None


@dataclass(slots=True)
class Teacher:
    """One session's lesson: what the tutor last asked, and what it is teaching."""

    persona: Persona
    lessons: Lessons = field(init=False)
    pending_sum: PendingSum | None = None
    pending_card: Card | None = None
    topic: Card | None = None
    card_tries: int = 0  # hints, wrong answers and changes of subject on the pending card's question so far
    # The tutor's last question asked for the student's own words ("What do you think?"), with no
    # answer to judge: whatever they say next answers it, however far from the lesson it sounds.
    invited: bool = False
    _turn: int = 0
    _starter: int = 0

    def __post_init__(self) -> None:
        self.lessons = lessons_for(self.persona.id)

    def commit(self, plan: Plan) -> None:
        """The plan's reply was heard: the lesson moves on."""
        same = plan.pending_card is not None and plan.pending_card is self.pending_card
        tried = plan.move in (Move.STUCK, Move.CARD_WRONG, Move.OFF_TOPIC)
        self.card_tries = self.card_tries + 1 if same and tried else 0
        self.pending_sum, self.pending_card = plan.pending_sum, plan.pending_card
        self.topic = plan.topic or self.topic
        self.invited = bool(plan.close) and plan.pending_sum is None and plan.pending_card is None
        self._turn += 1

    def expects_answer(self) -> bool:
        card = self.pending_card
        return self.pending_sum is not None or (card is not None and bool(card.accept))

    def hears_right_answer(self, text: str) -> bool:
        """The words so far are the right answer to the question the tutor is waiting on: evidence
        for the turn policy that the student has finished, however unsure the audio model is.

        Only a right answer counts: "fifty" may be the start of "fifty six", but a child who says
        the number the step asked for, with nothing after it, has answered. Nothing is judged
        here; the plan judges the committed words as always."""
        if _NEW_QUESTION.match(text):
            return False
        if self.pending_sum is not None:
            words = tokens(text)
            numbers = find_numbers(words)
            if not numbers or find_sum(text) is not None:
                return False
            last = numbers[-1]
            # Nothing after the number but a tag ("right?", "I think"): "fifty six and" goes on.
            tail = words[last.end :]
            right = {self.pending_sum.asked, self.pending_sum.expression.value}
            return last.value in right and all(word in _ANSWER_TAGS for word in tail)
        card = self.pending_card
        return card is not None and bool(card.accept) and len(text.split()) <= 6 and card.accepts(text)

    def plan(self, text: str, earlier: list[str], *, no_tools: bool = False) -> Plan:
        """The move for the student's words. `no_tools`: the safety layer found a request for an
        action the tutor cannot take (send, browse, save): it says so, kindly, and teaches on."""
        pick = _Picker(earlier, self._turn)
        if no_tools:
            starter = self._starter_card(self.topic)
            lead = (
                f"I can't send messages, search the web or use any tools, but I can help you with "
                f"{self.persona.subject} right here."
            )
            close = starter.question if starter is not None else pick(_OPEN_CLOSE)
            return Plan(Move.NO_TOOLS, lead=lead, close=close, pending_card=starter, topic=starter)
        vocabulary = f"{text} {self.lessons.vocabulary} {self.persona.name} {self.persona.subject}"
        dont_know, tell_me = bool(_DONT_KNOW.search(text)), bool(_TELL_ME.search(text))
        said = find_sum(text)

        # A sum in the student's words is the maths the turn is about.
        if said is not None and self.persona.id == "maths":
            return self._sum(said.expression, said.claimed, tell_me, pick)

        # An answer (or "I don't know") to the step the tutor just asked.
        if self.pending_sum is not None:
            number = last_number(text)
            if number is not None and not _NEW_QUESTION.match(text):
                return self._answer_step(self.pending_sum, number, pick)
            if dont_know or tell_me:
                return self._stuck(self.pending_sum, tell_me, pick)

        if _HURT.search(text):
            return Plan(
                Move.CHECK_IN,
                lead="That sounds like it hurts, and I'm glad you told me.",
                close=(
                    "If anyone is hurt, please tell a grown-up near you right now; shall we carry on after that?"
                ),
            )

        if _LOW.search(text):
            # Sounds unhappy, though not in words the safety layer acts on: a kind word and a door
            # to a grown-up, never a cheerful "back to work".
            return Plan(
                Move.CHECK_IN,
                lead="That sounds hard, and I'm glad you told me.",
                close=(
                    "If something is worrying you, a grown-up you trust can help; shall we carry on together?"
                ),
            )

        if _GOODBYE.search(text) and len(text.split()) <= 10 and not self.lessons.find(text):
            return Plan(Move.GOODBYE, lead=pick((
                "Yes, let's do more next time, and well done for working so hard today.",
                "Of course, see you next time, and well done today.",
            )))

        wrong = self.lessons.misconception(text)
        if wrong is not None:
            card, misconception = wrong
            return Plan(
                Move.MISCONCEPTION,
                lead=misconception.correction,
                close=card.question,
                pending_card=card,
                topic=card,
            )

        card = self.lessons.find(text)
        pending = self.pending_card
        answering = not _NEW_QUESTION.match(text)  # a question of the student's own is not an answer
        if pending is not None and pending.accept and answering and (card is None or card is pending):
            if pending.accepts(text):
                return Plan(Move.CARD_RIGHT, lead=pick(_PRAISE), close=pick(_REFLECT), topic=pending)
            if dont_know or tell_me or len(text.split()) <= 6:
                return self._card_retry(pending, dont_know or tell_me, earlier, pick)
        if (
            pending is not None
            and not pending.accept
            and answering
            and card in (None, pending)
            and not dont_know
            and not tell_me
        ):
            # An idea in answer to an open question: taken seriously, built on, and asked about.
            clue = _unheard((pending.fact, pending.hint), earlier)
            # No verdict on an open question: the idea is thanked, not praised as right.
            lead = (
                f"Thanks for your idea, and here's something to add: {continue_sentence(clue)}"
                if clue
                else pick(
                    (
                        "That's an interesting idea.",
                        "Thanks for sharing your idea.",
                    )
                )
            )
            return Plan(Move.CARD_OPEN, lead=lead, close=pick(_WHY), topic=pending)

        if _ABOUT_TUTOR.search(text) or (_OFF_TOPIC.search(text) and card is None and not dont_know):
            # Steered back, to the topic the words touched if they touched one.
            starter = card or self._starter_card(self.topic)
            lead = pick(
                (
                    f"That sounds fun, but I'm here to help with {self.persona.subject}.",
                    f"Let's keep our minds on {self.persona.subject} for now.",
                    f"Good question for another time, but let's get back to {self.persona.subject}.",
                )
            )
            close = starter.question if starter is not None else pick(_OPEN_CLOSE)
            return Plan(Move.OFF_TOPIC, lead=lead, close=close, pending_card=starter, topic=starter)

        if card is None and _GREETING.match(text) and len(text.split()) <= 8:
            lead = f"Hi, I'm {self.persona.name}, your {self.persona.subject} tutor."
            return Plan(
                Move.GREETING,
                lead=lead,
                close=pick(
                    (
                        "What would you like to work on today?",
                        f"Which part of {self.persona.subject} shall we start with?",
                    )
                ),
            )

        if _NEXT.search(text):
            nxt = self._starter_card(self.topic)
            if nxt is not None:
                lead = pick(_NEXT_LEAD).format(topic=nxt.topic)
                return Plan(Move.NEXT, lead=lead, close=nxt.question, pending_card=nxt, topic=nxt)

        if card is not None:
            fact_heard = any(card.fact.lower() in old.lower() for old in earlier)  # after a lead it goes on in lower case
            if tell_me:
                # Asked to be told: a nudge, not the answer (and never the same nudge twice running).
                nudge = _unheard((card.hint, card.fact), earlier)
                if nudge is not None:
                    return Plan(Move.HINT, lead=nudge, close=card.question, pending_card=card, topic=card)
            elif not fact_heard:
                note = (
                    f"The true fact to teach: {card.fact} Explain it to the student in one short sentence, "
                    "in plain words. Do not ask a question."
                )
                return Plan(
                    Move.EXPLAIN,
                    lead=(lead := pick(_EXPLAIN_LEAD)),
                    model=True,
                    note=note,
                    deadline_s=_deadline(lead),
                    fallback=card.fact,
                    close=card.question,
                    fact=card.fact,
                    grounding=f"{card.words} {vocabulary}",
                    pending_card=card,
                    topic=card,
                )

        if dont_know and self.topic is not None:
            # Lost on the topic in hand: its hint or fact if not heard lately, else something new.
            return self._card_retry(self.topic, True, earlier, pick)

        if tell_me:
            return Plan(Move.HINT, lead=pick(_HAND_OVER), close="Which question are you working on?")

        if (
            not _ASKS.match(text)
            and "?" not in text
            and not dont_know
            and (not self.invited or _NEWS.search(text))
            and self.pending_sum is None
            and card is None
            and not self._on_subject(text)
        ):
            # Words that touch neither the subject nor an open question of the tutor's (a line
            # from a story, words misheard), or news from the student's day ("I got a new puppy")
            # whatever was asked: nothing to teach from, and a small model asked to answer them
            # says things that make no sense ("I'm afraid of him."). A kind word, then back to
            # the lesson: the question still waiting, once, or a new one (the same question over
            # and over is not a conversation).
            again = pending is not None and self.card_tries == 0
            starter = pending if again else self._starter_card(pending or self.topic)
            subject = self.persona.subject
            lead = pick(
                (f"Let's keep our minds on {subject} for now.", f"Let's get back to {subject}.")
                if _REQUEST.search(text)
                else (
                    f"Thanks for telling me, and now back to {subject}.",
                    f"Thanks for sharing that, and now let's get back to {subject}.",
                )
            )
            close = starter.question if starter is not None else pick(_OPEN_CLOSE)
            return Plan(Move.OFF_TOPIC, lead=lead, close=close, pending_card=starter, topic=starter)

        # Nothing vetted to teach from: the model answers in one sentence, checked, then a question.
        # The conversation so far is its context (no note, so its cached prompt and the prefill
        # read while the student spoke stay valid); the checks keep what it says grounded.
        topic = card or self.topic
        lead = pick(_OPEN_LEAD)
        return Plan(
            Move.OPEN,
            lead=lead,
            model=True,
            deadline_s=_deadline(lead),
            # The card's fact, if these very words touched a card and it was not heard lately (its
            # hint belongs to its own question, which was not asked here).
            fallback=(_unheard((card.fact,), earlier) or "") if card is not None else "",
            close=pick(_OPEN_CLOSE),
            grounding=f"{topic.words if topic else ''} {vocabulary}",
            forbidden=(self.pending_sum.expression.value,)
            if self.pending_sum and self.pending_sum.expression.value is not None
            else (),
            pending_card=None,
            topic=topic,
        )

    def _on_subject(self, text: str) -> bool:
        """The words touch the subject: a content word the lesson cards use too."""
        return bool(_content_words(text) & _content_words(self.lessons.vocabulary))

    def _card_retry(self, card: Card, stuck: bool, earlier: list[str], pick: _Picker) -> Plan:
        """Not right yet: the hint, then the fact, then on to something else; never words the
        student has just heard."""
        opener = pick(_STUCK) if stuck else pick(_NOT_QUITE)
        unheard = _unheard((card.hint, card.fact), earlier)
        if unheard is not None and self.card_tries < 2:
            return Plan(
                Move.STUCK if stuck else Move.CARD_WRONG,
                lead=opener + continue_sentence(unheard),
                close=card.question,
                pending_card=card,
                topic=card,
            )
        nxt = self._starter_card(card)
        lead = "That one's tricky, so let's come back to it later."
        close = nxt.question if nxt is not None else pick(_OPEN_CLOSE)
        return Plan(Move.NEXT, lead=lead, close=close, pending_card=nxt, topic=nxt)

    # -------------------------------------------------------------------------------- sums

    def _sum(self, expression: Expression, claimed: Fraction | None, tell_me: bool, pick: _Picker) -> Plan:
        value = expression.value
        assert value is not None
        work = tuple(steps(expression))
        if claimed is not None and claimed == value:
            return self._practice(
                expression, pick, lead=f"Yes, {expression.spoken()} is {say(value)}, well done!"
            )
        first = work[0]
        if claimed is not None:
            lead = f"Not quite, {expression.spoken()} isn't {say(claimed)}."
            return Plan(
                Move.SUM_WRONG,
                lead=lead,
                close=first.question,
                forbidden=(value,),
                pending_sum=PendingSum(expression, work, 0),
            )
        lead = pick(_HAND_OVER if tell_me else _WORK_IT_OUT)
        if first.question == f"What is {expression.spoken()}?":
            lead, close = first.hint, "What do you get?"
        else:
            close = first.question
        return Plan(
            Move.WORK_IT_OUT,
            lead=lead,
            close=close,
            forbidden=(value,),
            pending_sum=PendingSum(expression, work, 0),
        )

    def _answer_step(self, pending: PendingSum, number: Fraction, pick: _Picker) -> Plan:
        value = pending.expression.value
        assert value is not None
        if number == value:
            lead = f"Yes, {pending.expression.spoken()} is {say(value)}, well done!"
            return self._practice(pending.expression, pick, lead=lead)
        if number == pending.asked and pending.index + 1 < len(pending.steps):
            nxt = pending.index + 1
            return Plan(
                Move.STEP_RIGHT,
                lead=pick(_PRAISE),
                close=pending.steps[nxt].question,
                forbidden=(value,),
                pending_sum=replace(pending, index=nxt),
            )
        index = max(pending.index, 0)
        step, misses = pending.steps[index], pending.misses + 1
        after = replace(pending, index=index, misses=misses)
        if misses % 2 == 0:
            # The same hint twice in a row helps no one: ask how they got there instead.
            return Plan(
                Move.STEP_WRONG,
                lead="Not quite yet.",
                close=pick(_EXPLAIN_SLIP),
                forbidden=(value,),
                pending_sum=after,
            )
        return Plan(
            Move.STEP_WRONG,
            lead=pick(_NOT_QUITE) + continue_sentence(step.hint),
            close=step.question,
            forbidden=(value,),
            pending_sum=after,
        )

    def _stuck(self, pending: PendingSum, tell_me: bool, pick: _Picker) -> Plan:
        value = pending.expression.value
        assert value is not None
        index = max(pending.index, 0)
        step = pending.steps[index]
        if pending.stuck or pending.misses:
            # The hint was heard and did not help: show this step, keep the final answer theirs.
            if index + 1 < len(pending.steps):
                nxt = pending.steps[index + 1]
                lead = f"That's okay, I'll do this bit: the answer to that step is {say(step.answer)}."
                return Plan(
                    Move.STUCK,
                    lead=lead,
                    close=nxt.question,
                    forbidden=(value,),
                    pending_sum=replace(pending, index=index + 1, misses=0, stuck=0),
                )
            easier = _easier(pending.expression)
            if easier is not None:
                close = f"Let's try an easier one first: what is {easier.spoken()}?"
                return Plan(
                    Move.STUCK,
                    lead="That's okay, this one is tricky.",
                    close=close,
                    pending_sum=PendingSum(easier, tuple(steps(easier)), -1),
                )
        if tell_me:
            lead = f"{pick(_HAND_OVER).rstrip('.')}: {continue_sentence(step.hint)}"
        else:
            lead = pick(_STUCK) + continue_sentence(step.hint)
        return Plan(
            Move.STUCK,
            lead=lead,
            close=step.question,
            forbidden=(value,),
            pending_sum=replace(pending, index=index, stuck=pending.stuck + 1),
        )

    def _practice(self, solved: Expression, pick: _Picker, *, lead: str) -> Plan:
        practice = _next_sum(solved)
        close = pick(_PRACTICE).format(sum=practice.spoken())
        return Plan(
            Move.SUM_RIGHT,
            lead=lead,
            close=close,
            forbidden=(),
            pending_sum=PendingSum(practice, tuple(steps(practice)), -1),
        )

    def _starter_card(self, after: Card | None) -> Card | None:
        """A card to start from: the one after the current topic, else the next in turn."""
        cards = self.lessons.cards
        if not cards:
            return None
        if after is not None and after in cards:
            return cards[(cards.index(after) + 1) % len(cards)]
        card = cards[self._starter % len(cards)]
        self._starter += 1
        return card


def _easier(hard: Expression) -> Expression | None:
    """A smaller sum of the same kind, to build up from."""
    a, b = hard.left, hard.right
    if b is None or a.denominator != 1 or b.denominator != 1:
        return None
    if hard.op == "*" and min(a, b) > 2:
        return Expression("*", max(a, b), Fraction(2))
    if hard.op in ("+", "-") and b >= 10:
        return Expression(hard.op, a, b - b % 10 or Fraction(10))
    if hard.op == "/" and a > b * 2:
        return Expression("/", b * 2, b)
    return None


def _next_sum(solved: Expression) -> Expression:
    """A practice sum like the one just solved, one step harder or sideways."""
    a, b = solved.left, solved.right
    if solved.op in ("half", "double"):
        return Expression(solved.op, a + 2)
    assert b is not None
    if a.denominator != 1 or b.denominator != 1:
        pairs = [
            (Fraction(1, 2), Fraction(1, 4)),
            (Fraction(1, 3), Fraction(1, 6)),
            (Fraction(1, 4), Fraction(1, 8)),
            (Fraction(1, 2), Fraction(1, 8)),
            (Fraction(3, 4), Fraction(1, 8)),
        ]
        after = next((i for i, pair in enumerate(pairs) if pair == (a, b)), -1)
        left, right = pairs[(after + 1) % len(pairs)]
        return Expression("+" if solved.op not in ("+", "-") else solved.op, left, right)
    if solved.op == "*":
        return Expression("*", a, b + 1 if b < 12 else b - 1)
    if solved.op == "/":
        return Expression("/", a + b, b)
    if solved.op == "-":
        return Expression("-", a + 3, b)
    return Expression("+", a, b + 3)


class _Picker:
    """Chooses a phrasing the student has not heard lately, varying from turn to turn."""

    def __init__(self, earlier: list[str], turn: int) -> None:
        self._earlier, self._turn = earlier, turn

    def __call__(self, options: tuple[str, ...]) -> str:
        for offset in range(len(options)):
            line = options[(self._turn + offset) % len(options)]
            if not any(line in old or near_duplicate(line, old, threshold=0.3) for old in self._earlier[-6:]):
                return line
        return options[self._turn % len(options)]


def _content_words(text: str) -> set[str]:
    """Words that carry a topic: not among English's most frequent ("having", "going", "today")."""
    from pipelines.pedagogy.checks import zipf

    return {w for w in set(re.findall(r"[a-z]+", text.lower())) if len(w) > 3 and zipf(w) < 4.5}


def _unheard(lines: tuple[str, ...], earlier: list[str]) -> str | None:
    """The first of `lines` the student has not heard in the last few replies."""
    return next(
        (line for line in lines if not any(line[:-1].lower() in old.lower() for old in earlier[-4:])), None
    )


def continue_sentence(text: str) -> str:
    """The text going on after a lead-in ("That's okay, count up ..."), names left capitalised."""
    from pipelines.pedagogy.checks import zipf

    first = text.split(" ", 1)[0].strip(".,!?;:\"")
    if first == "I" or first.startswith("I'"):
        return text
    # A name is never written in lower case ("Henry"); a word the cards also write in lower case,
    # or a very common one, is not a name ("Count", "The").
    if first.lower() not in _lowercase_words() and zipf(first.lower()) < 5.0:
        return text
    return text[:1].lower() + text[1:]


@functools.cache
def _lowercase_words() -> frozenset[str]:
    """Words the lesson cards' sentences write in lower case (their `match` lists are all lower case)."""
    from pipelines.pedagogy.lessons import LESSONS_DIR

    words: set[str] = set()
    for path in LESSONS_DIR.glob("*.toml"):
        for card in lessons_for(path.stem).cards:
            for text in (card.fact, card.hint, card.question, *(m.correction for m in card.misconceptions)):
                words.update(re.findall(r"\b[a-z][a-z']+\b", text))
    return frozenset(words)
