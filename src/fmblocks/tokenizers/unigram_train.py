"""Training a Unigram vocabulary (Kudo 2018, "Subword Regularization", section 3.2; SentencePiece's trainer):
EM over a seed vocabulary, pruning the pieces whose loss the likelihood feels least.

    words     the corpus pre-tokenised by Metaspace ("▁" marks a word start), counted
    seed      every character, plus the substrings (up to `max_piece_length`, no "▁" inside) seen at
              least twice, the `seed_size` best by frequency x length; log p = log(frequency / total)
    EM        E: expected count of each piece over all segmentations of each word (forward-backward,
              unigram.forward_backward), weighted by the word's count;
              M: log p(w) = digamma(count(w)) - digamma(sum of counts) (the Bayesian update SentencePiece
              uses, which shrinks rare pieces), pieces expected fewer than 0.5 times dropped
    prune     for each piece, the loss of removing it: its words fall back to the second-best cut of the
              piece, loss = (share of word occurrences using it) x (log p(piece) - log p(alternatives));
              keep the `shrinking_factor` (75%) with the highest loss, characters always
    repeat    EM + prune until 1.1 x the target size, EM once more, then keep the best-scoring pieces

Differences from SentencePiece, measured in bench/unigram.py and docs/tokenizers.md: the seed comes
from counting substrings (not a suffix array), there is no sentence-level sampling or normalisation
(no NFKC; the text is taken as it is), and the pure-Python lattice is slow (seconds per MB).
"""

import math
from collections import Counter
from collections.abc import Iterable, Sequence

from tqdm.auto import tqdm

from fmblocks.errors import ConfigError, DataError
from fmblocks.tokenizers.hf_export import added_token
from fmblocks.tokenizers.pipeline import PipelineTokenizer
from fmblocks.tokenizers.pipeline_normalize import pre_tokenize
from fmblocks.tokenizers.unigram import Unigram, forward_backward

METASPACE = {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True}
MIN_EXPECTED = 0.5  # pieces expected fewer times than this vanish in the M step (SentencePiece's threshold)


def count_words(texts: Iterable[str]) -> Counter[str]:
    """The Metaspace words of `texts` and their counts.

    >>> count_words(["the cat", "the"])
    Counter({'▁the': 2, '▁cat': 1})
    """
    return Counter(word for text in texts for word in pre_tokenize(METASPACE, [text]))


def seed_pieces(words: Counter[str], seed_size: int, max_piece_length: int) -> dict[str, float]:
    """The seed vocabulary: piece -> count (characters, then the frequent substrings)."""
    characters: Counter[str] = Counter()
    substrings: Counter[str] = Counter()
    for word, count in words.items():
        for i, char in enumerate(word):
            characters[char] += count
            for j in range(i + 2, min(len(word), i + max_piece_length) + 1):
                substrings[word[i:j]] += count
    frequent = [(s, c) for s, c in substrings.items() if c >= 2 and "\u2581" not in s[1:]]
    frequent.sort(key=lambda item: (-item[1] * len(item[0]), item[0]))
    return dict(characters) | dict(frequent[:seed_size])


def digamma(x: float) -> float:
    """psi(x) for x > 0: the recurrence up to x >= 6, then the asymptotic series."""
    result = 0.0
    while x < 6:
        result -= 1 / x
        x += 1
    inverse = 1 / (x * x)
    return result + math.log(x) - 0.5 / x - inverse * (1 / 12 - inverse * (1 / 120 - inverse / 252))


def _expected_counts(words: Counter[str], pieces: list[str], scores: list[float]) -> tuple[list[float], float]:
    vocab = {p: i for i, p in enumerate(pieces)}
    longest = max(map(len, pieces))
    counts = [0.0] * len(pieces)
    log_likelihood = sum(count * forward_backward(word, vocab, scores, longest, counts, count)
                         for word, count in words.items())
    return counts, log_likelihood


def em_step(words: Counter[str], pieces: list[str], scores: list[float], keep: set[str]
            ) -> tuple[list[str], list[float], float]:
    """One E and M step; returns the surviving pieces, their new log-probabilities and the corpus log p."""
    counts, log_likelihood = _expected_counts(words, pieces, scores)
    kept = [(p, c) for p, c in zip(pieces, counts) if c >= MIN_EXPECTED or p in keep]
    total = digamma(sum(c for _, c in kept))
    return [p for p, _ in kept], [digamma(max(c, 1e-3)) - total for _, c in kept], log_likelihood


def _viterbi(text: str, vocab: dict[str, int], scores: Sequence[float], longest: int, banned: int = -1) -> list[int]:
    """Best segmentation of `text` as piece ids, piece `banned` excluded (empty when none exists)."""
    n = len(text)
    best, back = [0.0] + [-math.inf] * n, [(0, -1)] * (n + 1)
    for s in range(n):
        if best[s] == -math.inf:
            continue
        for e in range(s + 1, min(n, s + longest) + 1):
            i = vocab.get(text[s:e])
            if i is not None and i != banned and best[s] + scores[i] > best[e]:
                best[e], back[e] = best[s] + scores[i], (s, i)
    if best[n] == -math.inf:
        return []
    ids, e = [], n
    while e > 0:
        e, i = back[e]
        ids.append(i)
    return ids[::-1]


def prune(words: Counter[str], pieces: list[str], scores: list[float], keep: set[str], size: int
          ) -> tuple[list[str], list[float]]:
    """Keep the `size` pieces whose removal costs the most likelihood (the `keep` ones always)."""
    vocab = {p: i for i, p in enumerate(pieces)}
    longest = max(map(len, pieces))
    frequency, containing = [0.0] * len(pieces), [0.0] * len(pieces)
    for word, count in words.items():
        ids = _viterbi(word, vocab, scores, longest)
        for i in ids:
            frequency[i] += count
        for i in set(ids):
            containing[i] += count
    total, word_total = sum(frequency), sum(words.values())
    losses = []
    for i, piece in enumerate(pieces):
        if piece in keep:
            continue
        if frequency[i] == 0:
            losses.append((-math.inf, i))  # unused by any best segmentation: the first to go
            continue
        alternatives = _viterbi(piece, vocab, scores, longest, banned=i)
        if not alternatives:
            losses.append((math.inf, i))
            continue
        log_piece = math.log(frequency[i]) - math.log(total)
        # without the piece, its occurrences go to its alternatives
        log_total = math.log(total + frequency[i] * (len(alternatives) - 1))
        log_alternatives = sum(math.log(frequency[a] + frequency[i]) - log_total for a in alternatives)
        losses.append((containing[i] / word_total * (log_piece - log_alternatives), i))
    losses.sort(key=lambda item: (-item[0], item[1]))
    chosen = {i for i, p in enumerate(pieces) if p in keep}
    chosen |= {i for _, i in losses[: max(0, size - len(chosen))]}
    return [pieces[i] for i in sorted(chosen)], [scores[i] for i in sorted(chosen)]


def train_unigram(texts: Iterable[str], vocab_size: int, *, special_tokens: Sequence[str] = ("<unk>",),
                  unk_token: str | None = "<unk>", max_piece_length: int = 16, seed_size: int = 100_000,
                  shrinking_factor: float = 0.75, em_iterations: int = 2, progress: bool = True
                  ) -> PipelineTokenizer:
    """A Unigram tokenizer of at most `vocab_size` ids (fewer when EM leaves fewer pieces expected 0.5 times):
    specials first (score 0), then pieces by score.

    The pipeline is Metaspace("▁", prepend always) -> Unigram -> Metaspace decoder, the layout of HF's
    UnigramTrainer, so `save_tokenizer_json` gives a file HF loads with the same ids.
    """
    specials = list(dict.fromkeys(special_tokens))
    if unk_token is not None and unk_token not in specials:
        raise ConfigError(f"unk_token {unk_token!r} must be one of special_tokens {specials}")
    if not 0 < shrinking_factor < 1 or em_iterations < 1 or max_piece_length < 1:
        raise ConfigError("need 0 < shrinking_factor < 1, em_iterations >= 1 and max_piece_length >= 1")
    words = count_words(texts)
    if not words:
        raise DataError("cannot train Unigram on an empty corpus (no words)")
    seed = seed_pieces(words, seed_size, max_piece_length)
    characters = {c for word in words for c in word}
    target = vocab_size - len(specials)
    if target < len(characters):
        raise ConfigError(f"vocab_size {vocab_size} is too small: {len(specials)} special tokens and the "
                          f"{len(characters)} characters of the corpus need {len(specials) + len(characters)}")
    pieces = sorted(seed, key=lambda p: (-seed[p], p))
    total = math.log(sum(seed.values()))
    scores = [math.log(seed[p]) - total for p in pieces]
    with tqdm(desc="unigram EM", disable=not progress) as bar:
        while True:
            for _ in range(em_iterations):
                pieces, scores, log_likelihood = em_step(words, pieces, scores, characters)
                bar.update()
                bar.set_postfix(pieces=len(pieces), log_likelihood=f"{log_likelihood:.4g}")
            if len(pieces) <= int(target * 1.1):
                break
            size = max(int(target * 1.1), int(len(pieces) * shrinking_factor))
            pieces, scores = prune(words, pieces, scores, characters, size)
    ranked = sorted(range(len(pieces)), key=lambda i: (pieces[i] not in characters, -scores[i], pieces[i]))
    chosen = sorted(ranked[:target], key=lambda i: (-scores[i], pieces[i]))
    # scores of 15 significant digits: HF reads them back exactly (its JSON parser can be off by one ulp on 17)
    vocab = [(s, 0.0) for s in specials] + [(pieces[i], float(f"{scores[i]:.15g}")) for i in chosen]
    model = Unigram(vocab, unk_id=None if unk_token is None else specials.index(unk_token))
    return PipelineTokenizer(model, pre_tokenizer=dict(METASPACE), decoder=dict(METASPACE),
                             added_tokens=[added_token(s, i) for i, s in enumerate(specials)])
