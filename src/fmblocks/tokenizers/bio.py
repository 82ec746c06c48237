"""Biology as tokens: FASTA reading here; DNA k-mers, amino acids and expression tokens in their modules.

    records = read_fasta("proteins.fa")           # [(name, SEQUENCE), ...]
    ProteinTokenizer().encode(records[0][1])      # bio_protein.py: ESM-2 alphabet
    KmerTokenizer(6).encode("ACGT...")            # bio_dna.py: k-mers; reverse_complement
    RankValueTokenizer.fit(matrix)                # expression.py: Geneformer ranks, scGPT value bins

FASTA as read here: a record is a header line ">name [description]" followed by sequence lines.
The name is the whole header after ">" (stripped). Sequence lines are joined, spaces and tabs removed
and ASCII letters uppercased; letters of any kind are kept (tokenizers decide what they accept), as
are "*" (stop), "-" and "." (gaps). Blank lines and ";" comment lines are skipped; files ending in
".gz" are decompressed. DataError (with the line number) for: no records, sequence before the first
header, an empty name, a record without sequence, other characters (digits, punctuation), bad UTF-8.
"""

import gzip
import string
from pathlib import Path

from fmblocks.errors import DataError
from fmblocks.tokenizers.bio_dna import KmerTokenizer, reverse_complement
from fmblocks.tokenizers.bio_protein import ProteinTokenizer
from fmblocks.tokenizers.expression import BinnedExpressionTokenizer, RankValueTokenizer, read_expression

__all__ = [
    "BinnedExpressionTokenizer", "KmerTokenizer", "ProteinTokenizer", "RankValueTokenizer", "read_expression",
    "read_fasta", "reverse_complement",
]

_ALLOWED = set(string.ascii_letters + "*-.")
_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)
_NO_SPACE = str.maketrans("", "", " \t")


def read_fasta(path: str | Path) -> list[tuple[str, str]]:
    """The (name, sequence) records of a FASTA file, in file order; see the module docstring."""
    path = Path(path)
    raw = path.read_bytes()
    try:
        text = (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode("utf-8")
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable gzip file ({err})") from None
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text (byte {err.start})") from None
    records: list[tuple[str, list[str]]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith(">"):
            name = line[1:].strip()
            if not name:
                raise DataError(f"{path}:{number}: FASTA header without a name")
            _check_previous(path, records, number)
            records.append((name, []))
            continue
        if not records:
            raise DataError(f"{path}:{number}: sequence before the first '>' header; is this a FASTA file?")
        chunk = line.translate(_NO_SPACE)
        bad = next((ch for ch in chunk if ch not in _ALLOWED), None)
        if bad is not None:
            raise DataError(f"{path}:{number}: {bad!r} is not a sequence letter (expected letters, '*', '-' or '.')")
        records[-1][1].append(chunk.translate(_UPPER))
    if not records:
        raise DataError(f"{path}: no FASTA records (expected lines starting with '>')")
    _check_previous(path, records, len(text.splitlines()) + 1)
    return [(name, "".join(chunks)) for name, chunks in records]


def _check_previous(path: Path, records: list[tuple[str, list[str]]], number: int) -> None:
    if records and not records[-1][1]:
        raise DataError(f"{path}: record {records[-1][0]!r} has no sequence (before line {number})")
