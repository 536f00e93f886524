from pipelines.chunker import SentenceChunker, spoken_pieces


def _feed(text: str, step: int = 3) -> list[str]:
    chunker = SentenceChunker()
    pieces: list[str] = []
    for i in range(0, len(text), step):
        pieces += chunker.push(text[i : i + step])
    return pieces + chunker.flush()


def test_speech_starts_at_the_first_clause_then_follows_sentences():
    pieces = _feed("Right, let us think, shall we? Start with the tens. Then add ones.")
    assert pieces == ["Right, let us think,", "shall we?", "Start with the tens.", "Then add ones."]


def test_numbers_abbreviations_and_initials_do_not_split():
    pieces = _feed("Mr. Smith measured 3.5 metres. J. Watt built engines.")
    assert pieces == ["Mr. Smith measured 3.5 metres.", "J. Watt built engines."]


def test_markdown_is_not_read_aloud():
    assert _feed("**Great** job! Try `x + 1`.") == ["Great job!", "Try x + 1."]


def test_a_sentence_is_only_cut_once_the_next_character_arrives():
    chunker = SentenceChunker()
    assert chunker.push("It is 3.") == []
    assert chunker.push("5 now. ") == ["It is 3.5 now."]


def test_a_long_first_sentence_is_split_before_a_conjunction_so_speech_starts_early():
    pieces = _feed("Eight is fun because it uses multiplication. Try it.")
    assert pieces == ["Eight is fun", "because it uses multiplication.", "Try it."]


def test_a_first_sentence_with_no_break_is_cut_after_a_few_words():
    pieces = _feed("One two three four five six seven eight nine ten eleven twelve.")
    assert pieces[0] == "One two three four"  # the first piece is 2 to 4 words


def test_the_first_piece_length_is_a_parameter():
    chunker = SentenceChunker(first_piece_max_words=6)
    assert chunker.push("One two three four five six seven eight ") == ["One two three four five six"]


def test_a_whole_line_is_cut_as_if_streamed_so_its_audio_starts_after_a_few_words():
    line = "Thanks for sharing that, and now let's get back to maths. You have twelve sweets; how many are left?"
    pieces = spoken_pieces(line)
    assert pieces[0] == "Thanks for sharing that,"
    assert " ".join(pieces) == line
    assert spoken_pieces("A prime number has exactly two factors: one and itself.")[0] == "A prime number has"
    assert spoken_pieces("Mr. Smith has 3.5 apples.") == ["Mr. Smith has 3.5 apples."]  # short: one piece
