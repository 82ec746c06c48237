"""The Unigram language model of subwords (Kudo 2018, SentencePiece's default; T5, ALBERT, XLNet).

A vocabulary of pieces, each with a score, its log-probability log p(piece). A word (a pre-tokenised
piece, "▁hello" after Metaspace) is cut into the segmentation x_1..x_k with the highest
sum_i log p(x_i), found by Viterbi over the lattice of every vocabulary piece that starts at every
character:

    best[0] = 0;   best[e] = max over pieces w = text[s:e] of best[s] + log p(w)

ties go to the smallest s (HF `tokenizers`' rule, so the ids are theirs). A character that starts no
one-character piece is the unknown piece with score min(scores) - UNK_PENALTY (10, as SentencePiece
and HF), and runs of unknowns are fused into one unknown token; with `byte_fallback` an unknown
span becomes the tokens "<0xNN>" of its UTF-8 bytes when all of them exist.

Training (EM over a seed vocabulary, pruning) is in unigram_train.py; `forward_backward` here gives
the expected piece counts it needs. This is only the model stage: a tokenizer is a pipeline of
Metaspace pre-tokeniser + Unigram + Metaspace decoder (pipeline.py, `train_unigram`).
"""

import math
from collections.abc import Sequence
from typing import Any

from fmblocks.errors import ConfigError, TokenizerError

UNK_PENALTY = 10.0
CACHE_SIZE = 1 << 16


class Unigram:
    """Viterbi segmentation over `pieces`, a list of (piece, log-probability); id = position."""

    type = "Unigram"

    def __init__(self, pieces: Sequence[tuple[str, float]], *, unk_id: int | None = None,
                 byte_fallback: bool = False) -> None:
        self.pieces = [(str(p), float(s)) for p, s in pieces]
        self.vocab = {piece: i for i, (piece, _) in enumerate(self.pieces)}
        if len(self.vocab) != len(self.pieces) or not all(p for p, _ in self.pieces):
            raise ConfigError("Unigram pieces must be distinct non-empty strings")
        if unk_id is not None and not 0 <= unk_id < len(self.pieces):
            raise ConfigError(f"Unigram unk_id {unk_id} is outside the {len(self.pieces)} pieces")
        self.unk_id, self.byte_fallback = unk_id, byte_fallback
        self.scores = [s for _, s in self.pieces]
        self.id_to_token = {i: p for p, i in self.vocab.items()}
        self.unk_score = min(self.scores, default=0.0) - UNK_PENALTY
        self.longest = max((len(p) for p, _ in self.pieces), default=1)
        self._bytes = [self.vocab.get(f"<0x{b:02X}>") for b in range(256)]
        self._cache: dict[str, list[int]] = {}

    def segment(self, text: str) -> list[tuple[str, int | None]]:
        """The best segmentation of `text`: (piece text, id), id None for a fused unknown span.

        >>> Unigram([("<unk>", 0.0), ("a", -1.0), ("b", -1.0), ("ab", -1.5)], unk_id=0).segment("abc")
        [('ab', 2), ('c', None)]
        """
        n, vocab, scores, longest = len(text), self.vocab, self.scores, self.longest
        best, start, token = [0.0] + [-math.inf] * n, [0] * (n + 1), [0] * (n + 1)
        for s in range(n):
            here = best[s]
            single = False
            for e in range(s + 1, min(n, s + longest) + 1):
                i = vocab.get(text[s:e])
                if i is None:
                    continue
                single = single or e == s + 1
                score = scores[i] + here
                if score > best[e]:  # strictly: the smallest start wins a tie
                    best[e], start[e], token[e] = score, s, i
            if not single:
                score = self.unk_score + here
                if score > best[s + 1]:
                    best[s + 1], start[s + 1], token[s + 1] = score, s, -1
        out: list[tuple[str, int | None]] = []
        e = n
        while e > 0:
            s = start[e]
            i = token[e]
            unknown = i == -1 or i == self.unk_id
            if unknown and out and out[-1][1] is None:
                out[-1] = (text[s:e] + out[-1][0], None)  # fuse with the unknown span after it
            else:
                out.append((text[s:e], None if unknown else i))
            e = s
        return out[::-1]

    def tokenize(self, piece: str) -> list[int]:
        """The ids of one pre-tokenised piece."""
        found = self._cache.get(piece)
        if found is None:
            if len(self._cache) >= CACHE_SIZE:
                self._cache.clear()
            found = self._cache[piece] = self._ids(piece)
        return list(found)

    def _ids(self, piece: str) -> list[int]:
        ids: list[int] = []
        for text, _ in self.segment(piece):
            i = self.vocab.get(text)  # HF looks every piece up by its text, a fused unknown span too
            if i is not None:
                ids.append(i)
                continue
            byte_ids = [self._bytes[b] for b in text.encode("utf-8")] if self.byte_fallback else [None]
            if None not in byte_ids:
                ids += byte_ids  # type: ignore[arg-type]
            elif self.unk_id is None:
                raise TokenizerError(f"Unigram cannot encode {text!r}: no piece covers it and there is no unk_id")
            else:
                ids.append(self.unk_id)
        return ids

    def log_likelihood(self, piece: str) -> float:
        """log p of the best segmentation of `piece` (unknown characters at the unknown score)."""
        return sum(self.scores[i] if i is not None else self.unk_score * len(t) for t, i in self.segment(piece))

    def to_dict(self) -> dict[str, Any]:
        """The model in tokenizer.json's schema."""
        return {"type": "Unigram", "unk_id": self.unk_id, "vocab": [[p, s] for p, s in self.pieces],
                "byte_fallback": self.byte_fallback}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Unigram":
        return cls([(p, s) for p, s in data["vocab"]], unk_id=data.get("unk_id"),
                   byte_fallback=data.get("byte_fallback", False))


def forward_backward(text: str, vocab: dict[str, int], scores: Sequence[float], longest: int,
                     counts: list[float], weight: float) -> float:
    """Add `weight` x the expected count of each piece in `text`'s lattice to `counts`; return log p(text).

    log p(text) = logsumexp over every segmentation of the sum of its scores (alpha at the end);
    expected count of an edge (s, e, w) = exp(alpha[s] + score(w) + beta[e] - log p(text)).
    Every character must start some piece (training keeps all characters).
    """
    n = len(text)
    edges = [(s, e, i) for s in range(n) for e in range(s + 1, min(n, s + longest) + 1)
             if (i := vocab.get(text[s:e])) is not None]
    alpha = [-math.inf] * (n + 1)
    alpha[0] = 0.0
    for s, e, i in edges:  # sorted by s: alpha[s] is final when used
        alpha[e] = _logaddexp(alpha[e], alpha[s] + scores[i])
    beta = [-math.inf] * (n + 1)
    beta[n] = 0.0
    for s, e, i in sorted(edges, key=lambda edge: -edge[1]):
        beta[s] = _logaddexp(beta[s], beta[e] + scores[i])
    total = alpha[n]
    for s, e, i in edges:
        counts[i] += weight * math.exp(alpha[s] + scores[i] + beta[e] - total)
    return total


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    high, low = (a, b) if a > b else (b, a)
    return high + math.log1p(math.exp(low - high))
