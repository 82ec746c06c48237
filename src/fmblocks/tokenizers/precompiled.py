"""SentencePiece's compiled normalisation rules: the `Precompiled` normaliser of T5, mT5, ALBERT and XLNet
tokenizer.json files, read from its `precompiled_charsmap` (sentencepiece's `NormalizerSpec`, base64).

The charsmap is three parts, all little-endian:

    uint32 n            the size of the trie in bytes
    n/4 uint32 units    a double-array trie (darts-clone's layout) over UTF-8 source strings; the value
                        at a key is an offset into the blob below
    blob                the normalised strings, each ended by a NUL byte

A unit packs a label (low byte; bit 31 set marks a value unit), a has-leaf flag (bit 8) and the offset to
its children (bits 10..31, shifted left by 8 more when bit 9 is set). From node p, byte c leads to
p ^ offset(unit[p]) ^ c when that unit's label is c; a node with a leaf holds its value in the unit at
p ^ offset(unit[p]).

Normalisation as HF `tokenizers` does it (its reference is what fmblocks must equal): the text is cut into
extended grapheme clusters (`regex`'s \\X); a cluster shorter than 6 UTF-8 bytes with a rule starting it
becomes that rule's output, taking the *shortest* matching rule (the first the trie walk finds) and
dropping the rest of the cluster; any other cluster is normalised character by character the same way,
a character without a rule kept. sentencepiece itself takes the longest rule at each byte position; on
nmt_nfkc's rules the two agree except on clusters that a rule covers only in part.

    >>> trie = [0x40 << 10, (3 << 10) | 1 << 8 | ord("A"), 1 << 31 | 0]  # root; "A" (leaf); value 0
    >>> rules = Charsmap(struct.pack("<4I", 12, *trie) + b"a\\0")          # one rule: "A" -> "a"
    >>> rules.normalize("BAD")
    'BaD'

Limits: grapheme clusters follow `regex`'s Unicode version, which may differ from HF's on the newest code
points; the whitespace rules of sentencepiece (dummy prefix, collapsing spaces) are other stages
(Strip, Replace, Metaspace) in a tokenizer.json and are not done here.
"""

import base64
import binascii
import struct
from functools import cache

import regex

from fmblocks.errors import TokenizerError

_GRAPHEME = regex.compile(r"\X")


def _offset(unit: int) -> int:
    return (unit >> 10) << ((unit & (1 << 9)) >> 6)


class Charsmap:
    """The rules of one `precompiled_charsmap` (raw bytes), with `normalize(text)` as HF applies them."""

    def __init__(self, data: bytes) -> None:
        if len(data) < 4:  # HF refuses an empty charsmap too ("Cannot parse precompiled_charsmap")
            raise TokenizerError(f"Precompiled charsmap of {len(data)} bytes is shorter than its 4-byte trie size")
        (size,) = struct.unpack_from("<I", data)
        if size % 4 or size == 0 or 4 + size > len(data):
            raise TokenizerError(f"Precompiled charsmap: trie size {size} does not fit its {len(data)} bytes")
        self.units = struct.unpack_from(f"<{size // 4}I", data, 4)
        self.blob = data[4 + size:]
        self._rules: dict[str, str | None] = {}

    def first_rule(self, key: bytes) -> int | None:
        """The value (blob offset) of the shortest key in the trie that starts `key`, or None.

        The walk stops at a NUL byte, as darts-clone's search without a length does."""
        units = self.units
        node = _offset(units[0])
        for c in key:
            if c == 0:
                return None
            node ^= c
            if node >= len(units) or units[node] & ((1 << 31) | 0xFF) != c:
                return None
            has_leaf = (units[node] >> 8) & 1
            node ^= _offset(units[node])
            if has_leaf and node < len(units):
                return units[node] & ((1 << 31) - 1)
        return None

    def transform(self, chunk: str) -> str | None:
        """The output of the first rule starting `chunk`, or None when no rule does (memoised)."""
        if chunk in self._rules:
            return self._rules[chunk]
        value = self.first_rule(chunk.encode("utf-8"))
        out = None
        if value is not None:
            end = self.blob.find(b"\0", value)
            out = self.blob[value:end if end >= 0 else len(self.blob)].decode("utf-8", errors="replace")
        self._rules[chunk] = out
        return out

    def normalize(self, text: str) -> str:
        """`text` through the rules, one grapheme cluster at a time (see the module docstring)."""
        out = []
        for grapheme in _GRAPHEME.findall(text):
            if len(grapheme.encode("utf-8")) < 6:
                norm = self.transform(grapheme)
                if norm is not None:
                    out.append(norm)
                    continue
            for char in grapheme:
                norm = self.transform(char)
                out.append(char if norm is None else norm)
        return "".join(out)


@cache
def charsmap(encoded: str) -> Charsmap:
    """The Charsmap of a tokenizer.json `precompiled_charsmap` (base64), parsed once per distinct string."""
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, TypeError, ValueError) as err:
        raise TokenizerError(f"Precompiled charsmap is not base64 ({err})") from None
    return Charsmap(data)
