"""Datasets the trainer consumes: indexable collections of examples, each a dict of tensors.

A dataset has `__len__` and `__getitem__(i) -> dict[str, Tensor]`; the trainer collates examples with
the dataset's `collate(examples)` if it has one (else stacks each key) and calls `model(**batch)`.
Optional hooks: `set_epoch(e)` (called before examples of epoch e are read) and `max_length` (the
sequence length the model must accept; checked against the model's context).

- `CausalLMWindows(ids, context)`: windows of a token stream, {"input_ids": x[s:s+T],
  "targets": x[s+1:s+T+1]} (next-token prediction).
- `MaskedLMDataset(sequences, ...)`: BERT masking (Devlin et al. 2019): each non-special token is
  selected with probability 0.15; a selected token becomes the mask token 80 % of the time, a random
  non-special token 10 %, and stays itself 10 %; "labels" hold the original id at selected positions
  and -100 elsewhere (at least one target per sequence). Masks are drawn from a generator seeded by
  (seed, epoch, index), so they are reproducible, differ between epochs (RoBERTa's dynamic masking)
  and do not depend on the batching or the number of processes.
- `DictDataset(images=..., labels=...)`: rows of tensors sharing their first dimension.

`ExampleStream(n, seed)` is the order the trainer reads examples in: position p is example
perm_e[p mod n] of epoch e = p // n, with perm_e a seeded permutation, so the position alone (saved
in a checkpoint) says where the data stands. Up to `RANDPERM_LIMIT` examples perm_e is
`torch.randperm`; above it, `feistel_permute` computes perm_e one position at a time (a keyed
bijection of range(n): no memory per example, so a corpus of billions of tokens costs nothing here).
"""

import hashlib
from collections.abc import Iterable, Sequence

from typing import Protocol

import torch
from torch import Tensor

from fmblocks.errors import DataError, ShapeError
from fmblocks.models.stack import IGNORE_INDEX



def derived_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers, e.g. derived_seed(seed, epoch, index); stable across runs."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def collate(examples: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Stack equal-shaped examples key by key: {k: (B, ...)}."""
    return {key: torch.stack([example[key] for example in examples]) for key in examples[0]}


class TrainingData(Protocol):
    """What `Trainer` needs from a dataset: its size and its examples (dicts of tensors); optionally a
    `collate(examples) -> batch` and a `set_epoch(epoch)` called before each pass (fresh BERT masks)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]: ...


RANDPERM_LIMIT = 1 << 20  # examples; an epoch's randperm is 8 MB here


def feistel_permute(index: int, n: int, key: int, *, rounds: int = 4) -> int:
    """perm(index) for a seeded permutation perm of range(n), computed alone (no table).

    A balanced Feistel network (Luby and Rackoff 1988) over b-bit numbers (2**b >= n, b even) is a
    bijection of range(2**b) whatever its round function; cycle-walking (apply it again until the
    value falls below n; fewer than 4 tries on average) restricts it to a bijection of range(n).

    >>> sorted(feistel_permute(i, 10, key=7) for i in range(10)) == list(range(10))
    True
    """
    if not 0 <= index < n:
        raise IndexError(f"position {index} out of range({n})")
    half = max(1, ((n - 1).bit_length() + 1) // 2)
    mask = (1 << half) - 1
    value = index
    while True:
        left, right = value >> half, value & mask
        for r in range(rounds):
            digest = hashlib.blake2b(f"{key}:{r}:{right}".encode(), digest_size=8).digest()
            left, right = right, left ^ (int.from_bytes(digest, "little") & mask)
        value = (left << half) | right
        if value < n:
            return value


class ExampleStream:
    """The trainer's reading order: an endless sequence of seeded permutations of range(n)."""

    def __init__(self, n: int, seed: int) -> None:
        if n < 1:
            raise DataError("the dataset is empty: it has no examples to train on")
        self.n, self.seed = n, seed
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def at(self, position: int) -> tuple[int, int]:
        """(epoch, example index) of stream position `position`."""
        epoch, offset = divmod(position, self.n)
        if self.n > RANDPERM_LIMIT:
            return epoch, feistel_permute(offset, self.n, derived_seed(self.seed, epoch))
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(derived_seed(self.seed, epoch))
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=generator)
        return epoch, int(self._perm[offset])


class CausalLMWindows:
    """Next-token windows over one token stream: example i starts at i * stride."""

    def __init__(self, ids: Tensor | Sequence[int], context: int, *, stride: int | None = None) -> None:
        ids = torch.as_tensor(ids, dtype=torch.long)
        if ids.ndim != 1:
            raise ShapeError(f"token ids must be one stream (N,), got shape {tuple(ids.shape)}")
        if context < 1:
            raise DataError(f"context must be >= 1, got {context}")
        if len(ids) < context + 1:
            raise DataError(f"the token stream has {len(ids)} tokens; a window of context {context} needs {context + 1}")
        self.ids, self.max_length, self.stride = ids, context, stride or context
        self._len = (len(ids) - 1 - context) // self.stride + 1

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self._len:
            raise IndexError(f"window {index} out of range({self._len})")
        start = index * self.stride
        window = self.ids[start : start + self.max_length + 1]
        return {"input_ids": window[:-1], "targets": window[1:]}


def mask_tokens(
    ids: Tensor,
    *,
    mask_id: int,
    random_ids: Tensor,
    special: Tensor,
    generator: torch.Generator,
    mask_prob: float = 0.15,
) -> tuple[Tensor, Tensor]:
    """BERT 80/10/10 masking of one sequence `ids` (T,) -> (input_ids, labels), both (T,).

    `special` (T,) bool marks positions never selected. Random replacements are drawn uniformly from
    `random_ids` (1-D). Labels are -100 where not selected. If the draw selects nothing, one
    non-special position is selected uniformly, so every sequence has a target (a loss averaged over
    zero targets would be NaN); for sequences of length L this changes the rate by ~0.85^L.
    """
    if ids.ndim != 1 or special.shape != ids.shape:
        raise ShapeError(f"mask_tokens takes one sequence (T,) and a same-shaped mask, got {tuple(ids.shape)}, {tuple(special.shape)}")
    selected = (torch.rand(ids.shape, generator=generator) < mask_prob) & ~special
    if not selected.any() and not special.all():
        candidates = (~special).nonzero().squeeze(1)  # (n,) positions
        selected[candidates[torch.randint(len(candidates), (1,), generator=generator)]] = True
    choice = torch.rand(ids.shape, generator=generator)
    replacement = random_ids[torch.randint(len(random_ids), ids.shape, generator=generator)]
    inputs = torch.where(selected & (choice < 0.8), torch.full_like(ids, mask_id), ids)
    inputs = torch.where(selected & (choice >= 0.8) & (choice < 0.9), replacement, inputs)
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))
    return inputs, labels


class MaskedLMDataset:
    """Token sequences masked for a masked-LM objective; batches are padded with `pad_id`.

    Examples: {"input_ids": (T,), "attention_mask": (T,) 1 = real token, "labels": (T,)}.
    `special_ids` are never masked nor used as random replacements. Sequences longer than `max_len`
    raise DataError unless `truncate` is set.
    """

    def __init__(
        self,
        sequences: Iterable[Sequence[int]],
        *,
        vocab_size: int,
        mask_id: int,
        pad_id: int,
        special_ids: Iterable[int] = (),
        max_len: int | None = None,
        truncate: bool = False,
        mask_prob: float = 0.15,
        seed: int = 0,
    ) -> None:
        self.sequences = [torch.as_tensor(list(s), dtype=torch.long) for s in sequences]
        if not self.sequences or all(len(s) == 0 for s in self.sequences):
            raise DataError("the masked-LM dataset is empty: no sequences with tokens")
        flat = torch.cat(self.sequences)
        outside = flat[(flat < 0) | (flat >= vocab_size)]
        if len(outside):
            raise DataError(f"token id {int(outside[0])} is outside 0..{vocab_size - 1} (vocab_size {vocab_size})")
        lengths = [len(s) for s in self.sequences]
        if max_len is not None and max(lengths) > max_len:
            if not truncate:
                index = lengths.index(max(lengths))
                raise DataError(f"sequence {index} has {max(lengths)} tokens, longer than the context of {max_len}")
            self.sequences = [s[:max_len] for s in self.sequences]
        self.sequences = [s for s in self.sequences if len(s)]
        self.max_length = max(len(s) for s in self.sequences)
        special = sorted({mask_id, pad_id, *special_ids})
        self._special = torch.zeros(vocab_size, dtype=torch.bool)
        self._special[special] = True
        self._random_ids = torch.arange(vocab_size)[~self._special]
        self.mask_id, self.pad_id, self.mask_prob, self.seed = mask_id, pad_id, mask_prob, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.sequences)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        ids = self.sequences[index]
        generator = torch.Generator().manual_seed(derived_seed(self.seed, self.epoch, index))
        inputs, labels = mask_tokens(
            ids, mask_id=self.mask_id, random_ids=self._random_ids, special=self._special[ids],
            generator=generator, mask_prob=self.mask_prob,
        )
        return {"input_ids": inputs, "attention_mask": torch.ones_like(ids), "labels": labels}

    def collate(self, examples: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
        """Right-pad to the longest example: input_ids with pad_id, attention_mask 0, labels -100."""
        length = max(len(e["input_ids"]) for e in examples)
        fill = {"input_ids": self.pad_id, "attention_mask": 0, "labels": IGNORE_INDEX}
        batch = {key: torch.full((len(examples), length), value, dtype=torch.long) for key, value in fill.items()}
        for row, example in enumerate(examples):
            for key in fill:
                batch[key][row, : len(example[key])] = example[key]
        return batch


class DictDataset:
    """Rows of named tensors sharing their first dimension, e.g. DictDataset(images=x, labels=y)."""

    def __init__(self, **tensors: Tensor) -> None:
        sizes = {name: len(t) for name, t in tensors.items()}
        if not tensors or not all(sizes.values()):
            raise DataError(f"the dataset is empty (rows per tensor: {sizes})")
        if len(set(sizes.values())) != 1:
            raise DataError(f"tensors must have the same number of rows, got {sizes}")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {name: t[index] for name, t in self.tensors.items()}
