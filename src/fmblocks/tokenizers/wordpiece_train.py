"""WordPiece training core: merge the adjacent pair with the best likelihood score, incrementally.

    score(a, b) = freq(ab) / (freq(a) * freq(b))

over the deduplicated corpus words (freq counts a word as often as it occurs). Words start as
their characters, non-initial ones with "##": "abc" -> a ##b ##c. Each step merges the best pair
everywhere; ties go to the more frequent pair, then to the smaller (a, b). `train_wordpiece` in
wordpiece.py builds the vocabulary and the tokenizer around `learn_wordpieces`.

Incremental state (`_Merger`): symbol and pair counts and a pair -> words index, updated only in
the words a merge touches. The trouble with this score is that a merge of (a, b) lowers freq(a)
and freq(b), which raises the score of every pair containing a or b ("##e" is in thousands). So
every pair has an *owner*, the more frequent of its two symbols when the pair appeared, and the
pairs are grouped by owner. Inside a group the order is by freq(ab) / freq(other), which does not
depend on the owner's frequency; the groups compete in one heap by their best pair's full score.
A change of freq(s) then costs one entry for s's group, plus one entry for each pair where s is
the *other* symbol, whose partner was more frequent than s: a handful for frequent symbols.

Both heaps are lazy max-heaps of upper bounds: an entry is pushed whenever a key rises (a pair
count goes up, freq(other) or freq(owner) goes down); one that fell is left and fixed when it
reaches the top. Exactness: the group order by freq(ab) / freq(other) agrees with the order by
score as long as distinct ratios stay distinct as floats, which holds while every symbol count
stays below 2**25 (33 million occurrences); beyond that, two pairs whose scores differ by less
than a float's rounding may be taken in the other order than the definition's.
"""

import heapq
import re
import string
from collections import Counter
from collections.abc import Iterable, Iterator

from fmblocks.tokenizers.normalize import bert_normalize, bert_pre_tokenize

PREFIX = "##"
Pair = tuple[int, int]  # symbol ids


def merged_symbol(a: str, b: str) -> str:
    """The symbol for the pair (a, b): "ab" + "##c" -> "abc"; "##a" + "##b" -> "##ab"."""
    return a + b[len(PREFIX):]


def word_symbols(word: str) -> list[str]:
    """A word as its initial symbols: "abc" -> ["a", "##b", "##c"]."""
    return [word[0], *(PREFIX + c for c in word[1:])]


def pair_score(pair_count: int, count_a: int, count_b: int) -> float:
    """The likelihood score freq(ab) / (freq(a) * freq(b))."""
    return pair_count / (count_a * count_b)


# bert_pre_tokenize of ASCII text in one regular expression: runs of neither space nor punctuation,
# and single punctuation characters
_ASCII_WORDS = re.compile(f"[^\\s{re.escape(string.punctuation)}]+|[{re.escape(string.punctuation)}]")


def count_words(texts: Iterable[str], *, lowercase: bool = True) -> Counter[str]:
    """Frequency of every pre-tokenised word in the corpus, after BERT normalisation."""
    counts: Counter[str] = Counter()
    for text in texts:
        normalized = bert_normalize(text, lowercase=lowercase)
        counts.update(_ASCII_WORDS.findall(normalized) if normalized.isascii() else bert_pre_tokenize(normalized))
    return counts


class _Merger:
    """Training state over symbol ids. Heap entries (keys negated for heapq's min-heap):

    group heap of owner g:  (-count / freq(other), -count, name(a), name(b), (a, b), freq(other))
    global heap:            (-score, -count, name(a), name(b), g, version of g)

    A group entry is current when it is its pair's latest (`keys`) and its counts still match; a
    global entry is looked at only if it is its group's latest (`versions`), and it wins when it
    equals the score of the group's current best.
    """

    def __init__(self, words: Counter[str], min_frequency: int) -> None:
        self.min_frequency = min_frequency
        self.names: list[str] = []
        self.ids: dict[str, int] = {}
        self.freq: list[int] = []
        self.dependents: list[set[Pair]] = []  # per symbol s: the pairs where s is the other symbol
        self.groups: list[list[tuple]] = []  # per symbol: the heap of the pairs it owns
        self.limits: list[int] = []  # per symbol: the group size that triggers dropping its stale entries
        self.versions: list[int] = []  # per symbol: the number of its group's latest global entry
        self.words = [[self._symbol(s) for s in word_symbols(w)] for w in words]
        self.counts = list(words.values())
        self.pairs: dict[Pair, int] = {}
        self.where: dict[Pair, list[int]] = {}  # words that contain (or once contained) the pair
        for index, (symbols, count) in enumerate(zip(self.words, self.counts)):
            for symbol in symbols:
                self.freq[symbol] += count
            for pair in zip(symbols, symbols[1:]):
                self.pairs[pair] = self.pairs.get(pair, 0) + count
                self.where.setdefault(pair, []).append(index)
        self.owner: dict[Pair, int] = {}
        self.keys: dict[Pair, tuple] = {}  # the latest group entry of each queued pair
        self.heap: list[tuple] = []
        for pair in self.pairs:
            self._own(pair)
            if entry := self._entry(pair):
                self.groups[self.owner[pair]].append(entry)
        for group, entries in enumerate(self.groups):
            heapq.heapify(entries)
            self.limits[group] = 2 * len(entries) + 64
            if entries:
                self._announce(group, entries[0])

    def _symbol(self, name: str) -> int:
        if (symbol := self.ids.get(name)) is None:
            symbol = self.ids[name] = len(self.names)
            self.names.append(name)
            self.freq.append(0)
            self.dependents.append(set())
            self.groups.append([])
            self.limits.append(64)
            self.versions.append(0)
        return symbol

    def _own(self, pair: Pair) -> None:
        """Give a new pair to its more frequent symbol (the left one on a tie)."""
        a, b = pair
        owner, other = (a, b) if self.freq[a] >= self.freq[b] else (b, a)
        self.owner[pair] = owner
        self.dependents[other].add(pair)

    def _entry(self, pair: Pair) -> tuple | None:
        """The pair's group entry at today's counts, recorded as its latest (None below min_frequency)."""
        count = self.pairs[pair]
        if count < self.min_frequency:
            self.keys.pop(pair, None)
            return None
        a, b = pair
        other_freq = self.freq[b if self.owner[pair] == a else a]
        entry = self.keys[pair] = (-count / other_freq, -count, self.names[a], self.names[b], pair, other_freq)
        return entry

    def _push(self, group: int, entry: tuple) -> None:
        """A pair's key rose: push its entry, and the group into the heap if the entry leads it."""
        heapq.heappush(self.groups[group], entry)
        self._pushed(group, entry)

    def _pushed(self, group: int, entry: tuple) -> None:
        """After a push: announce the group if `entry` leads it; drop stale entries if there are many."""
        entries = self.groups[group]
        if entries[0] is entry:
            self._announce(group, entry)
        if len(entries) > self.limits[group]:  # mostly stale: keep the latest entries only
            keys = self.keys
            entries[:] = [e for e in entries if keys.get(e[4]) is e]
            heapq.heapify(entries)
            self.limits[group] = 2 * len(entries) + 64

    def _announce(self, group: int, entry: tuple) -> None:
        """Push the global entry for `group` led by `entry`: its score with today's freq(owner)."""
        _, neg_count, name_a, name_b, _, other_freq = entry
        self.versions[group] += 1
        score = neg_count / (self.freq[group] * other_freq)  # -pair_score, with freq(other) as queued
        heapq.heappush(self.heap, (score, neg_count, name_a, name_b, group, self.versions[group]))

    def _lead(self, group: int) -> tuple | None:
        """The group's best current entry, at its top (stale entries dropped or re-queued on the way)."""
        entries, keys, pairs, freq = self.groups[group], self.keys, self.pairs, self.freq
        while entries:
            entry = entries[0]
            pair = entry[4]
            if keys.get(pair) is not entry:
                heapq.heappop(entries)  # superseded or dead
            elif -entry[1] == pairs[pair] and entry[5] == freq[pair[1] if group == pair[0] else pair[0]]:
                return entry
            elif new := self._entry(pair):  # its key fell: re-queue it lower
                heapq.heapreplace(entries, new)
            else:
                heapq.heappop(entries)
        return None

    def best(self) -> Pair | None:
        """The pair with the highest current score."""
        heap, versions, freq = self.heap, self.versions, self.freq
        while heap:
            key = heapq.heappop(heap)
            group = key[4]
            if key[5] != versions[group] or (entry := self._lead(group)) is None:
                continue  # superseded, or the group is empty
            neg_count, pair = entry[1], entry[4]
            if key[:4] == (neg_count / (freq[pair[0]] * freq[pair[1]]), neg_count, entry[2], entry[3]):
                return pair
            self._announce(group, entry)  # the bound was loose: queue the group at its true best
        return None

    def merge(self, pair: Pair) -> str:
        """Merge `pair` in every word containing it; keep counts, index and heaps up to date."""
        a, b = pair
        name = merged_symbol(self.names[a], self.names[b])
        new = self._symbol(name)
        lost, gained = self._rewrite(a, b, new)
        pairs, freq, names, keys, owner, groups = self.pairs, self.freq, self.names, self.keys, self.owner, self.groups
        limits, heappush = self.limits, heapq.heappush
        for old in lost:
            if not pairs[old]:
                self._drop(old)
        # freq(a) and freq(b) fell: their groups and the pairs where they are the other symbol rose
        minimum = self.min_frequency
        for symbol in {a, b}:
            if not (other_freq := freq[symbol]):
                continue
            if entries := groups[symbol]:
                self._announce(symbol, entries[0])
            for dependent in self.dependents[symbol]:  # the hot loop: _entry and most of _push inline
                if (count := pairs[dependent]) >= minimum:
                    entry = keys[dependent] = (-count / other_freq, -count, names[dependent[0]], names[dependent[1]],
                                               dependent, other_freq)
                    group = owner[dependent]
                    heappush(entries := groups[group], entry)
                    if entries[0] is entry or len(entries) > limits[group]:
                        self._pushed(group, entry)
        for new_pair in gained:
            if new_pair not in owner:
                self._own(new_pair)
            if entry := self._entry(new_pair):
                self._push(owner[new_pair], entry)
        return name

    def _rewrite(self, a: int, b: int, new: int) -> tuple[set[Pair], set[Pair]]:
        """Replace (a, b) by `new` in the words and update the counts: the pairs that lost and gained."""
        pairs, where, words, counts = self.pairs, self.where, self.words, self.counts
        lost: set[Pair] = {(a, b)}
        gained: set[Pair] = set()
        total = 0
        for index in set(where.pop((a, b))):
            symbols, count = words[index], counts[index]
            n = len(symbols)
            merged: list[int] = []
            made: list[int] = []  # where the new symbol stands in `merged`
            done = search = 0  # symbols[:done] are in `merged`; look for `a` from `search` on
            remaining = symbols.count(a)
            while remaining:
                i = symbols.index(a, search)
                remaining -= 1
                if i + 1 == n:
                    break
                if symbols[i + 1] != b:
                    search = i + 1
                    continue
                remaining -= a == b
                merged += symbols[done:i]
                # the old pairs around this occurrence, but not the left one if the last occurrence took it
                if i and not (made and made[-1] == len(merged) - 1):
                    left = symbols[i - 1], a
                    pairs[left] -= count
                    lost.add(left)
                pairs[a, b] -= count
                if i + 2 < n:
                    right = b, symbols[i + 2]
                    pairs[right] -= count
                    lost.add(right)
                made.append(len(merged))
                merged.append(new)
                done = search = i + 2
            if not made:
                continue  # the word lost the pair in an earlier merge
            merged += symbols[done:]
            total += len(made) * count
            last = len(merged) - 1
            for k, j in enumerate(made):  # the new pairs: each made symbol with its neighbours
                if j:
                    gained.add(left := (merged[j - 1], new))
                    pairs[left] = pairs.get(left, 0) + count
                    where.setdefault(left, []).append(index)
                if j < last and not (k + 1 < len(made) and made[k + 1] == j + 1):
                    gained.add(right := (new, merged[j + 1]))
                    pairs[right] = pairs.get(right, 0) + count
                    where.setdefault(right, []).append(index)
            words[index] = merged
        self.freq[a] -= total
        self.freq[b] -= total
        self.freq[new] += total
        return lost, gained

    def _drop(self, pair: Pair) -> None:
        """Forget a pair that no longer occurs."""
        del self.pairs[pair]
        self.where.pop(pair, None)
        owner = self.owner.pop(pair)
        self.dependents[pair[1] if owner == pair[0] else pair[0]].discard(pair)
        self.keys.pop(pair, None)


def learn_wordpieces(words: Counter[str], min_frequency: int) -> Iterator[str]:
    """The merged symbols, best score first, until no pair occurs `min_frequency` times.

    >>> list(learn_wordpieces(Counter({"ab": 3, "abc": 1, "bc": 2, "cd": 1}), 2))
    ['bc', 'ab']
    """
    merger = _Merger(words, min_frequency)
    while (pair := merger.best()) is not None:
        yield merger.merge(pair)
