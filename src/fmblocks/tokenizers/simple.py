"""Character- and word-level tokenizers: the two simplest answers to "what is a token?".

CharTokenizer: one id per character (Unicode code point). The vocabulary is the corpus's
characters, sorted by code point (optionally only the `vocab_size` most frequent), after an
optional unknown token at id 0. Without an unknown token, a character outside the vocabulary
raises TokenizerError naming it; with one, it maps to the unknown id and decodes to the unknown
token's string. Round trip: exact for text made of known characters.

WordTokenizer: text -> words (runs of letters, digits and "_") and punctuation marks (every other
non-space character, one at a time) -> ids of the `vocab_size - 1` most frequent words of the
corpus, everything else "<UNK>". Decoding joins the tokens with single spaces, so it loses
(lossless = False): whitespace (kind and amount: "a\\n\\tb" -> "a b"), which tokens touched
("end." -> "end ."), and every out-of-vocabulary word (-> "<UNK>").

Neither matches special tokens inside text: "<UNK>" typed in a text is ordinary characters
("<", "UNK", ">" for the word tokenizer), so nothing can smuggle an unknown id in.
"""

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from fmblocks.errors import ConfigError, CorruptFileError, DataError, TokenizerError
from fmblocks.tokenizers.base import TOKENIZERS, Tokenizer, check_ids

WORD_PATTERN = re.compile(r"\w+|[^\w\s]")


class _ListVocabulary(Tokenizer):
    """A token list (id = position) with an optional unknown token; shared by char and word."""

    def __init__(self, vocab: Sequence[str], *, unk_token: str | None) -> None:
        self.vocab = list(vocab)
        self.token_to_id = {token: i for i, token in enumerate(self.vocab)}
        if len(self.token_to_id) != len(self.vocab):
            duplicate = next(t for t, n in Counter(self.vocab).items() if n > 1)
            raise ConfigError(f"{self.kind} vocabulary lists {duplicate!r} more than once; tokens must be unique")
        if unk_token is not None and unk_token not in self.token_to_id:
            raise ConfigError(f"unknown token {unk_token!r} is not in the {self.kind} vocabulary")
        self.unk_token = unk_token
        self.unk_id = None if unk_token is None else self.token_to_id[unk_token]

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def special_tokens(self) -> dict[str, int]:
        return {} if self.unk_token is None else {self.unk_token: self.token_to_id[self.unk_token]}

    def tokens(self, ids: Sequence[int]) -> list[str]:
        """The token string of each id; TokenizerError for a non-integer id or one outside the vocabulary."""
        return [self.vocab[i] for i in check_ids(ids, len(self.vocab))]

    def to_dict(self) -> dict[str, Any]:
        return {"vocab": self.vocab, "unk_token": self.unk_token}

    @classmethod
    def from_dict(cls, data: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "_ListVocabulary":
        if not isinstance(data["vocab"], list) or not all(isinstance(t, str) for t in data["vocab"]):
            raise TypeError("'vocab' must be a list of strings")
        try:
            return cls(data["vocab"], unk_token=data["unk_token"])
        except ConfigError as err:
            raise CorruptFileError(str(err)) from None


@TOKENIZERS.register("char")
class CharTokenizer(_ListVocabulary):
    """One id per character; see the module docstring."""

    kind = "char"
    lossless = True  # on text made of vocabulary characters (anything else raises or becomes unk)

    def __init__(self, vocab: Sequence[str], *, unk_token: str | None = None) -> None:
        super().__init__(vocab, unk_token=unk_token)
        bad = [t for t in self.vocab if len(t) != 1 and t != unk_token]
        if bad:
            raise ConfigError(f"a char vocabulary holds single characters (besides the unknown token), got {bad[0]!r}")

    def encode(self, text: str) -> list[int]:
        """One id per character of `text`."""
        if not isinstance(text, str):
            raise TokenizerError(f"the char tokenizer encodes str, got {type(text).__name__}")
        lookup = self.token_to_id
        try:
            return [lookup[c] for c in text]
        except KeyError:
            if self.unk_id is None:
                position, char = next((i, c) for i, c in enumerate(text) if c not in lookup)
                raise TokenizerError(f"character {char!r} (U+{ord(char):04X}) at position {position} is not in the "
                                     f"vocabulary and the char tokenizer has no unknown token") from None
            return [lookup.get(c, self.unk_id) for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(self.tokens(ids))


@TOKENIZERS.register("word")
class WordTokenizer(_ListVocabulary):
    """Words and punctuation marks, a fixed vocabulary, "<UNK>" for the rest; see the module docstring."""

    kind = "word"
    lossless = False

    def __init__(self, vocab: Sequence[str], *, unk_token: str = "<UNK>") -> None:
        super().__init__(vocab, unk_token=unk_token)

    @staticmethod
    def split(text: str) -> list[str]:
        """"Don't panic!" -> ["Don", "'", "t", "panic", "!"]."""
        return WORD_PATTERN.findall(text)

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TokenizerError(f"the word tokenizer encodes str, got {type(text).__name__}")
        lookup, unk = self.token_to_id, self.unk_id
        return [lookup.get(word, unk) for word in WORD_PATTERN.findall(text)]

    def decode(self, ids: Sequence[int]) -> str:
        """Tokens joined by single spaces (what is lost: see the module docstring)."""
        return " ".join(self.tokens(ids))


def _corpus_counts(texts: Iterable[str], split: Any) -> Counter[str]:
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(split(text))
    if not counts:
        raise DataError("cannot build a vocabulary from an empty corpus")
    return counts


def _most_frequent(counts: Counter[str], n: int) -> list[str]:
    """The n most frequent items; ties broken by the items themselves, so the result is deterministic."""
    return [item for item, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def train_char(texts: Iterable[str], *, vocab_size: int | None = None, unk_token: str | None = None) -> CharTokenizer:
    """The corpus's characters (the `vocab_size` most frequent, unk included, if given), sorted by code point."""
    counts = _corpus_counts(texts, iter)
    reserved = 0 if unk_token is None else 1
    if vocab_size is not None and vocab_size < 1 + reserved:
        raise ConfigError(f"vocab_size {vocab_size} is too small for a char tokenizer (at least {1 + reserved})")
    if vocab_size is not None and vocab_size - reserved < len(counts) and unk_token is None:
        raise ConfigError(f"vocab_size {vocab_size} keeps fewer than the corpus's {len(counts)} characters; "
                          "pass unk_token so the dropped ones have an id")
    keep = len(counts) if vocab_size is None else vocab_size - reserved
    chars = sorted(_most_frequent(counts, keep))
    return CharTokenizer(([] if unk_token is None else [unk_token]) + chars, unk_token=unk_token)


def train_word(texts: Iterable[str], vocab_size: int, *, unk_token: str = "<UNK>",
               min_frequency: int = 1) -> WordTokenizer:
    """"<UNK>" at id 0, then the `vocab_size - 1` most frequent words seen `min_frequency` times."""
    if vocab_size < 2:
        raise ConfigError(f"vocab_size {vocab_size} is too small for a word tokenizer (unknown token + 1 word)")
    counts = _corpus_counts(texts, WordTokenizer.split)
    frequent = Counter({w: n for w, n in counts.items() if n >= min_frequency and w != unk_token})
    return WordTokenizer([unk_token, *_most_frequent(frequent, vocab_size - 1)], unk_token=unk_token)
