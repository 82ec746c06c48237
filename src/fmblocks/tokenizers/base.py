"""The Tokenizer contract and the registry behind `fmblocks.tokenizers.load`.

A tokenizer maps raw input (text, an image, a sequence, a cell) to a list of integer ids and back:

    ids = tok.encode(x)          # list[int] (image tokenizers may return a tensor)
    x2 = tok.decode(ids)         # x2 == x when tok.lossless
    tok.vocab_size, tok.special_tokens   # int, {token string: id}
    tok.save(path); load(path)   # one versioned JSON (+ a .safetensors sibling for arrays)

Subclasses register their `kind` with `@TOKENIZERS.register(kind)` and implement `encode`,
`decode`, `vocab_size`, `special_tokens`, `to_dict` and `from_dict`. Pretrained vocabularies that
installed packages ship register a loader with `@PRETRAINED.register(name)`.

Every `decode` first passes its ids through `check_ids` (lists) or `check_id_tensor` (image
grids): an id is an integer in 0..vocab_size-1, and anything else (a float such as 1.0 or nan, a
bool, a string, an id out of range) is a TokenizerError naming it, never silently rounded or cast.
"""

import operator
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

import torch

from fmblocks.errors import CorruptFileError, TokenizerError
from fmblocks.files import read_json, read_tensors, write_json, write_tensors
from fmblocks.registry import Registry

FILE_FORMAT = "fmblocks-tokenizer"
FILE_VERSION = 1

TOKENIZERS: Registry[type["Tokenizer"]] = Registry("tokenizer kind")
PRETRAINED: Registry[Callable[[], "Tokenizer"]] = Registry("pretrained tokenizer")


class Tokenizer(ABC):
    """Raw input <-> token ids. See the module docstring for the contract."""

    kind: ClassVar[str]
    lossless: ClassVar[bool] = True

    @abstractmethod
    def encode(self, x: Any) -> Any:
        """Raw input -> token ids."""

    @abstractmethod
    def decode(self, ids: Any) -> Any:
        """Token ids -> raw input (exactly the input when `lossless`)."""

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of distinct ids, specials included; every id is in range(vocab_size)."""

    @property
    def special_tokens(self) -> dict[str, int]:
        """Special token strings and their ids (empty by default)."""
        return {}

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild the tokenizer, as JSON-serialisable data."""

    @classmethod
    @abstractmethod
    def from_dict(cls, data: dict[str, Any], tensors: dict[str, torch.Tensor]) -> "Tokenizer":
        """Rebuild from `to_dict()` output (and `tensors()` output, if any)."""

    def tensors(self) -> dict[str, torch.Tensor]:
        """Arrays saved beside the JSON as safetensors (none by default)."""
        return {}

    def encode_batch(self, inputs: Sequence[Any], *, workers: int | None = None) -> list[Any]:
        """Encode many inputs, spread over `workers` processes (default: all cores)."""
        workers = workers or os.cpu_count() or 1
        if workers == 1 or len(inputs) < 2 * workers:
            return [self.encode(x) for x in inputs]
        chunk = max(1, len(inputs) // (4 * workers))
        with ProcessPoolExecutor(workers, initializer=_set_worker_tokenizer, initargs=(self,)) as pool:
            return list(pool.map(_encode_in_worker, inputs, chunksize=chunk))

    def save(self, path: str | os.PathLike) -> None:
        """Write the tokenizer atomically: `path` (JSON) and, if it has arrays, `path`.safetensors."""
        path = Path(path)
        arrays = self.tensors()
        if arrays:
            write_tensors(_tensor_path(path), arrays)
        write_json(path, {"kind": self.kind, "config": self.to_dict()}, fmt=FILE_FORMAT, version=FILE_VERSION)


def check_ids(ids: Any, vocab_size: int) -> list[int]:
    """`ids` (a sequence, or a 1-D tensor or array) as Python ints, each in 0..vocab_size-1.

    Integers are Python ints and integer scalars (numpy, 0-d torch tensors), not bools. TokenizerError
    names the first id that is not one, or is out of range, and its position.

    >>> check_ids([3, 0], 5)
    [3, 0]
    """
    if hasattr(ids, "tolist"):  # a tensor or array: its elements as Python numbers
        ids = ids.tolist()
    try:
        ids = list(ids)
    except TypeError:
        raise TokenizerError(f"decode takes a sequence of token ids, got {type(ids).__name__}") from None
    if set(map(type, ids)) <= {int} and (not ids or (min(ids) >= 0 and max(ids) < vocab_size)):
        return ids  # the common case, checked in C loops
    checked = []
    for position, i in enumerate(ids):
        value = _integer(i)
        if value is None or not 0 <= value < vocab_size:
            problem = "is not an integer" if value is None else f"is outside the vocabulary (0..{vocab_size - 1})"
            raise TokenizerError(f"token id {i!r} at position {position} {problem}")
        checked.append(value)
    return checked


def check_id_tensor(ids: Any, vocab_size: int) -> torch.Tensor:
    """`ids` (a tensor or nested lists, any shape) as a long tensor, each id in 0..vocab_size-1.

    The tensor counterpart of `check_ids`: float, bool and complex values are refused, not cast.
    """
    try:
        tokens = torch.as_tensor(ids)
    except (TypeError, ValueError, RuntimeError) as err:
        raise TokenizerError(f"token ids must be integers; could not read {ids!r} ({err})") from None
    if tokens.dtype == torch.bool or tokens.is_floating_point() or tokens.is_complex():
        raise TokenizerError(f"token ids must be integers, got a {tokens.dtype} tensor")
    outside = (tokens < 0) | (tokens >= vocab_size)
    if outside.any():
        bad = tokens[outside][0].item()
        raise TokenizerError(f"token id {bad} is outside the vocabulary (0..{vocab_size - 1})")
    return tokens.long()


def _integer(i: Any) -> int | None:
    """i as a Python int if it is an integer (not a bool), else None."""
    if isinstance(i, bool) or getattr(i, "dtype", None) == torch.bool:
        return None
    try:
        return operator.index(i)
    except TypeError:
        return None


def load(name_or_path: str | os.PathLike) -> Tokenizer:
    """A pretrained tokenizer by name ("gpt2", "cl100k_base", "bert-base-uncased", ...), a saved file, or a
    Hugging Face model directory (its tokenizer.json or vocab.txt, see tokenizers/hf.py)."""
    import fmblocks.tokenizers  # noqa: F401  (registers every kind and pretrained name)

    path = Path(name_or_path)
    if isinstance(name_or_path, str) and name_or_path in PRETRAINED:
        return PRETRAINED.get(name_or_path)()
    if path.is_dir():
        from fmblocks.tokenizers.hf import load_directory

        return load_directory(path)
    if not path.exists():
        known = ", ".join(PRETRAINED.names())
        raise FileNotFoundError(f"{name_or_path!s}: neither a saved tokenizer file nor a pretrained name ({known})")
    document = read_json(path, fmt=FILE_FORMAT, max_version=FILE_VERSION)
    if "kind" not in document or "config" not in document:
        raise CorruptFileError(f"{path}: tokenizer file lacks 'kind' or 'config'")
    cls = TOKENIZERS.get(document["kind"])
    arrays = read_tensors(_tensor_path(path)) if _tensor_path(path).exists() else {}
    try:
        return cls.from_dict(document["config"], arrays)
    except (KeyError, TypeError, IndexError) as err:
        raise CorruptFileError(f"{path}: malformed {document['kind']} tokenizer ({err!r})") from None


def _tensor_path(path: Path) -> Path:
    return path.with_name(path.name + ".safetensors")


_worker_tokenizer: Tokenizer | None = None


def _set_worker_tokenizer(tokenizer: Tokenizer) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tokenizer


def _encode_in_worker(x: Any) -> Any:
    assert _worker_tokenizer is not None
    return _worker_tokenizer.encode(x)
