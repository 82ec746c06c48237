"""The compiled BPE path (`bpe_fast.py`, `_bpe_fast.c`) against the pure-Python reference path.

Hand-worked splits, then properties: on any text the C split equals the `regex` split and the C ids
equal the reference ids; the fallbacks (no extension, raw patterns, lone surrogates) and pickling;
`encode_batch` on 1-4 threads equals `encode` text by text, errors included.
Parity with tiktoken runs through `encode` and `encode_batch` in tests/reference/test_bpe_tiktoken.py.
"""

import pickle
import random
import sys
from collections.abc import Callable
from typing import Any

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from fmblocks.errors import TokenizerError
from fmblocks.tokenizers import bpe_fast, load
from fmblocks.tokenizers.bpe import BPETokenizer
from fmblocks.tokenizers.pretokenize import SPLIT_PATTERNS

pytestmark = pytest.mark.skipif(not bpe_fast.available(), reason="C extension not built (pip install -e .)")

_EDGES = list(" \t\n\r\x0b\x85\xa0\u2028\u3000'sStTlLvVeEdDmMſ09٣½aé中😀𝔄!?.,-_\U0003d000") + ["'ll", "'VE", "\r\n"]
_EDGY = st.lists(st.sampled_from(_EDGES)).map("".join)


@pytest.fixture(scope="module")
def pretrained() -> list[BPETokenizer]:
    return [load("gpt2"), load("cl100k_base")]


def test_hand_worked_splits(pretrained: list[BPETokenizer]) -> None:
    gpt2, cl100k = (tok._fast for tok in pretrained)
    # gpt2: contractions are case-sensitive, " ?" joins one space to the next run, the last space of
    # a run of spaces goes with the word after it, trailing spaces are one chunk.
    assert gpt2.split("I'VE it's  12ab\n\n  x  ") == ["I", "'", "VE", " it", "'s", " ", " 12", "ab", "\n\n ", " x", "  "]
    # gpt4: case-insensitive contractions (and U+017F, long s), one non-letter before a letter run (but
    # " (" is space + symbol, so "x" stands alone),
    # digits in threes, symbols keep their line breaks, a space run ends at its last line break.
    assert cl100k.split("I'VE it'ſ (x 12345!!\n  \n y") == ["I", "'VE", " it", "'ſ", " (", "x", " ", "123", "45", "!!\n", "  \n", " y"]


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), _EDGY))
def test_split_equals_regex(pretrained: list[BPETokenizer], text: str) -> None:
    text = text.encode("utf-8", "replace").decode("utf-8")  # no lone surrogates: they have no UTF-8
    for tok in pretrained:
        assert tok._fast.split(text) == regex.findall(SPLIT_PATTERNS[tok.pattern], text)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), _EDGY, st.text("ab中 ", min_size=60, max_size=400)))
def test_ids_equal_reference(pretrained: list[BPETokenizer], text: str) -> None:
    text = text.encode("utf-8", "replace").decode("utf-8")
    for tok in pretrained:
        assert tok._fast.encode(text) == tok._encode_reference(text)


def test_ids_equal_reference_on_trained_vocabulary() -> None:
    rng = random.Random(0)
    text = "".join(rng.choice(["abc", "ab", "ca", " ", "\n", "中", "1"]) for _ in range(5000))
    tok = BPETokenizer([bytes([b]) for b in range(256)] + [b"ab", b"abc", b"ca", b" ab", b"\xe4\xb8"], pattern="gpt2")
    assert tok._fast is not None and tok._fast.encode(text) == tok._encode_reference(text)


def test_long_chunks_take_the_heap(pretrained: list[BPETokenizer]) -> None:
    for tok in pretrained:
        for text in ("a" * 20_000, "中文" * 3000, "ab" * (bpe_fast._bpe_fast.HEAP_FROM // 2 + 1)):
            assert tok._fast.encode(text) == tok._encode_reference(text)


def test_fallbacks(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens = [bytes([b]) for b in range(256)]
    assert BPETokenizer(tokens, pattern=r"\S+|\s+")._fast is None  # a raw pattern: the reference path
    assert BPETokenizer(tokens, pattern=SPLIT_PATTERNS["gpt2"])._fast is not None  # a known pattern spelt out
    monkeypatch.setenv("FMBLOCKS_PURE_PYTHON", "1")
    tok = BPETokenizer(tokens, pattern="gpt4")
    assert tok._fast is None and tok.encode("hi there") == list(b"hi there")


def test_lone_surrogate_is_named(pretrained: list[BPETokenizer]) -> None:
    with pytest.raises(TokenizerError, match="surrogate"):
        pretrained[0].encode("ok \ud800 no")


def test_pickle_and_threads(pretrained: list[BPETokenizer]) -> None:
    tok = pickle.loads(pickle.dumps(pretrained[1]))
    texts = [f"document {i}: déjà vu, 中文 {i * 7919}\n" * (i % 5 + 1) for i in range(40)]
    assert tok._fast is not None
    assert tok.encode_batch(texts, workers=2) == [pretrained[1]._encode_reference(t) for t in texts]


def test_batch_hand_worked() -> None:
    tok = BPETokenizer([bytes([b]) for b in range(256)] + [b"ab", b"abc"], pattern="gpt2")
    # "abc" is one token; " ab" is a chunk of its own: the space, then "ab"; a lone surrogate has no UTF-8
    texts = ["abc ab", "", "x\ud800", "abab"]
    assert tok._fast.encode_batch(texts, 2) == [[257, 32, 256], [], None, [256, 256]]
    assert tok._fast.encode_batch([], 4) == [] and tok._fast.encode_batch(("abc",), 8) == [[257]]
    with pytest.raises(TypeError, match="str"):
        tok._fast.encode_batch(["abc", b"abc"], 2)
    with pytest.raises(ValueError, match="n_threads"):
        tok._fast.encode_batch(["abc"], 0)


def _outcome(encode: Callable[[], Any]) -> Any:
    """The ids, or the error's type and message."""
    try:
        return encode()
    except TokenizerError as err:
        return type(err), str(err)


_SPECIAL = st.sampled_from(["<|endoftext|>", "<|fim_prefix|>", "x<|endoftext|>y"])
_SURROGATES = st.text("a \ud800\udfff中'")  # st.text() leaves lone surrogates out
_TEXTS = st.lists(st.one_of(st.text(), _EDGY, _SURROGATES, st.text("ab中 ", min_size=60, max_size=400), _SPECIAL), max_size=12)


@settings(max_examples=200, deadline=None)
@given(texts=_TEXTS, n_threads=st.integers(1, 4))
def test_batch_equals_encode(pretrained: list[BPETokenizer], texts: list[str], n_threads: int) -> None:
    """Any texts (empty, lone surrogates, special tokens): ids, or the first text's error, as `encode` gives."""
    for tok in pretrained:
        expected = [tok._encode_reference(t) if t == t.encode("utf-8", "replace").decode("utf-8") else None for t in texts]
        assert tok._fast.encode_batch(texts, n_threads) == expected
        assert _outcome(lambda: tok.encode_batch(texts, workers=n_threads)) == _outcome(lambda: [tok.encode(t) for t in texts])


def test_batch_many_documents(pretrained: list[BPETokenizer]) -> None:
    rng = random.Random(1)
    alphabet = "ab中文é😀 \n'1"
    texts = ["".join(rng.choices(alphabet, k=rng.randint(0, 300))) for _ in range(500)] + ["a" * 5000, "中文" * 800]
    for tok in pretrained:
        expected = [tok._encode_reference(t) for t in texts]
        for n_threads in (1, 2, 3, 4, 64):
            assert tok.encode_batch(texts, workers=n_threads) == expected


def test_batch_keeps_no_references(pretrained: list[BPETokenizer]) -> None:
    text, bad = "déjà vu 中文 " * 10, "x\ud800"
    before = sys.getrefcount(text), sys.getrefcount(bad)
    for _ in range(50):
        pretrained[1]._fast.encode_batch([text, bad] * 5, 3)
    assert (sys.getrefcount(text), sys.getrefcount(bad)) == before
