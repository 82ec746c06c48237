"""The compiled path for byte-level BPE encoding: `_bpe_fast.c`, when it is built, and its tables.

`fast_encoder(tokens, pattern)` returns an object whose `encode(text) -> list[int]` does what
`BPETokenizer._encode_reference` does (split by the "gpt2" or "gpt4" pattern, merge each chunk by
rank, look the ids up) in one C call without the GIL, and whose `encode_batch(texts, n_threads)`
does it for many texts on n_threads pthreads (None for a text with a lone surrogate, which has no
UTF-8); or None when the extension is not built
(`pip install -e .` builds it), the pattern is a raw user regex, or FMBLOCKS_PURE_PYTHON=1 is set.
The pure-Python path stays the reference; tests/tokenizers/test_bpe_fast.py checks the two agree.

The C matcher needs the character classes the patterns use. They are taken from the `regex` module
itself, once per process (about 0.2 s), so both paths split every code point alike:

    classes   one byte per code point 0..0x10FFFF: bit 1 \\p{L}, bit 2 \\p{N}, bit 4 \\s
    fold      the non-ASCII code points that gpt4's case-insensitive contractions match
              (U+017F, long s, matches "s"), as (code point, ASCII letter) pairs
"""

import os
from collections.abc import Sequence
from functools import cache
from typing import Protocol

import regex

from fmblocks.tokenizers.pretokenize import SPLIT_PATTERNS

try:
    from fmblocks.tokenizers import _bpe_fast
except ImportError:  # not built: the pure-Python path serves
    _bpe_fast = None

CLASS_BITS = {r"\p{L}": 1, r"\p{N}": 2, r"\s": 4}
CONTRACTION_LETTERS = "sdmtlver"


class FastEncoder(Protocol):
    def encode(self, text: str) -> list[int]: ...

    def encode_batch(self, texts: Sequence[str], n_threads: int) -> list[list[int] | None]: ...

    def split(self, text: str) -> list[str]: ...


def available() -> bool:
    """True when the C extension is built and not switched off by FMBLOCKS_PURE_PYTHON=1."""
    return _bpe_fast is not None and os.environ.get("FMBLOCKS_PURE_PYTHON", "") in ("", "0")


def fast_encoder(tokens: Sequence[bytes], pattern: str) -> FastEncoder | None:
    """A C encoder over `tokens` (rank = index) for a "gpt2"/"gpt4" split, or None (see the module docstring)."""
    name = next((key for key, value in SPLIT_PATTERNS.items() if pattern in (key, value)), None)
    if name is None or not available():
        return None
    return _bpe_fast.Encoder(list(tokens), name, class_table(), fold_pairs())


@cache
def class_table() -> bytes:
    """One byte per code point: the `regex` module's \\p{L}, \\p{N} and \\s as bits (CLASS_BITS)."""
    everything = "".join(map(chr, range(0x110000)))
    table = bytearray(0x110000)
    for prop, bit in CLASS_BITS.items():
        for match in regex.finditer(prop + "++", everything):
            start, end = match.span()
            table[start:end] = bytes(b | bit for b in table[start:end])
    return bytes(table)


@cache
def fold_pairs() -> list[tuple[int, str]]:
    """(code point, letter) for each non-ASCII character that `(?i:letter)` matches in `regex`."""
    everything = "".join(map(chr, range(128, 0x110000)))
    return [(ord(c), letter) for letter in CONTRACTION_LETTERS for c in regex.findall(f"(?i:{letter})", everything)]
