"""Applying byte-level BPE to one chunk: its bytes -> tokens, merging the lowest-ranked pair first.

The rule (tiktoken's): a chunk starts as single bytes; while some adjacent pair of parts
concatenates to a token, merge the pair whose *concatenation* has the lowest rank (rank = id in
`ranks`), the leftmost one on ties. Two implementations of that one rule, tested to give the same
parts on every input:

    merge_scan(data, ranks)   the plain loop: find the lowest pair rank by a scan, merge, update
                              the two neighbouring ranks. O(n) per merge, O(n^2) per chunk.
    merge_heap(data, ranks)   the same merges in O(n log n): the parts form a doubly linked list
                              over byte offsets, a heap holds `rank * n + offset` for every pair
                              (so the lowest rank pops first and, on ties, the leftmost offset),
                              and a popped entry whose offset no longer starts a pair of that rank
                              is stale and skipped.

`bpe_merge` picks the scan for chunks shorter than `HEAP_FROM` bytes (where it is measurably a
little faster, and almost every chunk of real text is that short) and the heap for longer ones,
so that no input, however repetitive or long ("a" * 100_000, a page of CJK), takes quadratic time.
"""

import heapq
from collections.abc import Mapping
from itertools import repeat

HEAP_FROM = 16  # bytes; measured on cl100k_base: the scan is ~5-15% faster below 12 bytes, slower above 16
_NO_MERGE = 1 << 62  # rank of a pair whose concatenation is not a token (or of no pair at all)
_SINGLE_BYTES = [bytes([b]) for b in range(256)]


def bpe_merge(data: bytes, ranks: Mapping[bytes, int]) -> list[bytes]:
    """Merge one chunk's bytes by rank (see the module docstring).

    >>> bpe_merge(b"abcd", {b"a": 0, b"b": 1, b"c": 2, b"d": 3, b"cd": 4, b"ab": 5})
    [b'ab', b'cd']
    """
    return merge_scan(data, ranks) if len(data) < HEAP_FROM else merge_heap(data, ranks)


def merge_scan(data: bytes, ranks: Mapping[bytes, int]) -> list[bytes]:
    """The plain loop: O(n) to find each merge. `bpe_merge`'s path for short chunks."""
    get = ranks.get
    parts = list(map(_SINGLE_BYTES.__getitem__, data))
    # pair_ranks[i]: the rank of parts[i] + parts[i + 1]
    pair_ranks = list(map(get, map(bytes.__add__, parts, parts[1:]), repeat(_NO_MERGE)))
    while pair_ranks:
        best = min(pair_ranks)
        if best == _NO_MERGE:
            break
        i = pair_ranks.index(best)  # the leftmost lowest rank
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
        del pair_ranks[i]
        if i > 0:
            pair_ranks[i - 1] = get(parts[i - 1] + parts[i], _NO_MERGE)
        if i < len(pair_ranks):
            pair_ranks[i] = get(parts[i] + parts[i + 1], _NO_MERGE)
    return parts


def merge_heap(data: bytes, ranks: Mapping[bytes, int]) -> list[bytes]:
    """The same merges as `merge_scan` in O(n log n): a heap of pairs over a linked list of parts.

    A part is `data[start:after[start]]`; `before[start]` is the previous part's start (-1 for
    none). `pair_rank[start]` is the rank of the pair (this part, the next one), or _NO_MERGE when
    there is none or `start` no longer begins a part. Each merge pushes at most the two pairs it
    creates. A heap entry is current exactly when `pair_rank[start]` still equals its rank: a
    start's pair only ever changes to a longer concatenation, which is another token with another
    rank, so an outdated entry can never pass for a current one.

    >>> merge_heap(b"aaaaa", {b"a": 0, b"aa": 1, b"aaa": 2})
    [b'aa', b'aaa']
    """
    n = len(data)
    get = ranks.get
    after = list(range(1, n + 1))
    before = list(range(-1, n - 1))
    pair_rank = [get(data[i : i + 2], _NO_MERGE) for i in range(n - 1)] + [_NO_MERGE]
    heap = [rank * n + i for i, rank in enumerate(pair_rank) if rank != _NO_MERGE]
    heapq.heapify(heap)
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        rank, i = divmod(pop(heap), n)
        if pair_rank[i] != rank:
            continue  # stale: that pair was merged away or grew
        j = after[i]  # merge parts [i, j) and [j, k) into [i, k)
        k = after[j]
        pair_rank[j] = _NO_MERGE
        after[i] = k
        if k < n:
            before[k] = i
            rank = pair_rank[i] = get(data[i : after[k]], _NO_MERGE)
            if rank != _NO_MERGE:
                push(heap, rank * n + i)
        else:
            pair_rank[i] = _NO_MERGE
        h = before[i]
        if h >= 0:
            rank = pair_rank[h] = get(data[h:k], _NO_MERGE)
            if rank != _NO_MERGE:
                push(heap, rank * n + h)
    parts, i = [], 0
    while i < n:
        parts.append(data[i : after[i]])
        i = after[i]
    return parts
