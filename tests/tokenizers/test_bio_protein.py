"""Protein tokenizer: ESM-2 alphabet, unknown letters, specials; parity with transformers' EsmTokenizer."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fmblocks.errors import TokenizerError
from fmblocks.tokenizers import load
from fmblocks.tokenizers.bio import ProteinTokenizer
from fmblocks.tokenizers.bio_protein import STANDARD, VOCAB


def test_hand_worked() -> None:
    tok = ProteinTokenizer()
    assert tok.vocab_size == 33
    assert tok.encode("MKT") == [20, 15, 11]
    assert tok.encode("mkt", add_special_tokens=True) == [0, 20, 15, 11, 2]
    assert tok.encode("AJ*B") == [5, 3, 3, 25]  # J and * are unknown: one <unk> each
    assert tok.decode([0, 20, 3, 32, 11, 2, 1, 1]) == "MXXT"
    assert tok.special_tokens == {"<cls>": 0, "<pad>": 1, "<eos>": 2, "<unk>": 3, "<null_1>": 31, "<mask>": 32}
    assert sorted(tok.decode(tok.standard_ids)) == sorted(STANDARD) and len(STANDARD) == 20
    assert tok.encode("XBZUO.-") == [24, 25, 27, 26, 28, 29, 30]


def test_specials_in_text_refused_unless_allowed() -> None:
    tok = ProteinTokenizer()
    with pytest.raises(TokenizerError, match="<mask>"):
        tok.encode("MK<mask>T")
    assert tok.encode("MK<mask>t", allow_special=True) == [20, 15, 32, 11]
    assert tok.encode("<x>", allow_special=True) == [3, 24, 3]  # not a special: <unk>, X, <unk>


def test_parity_with_transformers_esm_tokenizer(tmp_path) -> None:
    transformers = pytest.importorskip("transformers")
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(VOCAB))
    reference = transformers.EsmTokenizer(str(vocab))
    tok = ProteinTokenizer()
    for sequence in ["MKTAYIAKQRQISFVKSHFSRQ", "LAGVSERTIDPKQNFYMHWCXBUZO.-", "MK<mask>TA<mask>", "ACDJEF"]:
        assert tok.encode(sequence, add_special_tokens=True, allow_special=True) == reference(sequence)["input_ids"]


@given(st.text(alphabet="".join(STANDARD) + "XBZUO", max_size=50))
@settings(max_examples=50, deadline=None)
def test_round_trip_on_known_letters(sequence: str) -> None:
    tok = ProteinTokenizer()
    assert tok.decode(tok.encode(sequence.lower(), add_special_tokens=True)) == sequence


def test_errors_and_save_load(tmp_path) -> None:
    tok = ProteinTokenizer()
    with pytest.raises(TokenizerError, match="outside the vocabulary"):
        tok.decode([33])
    with pytest.raises(TokenizerError, match="str"):
        tok.encode(5)
    tok.save(tmp_path / "protein.json")
    assert load(tmp_path / "protein.json").encode("MKT") == [20, 15, 11]
