"""Writing and reading the files fmblocks produces: atomically, versioned, without pickle.

Contract: a file is written to a temporary sibling `.NAME.<random>.tmp`, flushed and fsync'ed, then
renamed over the target (`os.replace` is atomic on POSIX), so a crash leaves either the old file or
the new one, never half of one; `remove_temporaries` clears the siblings a killed process left.
Files are created with mode 0666 and directories 0777 less the umask, like any other program's. A
write that fails (disk full, read-only, no permission) raises `WriteError` naming the file, after
removing its temporary sibling; the target keeps its previous contents. JSON documents carry
`{"format": ..., "version": ...}` so a reader can refuse a
file of another kind or a newer version with a clear `CorruptFileError`. Tensors are stored with
`safetensors`, which cannot execute code on load.
"""

import errno
import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from fmblocks.errors import CorruptFileError, WriteError

TEMP_SUFFIX = ".tmp"


def unique_sibling(path: Path, *, prefix: str = "", suffix: str = "") -> Path:
    """A random name beside `path`: `.NAME.<prefix><8 hex digits><suffix>`."""
    return path.with_name(f".{path.name}.{prefix}{secrets.token_hex(4)}{suffix}")


def _temp_file(path: Path) -> tuple[int, Path]:
    """Create (exclusively, mode 0666 less the umask) and open a temporary sibling of `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        tmp = unique_sibling(path, suffix=TEMP_SUFFIX)
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


@contextmanager
def write_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn an OSError raised in the block into a WriteError naming `path` and the reason."""
    try:
        yield
    except WriteError:
        raise
    except OSError as err:
        reason = "the disk is full" if err.errno in (errno.ENOSPC, errno.EDQUOT) else err.strerror or str(err)
        raise WriteError(f"cannot write {path}: {reason}") from err


@contextmanager
def atomic_writer(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Yield a binary file handle whose contents replace `path` only if the block succeeds."""
    path = Path(path)
    with write_errors(path):
        fd, tmp = _temp_file(path)
        try:
            with os.fdopen(fd, "wb") as handle:
                yield handle
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def remove_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete the temporary files `.NAME.<hex>.tmp` in `directory` (left by a killed writer); returns them.

    Only safe while no other process writes into `directory` (see `training.lock.run_lock`).
    """
    stale = [p for p in Path(directory).glob(f".*.*{TEMP_SUFFIX}") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


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
    with write_errors(path):
        fd, tmp = _temp_file(path)
        mode = os.fstat(fd).st_mode & 0o777  # 0666 less the umask; save_file would create the file 0600
        os.close(fd)
        try:
            try:
                save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=metadata)
            except SafetensorError as err:  # how safetensors reports a failed write (disk full, ...)
                raise OSError(errno.EIO, str(err)) from err
            os.chmod(tmp, mode)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
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
