"""WordPiece: BERT normalisation, greedy longest match, specials, pretrained vocabulary, files."""

import json
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fmblocks.errors import ConfigError, CorruptFileError, TokenizerError
from fmblocks.tokenizers import load
from fmblocks.tokenizers.normalize import bert_normalize, bert_pre_tokenize
from fmblocks.tokenizers.wordpiece import BERT_SPECIALS, WordPieceTokenizer, train_wordpiece

# ---------------------------------------------------------------- normalisation, pre-tokenisation


def test_normalize_by_hand() -> None:
    # lowercase + accents stripped (NFD, minus the combining marks); tab/newline -> space
    assert bert_normalize("Héllo\tWORLD\n") == "hello world "
    # control and format characters dropped (NUL, DEL, U+200B zero-width space is Cf)
    assert bert_normalize("a\x00b\x7fc\u200bd") == "abcd"
    # CJK ideographs get spaces around them; Hiragana does not, and loses its voicing mark (U+3099
    # is a combining mark after NFD), as in BERT uncased; cased keeps it
    assert bert_normalize("日本語です") == " 日  本  語 てす"
    assert bert_normalize("です", lowercase=False) == "です"
    # capital sigma always becomes σ, even word-final (str.lower would give ς)
    assert bert_normalize("ΟΔΟΣ") == "οδοσ"
    # cased: nothing but cleaning
    assert bert_normalize("Héllo\x00 W", lowercase=False) == "Héllo W"


def test_pre_tokenize_by_hand() -> None:
    assert bert_pre_tokenize("don't stop,now") == ["don", "'", "t", "stop", ",", "now"]
    # ASCII symbols count as punctuation for BERT; Unicode P* too (« »); € (Sc) does not
    assert bert_pre_tokenize("a+b=c «x» 5€") == ["a", "+", "b", "=", "c", "«", "x", "»", "5€"]


# ---------------------------------------------------------------- greedy longest match

TOY = [*BERT_SPECIALS, "play", "##ing", "##ed", "##in", "##g", "p", "##l", "##ay", ",", "!"]


@pytest.fixture
def toy() -> WordPieceTokenizer:
    return WordPieceTokenizer(TOY)


def pieces(tok: WordPieceTokenizer, ids: list[int]) -> list[str]:
    return [tok.vocab[i] for i in ids]


def test_greedy_longest_match_by_hand(toy: WordPieceTokenizer) -> None:
    # "playing": longest prefix in the vocabulary is "play", then "##ing" (not "##in" + "##g")
    assert pieces(toy, toy.encode("Playing, played!")) == [
        "[CLS]", "play", "##ing", ",", "play", "##ed", "!", "[SEP]"]
    # "plx": "p", "##l", then nothing matches "x" -> the whole word is one [UNK]
    assert pieces(toy, toy.encode("plx play", add_special_tokens=False)) == ["[UNK]", "play"]
    # "pl" + "##ay" would also spell "play", but greedy takes "play" at once
    assert pieces(toy, toy.encode("play", add_special_tokens=False)) == ["play"]


def test_long_words_are_unknown(toy: WordPieceTokenizer) -> None:
    word = "play" + "ing" * 32  # 100 characters: still split
    assert len(word) == 100 and "[UNK]" not in pieces(toy, toy.encode(word, add_special_tokens=False))
    assert pieces(toy, toy.encode(word + "g", add_special_tokens=False)) == ["[UNK]"]


def test_sentence_pairs_and_types(toy: WordPieceTokenizer) -> None:
    ids, types = toy.encode_with_types("playing", "played!")
    assert pieces(toy, ids) == ["[CLS]", "play", "##ing", "[SEP]", "play", "##ed", "!", "[SEP]"]
    assert types == [0, 0, 0, 0, 1, 1, 1, 1]
    assert toy.encode("playing", "played!") == ids


def test_decode_glues_pieces(toy: WordPieceTokenizer) -> None:
    assert toy.decode(toy.encode("Playing, played!")) == "playing , played !"
    assert toy.decode(toy.encode("plx")) == "[UNK]"  # [UNK] is kept, framing is dropped
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        toy.decode([len(TOY)])


def test_special_tokens_in_text(toy: WordPieceTokenizer) -> None:
    with pytest.raises(TokenizerError, match=r"\[SEP\]"):
        toy.encode("play [SEP] play")
    sep = toy.token_to_id["[SEP]"]
    assert toy.encode("play[SEP]play", allowed_special="all", add_special_tokens=False) == [5, sep, 5]
    # as plain text: "[", "sep" (unknown here), "]" - and matching is case-sensitive, like HF
    assert pieces(toy, toy.encode("[sep]", add_special_tokens=False)) == ["[UNK]", "[UNK]", "[UNK]"]
    assert pieces(toy, toy.encode("[SEP]", disallowed_special=(), add_special_tokens=False)) == ["[UNK]"] * 3


def test_bad_input(toy: WordPieceTokenizer) -> None:
    with pytest.raises(TokenizerError, match="str"):
        toy.encode(b"bytes")  # type: ignore[arg-type]
    no_cls = WordPieceTokenizer(["[UNK]", "a"])
    assert no_cls.encode("a", add_special_tokens=False) == [1]
    with pytest.raises(TokenizerError, match=r"\[CLS\]"):
        no_cls.encode("a")
    with pytest.raises(TokenizerError, match="no '\\[UNK\\]'"):
        WordPieceTokenizer(["a"]).encode("b", add_special_tokens=False)
    with pytest.raises(ConfigError, match="more than once"):
        WordPieceTokenizer(["a", "a"])


@settings(max_examples=60, deadline=None)
@given(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60))
def test_decode_is_the_normalised_words(text: str) -> None:
    bert = _bert()
    ids = bert.encode(text, disallowed_special=())
    if bert.token_to_id["[UNK]"] not in ids:
        assert bert.decode(ids) == " ".join(bert_pre_tokenize(bert_normalize(text)))


@cache
def _bert() -> WordPieceTokenizer:
    return load("bert-base-uncased")


def test_pretrained_bert_base_uncased() -> None:
    bert = _bert()
    assert bert.vocab_size == 30522 and bert.special_tokens == {
        "[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
    assert bert.lossless is False


def test_encode_batch_over_processes() -> None:
    tok = train_wordpiece(["the quick brown fox jumps over the lazy dog"] * 3, 60, progress=False)
    texts = [f"the {i} quick dogs" for i in range(40)]
    assert tok.encode_batch(texts, workers=2) == [tok.encode(t) for t in texts]


# ---------------------------------------------------------------- files


def test_save_load_identical_ids(tmp_path) -> None:
    docs = [f"Übung {i}: naïve café, façade #{i}" for i in range(50)]
    tok = train_wordpiece(docs, 80, lowercase=False, progress=False)
    tok.save(tmp_path / "wp.json")
    again = load(tmp_path / "wp.json")
    assert isinstance(again, WordPieceTokenizer) and again.lowercase is False
    text = "Übung 7: naïve Café [x]"
    assert again.encode(text) == tok.encode(text) and again.vocab == tok.vocab


def test_corrupt_files(tmp_path) -> None:
    path = tmp_path / "wp.json"
    WordPieceTokenizer(TOY).save(path)
    document = json.loads(path.read_text())
    document["config"]["vocab"] = "not a list"
    path.write_text(json.dumps(document))
    with pytest.raises(CorruptFileError):
        load(path)
    document["config"]["vocab"] = ["a", "a"]
    path.write_text(json.dumps(document))
    with pytest.raises(CorruptFileError, match="more than once"):
        load(path)
    del document["config"]["lowercase"]
    path.write_text(json.dumps(document))
    with pytest.raises(CorruptFileError):
        load(path)
    path.write_text('{"format": "fmblocks-tokenizer", "vers')
    with pytest.raises(CorruptFileError):
        load(path)
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[UNK]\nhello\nhello\n")
    with pytest.raises(CorruptFileError, match="more than once"):
        WordPieceTokenizer.from_vocab_file(vocab)
