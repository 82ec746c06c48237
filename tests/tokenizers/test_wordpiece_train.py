"""WordPiece training: a hand-worked example, the incremental algorithm against the definition, errors."""

import hashlib
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fmblocks.data.text import builtin_corpus
from fmblocks.errors import ConfigError, DataError
from fmblocks.tokenizers.normalize import bert_normalize, bert_pre_tokenize
from fmblocks.tokenizers.wordpiece import BERT_SPECIALS, train_wordpiece
from fmblocks.tokenizers.wordpiece_train import count_words, learn_wordpieces, merged_symbol, pair_score, word_symbols


HAND_CORPUS = ["ab ab ab abc bc bc cd"]


def test_training_by_hand() -> None:
    # words: ab x3, abc x1, bc x2, cd x1 -> symbols a ##b | a ##b ##c | b ##c | c ##d
    # freq: a 4, ##b 4, ##c 3, b 2, c 1, ##d 1
    # pairs: (a,##b) 4 -> 4/(4*4) = .25   (##b,##c) 1 -> 1/(4*3) = .083
    #        (b,##c) 2 -> 2/(2*3) = .333  (c,##d)   1 -> 1/(1*1) = 1
    # min_frequency 2 rules out the count-1 pairs: merge "bc" (.333), then "ab" (.25); then the only
    # pair left, (ab, ##c), occurs once: stop. Alphabet: every character, "##" forms of inner ones.
    alphabet = ["##b", "##c", "##d", "a", "b", "c", "d"]
    tok = train_wordpiece(HAND_CORPUS, 100, progress=False)
    assert tok.vocab == [*BERT_SPECIALS, *alphabet, "bc", "ab"]
    # min_frequency 1: (c,##d) scores 1 -> "cd". Then (b,##c) .333 -> "bc". Now ##c has freq 1:
    # (a,##b) 4/16 = .25 ties with (##b,##c) 1/(4*1) = .25; the more frequent pair wins -> "ab".
    # Last, (ab,##c) 1/(4*1) -> "abc".
    tok = train_wordpiece(HAND_CORPUS, 100, min_frequency=1, progress=False)
    assert tok.vocab == [*BERT_SPECIALS, *alphabet, "cd", "bc", "ab", "abc"]
    # vocab_size stops training: 12 base tokens + 2 merges
    assert train_wordpiece(HAND_CORPUS, 14, min_frequency=1, progress=False).vocab[-2:] == ["cd", "bc"]
    # greedy longest match with the trained vocabulary: "abcd" -> abc ##d; "dcab" -> d ##c, then
    # neither "##ab" nor "##a" exists -> the whole word is [UNK]
    assert [tok.vocab[i] for i in tok.encode("abcd dcab", add_special_tokens=False)] == ["abc", "##d", "[UNK]"]


def test_helpers_by_hand() -> None:
    assert word_symbols("abc") == ["a", "##b", "##c"]
    assert merged_symbol("ab", "##c") == "abc" and merged_symbol("##a", "##b") == "##ab"
    assert pair_score(2, 2, 3) == pytest.approx(1 / 3)
    assert count_words(["Hello, hello!"]) == Counter({"hello": 2, ",": 1, "!": 1})
    assert list(learn_wordpieces(Counter({"ab": 3, "abc": 1, "bc": 2, "cd": 1}), 2)) == ["bc", "ab"]


def naive_wordpiece(words: Counter[str], vocab_size: int, min_frequency: int) -> list[str]:
    """The definition, recomputed from scratch every step: best score, then count, then smallest pair."""
    split = {w: word_symbols(w) for w in words}
    learned: list[str] = []
    while len(learned) < vocab_size:
        symbols: Counter[str] = Counter()
        pairs: Counter[tuple[str, str]] = Counter()
        for word, parts in split.items():
            for s in parts:
                symbols[s] += words[word]
            for pair in zip(parts, parts[1:]):
                pairs[pair] += words[word]
        candidates = [(-pair_score(c, symbols[a], symbols[b]), -c, a, b) for (a, b), c in pairs.items()
                      if c >= min_frequency]
        if not candidates:
            break
        _, _, a, b = min(candidates)
        for word, parts in split.items():
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and (parts[i], parts[i + 1]) == (a, b):
                    merged.append(parts[i] + parts[i + 1][2:])
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            split[word] = merged
        if (new := merged_symbol(a, b)) not in learned:
            learned.append(new)
    return learned


@pytest.mark.parametrize("seed", range(40))
def test_incremental_training_matches_the_definition(seed: int) -> None:
    # random corpora over 2-6 letters with Zipf-like word frequencies: many equal scores (the
    # tie-break), frequent symbols in many pairs (the markers), symbols made twice by two merges
    rng = random.Random(seed)
    letters = "abcdef"[: 2 + seed % 5]
    vocabulary = ["".join(rng.choice(letters) for _ in range(rng.randint(1, 10))) for _ in range(rng.randint(5, 80))]
    weights = [1 / (r + 1) ** rng.random() for r in range(len(vocabulary))]
    words = [" ".join(rng.choices(vocabulary, weights=weights, k=rng.randint(20, 400)))]
    counts = count_words(words)
    min_frequency = 1 + seed % 3
    tok = train_wordpiece(words, 10_000, min_frequency=min_frequency, special_tokens=(), progress=False)
    base = len({c for w in counts for c in w} | {"##" + c for w in counts for c in w[1:]})
    assert tok.vocab[base:] == naive_wordpiece(counts, 10_000, min_frequency)


def trained_after_alphabet(words: Counter[str], min_frequency: int) -> list[str]:
    """The merged tokens of train_wordpiece on `words` (the alphabet stripped), up to 10,000 tokens."""
    text = " ".join(word for word, n in words.items() for _ in range(n))
    tok = train_wordpiece([text], 10_000, min_frequency=min_frequency, special_tokens=(), progress=False)
    base = len({c for w in words for c in w} | {"##" + c for w in words for c in w[1:]})
    return tok.vocab[base:]


# words over two or three letters, each repeated: runs such as "aaaa" (pairs (a, a) that overlap),
# equal scores everywhere (the tie-breaks), symbols spelt by two different merges
WORDS = st.dictionaries(st.text("abc", min_size=1, max_size=9), st.integers(1, 12), min_size=1, max_size=30)


@settings(max_examples=200, deadline=None)
@given(WORDS, st.integers(1, 3))
def test_hypothesis_training_matches_the_definition(words: dict[str, int], min_frequency: int) -> None:
    counts = Counter(words)
    assert trained_after_alphabet(counts, min_frequency) == naive_wordpiece(counts, 10_000, min_frequency)


# sha256 of "\n".join(vocab) from the trainer before pairs were grouped by owner (commit 9fcdd22),
# on the first 300 kB of builtin_corpus: the fast trainer must keep these vocabularies
PINNED = {(2, True): "239936d20d2df12c", (1, False): "4d7c47b524674350"}


@pytest.mark.parametrize(("min_frequency", "lowercase"), list(PINNED))
def test_vocabulary_unchanged_on_real_text(min_frequency: int, lowercase: bool) -> None:
    docs = builtin_corpus(max_bytes=300_000)
    vocab = train_wordpiece(docs, 4000, min_frequency=min_frequency, lowercase=lowercase, progress=False).vocab
    assert len(vocab) == 4000
    assert hashlib.sha256("\n".join(vocab).encode()).hexdigest()[:16] == PINNED[min_frequency, lowercase]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(st.one_of(st.characters(max_codepoint=0x7F), st.characters()), max_size=60), max_size=4),
       st.booleans())
def test_counted_words_are_the_pre_tokenised_words(texts: list[str], lowercase: bool) -> None:
    # count_words takes a shortcut for ASCII text (one regular expression): same words as the stages
    expected = Counter(w for t in texts for w in bert_pre_tokenize(bert_normalize(t, lowercase=lowercase)))
    assert count_words(texts, lowercase=lowercase) == expected


def test_training_is_deterministic_and_order_free() -> None:
    docs = [f"line {i}: the quick brown fox number {i * 7} jumps" for i in range(200)]
    first = train_wordpiece(docs, 120, progress=False)
    assert train_wordpiece(docs, 120, progress=False).vocab == first.vocab
    assert train_wordpiece(list(reversed(docs)), 120, progress=False).vocab == first.vocab
    # every training word is covered by the alphabet: no [UNK]
    ids = first.encode(" ".join(docs))
    assert first.token_to_id["[UNK]"] not in ids


def test_training_errors() -> None:
    with pytest.raises(DataError, match="empty"):
        train_wordpiece(["  \n\t"], 100, progress=False)
    with pytest.raises(ConfigError, match="too small"):
        train_wordpiece(HAND_CORPUS, 10, progress=False)
    with pytest.raises(ConfigError, match="min_frequency"):
        train_wordpiece(HAND_CORPUS, 100, min_frequency=0, progress=False)
