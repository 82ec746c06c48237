"""Proteins as tokens: one id per residue, in the 33-token alphabet of ESM-2 (Lin et al., 2023), same order.

    id:  0 <cls>  1 <pad>  2 <eos>  3 <unk>
         4..23  L A G V S E R T I D P K Q N F Y M H W C    the 20 standard residues
         24..28 X B U Z O                                   unknown, Asx (D/N), selenocysteine, Glx (E/Q), pyrrolysine
         29 .   30 -                                        alignment gaps
         31 <null_1>  32 <mask>

Encoding is case-insensitive. Any other character (J, *, a digit) becomes <unk>, one per character, so
positions are kept. A "<...>" special written in the input is refused unless `allow_special=True`
(then "<mask>" in the text is the mask token, as in ESM's tokenizer).
decode(ids) -> residues: <cls>, <pad>, <eos>, <null_1> are dropped; <unk> and <mask> become X, so
the result has one letter per residue. Lost: case and the identity of unknown characters.
"""

import re
import string
from typing import Any

import torch

from fmblocks.errors import TokenizerError
from fmblocks.tokenizers.base import TOKENIZERS, Tokenizer, check_ids

STANDARD = "LAGVSERTIDPKQNFYMHWC"
AMBIGUOUS = "XBUZO"
GAPS = ".-"
VOCAB = ("<cls>", "<pad>", "<eos>", "<unk>", *STANDARD, *AMBIGUOUS, *GAPS, "<null_1>", "<mask>")
SPECIALS = ("<cls>", "<pad>", "<eos>", "<unk>", "<null_1>", "<mask>")
_DROPPED = {"<cls>", "<pad>", "<eos>", "<null_1>"}
_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)  # length-preserving, unlike str.upper
_PIECE = re.compile("|".join(re.escape(s) for s in SPECIALS) + "|.", re.DOTALL)


@TOKENIZERS.register("protein")
class ProteinTokenizer(Tokenizer):
    """Amino-acid sequence <-> one id per residue (ESM-2 alphabet); see the module docstring."""

    kind = "protein"
    lossless = False
    tokens: tuple[str, ...] = VOCAB  # id -> token
    ids = {token: i for i, token in enumerate(VOCAB)}

    @property
    def vocab_size(self) -> int:
        return len(VOCAB)

    @property
    def special_tokens(self) -> dict[str, int]:
        return {token: self.ids[token] for token in SPECIALS}

    @property
    def standard_ids(self) -> list[int]:
        """Ids of the 20 standard residues (e.g. the random replacements of masked-LM training)."""
        return [self.ids[residue] for residue in STANDARD]

    def encode(self, x: str, *, add_special_tokens: bool = False, allow_special: bool = False) -> list[int]:
        """Residues -> ids; `add_special_tokens` frames them as <cls> ... <eos> (as ESM does)."""
        if not isinstance(x, str):
            raise TokenizerError(f"a protein sequence must be a str, got {type(x).__name__}")
        unk = self.ids["<unk>"]
        if allow_special:
            ids = [self.ids.get(p if p in SPECIALS else p.translate(_UPPER), unk) for p in _PIECE.findall(x)]
        else:
            found = next((s for s in SPECIALS if s in x), None)
            if found is not None:
                raise TokenizerError(f"special token {found!r} in the input; pass allow_special=True to accept it")
            ids = [self.ids.get(ch, unk) for ch in x.translate(_UPPER)]
        return [self.ids["<cls>"], *ids, self.ids["<eos>"]] if add_special_tokens else ids

    def decode(self, ids: Any) -> str:
        """ids -> residues; framing specials dropped, <unk>/<mask> written as X."""
        letters = []
        for i in check_ids(ids, len(VOCAB)):
            token = VOCAB[i]
            if token not in _DROPPED:
                letters.append("X" if token in ("<unk>", "<mask>") else token)
        return "".join(letters)

    def to_dict(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_dict(cls, data: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "ProteinTokenizer":
        return cls()
