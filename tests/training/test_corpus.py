"""From files to datasets: FASTA or text, end-of-text separators, held-out tails, refusals."""

from pathlib import Path

import pytest

from fmblocks.errors import DataError
from fmblocks.tokenizers.bio import KmerTokenizer
from fmblocks.tokenizers.bpe import train_bpe
from fmblocks.training.corpus import causal_lm_data, masked_lm_data, read_documents, special_id

DNA = KmerTokenizer(1)  # ids: <pad> 0, <unk> 1, <cls> 2, <eos> 3, <mask> 4, A 5, C 6, G 7, T 8, N 9


def test_causal_lm_stream_separates_documents_and_holds_out_the_tail() -> None:
    train, held_out = causal_lm_data(["ACGT", "GG"], DNA, context=2, eval_fraction=0.0)
    assert held_out is None
    assert train.ids.tolist() == [5, 6, 7, 8, 3, 7, 7, 3]  # each document followed by <eos>
    train, held_out = causal_lm_data(["ACGTACGTAC"] * 2, DNA, context=3, eval_fraction=0.25)
    assert len(train.ids) == 22 - 5 and held_out.ids.tolist() == [7, 8, 5, 6, 3]  # int(22 * 0.25) = 5: "GTAC<eos>"
    with pytest.raises(DataError, match="0 tokens"):
        causal_lm_data([""], train_bpe(["ab ab"], 256, progress=False), context=2)  # no end-of-text token


def test_masked_lm_sequences_per_document_or_cut_from_the_stream() -> None:
    train, held_out = masked_lm_data(["ACG", "TTTT", "GA", "C"] * 5, DNA, max_len=8, eval_fraction=0.1,
                                     per_document=True)
    assert (len(train), len(held_out)) == (18, 2) and train.mask_id == 4 and train.pad_id == 0
    assert [len(s) for s in train.sequences[:4]] == [3, 4, 2, 1]
    train, held_out = masked_lm_data(["ACGTACGTAC"], DNA, max_len=4, eval_fraction=0.0)
    assert held_out is None and [len(s) for s in train.sequences] == [4, 4, 2]
    with pytest.raises(DataError, match="needs a tokenizer with a mask token"):
        masked_lm_data(["ab"], train_bpe(["ab ab"], 256, progress=False), max_len=4)


def test_read_documents_reads_fasta_records_and_refuses_a_mix(tmp_path: Path) -> None:
    (tmp_path / "a.fa").write_text(">one\nACG\nTT\n>two\ngga\n", encoding="utf-8")
    assert read_documents([tmp_path / "a.fa"]) == (["ACGTT", "GGA"], True)
    (tmp_path / "b.txt").write_text("hello", encoding="utf-8")
    assert read_documents([tmp_path / "b.txt"]) == (["hello"], False)
    with pytest.raises(DataError, match="mix of FASTA"):
        read_documents([tmp_path])
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        read_documents([tmp_path / "empty.txt"])


def test_special_tokens_are_found_by_name() -> None:
    assert special_id(DNA, "mask") == 4 and special_id(DNA, "eos", "sep") == 3 and special_id(DNA, "bos") is None
