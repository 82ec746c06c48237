"""Token shards on disk: the format `fmblocks prepare` writes, and windows read straight from memory maps.

A prepared directory holds

    index.json          format "fmblocks-token-shards": the tokenizer (kind, vocab_size, fingerprint), the
                        token dtype, the end-of-text id, the sources, and one entry per shard (its source
                        files, documents, tokens, held-out tokens, bytes, BLAKE2b checksum); "complete"
                        is false while `prepare` is still writing
    tokenizer.json      the tokenizer the shards were made with
    shard-00000.bin     raw little-endian token ids (uint16 when the vocabulary fits, else uint32), no
    shard-00001.bin     header, so `np.memmap(path, dtype)` reads one: the training documents of its
    ...                 sources, then their held-out documents, each followed by the end-of-text id

The training stream is the concatenation of every shard's training part, the held-out stream that of
every held-out part; `TokenWindows` cuts a stream into next-token windows exactly like
`training.datasets.CausalLMWindows`, reading each window from the memory maps (nothing is loaded up
front, so memory does not grow with the corpus). A flat token file (nanoGPT's `train.bin`/`val.bin`) is
one segment of a stream: `flat_token_windows(path, "uint16", context)`.

`open_prepared` checks the index and every shard's size (a truncated or extended shard is a
`CorruptFileError` naming it, at once); `verify_shards` also checks the checksums (it reads every byte).
A window holding an id outside the vocabulary is a `CorruptFileError` naming its shard when read.
"""

import bisect
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fmblocks.errors import ConfigError, CorruptFileError, DataError
from fmblocks.files import read_json

INDEX_FILE, INDEX_FORMAT = "index.json", "fmblocks-token-shards"
TOKENIZER_FILE = "tokenizer.json"
DTYPES = ("uint16", "uint32")


def fingerprint(tokenizer: Any) -> str:
    """A stable hex digest of everything that decides a tokenizer's ids (its kind, config and arrays)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(json.dumps({"kind": tokenizer.kind, "config": tokenizer.to_dict()}, sort_keys=True).encode())
    for name, tensor in sorted(tokenizer.tensors().items()):
        digest.update(name.encode())
        digest.update(tensor.contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def token_dtype(vocab_size: int) -> str:
    """The smallest shard dtype that holds every id: uint16 up to 65,536 ids, else uint32."""
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def is_prepared(path: str | Path) -> bool:
    """True for a directory that `fmblocks prepare` wrote into (it has an index.json)."""
    return (Path(path) / INDEX_FILE).is_file()


def checksum(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Segment:
    """Tokens start..end of one memory-mapped file."""

    array: np.memmap
    start: int
    end: int
    path: Path

    def __len__(self) -> int:
        return self.end - self.start


class TokenWindows:
    """Next-token windows over a stream made of segments: example i starts at token i * stride.

    The same examples as `CausalLMWindows(concatenated_ids, context, stride=stride)`, read from disk.
    """

    def __init__(self, segments: list[Segment], context: int, *, vocab_size: int | None = None,
                 stride: int | None = None) -> None:
        if context < 1:
            raise DataError(f"context must be >= 1, got {context}")
        self.segments = [s for s in segments if len(s)]
        self._ends = np.cumsum([len(s) for s in self.segments]).tolist()
        self.tokens = self._ends[-1] if self._ends else 0
        if self.tokens < context + 1:
            raise DataError(f"the token stream has {self.tokens} tokens; a window of context {context} needs {context + 1}")
        self.max_length, self.stride, self.vocab_size = context, stride or context, vocab_size
        self._len = (self.tokens - 1 - context) // self.stride + 1

    def __len__(self) -> int:
        return self._len

    def read(self, start: int, length: int) -> np.ndarray:
        """Tokens start .. start + length of the stream, as int64."""
        parts, k = [], bisect.bisect_right(self._ends, start)
        while length > 0:
            segment = self.segments[k]
            offset = start - (self._ends[k] - len(segment))
            piece = segment.array[segment.start + offset : segment.start + min(len(segment), offset + length)]
            parts.append(piece.astype(np.int64))
            self._check(parts[-1], segment)
            start, length, k = start + len(piece), length - len(piece), k + 1
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _check(self, ids: np.ndarray, segment: Segment) -> None:
        if self.vocab_size is not None and len(ids) and int(ids.max()) >= self.vocab_size:
            raise CorruptFileError(f"{segment.path}: token id {int(ids.max())} is outside the vocabulary "
                                   f"(0..{self.vocab_size - 1}); the shard is corrupt or of another tokenizer")

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self._len:
            raise IndexError(f"window {index} out of range({self._len})")
        window = torch.from_numpy(self.read(index * self.stride, self.max_length + 1))
        return {"input_ids": window[:-1], "targets": window[1:]}


@dataclass(frozen=True)
class Prepared:
    """A prepared directory, opened: its index and its shards as memory maps."""

    directory: Path
    index: dict[str, Any]
    train: list[Segment]
    held_out: list[Segment]

    @property
    def fingerprint(self) -> str:
        return self.index["tokenizer"]["fingerprint"]

    def windows(self, context: int) -> tuple[TokenWindows, TokenWindows | None]:
        """(training windows, held-out windows or None when the held-out stream is shorter than one window)."""
        vocab = self.index["tokenizer"]["vocab_size"]
        train = TokenWindows(self.train, context, vocab_size=vocab)
        held = sum(map(len, self.held_out))
        return train, (TokenWindows(self.held_out, context, vocab_size=vocab) if held > context else None)


def open_prepared(directory: str | Path) -> Prepared:
    """Open a prepared directory (see the module docstring); CorruptFileError for an incomplete or damaged one."""
    directory = Path(directory)
    index = read_json(directory / INDEX_FILE, fmt=INDEX_FORMAT)
    if not index.get("complete"):
        raise CorruptFileError(f"{directory} is only partly prepared (its prepare stopped); run the same "
                               "`fmblocks prepare` again to finish it")
    dtype = np.dtype(index["dtype"]).newbyteorder("<")
    train, held_out = [], []
    for shard in index["shards"]:
        path = directory / shard["file"]
        expected = shard["tokens"] * dtype.itemsize
        size = path.stat().st_size if path.is_file() else None
        if size != expected:
            found = "missing" if size is None else f"{size} bytes"
            raise CorruptFileError(f"{path}: shard is {found}, expected {expected} bytes ({shard['tokens']} "
                                   f"{index['dtype']} tokens); prepare the data again")
        if shard["tokens"] == 0:
            continue
        array = np.memmap(path, dtype=dtype, mode="r")
        split = shard["tokens"] - shard["eval_tokens"]
        train.append(Segment(array, 0, split, path))
        held_out.append(Segment(array, split, shard["tokens"], path))
    return Prepared(directory, index, train, held_out)


def verify_shards(directory: str | Path) -> None:
    """Check every shard's checksum against the index (reads every byte); CorruptFileError names a bad one."""
    prepared = open_prepared(directory)
    for shard in prepared.index["shards"]:
        path = prepared.directory / shard["file"]
        if checksum(path) != shard["blake2b"]:
            raise CorruptFileError(f"{path}: shard checksum differs from {INDEX_FILE}; the file is corrupt, "
                                   "prepare the data again")


def flat_segment(path: str | Path, dtype: str) -> Segment:
    """A whole flat token file (no header, e.g. nanoGPT's train.bin) as one segment."""
    path = Path(path)
    if dtype not in DTYPES:
        raise ConfigError(f"--data-dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    itemsize = np.dtype(dtype).itemsize
    size = path.stat().st_size
    dtype = np.dtype(dtype).newbyteorder("<")
    if size % itemsize:
        raise CorruptFileError(f"{path}: {size} bytes is not a whole number of {dtype} tokens; truncated, or "
                               "another dtype")
    array = np.memmap(path, dtype=dtype, mode="r") if size else np.zeros(0, dtype=dtype)
    return Segment(array, 0, len(array), path)


def flat_token_windows(paths: list[Path], dtype: str, context: int, *, vocab_size: int,
                       eval_fraction: float = 0.1) -> tuple[TokenWindows, TokenWindows | None]:
    """Windows over flat token files: a directory with train.bin (and val.bin) as nanoGPT writes them, or
    files whose concatenation is the stream, of which the last `eval_fraction` is held out."""
    if len(paths) == 1 and paths[0].is_dir():
        train = flat_segment(paths[0] / "train.bin", dtype)
        val = paths[0] / "val.bin"
        held = [flat_segment(val, dtype)] if val.is_file() else []
        held_out = TokenWindows(held, context, vocab_size=vocab_size) if sum(map(len, held)) > context else None
        return TokenWindows([train], context, vocab_size=vocab_size), held_out
    segments = [flat_segment(path, dtype) for path in paths]
    total = sum(map(len, segments))
    held = int(total * eval_fraction)
    if held < context + 1:
        return TokenWindows(segments, context, vocab_size=vocab_size), None
    train, tail, position = [], [], 0
    for segment in segments:  # the first total - held tokens train, the rest is held out
        cut = min(max(total - held - position, 0), len(segment))
        train.append(Segment(segment.array, segment.start, segment.start + cut, segment.path))
        tail.append(Segment(segment.array, segment.start + cut, segment.end, segment.path))
        position += len(segment)
    return (TokenWindows(train, context, vocab_size=vocab_size),
            TokenWindows(tail, context, vocab_size=vocab_size))
