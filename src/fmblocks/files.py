"""Writing and reading the files fmblocks produces: atomically, versioned, without pickle.

Contract: a file is written to a temporary sibling, flushed and fsync'ed, then renamed over the
target (`os.replace` is atomic on POSIX), so a crash leaves either the old file or the new one,
never half of one. JSON documents carry `{"format": ..., "version": ...}` so a reader can refuse a
file of another kind or a newer version with a clear `CorruptFileError`. Tensors are stored with
`safetensors`, which cannot execute code on load.
"""

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from fmblocks.errors import CorruptFileError


@contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Yield a binary file handle whose contents replace `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Atomically write `data` to `path`."""
    with atomic_writer(path) as handle:
        handle.write(data)


def write_json(path: str | os.PathLike, document: dict[str, Any], *, fmt: str, version: int = 1) -> None:
    """Atomically write `document` as JSON, stamped with its format name and version."""
    stamped = {"format": fmt, "version": version, **document}
    write_bytes(path, json.dumps(stamped, indent=1, ensure_ascii=False).encode("utf-8"))


def read_json(path: str | os.PathLike, *, fmt: str, max_version: int = 1) -> dict[str, Any]:
    """Read a JSON document written by `write_json`, checking its format and version."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CorruptFileError(f"{path}: not a valid {fmt} JSON file ({err})") from None
    if not isinstance(document, dict) or document.get("format") != fmt:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise CorruptFileError(f"{path}: expected a {fmt!r} file, found format {found!r}")
    version = document.get("version")
    if not isinstance(version, int) or not 1 <= version <= max_version:
        raise CorruptFileError(f"{path}: {fmt} version {version!r} is not supported (1..{max_version})")
    return document


def write_tensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Atomically save a flat dict of tensors as safetensors (contiguous CPU copies)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load a safetensors file; a truncated or foreign file raises CorruptFileError."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such safetensors file")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CorruptFileError(f"{path}: not a readable safetensors file ({err})") from None
