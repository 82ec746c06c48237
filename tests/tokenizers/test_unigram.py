"""Unigram (Viterbi, unknown fusion, forward-backward), its trainer, and the pipeline stages, by hand."""

import math
from collections import Counter

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from fmblocks.errors import TokenizerError
from fmblocks.tokenizers import load
from fmblocks.tokenizers.bpe_pairs import PairBPE, merge_pairs
from fmblocks.tokenizers.pipeline_decode import decode_tokens
from fmblocks.tokenizers.pipeline_normalize import pre_tokenize, split_by
from fmblocks.tokenizers.unigram import Unigram, forward_backward
from fmblocks.tokenizers.unigram_train import digamma, train_unigram

CORPUS = ["the cat sat on the mat", "the dog sat on the log", "a cat and a dog", "cats and dogs"] * 5


def test_viterbi_by_hand() -> None:
    model = Unigram([("<unk>", 0.0), ("a", -2.0), ("b", -2.0), ("ab", -3.0), ("abc", -6.0), ("c", -2.5)], unk_id=0)
    # "abc": ab + c = -5.5 beats abc = -6 and a + b + c = -6.5
    assert model.segment("abc") == [("ab", 3), ("c", 5)]
    assert model.tokenize("abxyc") == [3, 0, 5]  # x and y fuse into one unknown token
    assert model.unk_score == -16.0


def test_forward_backward_counts() -> None:
    vocab = {"a": 0, "b": 1, "ab": 2}
    scores = [math.log(0.25), math.log(0.25), math.log(0.5)]
    counts = [0.0, 0.0, 0.0]
    log_p = forward_backward("ab", vocab, scores, 2, counts, 1.0)
    # two segmentations: a|b with p 1/16 and ab with p 1/2
    assert log_p == pytest.approx(math.log(1 / 16 + 1 / 2))
    share = (1 / 16) / (1 / 16 + 1 / 2)
    assert counts == pytest.approx([share, share, 1 - share])


def test_digamma() -> None:
    assert digamma(1.0) == pytest.approx(-0.5772156649, abs=1e-8)
    assert digamma(10.5) == pytest.approx(math.log(10.5) - 1 / 21 - 1 / (12 * 10.5**2), abs=1e-6)


def test_pair_merges_by_hand() -> None:
    model = PairBPE({"a": 0, "b": 1, "c": 2, "ab": 3, "bc": 4, "abc": 5}, [("b", "c"), ("a", "b"), ("a", "bc")])
    assert model.tokenize("abc") == [5]  # b+c first (rank 0), then a+bc
    assert merge_pairs([0, 1, 0, 1], {(0, 1): (0, 3)}) == [3, 3]
    fallback = PairBPE({"<unk>": 0, **{f"<0x{b:02X}>": 1 + b for b in range(256)}, "h": 257}, [], unk_token="<unk>",
                       byte_fallback=True)
    assert fallback.tokenize("hé") == [257, 1 + 0xC3, 1 + 0xA9]


def test_split_behaviours() -> None:
    space = regex.compile(" ")
    assert split_by(space, "a b  c", "Removed") == ["a", "b", "c"]
    assert split_by(space, "a b  c", "Isolated") == ["a", " ", "b", " ", " ", "c"]
    assert split_by(space, "a b  c", "MergedWithPrevious") == ["a ", "b ", " ", "c"]
    assert split_by(space, "a b  c", "MergedWithNext") == ["a", " b", " ", " c"]
    assert split_by(space, "a b  c", "Contiguous") == ["a", " ", "b", "  ", "c"]
    meta = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}
    assert pre_tokenize(meta, ["hi there"]) == ["▁hi", "▁there"]


def test_decoders_by_hand() -> None:
    llama2 = {"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    assert decode_tokens(llama2, ["▁caf", "<0xC3>", "<0xA9>", "▁x", "<0xFF>"]) == "café x\ufffd"
    assert decode_tokens(None, ["a", "b"]) == "a b"


@pytest.fixture(scope="module")
def trained():
    return train_unigram(CORPUS, 40, special_tokens=["<unk>", "<s>"], progress=False)


def test_train_unigram(trained, tmp_path) -> None:
    assert 20 < trained.vocab_size <= 40 and trained.special_tokens == {"<unk>": 0, "<s>": 1}
    pieces = [p for p, _ in trained.model.pieces[2:]]
    assert {"▁the", "▁cat"} <= set(pieces)  # frequent words become pieces
    scores = [s for _, s in trained.model.pieces[2:]]
    assert scores == sorted(scores, reverse=True) and all(s < 0 for s in scores)
    assert trained.decode(trained.encode("the cat sat")) == "the cat sat"
    assert trained.encode("zzz") == [trained.model.vocab["▁"], 0]  # z is unknown: one fused <unk>
    trained.save(tmp_path / "unigram.json")
    assert load(tmp_path / "unigram.json").encode("the dogs sat") == trained.encode("the dogs sat")


def test_contract(trained) -> None:
    with pytest.raises(TokenizerError, match="special token '<s>'"):
        trained.encode("a <s> b")
    assert trained.encode("a<s>", allowed_special="all")[-1] == 1
    for bad in ([1.0], [40], [-1], [True]):
        with pytest.raises(TokenizerError):
            trained.decode(bad)


@given(st.text(alphabet="the catsdogmln ", max_size=40))
@settings(max_examples=50, deadline=None)
def test_round_trip_on_the_alphabet(trained, text: str) -> None:
    # Metaspace keeps single spaces between words; runs of spaces and a leading space come back changed
    words = " ".join(text.split())
    assert trained.decode(trained.encode(words)) == words


def test_expected_counts_sum_to_segment_lengths() -> None:
    words = Counter({"▁ab": 3})
    vocab = {"▁": 0, "a": 1, "b": 2, "▁a": 3, "ab": 4}
    counts = [0.0] * 5
    forward_backward("▁ab", vocab, [-1.0] * 5, 2, counts, words["▁ab"])
    covered = sum(c * len(p) for p, c in zip(vocab, counts))
    assert covered == pytest.approx(3 * 3)  # every segmentation covers the word's 3 characters


def test_report_measures_a_unigram(trained) -> None:
    from fmblocks.tokenizers.report import measure

    report = measure(trained, ["the cat sat", "a dog and a zebra"], name="unigram")
    assert report.lossless == 0.5 and report.unknown_rate > 0  # "zebra" has unseen letters
