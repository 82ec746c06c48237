"""DNA k-mer tokenizer and reverse complement."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fmblocks.errors import ConfigError, TokenizerError
from fmblocks.tokenizers import TOKENIZERS, load
from fmblocks.tokenizers.bio import KmerTokenizer, reverse_complement


def spelled(tok: KmerTokenizer, ids: list[int]) -> list[str]:
    return [tok.tokens[i] for i in ids]


def test_vocabulary_layout() -> None:
    tok = KmerTokenizer(3)
    assert tok.vocab_size == 5 + 5 + 64
    assert tok.special_tokens == {"<pad>": 0, "<unk>": 1, "<cls>": 2, "<eos>": 3, "<mask>": 4}
    assert tok.tokens[5:10] == list("ACGTN")
    assert tok.tokens[10] == "AAA" and tok.tokens[11] == "AAC" and tok.tokens[-1] == "TTT"
    assert KmerTokenizer(1).vocab_size == 10
    assert TOKENIZERS.get("dna-kmer") is KmerTokenizer


def test_non_overlapping_hand_worked() -> None:
    tok = KmerTokenizer(3)
    ids = tok.encode("ACGTTNAC")
    assert spelled(tok, ids) == ["ACG", "T", "T", "N", "A", "C"]
    assert tok.decode(ids) == "ACGTTNAC"
    assert spelled(tok, tok.encode("acgtac")) == ["ACG", "TAC"]
    assert spelled(tok, tok.encode("NNACGT", add_special_tokens=True)) == ["<cls>", "N", "N", "ACG", "T", "<eos>"]


def test_overlapping_hand_worked() -> None:
    tok = KmerTokenizer(3, overlapping=True)
    assert spelled(tok, tok.encode("ACGTA")) == ["ACG", "CGT", "GTA"]
    assert tok.decode(tok.encode("ACGTA")) == "ACGTA"
    ids = tok.encode("ACGTNA")
    assert spelled(tok, ids) == ["ACG", "CGT", "<unk>", "<unk>"]
    assert tok.decode(ids) == "ACGTNN"  # the A after N sits only in windows holding the N
    assert spelled(tok, tok.encode("AC")) == ["A", "C"]  # shorter than k: letter by letter
    assert not tok.lossless and KmerTokenizer(3).lossless


def test_overlapping_matches_sliding_windows() -> None:
    sequence = "GATTACAGATTACACCGT"
    tok = KmerTokenizer(4, overlapping=True)
    windows = [sequence[i : i + 4] for i in range(len(sequence) - 3)]
    assert spelled(tok, tok.encode(sequence)) == windows


def test_decode_drops_framing_and_marks_unknowns() -> None:
    tok = KmerTokenizer(2)
    ids = [tok.ids["<cls>"], tok.ids["AC"], tok.ids["<mask>"], tok.ids["G"], tok.ids["<eos>"], tok.ids["<pad>"]]
    assert tok.decode(ids) == "ACNG"
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])
    overlapping = KmerTokenizer(2, overlapping=True)
    with pytest.raises(TokenizerError, match="mix"):
        overlapping.decode([overlapping.ids["AC"], overlapping.ids["G"]])


@given(st.text(alphabet="ACGTNacgtn", max_size=40), st.integers(1, 6))
@settings(max_examples=60, deadline=None)
def test_non_overlapping_round_trip(sequence: str, k: int) -> None:
    tok = KmerTokenizer(k)
    ids = tok.encode(sequence)
    assert tok.decode(ids) == sequence.upper()
    assert all(0 <= i < tok.vocab_size for i in ids)


@given(st.text(alphabet="ACGT", max_size=40), st.integers(1, 6))
@settings(max_examples=60, deadline=None)
def test_overlapping_round_trip_on_acgt(sequence: str, k: int) -> None:
    tok = KmerTokenizer(k, overlapping=True)
    ids = tok.encode(sequence)
    assert len(ids) == (len(sequence) - k + 1 if len(sequence) >= k else len(sequence))
    assert tok.decode(ids) == sequence


def test_reverse_complement() -> None:
    assert reverse_complement("AcGN") == "NCgT"
    assert reverse_complement("GATTACA") == "TGTAATC"
    assert reverse_complement(reverse_complement("ACGTTNacg")) == "ACGTTNacg"


def test_bad_letters_are_named() -> None:
    with pytest.raises(TokenizerError, match="'U' at position 3"):
        KmerTokenizer(3).encode("ACGU")
    with pytest.raises(TokenizerError, match="'R' at position 1"):
        reverse_complement("ARG")
    with pytest.raises(TokenizerError, match="'<' at position 0"):
        KmerTokenizer(3).encode("<cls>ACG")
    with pytest.raises(TokenizerError, match="str"):
        KmerTokenizer(3).encode(["A", "C"])
    with pytest.raises(ConfigError):
        KmerTokenizer(0)


def test_save_load(tmp_path) -> None:
    tok = KmerTokenizer(4, overlapping=True)
    tok.save(tmp_path / "dna.json")
    again = load(tmp_path / "dna.json")
    assert isinstance(again, KmerTokenizer) and again.k == 4 and again.overlapping
    assert again.encode("ACGTACGTNN") == tok.encode("ACGTACGTNN")
