"""Learning byte-level BPE tokens from a corpus: chunk counts, then merges by pair frequency.

    count_chunks(texts, splitter, specials) -> Counter   each distinct chunk once, with its count
    learn_tokens(chunk_counts, n_tokens)    -> [bytes]   the merged tokens, in merge order

Each distinct chunk is a *word*: a list of ids (base ids 0..255 are the bytes in GPT-2's order,
`pretokenize.BYTE_ORDER`) and a count. `pair_counts[p]` = sum over words of count x occurrences of
p. A heap holds (-count, pair, words); popping gives the most frequent pair, which is merged in the
listed words only (left to right, non-overlapping). Each merge touches its occurrences and their
two neighbour pairs, never the whole corpus; heap entries whose count went stale are re-pushed
with the current count when popped.

Tie-break (documented, deterministic): equal counts go to the smaller (left id, right id), where
merged tokens take ids 256, 257, ... in creation order. Training stops after `n_tokens` new tokens
or when the best pair is rarer than `min_frequency`. A merge that recreates an existing token (two
splits of the same bytes) adds no token. These are the rules of HF tokenizers' BpeTrainer, so with
the same split regex and byte-level alphabet both learn the same merges (tests/reference). One
difference in reporting only: HF lists such a recreating merge a second time in its merges, while
`BPETokenizer.merges` names one pair per token.
"""

import heapq
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import count

from tqdm.auto import tqdm

from fmblocks.errors import DataError
from fmblocks.tokenizers.pretokenize import BYTE_ORDER

_TO_BASE_ID = bytes.maketrans(BYTE_ORDER, bytes(range(256)))  # byte value -> base id


def count_chunks(
    texts: Iterable[str], splitter: Callable[[str], list[str]], specials: Sequence[str] = (), *, progress: bool = True
) -> Counter[str]:
    """How often each chunk occurs; special tokens are cut out of the texts and never learned."""
    cut = re.compile("|".join(map(re.escape, sorted(specials, key=len, reverse=True)))).split if specials else None
    counts: Counter[str] = Counter()
    for text in tqdm(texts, desc="counting chunks", unit=" texts", disable=not progress):
        if not isinstance(text, str):
            raise DataError(f"training texts must be str, got {type(text).__name__}")
        for piece in cut(text) if cut else (text,):
            counts.update(splitter(piece))
    if not counts:
        raise DataError("the training corpus is empty: no text to learn merges from")
    return counts


def learn_tokens(
    chunk_counts: Mapping[str, int], n_tokens: int, *, min_frequency: int = 2, progress: bool = True
) -> list[bytes]:
    """Up to `n_tokens` merged tokens (byte strings) in merge order; see the module docstring."""
    words = [list(chunk.encode("utf-8").translate(_TO_BASE_ID)) for chunk in chunk_counts]
    counts = list(chunk_counts.values())
    vocab = [bytes([b]) for b in BYTE_ORDER]
    index = {token: i for i, token in enumerate(vocab)}
    shift = (256 + n_tokens).bit_length()  # pair (a, b) is the int a << shift | b
    mask = (1 << shift) - 1

    pair_counts: defaultdict[int, int] = defaultdict(int)
    where: defaultdict[int, set[int]] = defaultdict(set)
    for w, (word, n) in enumerate(zip(words, counts)):
        for a, b in zip(word, word[1:]):
            pair_counts[a << shift | b] += n
            where[a << shift | b].add(w)
    serial = count()  # orders entries of equal (count, pair) so sets are never compared
    heap = [(-pair_counts[p], p, next(serial), ws) for p, ws in where.items()]
    heapq.heapify(heap)

    bar = tqdm(total=n_tokens, desc="learning merges", unit=" tokens", disable=not progress)
    while len(vocab) < 256 + n_tokens and heap:
        negative, pair, _, positions = heapq.heappop(heap)
        n = pair_counts[pair]
        if -negative != n:
            heapq.heappush(heap, (-n, pair, next(serial), positions))
            continue
        if n < 1 or n < min_frequency:
            break
        a, b = pair >> shift, pair & mask
        merged = vocab[a] + vocab[b]
        new = index.get(merged)
        if new is None:
            new = index[merged] = len(vocab)
            vocab.append(merged)
            bar.update()
        gained: defaultdict[int, set[int]] = defaultdict(set)
        for w in positions:
            word, times = words[w], counts[w]
            i, left_to_see = 0, word.count(a)  # occurrences of `a` not yet passed (no ValueError from index)
            while left_to_see:
                i = word.index(a, i)
                left_to_see -= 1
                if i + 1 < len(word) and word[i + 1] == b:
                    left_to_see -= a == b  # the merged `b` was an `a` too
                    if i > 0:
                        left = word[i - 1]
                        pair_counts[left << shift | a] -= times
                        pair_counts[left << shift | new] += times
                        gained[left << shift | new].add(w)
                    word[i : i + 2] = (new,)
                    if i + 1 < len(word):
                        right = word[i + 1]
                        pair_counts[b << shift | right] -= times
                        pair_counts[new << shift | right] += times
                        gained[new << shift | right].add(w)
                i += 1
        for p, ws in gained.items():
            if pair_counts[p] > 0:
                heapq.heappush(heap, (-pair_counts[p], p, next(serial), ws))
    bar.close()
    return vocab[256:]
