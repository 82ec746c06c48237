"""One writer per run directory: an exclusive lock held while a process trains into it.

    with run_lock("runs/x"):      # RunLockedError naming the holder's PID if another process has it
        ...                       # write checkpoints, logs, plots

The lock is `RUN/.lock`, a file holding the owner's PID, locked with `flock(LOCK_EX | LOCK_NB)`. The
kernel drops an flock when its process dies however it dies (kill -9 included), so a lock file left
by a killed process is simply taken over: there is no PID guessing and no window where two processes
both believe they hold it. The owner deletes the file on release (while still holding the lock; a
process that opened the old file then finds it unlinked and tries again).

Taking the lock also claims the directory: it is created if needed (so an unwritable output
directory fails here, before any training, with a WriteError; one created for a block that wrote
nothing is removed again), and temporary files that a killed writer left behind (see
`files.remove_temporaries`) are removed. The lock is reentrant within a
process: the command line holds it around everything it writes, and `Trainer.fit` takes it again.
Works on local POSIX file systems (flock is advisory and not reliable over every network file system).
"""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from fmblocks.errors import RunLockedError, WriteError
from fmblocks.files import remove_temporaries

LOCK_FILE = ".lock"


@dataclass
class _Hold:
    fd: int  # the locked lock file
    created: bool  # the directory did not exist before
    depth: int = 1  # nested run_lock blocks of this process


_held: dict[Path, _Hold] = {}  # resolved run directory -> this process's hold on it


@contextmanager
def run_lock(directory: str | os.PathLike) -> Iterator[Path]:
    """Hold the exclusive lock of the run `directory` for the block; yields the directory."""
    directory = Path(directory)
    key = directory.resolve()
    if key in _held:
        _held[key].depth += 1
    else:
        created = not directory.exists()
        _held[key] = _Hold(_acquire(directory), created)
        remove_temporaries(directory)
    try:
        yield directory
    finally:
        hold = _held[key]
        hold.depth -= 1
        if not hold.depth:
            del _held[key]
            (directory / LOCK_FILE).unlink(missing_ok=True)  # still locked: nobody else can be its owner
            os.close(hold.fd)
            if hold.created and not any(directory.iterdir()):
                with suppress(OSError):  # another process may have just claimed it
                    directory.rmdir()


def _acquire(directory: Path) -> int:
    path = directory / LOCK_FILE
    while True:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise WriteError(f"cannot create the run directory {directory}: {err.strerror or err}") from None
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except FileNotFoundError:
            continue  # the directory was removed by its previous owner meanwhile
        except OSError as err:
            raise WriteError(f"the run directory {directory} is not writable ({err.strerror or err})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise RunLockedError(f"{directory} is in use by another process (PID {holder}, lock {path}); "
                                 "wait for it to finish, or train into another directory") from None
        if _same_file(fd, path):
            break
        os.close(fd)  # the previous owner deleted the file between our open and our lock: retry
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    except OSError as err:
        os.close(fd)
        raise WriteError(f"cannot write the lock file {path} ({err.strerror or err})") from None
    return fd


def _same_file(fd: int, path: Path) -> bool:
    try:
        mine, current = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (mine.st_dev, mine.st_ino) == (current.st_dev, current.st_ino)
