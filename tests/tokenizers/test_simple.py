"""Char and word tokenizers: hand-worked vocabularies, unknowns, round trips, files, bad input."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fmblocks.errors import ConfigError, CorruptFileError, DataError, TokenizerError
from fmblocks.tokenizers import TOKENIZERS, load
from fmblocks.tokenizers.simple import CharTokenizer, WordTokenizer, train_char, train_word


def test_char_by_hand() -> None:
    tok = train_char(["hello world"])
    # the distinct characters sorted by code point: space, d, e, h, l, o, r, w
    assert tok.vocab == [" ", "d", "e", "h", "l", "o", "r", "w"]
    assert tok.encode("hello") == [3, 2, 4, 4, 5]
    assert tok.decode([7, 5, 6, 4, 1]) == "world"
    assert tok.vocab_size == 8 and tok.special_tokens == {} and tok.lossless


def test_char_unknown() -> None:
    tok = train_char(["hello world"])
    with pytest.raises(TokenizerError, match=r"'z' \(U\+007A\) at position 2"):
        tok.encode("hez")
    # vocab_size 4 with <unk>: the 3 most frequent characters (l 3, o 2, then ' ' wins the tie of 1s)
    small = train_char(["hello world"], vocab_size=4, unk_token="<unk>")
    assert small.vocab == ["<unk>", " ", "l", "o"] and small.special_tokens == {"<unk>": 0}
    assert small.encode("hello") == [0, 0, 2, 2, 3]
    assert small.decode(small.encode("hello")) == "<unk><unk>llo"


def test_char_errors() -> None:
    with pytest.raises(ConfigError, match="unk_token"):
        train_char(["hello"], vocab_size=2)  # would drop characters without an id for them
    with pytest.raises(ConfigError, match="too small"):
        train_char(["hello"], vocab_size=1, unk_token="<unk>")
    with pytest.raises(DataError, match="empty"):
        train_char(["", ""])
    with pytest.raises(ConfigError, match="single characters"):
        CharTokenizer(["a", "bc"])
    with pytest.raises(TokenizerError, match="outside"):
        train_char(["ab"]).decode([2])
    with pytest.raises(TokenizerError, match="str"):
        train_char(["ab"]).encode(["a"])  # type: ignore[arg-type]


@given(st.text())
def test_char_round_trip(text: str) -> None:
    tok = CharTokenizer(sorted(set(text)))
    assert tok.decode(tok.encode(text)) == text and len(tok.encode(text)) == len(text)


def test_word_by_hand() -> None:
    corpus = ["the cat sat on the mat. The cat!"]
    # counts: the 2, cat 2, then count 1 in string order: "!" "." "The" "mat" "on" "sat"
    tok = train_word(corpus, 5)
    assert tok.vocab == ["<UNK>", "cat", "the", "!", "."]
    assert WordTokenizer.split("Don't panic!") == ["Don", "'", "t", "panic", "!"]
    assert tok.encode("the dog sat.") == [2, 0, 0, 4]
    # decode joins with single spaces: the unknown words, the spacing and the case are lost
    assert tok.decode(tok.encode("the   dog\nsat.")) == "the <UNK> <UNK> ."
    assert tok.lossless is False and tok.special_tokens == {"<UNK>": 0}


def test_word_min_frequency_and_unknown_rate() -> None:
    tok = train_word(["a a a b b c"], 100, min_frequency=2)
    assert tok.vocab == ["<UNK>", "a", "b"]
    assert tok.encode("c a d") == [0, 1, 0]


def test_word_specials_are_text() -> None:
    tok = train_word(["<UNK> x"], 10)
    # "<UNK>" in a text is "<", "UNK", ">" - never the unknown id by itself being matched
    assert tok.encode("<UNK>") == [tok.token_to_id["<"], tok.token_to_id["UNK"], tok.token_to_id[">"]]


def test_word_errors() -> None:
    with pytest.raises(ConfigError, match="too small"):
        train_word(["a b"], 1)
    with pytest.raises(DataError, match="empty"):
        train_word([" \n "], 10)
    with pytest.raises(ConfigError, match="more than once"):
        WordTokenizer(["<UNK>", "a", "a"])
    with pytest.raises(ConfigError, match="not in the word vocabulary"):
        WordTokenizer(["a"])


@given(st.lists(st.sampled_from(["cat", "sat", "mat", ",", "!", "the"]), max_size=20))
def test_word_round_trip_of_known_words(words: list[str]) -> None:
    tok = train_word(["cat sat mat , ! the"], 10)
    text = " ".join(words)
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("kind", ["char", "word"])
def test_save_load(kind: str, tmp_path) -> None:
    assert kind in TOKENIZERS
    corpus = ["Hello, wörld! 123", "naïve café"]
    tok = train_char(corpus, unk_token="<unk>") if kind == "char" else train_word(corpus, 6)
    tok.save(tmp_path / "tok.json")
    again = load(tmp_path / "tok.json")
    assert type(again) is type(tok) and again.vocab == tok.vocab
    text = "Hello café, 123 ?"
    assert again.encode(text) == tok.encode(text)
    document = json.loads((tmp_path / "tok.json").read_text())
    document["config"]["unk_token"] = "<missing>"
    (tmp_path / "tok.json").write_text(json.dumps(document))
    with pytest.raises(CorruptFileError, match="not in the"):
        load(tmp_path / "tok.json")
    document["config"]["vocab"] = 7
    (tmp_path / "tok.json").write_text(json.dumps(document))
    with pytest.raises(CorruptFileError):
        load(tmp_path / "tok.json")
