"""The BPE model of a tokenizer.json: merges ranked as listed, optional byte fallback (SentencePiece style).

This is the model stage of HF `tokenizers`' BPE, for pipelines (pipeline.py): Llama-3 and Qwen2
(byte-level pieces), vocabularies from HF's BpeTrainer (special tokens first, ids not in merge order),
and Llama-2 / Mistral (pieces of "▁"-marked text, unknown characters as byte tokens "<0xNN>").

One piece (a pre-tokenised word) -> ids:

    1. `ignore_merges`: a piece that is itself a vocabulary token is that one token (Llama-3);
    2. each character is its token; one that is not in the vocabulary becomes, with `byte_fallback`,
       the tokens <0x..> of its UTF-8 bytes (when all exist), else the unknown token (runs of them fused
       into one with `fuse_unk`), else it is dropped;
    3. merges: the adjacent pair (a, b) listed earliest in `merges` is merged into the token a+b, the
       leftmost on ties, until no adjacent pair is listed. The rank belongs to the *pair* (HF's rule),
       not to the merged token as in byte-level `bpe_merge.py` (tiktoken's rule); the two agree on
       vocabularies whose ids follow the merge order, and can differ elsewhere.

Limits: `dropout`, `continuing_subword_prefix` and `end_of_word_suffix` are refused (ConfigError).
"""

import heapq
from collections.abc import Mapping, Sequence
from typing import Any

from fmblocks.errors import ConfigError

CACHE_SIZE = 1 << 16


class PairBPE:
    """BPE over `vocab` (token -> id) and `merges` (pairs of token strings, highest priority first)."""

    type = "BPE"

    def __init__(self, vocab: Mapping[str, int], merges: Sequence[tuple[str, str]], *, unk_token: str | None = None,
                 byte_fallback: bool = False, fuse_unk: bool = False, ignore_merges: bool = False) -> None:
        self.vocab = dict(vocab)
        self.id_to_token = {i: t for t, i in self.vocab.items()}
        if len(self.id_to_token) != len(self.vocab):
            raise ConfigError("BPE vocabulary gives one id to two tokens")
        if unk_token is not None and unk_token not in self.vocab:
            raise ConfigError(f"BPE unk_token {unk_token!r} is not in the vocabulary")
        self.merges = [tuple(m) for m in merges]
        self.pair_ranks: dict[tuple[int, int], tuple[int, int]] = {}  # (id a, id b) -> (rank, id of a+b)
        for rank, (a, b) in enumerate(self.merges):
            try:
                key, merged = (self.vocab[a], self.vocab[b]), self.vocab[a + b]
            except KeyError as err:
                raise ConfigError(f"BPE merge {rank} ({a!r}, {b!r}) needs token {err.args[0]!r}, not in the "
                                  "vocabulary") from None
            self.pair_ranks[key] = (rank, merged)  # a repeated pair: the later rank, as in HF
        self.unk_token, self.byte_fallback, self.fuse_unk = unk_token, byte_fallback, fuse_unk
        self.ignore_merges = ignore_merges
        self._bytes = [self.vocab.get(f"<0x{b:02X}>") for b in range(256)]
        self._cache: dict[str, list[int]] = {}

    def tokenize(self, piece: str) -> list[int]:
        """The ids of one pre-tokenised piece (see the module docstring)."""
        found = self._cache.get(piece)
        if found is None:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            found = self._cache[piece] = self._tokenize(piece)
        return list(found)

    def _tokenize(self, piece: str) -> list[int]:
        if self.ignore_merges and piece in self.vocab:
            return [self.vocab[piece]]
        symbols: list[int] = []
        unk: int | None = None  # a pending unknown token (HF adds it after later byte tokens; so do we)
        for char in piece:
            token = self.vocab.get(char)
            if token is not None:
                if unk is not None:
                    symbols.append(unk)
                    unk = None
                symbols.append(token)
                continue
            if self.byte_fallback:
                byte_ids = [self._bytes[b] for b in char.encode("utf-8")]
                if None not in byte_ids:
                    symbols += byte_ids  # type: ignore[arg-type]
                    continue
            if self.unk_token is not None:
                if unk is not None and not self.fuse_unk:
                    symbols.append(unk)
                unk = self.vocab[self.unk_token]
        if unk is not None:
            symbols.append(unk)
        return merge_pairs(symbols, self.pair_ranks)

    def to_dict(self) -> dict[str, Any]:
        """The model in tokenizer.json's schema."""
        return {"type": "BPE", "dropout": None, "unk_token": self.unk_token, "continuing_subword_prefix": None,
                "end_of_word_suffix": None, "fuse_unk": self.fuse_unk, "byte_fallback": self.byte_fallback,
                "ignore_merges": self.ignore_merges, "vocab": self.vocab, "merges": [list(m) for m in self.merges]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PairBPE":
        for option in ("dropout", "continuing_subword_prefix", "end_of_word_suffix"):
            if data.get(option):
                raise ConfigError(f"BPE with {option}={data[option]!r} is not supported")
        merges = [m.split(" ") if isinstance(m, str) else m for m in data.get("merges", [])]
        if any(len(m) != 2 for m in merges):
            raise ConfigError("BPE merges must be pairs of tokens")
        return cls(data["vocab"], merges, unk_token=data.get("unk_token"), byte_fallback=data.get("byte_fallback", False),
                   fuse_unk=data.get("fuse_unk", False), ignore_merges=data.get("ignore_merges", False))


def merge_pairs(symbols: list[int], pair_ranks: Mapping[tuple[int, int], tuple[int, int]]) -> list[int]:
    """Merge adjacent ids by pair rank, lowest rank first and leftmost on ties.

    A heap holds (rank, position, merged id); `after`/`before` link the surviving symbols; an entry is
    stale when its position no longer starts that pair.

    >>> merge_pairs([0, 1, 2], {(0, 1): (1, 3), (1, 2): (0, 4)})
    [0, 4]
    """
    n = len(symbols)
    if n < 2:
        return symbols
    ids = list(symbols)
    after, before, alive = list(range(1, n + 1)), list(range(-1, n - 1)), [True] * n
    heap = [(pair_ranks[p][0], i, pair_ranks[p][1]) for i, p in enumerate(zip(ids, ids[1:])) if p in pair_ranks]
    heapq.heapify(heap)
    while heap:
        rank, i, merged = heapq.heappop(heap)
        j = after[i]
        if not alive[i] or j >= n or pair_ranks.get((ids[i], ids[j]), (None, None))[1] != merged:
            continue
        ids[i], alive[j] = merged, False
        after[i] = after[j]
        if after[i] < n:
            before[after[i]] = i
        for left, right in ((before[i], i), (i, after[i])):
            if left >= 0 and right < n:
                found = pair_ranks.get((ids[left], ids[right]))
                if found is not None:
                    heapq.heappush(heap, (found[0], left, found[1]))
    return [token for token, keep in zip(ids, alive) if keep]
