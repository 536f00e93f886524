"""Fuzzing the session's message handling: whatever a client sends, no exception escapes, every
reply is a message of the published schema (and valid UTF-8), no input is a server bug
(`internal_error`), and the next valid input.text still gets its answer."""

from __future__ import annotations

import json
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.session.conftest import new_session, send
from voice_server.protocol import CLIENT_TYPES

FIELDS = ("type", "text", "persona", "input_audio", "output_audio", "turn", "budgets", "voice_rate",
          "protocol_version", "sample_rate", "ms", "action", "stt", "end_of_turn_silence_ms")

huge_numbers = st.sampled_from(["1" + "0" * 400, "-1" + "0" * 400, "1e999", "-1e999", "NaN", "Infinity",
                                "1e-999", "0.0000001", "9007199254740993", "-0"])
scalars = (
    st.none() | st.booleans() | st.integers(-(10**30), 10**30) | st.floats()
    | st.text(max_size=20) | st.sampled_from(sorted(CLIENT_TYPES))
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)
# Messages with a real type and fields of the right names, so validation is reached, not only parsing.
typed = st.builds(
    lambda kind, fields: {"type": kind, **fields},
    st.sampled_from(sorted(CLIENT_TYPES)),
    st.dictionaries(st.sampled_from(FIELDS[1:]), json_values, max_size=3),
)
surrogate_text = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF) | st.characters(),
                         min_size=1, max_size=8)


def _deep(depth: int, opener: str) -> str:
    return opener * depth


raw_text = st.one_of(
    json_values.map(json.dumps),
    typed.map(json.dumps),
    typed.map(lambda m: json.dumps(m, ensure_ascii=False)),  # may hold raw lone surrogates
    st.builds(_deep, st.integers(1, 3000), st.sampled_from(["[", '{"a":', '{"type":"input.text","text":['])),
    surrogate_text.map(lambda t: json.dumps({"type": "input.text", "text": t})),  # \udXXX escapes
    surrogate_text.map(lambda t: '{"type": "input.text", "text": "' + t + '"}'),  # raw characters
    huge_numbers.map(lambda n: '{"type": "session.update", "voice_rate": ' + n + "}"),
    huge_numbers.map(lambda n: '{"type": "session.start", "budgets": {"stt": {"ms": ' + n + "}}}"),
    st.text(string.printable, max_size=40),
    st.text(max_size=40),
)
binary = st.binary(max_size=3001)  # odd sizes included
inputs = st.lists(st.one_of(raw_text.map(lambda t: ("text", t)), binary.map(lambda b: ("bytes", b))),
                  max_size=8)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(inputs=inputs, start_first=st.booleans())
async def test_no_input_breaks_the_session(inputs: list[tuple[str, str | bytes]], start_first: bool):
    session, wire = new_session()
    await session.start()
    if start_first:
        await send(session, type="session.start")
    for kind, data in inputs:
        if kind == "text":
            await session.on_text(data)  # type: ignore[arg-type]
        else:
            await session.on_bytes(data)  # type: ignore[arg-type]
    assert "internal_error" not in wire.errors(), wire.messages
    wire.assert_valid()
    if session.ended:  # the fuzz said session.end: a finished session is not expected to answer
        return
    if not session.started:
        await send(session, type="session.start")
    if session.started:  # a fuzzed session.start may have chosen its own (valid) settings
        await session.on_bytes(bytes(96_000))  # silence: a turn the fuzz left open ends
        question = "What is two plus two?"
        await send(session, type="input.text", text=question)
        done = await wire.until("turn.done", timeout=10, user_text=question)
        assert done["status"] == "completed", wire.log
    await session.close()
    assert "internal_error" not in wire.errors(), wire.messages
    wire.assert_valid()
