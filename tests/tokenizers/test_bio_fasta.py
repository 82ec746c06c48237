"""read_fasta: lowercase, line breaks, unknown letters, gzip, malformed files."""

import gzip

import pytest

from fmblocks.errors import DataError
from fmblocks.tokenizers.bio import KmerTokenizer, ProteinTokenizer, read_fasta


def write(tmp_path, text: str, name: str = "x.fa"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_records_lowercase_line_breaks_and_unknown_letters(tmp_path) -> None:
    text = ";comment\n>sp|P1|ONE first protein\nmkta\nYIak\n\n>two\r\nMJ*K-\r\n>dna chr1\nacgt ACGN\nnn\n"
    records = read_fasta(write(tmp_path, text))
    assert records == [("sp|P1|ONE first protein", "MKTAYIAK"), ("two", "MJ*K-"), ("dna chr1", "ACGTACGNNN")]
    protein = ProteinTokenizer()
    assert protein.decode(protein.encode(records[1][1])) == "MXXK-"  # J and * are unknown residues
    assert KmerTokenizer(3).decode(KmerTokenizer(3).encode(records[2][1])) == "ACGTACGNNN"


def test_gzip(tmp_path) -> None:
    path = tmp_path / "x.fa.gz"
    path.write_bytes(gzip.compress(b">a\nACGT\n"))
    assert read_fasta(path) == [("a", "ACGT")]
    (tmp_path / "bad.fa.gz").write_bytes(b">a\nACGT\n")
    with pytest.raises(DataError, match="gzip"):
        read_fasta(tmp_path / "bad.fa.gz")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no FASTA records"),
        ("ACGT\n>a\nACGT\n", r":1: sequence before the first '>'"),
        (">\nACGT\n", ":1: FASTA header without a name"),
        (">a\n>b\nACGT\n", "record 'a' has no sequence"),
        (">a\nACGT\n>b\n", "record 'b' has no sequence"),
        (">a\nAC1GT\n", r":2: '1' is not a sequence letter"),
    ],
)
def test_malformed(tmp_path, text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        read_fasta(write(tmp_path, text))


def test_not_utf8(tmp_path) -> None:
    (tmp_path / "x.fa").write_bytes(b">a\nAC\xffGT\n")
    with pytest.raises(DataError, match="UTF-8"):
        read_fasta(tmp_path / "x.fa")
