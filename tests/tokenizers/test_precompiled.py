"""The `Precompiled` normaliser's charsmap reader on a hand-built trie (parity with HF and sentencepiece:
tests/reference/test_hf_pipelines.py)."""

import struct

import pytest

from fmblocks.errors import TokenizerError
from fmblocks.tokenizers.precompiled import Charsmap


def test_hand_built_charsmap_takes_the_first_rule() -> None:
    # trie over "A" -> "a" and "AB" -> "x": root (children at 0x40), node "A" (leaf, children at 2),
    # its value unit (0), node "AB" (leaf) and its value unit (2, the offset of "x\0" in the blob)
    a_node, b_node = 0x40 ^ ord("A"), 2 ^ ord("B")
    units = [0] * 0x50
    units[0] = 0x40 << 10
    units[a_node] = (a_node ^ 2) << 10 | 1 << 8 | ord("A")
    units[2] = 1 << 31 | 0
    units[b_node] = (b_node ^ 0x4F) << 10 | 1 << 8 | ord("B")
    units[0x4F] = 1 << 31 | 2
    rules = Charsmap(struct.pack(f"<{len(units) + 1}I", 4 * len(units), *units) + b"a\0x\0")
    assert rules.transform("A") == "a" and rules.transform("AB") == "a"  # the shortest rule, as HF takes it
    assert rules.normalize("CAB") == "CaB"  # one cluster per letter
    assert rules.normalize("A\u0301B") == "aB"  # "A" + combining acute is one short cluster: its rest dropped
    with pytest.raises(TokenizerError, match="Precompiled charsmap"):
        Charsmap(b"")
