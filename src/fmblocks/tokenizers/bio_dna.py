"""DNA as tokens: k-mers, non-overlapping (Nucleotide Transformer style) or overlapping (DNABERT style).

Vocabulary, in id order: the specials <pad> <unk> <cls> <eos> <mask>; the single letters A C G T N;
then the 4^k k-mers over ACGT in lexicographic order (none when k = 1). Input is case-insensitive
(lowercase soft-masking is lost); a letter other than A, C, G, T, N raises TokenizerError.

Non-overlapping (default): read k-mers left to right; an N, and bases that cannot fill a whole k-mer
before an N or at the end, become single-letter tokens. Lossless on uppercase ACGTN.

    k = 3:  "ACGTTNAC"  ->  ACG, T, T, N, A, C        (TT cannot fill a 3-mer before the N)

Overlapping: every window s[i:i+k] (stride 1), L - k + 1 tokens; a window containing N becomes <unk>.
A sequence shorter than k is spelled letter by letter. Lossless on ACGT; with N, decode writes N at
every position that no known window covers (so bases next to an N may come back as N).

    k = 3:  "ACGTNA"  ->  ACG, CGT, <unk>, <unk>    ->  decode  "ACGTNN"   (the last A is lost)

decode(ids) returns bases only: <pad>, <cls>, <eos> are dropped; <unk> and <mask> stand for unknown
bases (N; one N per token in non-overlapping mode).
"""

import string
from itertools import product
from typing import Any

import torch

from fmblocks.errors import ConfigError, TokenizerError
from fmblocks.tokenizers.base import TOKENIZERS, Tokenizer, check_ids

SPECIALS = ("<pad>", "<unk>", "<cls>", "<eos>", "<mask>")
LETTERS = "ACGTN"
_COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")
_DELETE_LETTERS = str.maketrans("", "", LETTERS)
_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)  # length-preserving, unlike str.upper
_FRAMING = {"<pad>", "<cls>", "<eos>"}


def check_dna(sequence: str) -> str:
    """The sequence in uppercase; TokenizerError naming the first letter that is not A, C, G, T or N."""
    if not isinstance(sequence, str):
        raise TokenizerError(f"a DNA sequence must be a str, got {type(sequence).__name__}")
    upper = sequence.translate(_UPPER)
    if upper.translate(_DELETE_LETTERS):  # something besides ACGTN is left
        bad = next(i for i, ch in enumerate(upper) if ch not in LETTERS)
        raise TokenizerError(f"DNA may contain only A, C, G, T, N (any case); found {sequence[bad]!r} at position {bad}")
    return upper


def reverse_complement(sequence: str) -> str:
    """The reverse complement (A<->T, C<->G, N<->N), keeping each letter's case: "AcGN" -> "NCgT"."""
    check_dna(sequence)
    return sequence.translate(_COMPLEMENT)[::-1]


@TOKENIZERS.register("dna-kmer")
class KmerTokenizer(Tokenizer):
    """DNA <-> k-mer ids; see the module docstring for the two modes and what decode restores."""

    kind = "dna-kmer"

    def __init__(self, k: int = 6, *, overlapping: bool = False) -> None:
        if not isinstance(k, int) or not 1 <= k <= 10:
            raise ConfigError(f"k must be an integer in 1..10 (4^k k-mers), got {k!r}")
        self.k, self.overlapping = k, overlapping
        self.lossless = not overlapping
        kmers = ["".join(letters) for letters in product("ACGT", repeat=k)] if k > 1 else []
        self.tokens: list[str] = [*SPECIALS, *LETTERS, *kmers]  # id -> token
        self.ids = {token: i for i, token in enumerate(self.tokens)}

    @property
    def vocab_size(self) -> int:
        return len(self.tokens)

    @property
    def special_tokens(self) -> dict[str, int]:
        return {token: self.ids[token] for token in SPECIALS}

    def encode(self, x: str, *, add_special_tokens: bool = False) -> list[int]:
        """DNA -> ids; `add_special_tokens` frames them as <cls> ... <eos>."""
        sequence = check_dna(x)
        ids = self._overlapping(sequence) if self.overlapping else self._non_overlapping(sequence)
        return [self.ids["<cls>"], *ids, self.ids["<eos>"]] if add_special_tokens else ids

    def _non_overlapping(self, s: str) -> list[int]:
        ids, i, k = [], 0, self.k
        while i < len(s):
            chunk = s[i : i + k]
            n_at = chunk.find("N")
            if len(chunk) == k and n_at < 0 and k > 1:
                ids.append(self.ids[chunk])
                i += k
            else:  # spell up to and including the N (or the short tail) letter by letter
                stop = i + n_at + 1 if n_at >= 0 else i + len(chunk)
                ids += [self.ids[letter] for letter in s[i:stop]]
                i = stop
        return ids

    def _overlapping(self, s: str) -> list[int]:
        if len(s) < self.k or self.k == 1:
            return [self.ids[letter] for letter in s]
        unk = self.ids["<unk>"]
        return [unk if "N" in window else self.ids[window] for window in (s[i : i + self.k] for i in range(len(s) - self.k + 1))]

    def decode(self, ids: Any) -> str:
        """ids -> bases (see the module docstring for what is dropped or becomes N)."""
        tokens = [self.tokens[i] for i in check_ids(ids, len(self.tokens))]
        tokens = [t for t in tokens if t not in _FRAMING]
        windows = [t for t in tokens if len(t) > 1]  # k-mers, <unk>, <mask>
        if not self.overlapping or not windows:
            return "".join("N" if t in ("<unk>", "<mask>") else t for t in tokens)
        if len(windows) != len(tokens):
            raise TokenizerError("overlapping k-mer ids mix windows and single letters; cannot place them")
        bases = ["N"] * (len(tokens) + self.k - 1)
        for i, window in enumerate(tokens):
            if window not in ("<unk>", "<mask>"):
                bases[i : i + self.k] = window
        return "".join(bases)

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k, "overlapping": self.overlapping}

    @classmethod
    def from_dict(cls, data: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "KmerTokenizer":
        return cls(data["k"], overlapping=data["overlapping"])


@TOKENIZERS.register("nucleotide")
def nucleotide_tokenizer() -> KmerTokenizer:
    """Single nucleotides, one token per base (HyenaDNA's choice): the k-mer tokenizer with k = 1."""
    return KmerTokenizer(k=1)
