"""Byte-level BPE: a hand-worked training run, round trips, save/load, determinism, bad input."""

import json
import signal
from contextlib import contextmanager
from pathlib import Path

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from fmblocks.data.text import builtin_corpus, iter_texts
from fmblocks.errors import ConfigError, CorruptFileError, DataError, TokenizerError
from fmblocks.tokenizers import load
from fmblocks.tokenizers.bpe import CACHE_MAX_CHARS, SPECIAL_ID_GAPS, BPETokenizer, bpe_merge, train_bpe
from fmblocks.tokenizers.bpe_merge import HEAP_FROM, merge_heap, merge_scan
from fmblocks.tokenizers.pretokenize import BYTE_ORDER, SPLIT_PATTERNS, Splitter, byte_to_char, char_to_byte

# Base ids follow GPT-2's byte order, printable bytes first from "!" (byte 33), so "a" is 97 - 33.
A, B, C, D = (BYTE_ORDER.index(ch) for ch in b"abcd")


@pytest.fixture(scope="module")
def small_corpus() -> list[str]:
    return builtin_corpus(200_000)


@pytest.fixture(scope="module")
def trained(small_corpus: list[str]) -> BPETokenizer:
    return train_bpe(small_corpus, 600, special_tokens=["<|endoftext|>"], progress=False)


def test_hand_worked_training() -> None:
    # One chunk, "aaabdaaabac". Pair counts: aa 4, ab 2, bd 1, da 1, ba 1, ac 1.
    # 1. (a, a) -> "aa" = 256, merged left to right: aa a b d aa a b a c
    #    counts: (aa,a) 2, (a,b) 2, others 1. Tie at 2: (a,b) = (64, 65) < (aa,a) = (256, 64).
    # 2. (a, b) -> "ab" = 257: aa ab d aa ab a c; counts: (aa,ab) 2, others 1.
    # 3. (aa, ab) -> "aaab" = 258: aaab d aaab a c; every pair now occurs once < min_frequency 2: stop.
    tok = train_bpe(["aaabdaaabac"], 300, min_frequency=2, progress=False)
    assert A == 64 and B == 65
    assert tok.tokens[256:] == [b"aa", b"ab", b"aaab"]
    assert tok.merges == [(b"a", b"a"), (b"a", b"b"), (b"aa", b"ab")]
    assert tok.encode("aaabdaaabac") == [258, D, 258, A, C]
    assert tok.vocab_size == 259
    # min_frequency 1 goes on: the count-1 pairs (aaab,d) (d,aaab) (aaab,a) (a,c) tie; (a,c) = (64, 66) is smallest.
    tok = train_bpe(["aaabdaaabac"], 260, min_frequency=1, progress=False)
    assert tok.tokens[256:] == [b"aa", b"ab", b"aaab", b"ac"]


def test_hand_worked_merge_order() -> None:
    # b"cd" has the lower rank, so it merges first even though "ab" comes first in the text;
    # "abcd" is no token, so [ab, cd] stays.
    assert bpe_merge(b"abcd", {b"a": 0, b"b": 1, b"c": 2, b"d": 3, b"cd": 4, b"ab": 5}) == [b"ab", b"cd"]
    assert bpe_merge(b"aaa", {b"a": 0, b"aa": 1}) == [b"aa", b"a"]  # ties go to the leftmost pair


def test_hand_worked_heap_merge() -> None:
    # a a a a a, every pair "aa" (rank 1): the leftmost merges -> aa a a a; now (aa, a) = "aaa" has
    # rank 2 and the (a, a) pairs rank 1, so the leftmost (a, a) -> aa aa a; "aaaa" is no token,
    # (aa, a) -> aa aaa. The heap pops the stale (a, a) entry at offset 1 on the way and skips it.
    ranks = {b"a": 0, b"aa": 1, b"aaa": 2}
    assert merge_heap(b"aaaaa", ranks) == merge_scan(b"aaaaa", ranks) == [b"aa", b"aaa"]
    assert merge_heap(b"abcd", {b"a": 0, b"b": 1, b"c": 2, b"d": 3, b"cd": 4, b"ab": 5}) == [b"ab", b"cd"]
    assert merge_heap(b"", ranks) == [] and merge_heap(b"a", ranks) == [b"a"]


# Small vocabularies over "abc" with the merged tokens in random rank order, so that a merge can
# create a pair of lower rank than its own (which real BPE vocabularies also contain).
_VOCABULARIES = st.lists(st.text("abc", min_size=2, max_size=5), unique=True, max_size=40).map(
    lambda merged: {bytes([b]): b for b in range(256)} | {t.encode(): 256 + r for r, t in enumerate(merged)}
)


@settings(max_examples=300, deadline=None)
@given(_VOCABULARIES, st.text("abc", max_size=400))
def test_heap_merge_equals_scan(ranks: dict[bytes, int], text: str) -> None:
    data = text.encode()
    assert merge_heap(data, ranks) == merge_scan(data, ranks) == bpe_merge(data, ranks)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.text("aAbé中 ", min_size=1, max_size=4), st.integers(1, 200)), min_size=1, max_size=4))
def test_heap_merge_equals_scan_on_cl100k(pretrained: list[BPETokenizer], segments: list[tuple[str, int]]) -> None:
    data = "".join(piece * times for piece, times in segments).encode()
    ranks = pretrained[1].ranks
    assert merge_heap(data, ranks) == merge_scan(data, ranks)


@contextmanager
def _must_finish_within(seconds: float):
    """Not a timing test: a guard that turns a hang (quadratic merging took ~50 s here) into a failure."""

    def fail(*_) -> None:
        raise AssertionError(f"did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, fail)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def test_long_chunks_encode(pretrained: list[BPETokenizer]) -> None:
    """One 100,000-byte chunk goes through the heap path; the round trip holds."""
    for tok in pretrained:
        for text in ("a" * 100_000, "中文" * 20_000):
            assert len(text.encode()) >= HEAP_FROM and len(tok.splitter(text)) == 1
            with _must_finish_within(20):
                ids = tok.encode(text)
            assert tok.decode(ids) == text


def test_long_chunks_are_not_cached(trained: BPETokenizer) -> None:
    long = "x" * (CACHE_MAX_CHARS + 1)
    assert trained.encode(long + " yz") == trained.encode(long) + trained.encode(" yz")
    assert trained._encode_reference(long + " yz") == trained.encode(long + " yz")  # the path with the cache
    assert long not in trained._cache and " yz" in trained._cache  # memory stays bounded


def test_byte_map_is_gpt2s() -> None:
    assert byte_to_char[ord(" ")] == "Ġ" and byte_to_char[ord("\n")] == "Ċ" and byte_to_char[ord("!")] == "!"
    assert sorted(char_to_byte.values()) == list(range(256))
    assert BYTE_ORDER[:3] == b'!"#' and sorted(BYTE_ORDER) == list(range(256))


@pytest.fixture(scope="module")
def pretrained() -> list[BPETokenizer]:
    return [load("gpt2"), load("cl100k_base")]


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_round_trip_any_text(pretrained: list[BPETokenizer], text: str) -> None:
    for tok in pretrained:  # hypothesis also draws special-token strings from our sources: allow them
        assert tok.decode(tok.encode(text, allowed_special="all")) == text


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=20), st.just("<|endoftext|>")), max_size=6))
def test_round_trip_with_specials(trained: BPETokenizer, pieces: list[str]) -> None:
    text = "".join(pieces)
    ids = trained.encode(text, allowed_special="all")
    assert trained.decode(ids) == text
    assert all(0 <= i < trained.vocab_size for i in ids)


# Text from the characters where the two split patterns have their edge cases.
_EDGES = list(" \t\n\r\x0b\x85\xa0\u2028\u3000'sStTlLvVeEdDmMſ09٣½aé中😀𝔄!?.,-_") + ["'ll", "'VE", "\r\n"]
_EDGY = st.lists(st.sampled_from(_EDGES)).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(), _EDGY))
def test_re_twin_splits_like_regex(text: str) -> None:
    for name, pattern in SPLIT_PATTERNS.items():
        assert Splitter(name)(text) == regex.findall(pattern, text)


def test_save_load_same_ids(trained: BPETokenizer, small_corpus: list[str], tmp_path: Path) -> None:
    trained.save(tmp_path / "bpe.json")
    again = load(tmp_path / "bpe.json")
    assert isinstance(again, BPETokenizer) and again.tokens == trained.tokens
    assert again.special_tokens == trained.special_tokens == {"<|endoftext|>": 600 - 1}
    sample = small_corpus[:20] + ["héllo <|endoftext|> 😀"]
    for text in sample:
        assert again.encode(text, allowed_special="all") == trained.encode(text, allowed_special="all")


def test_pretrained_save_load(tmp_path: Path) -> None:
    tok = load("cl100k_base")
    tok.save(tmp_path / "cl.json")
    again = load(tmp_path / "cl.json")
    text = "def f(x):\n    return x ** 2  # 12345 ünïcödé"
    assert again.encode(text) == tok.encode(text) and again.vocab_size == 100277


def test_training_is_deterministic(small_corpus: list[str], trained: BPETokenizer) -> None:
    again = train_bpe(list(reversed(small_corpus)), 600, special_tokens=["<|endoftext|>"], progress=False)
    assert again.tokens == trained.tokens  # document order does not matter either


def test_encode_batch_matches_encode(trained: BPETokenizer, small_corpus: list[str]) -> None:
    docs = small_corpus[:8]
    assert trained.encode_batch(docs, workers=2) == [trained.encode(d) for d in docs]


def test_special_tokens_never_learned() -> None:
    texts = ["x <|sep|> y <|sep|> z"] * 50
    tok = train_bpe(texts, 400, special_tokens=["<|sep|>"], min_frequency=1, progress=False)
    assert not any(b"<|" in t or b"|>" in t for t in tok.tokens)
    assert tok.encode("x <|sep|>", allowed_special={"<|sep|>"})[-1] == tok.special_tokens["<|sep|>"]


def test_special_token_refused_unless_allowed() -> None:
    tok = load("gpt2")
    with pytest.raises(TokenizerError, match="<\\|endoftext\\|>"):
        tok.encode("a<|endoftext|>b")
    assert tok.encode("a<|endoftext|>b", allowed_special="all") == tok.encode("a") + [50256] + tok.encode("b")
    assert tok.decode([50256]) == "<|endoftext|>"


def test_bad_ids_and_text_raise() -> None:
    tok = load("cl100k_base")
    for bad, problem in (([100277], "outside"), ([-1], "outside"), ([100256], "unused"), ([True], "not an integer")):
        with pytest.raises(TokenizerError, match=f"token id {bad[0]} at position 0 is {problem}"):
            tok.decode(bad)  # past the end, negative, the gap below the specials, a bool
    with pytest.raises(TokenizerError, match="surrogate"):
        tok.encode("a\ud800b")


def test_special_ids_stay_near_the_tokens() -> None:
    # 256 tokens and 2 specials: ids 256..256 + 2 + SPECIAL_ID_GAPS - 1 = 1281, so at most 1024 unused.
    tokens = [bytes([b]) for b in range(256)]
    assert SPECIAL_ID_GAPS == 1024
    assert BPETokenizer(tokens, special_tokens={"<a>": 256, "<b>": 1281}).vocab_size == 1282
    for far in (1282, 10**8, 10**15):  # 10**8 used to build a 100M-entry id table, 10**15 a MemoryError
        with pytest.raises(ConfigError, match=f"'<b>' has id {far}; special ids must lie in 256..1281"):
            BPETokenizer(tokens, special_tokens={"<a>": 256, "<b>": far})
    assert load("cl100k_base").vocab_size == 100277  # its 15 reserved ids 100261..100275 are allowed


def test_invalid_utf8_file(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_bytes(b"ok\n\xff\xfe broken")
    with pytest.raises(CorruptFileError, match="invalid UTF-8"):
        train_bpe(iter_texts([tmp_path]), 300, progress=False)


def test_empty_corpus(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="empty"):
        train_bpe([], 300, progress=False)
    with pytest.raises(DataError, match="empty"):
        train_bpe(["", ""], 300, progress=False)
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="empty"):
        train_bpe(iter_texts([tmp_path]), 300, progress=False)


def test_bad_config() -> None:
    with pytest.raises(ConfigError, match="below the 256 byte tokens"):
        train_bpe(["abc"], 257, special_tokens=["<a>", "<b>"], progress=False)
    with pytest.raises(ConfigError, match="neither a known name"):
        train_bpe(["abc"], 300, pattern="(unclosed", progress=False)
    with pytest.raises(ConfigError, match="must match every one"):
        train_bpe(["abc def"], 300, pattern=r"\w+", progress=False)
    with pytest.raises(ConfigError, match="distinct"):
        train_bpe(["abc"], 300, special_tokens=["<a>", "<a>"], progress=False)


def test_raw_pattern_with_groups(small_corpus: list[str]) -> None:
    tok = train_bpe(small_corpus[:3], 300, pattern=r"( ?\w+)|\s+|[^\s\w]+", progress=False)
    text = "for (i, x) in  enumerate(xs):"
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize(
    "damage",
    [
        lambda d: d.pop("tokens"),
        lambda d: d["tokens"].__setitem__(0, "\u4e2d"),  # a character outside the byte alphabet
        lambda d: d["tokens"].__setitem__(300, d["tokens"][299]),  # a repeated token
        lambda d: d.__setitem__("pattern", "(unclosed"),
        lambda d: d.__setitem__("special_tokens", {"<|endoftext|>": 3}),  # id taken by a token
        lambda d: d.__setitem__("special_tokens", {"<|endoftext|>": 10**15}),  # far past the tokens
    ],
)
def test_corrupt_file(trained: BPETokenizer, tmp_path: Path, damage) -> None:
    path = tmp_path / "bpe.json"
    trained.save(path)
    document = json.loads(path.read_text(encoding="utf-8"))
    damage(document["config"])
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(CorruptFileError):
        load(path)


def test_truncated_file(trained: BPETokenizer, tmp_path: Path) -> None:
    path = tmp_path / "bpe.json"
    trained.save(path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CorruptFileError):
        load(path)
