"""WordPiece training core: merge the adjacent pair with the best likelihood score, incrementally.

    score(a, b) = freq(ab) / (freq(a) * freq(b))

over the deduplicated corpus words (freq counts a word as often as it occurs). Words start as
their characters, non-initial ones with "##": "abc" -> a ##b ##c. Each step merges the best pair
everywhere; ties go to the more frequent pair, then to the smaller (a, b). `train_wordpiece` in
wordpiece.py builds the vocabulary and the tokenizer around `learn_wordpieces`.

Incremental state (`_Merger`): pair and symbol counts, a pair -> words index, and a lazy max-heap.
A merge of (a, b) lowers freq(a) and freq(b), which raises the score of every pair containing a or
b; a character such as "##e" is in thousands of pairs, so instead of re-queueing them all the
heap gets a *marker* for the symbol with bound 1/freq(s) (a pair never scores more, as
freq(ab) <= min(freq(a), freq(b))). Only when a marker reaches the top are the symbol's pairs
looked at (`_refresh`): those at least as good as the heap top are queued, a new marker bounds
the rest. A full look scores every pair of the symbol and remembers the best ratio
freq(pair) / freq(partner) of those not queued (it changes only if the partner or the pair count
does); later looks reuse it and score only the pairs queued by the full look and those whose
partner was merged or made since (read off the log of merged symbols).
"""

import heapq
import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from fmblocks.tokenizers.normalize import bert_normalize, bert_pre_tokenize

PREFIX = "##"
Pair = tuple[str, str]


@dataclass
class _Look:
    """What the last full look at a symbol's pairs found, for the partial looks that follow."""

    since: int  # length of the merge log then
    queued: list[Pair] = field(default_factory=list)  # the pairs it queued (at least the heap top then)
    left_count: int = 0  # the best pair it did not queue: its count and its partner's freq,
    left_partner: int = 0  # whose ratio bounds every unqueued pair that has not changed since


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
    """Training state; heap entries are pairs (-score, -count, a, b, freq(a), freq(b)) and markers
    (-bound, -inf, s, "", freq(s), look number). An entry whose counts no longer match is stale (a
    pair whose score fell is re-queued when popped; a marker is dropped). On equal scores markers
    pop first, so the first current pair entry popped is the best pair.
    """

    def __init__(self, words: Counter[str], min_frequency: int) -> None:
        self.words = [word_symbols(w) for w in words]
        self.freqs = list(words.values())
        self.min_frequency = min_frequency
        self.symbols: Counter[str] = Counter()
        self.pairs: Counter[Pair] = Counter()
        self.where: dict[Pair, set[int]] = {}
        self.touching: dict[str, set[Pair]] = {}
        self.looks: Counter[str] = Counter()
        self.log: list[str] = []  # a, b and ab of every merge, in order
        self.seen: dict[str, _Look] = {}
        for index, (symbols, freq) in enumerate(zip(self.words, self.freqs)):
            for symbol in symbols:
                self.symbols[symbol] += freq
            self._add_pairs(index, symbols, freq)
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

    def _entry(self, pair: Pair, count: int) -> tuple[float, float, str, str, int, int]:
        a, b = pair
        count_a, count_b = self.symbols[a], self.symbols[b]
        return -pair_score(count, count_a, count_b), -count, a, b, count_a, count_b

    def _push(self, pair: Pair) -> None:
        count = self.pairs.get(pair, 0)
        if count >= self.min_frequency:
            heapq.heappush(self.heap, self._entry(pair, count))

    def _push_marker(self, symbol: str, bound: float) -> None:
        heapq.heappush(self.heap, (-bound, -math.inf, symbol, "", self.symbols[symbol], self.looks[symbol]))

    def _rebuild(self) -> None:
        """Replace the heap by one current entry per pair (drops stale entries and markers)."""
        self.heap = [self._entry(p, c) for p, c in self.pairs.items() if c >= self.min_frequency]
        heapq.heapify(self.heap)

    def _changed_pairs(self, symbol: str, since: int) -> set[Pair]:
        """Pairs of `symbol` whose partner was merged or made after log position `since`."""
        changed = set()
        for partner in set(self.log[since:]):
            changed.update(p for p in ((symbol, partner), (partner, symbol)) if p in self.pairs)
        return changed

    def _refresh(self, symbol: str) -> None:
        """A marker for `symbol` reached the top: queue its pairs scoring at least the heap top."""
        self.looks[symbol] += 1
        top = -self.heap[0][0] if self.heap else 0.0
        freq = self.symbols[symbol]
        look = self.seen.get(symbol)
        left = look.left_count / (look.left_partner * freq) if look and look.left_partner else 0.0  # as pair_score
        pairs = self.touching.get(symbol, set())
        full = look is None or left >= top or len(self.log) - look.since > len(pairs)
        if full:
            look = self.seen[symbol] = _Look(len(self.log))
            candidates: Iterable[Pair] = pairs
        else:
            candidates = {*look.queued, *self._changed_pairs(symbol, look.since)}
        rest, heap = 0.0, self.heap
        for a, b in candidates:  # the hot loop of late training: kept inline
            count = self.pairs.get((a, b), 0)
            if count >= self.min_frequency:
                count_a, count_b = self.symbols[a], self.symbols[b]
                score = count / (count_a * count_b)  # pair_score
                if score >= top:
                    heapq.heappush(heap, (-score, -count, a, b, count_a, count_b))
                    if full:
                        look.queued.append((a, b))
                elif score > rest:
                    rest = score
                    if full:
                        look.left_count, look.left_partner = count, count_b if a == symbol else count_a
        bound = rest if full else max(rest, left)
        if bound:
            self._push_marker(symbol, bound)

    def best(self) -> Pair | None:
        """The pair with the highest current score (stale entries and markers are handled on the way)."""
        if len(self.heap) > 4 * len(self.pairs) + 1024:
            self._rebuild()
        while self.heap:
            _, neg_count, a, b, count_a, count_b = heapq.heappop(self.heap)
            if not b:  # a marker for symbol a; obsolete once freq(a) changed or a was looked at since
                if (count_a, count_b) == (self.symbols[a], self.looks[a]):
                    self._refresh(a)
                continue
            if (-neg_count, count_a, count_b) == (self.pairs.get((a, b), 0), self.symbols[a], self.symbols[b]):
                return a, b
            self._push((a, b))  # stale: re-queue at the current score
        return None

    def merge(self, pair: Pair) -> str:
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
        self.log += [a, b, new]
        self.seen.pop(new, None)  # an existing symbol made again gains pairs its last look did not see
        # Pairs with `new` gained counts (queue them); pairs with a or b may score higher (markers).
        for candidate in self.touching.get(new, ()):
            self._push(candidate)
        for symbol in (a, b):
            if self.symbols[symbol]:
                self._push_marker(symbol, 1.0 / self.symbols[symbol])
        return new


def learn_wordpieces(words: Counter[str], min_frequency: int) -> Iterator[str]:
    """The merged symbols, best score first, until no pair occurs `min_frequency` times.

    >>> list(learn_wordpieces(Counter({"ab": 3, "abc": 1, "bc": 2, "cd": 1}), 2))
    ['bc', 'ab']
    """
    merger = _Merger(words, min_frequency)
    while (pair := merger.best()) is not None:
        yield merger.merge(pair)
