"""Text corpora: users' local files, and a built-in corpus from what Python itself ships.

`builtin_corpus()` is deterministic for a given Python version: the pydoc topic texts
(`pydoc_data.topics`) followed by the standard library's `.py` sources in sorted path order.
Files are decoded as strict UTF-8; an invalid file raises `CorruptFileError` naming the byte offset.
"""

import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

from fmblocks.errors import CorruptFileError, DataError

TEXT_SUFFIXES = (".txt", ".md", ".rst", ".py", ".fa", ".fasta", ".csv", ".json")


def read_text(path: str | Path) -> str:
    """The whole file as text; strict UTF-8."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise CorruptFileError(f"{path}: invalid UTF-8 at byte {err.start} ({data[err.start:err.start + 4]!r})") from None


def text_files(paths: Iterable[str | Path]) -> list[Path]:
    """Files named in `paths`, with directories expanded (recursively, sorted) to their text files."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in TEXT_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or directory")
    return found


def iter_texts(paths: Iterable[str | Path]) -> Iterator[str]:
    """The contents of every text file under `paths`; DataError if there are none or all are empty."""
    files = text_files(paths)
    if not files:
        raise DataError("no text files found in the given paths")
    empty = True
    for path in files:
        text = read_text(path)
        empty = empty and not text
        yield text
    if empty:
        raise DataError("the corpus is empty: every file has zero bytes")


def builtin_corpus(max_bytes: int | None = None) -> list[str]:
    """Documents from the Python installation: pydoc topic texts, then stdlib sources, up to `max_bytes`."""
    from pydoc_data.topics import topics

    documents = [topics[name] for name in sorted(topics)]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(stdlib.glob("*.py")) + sorted(stdlib.glob("*/*.py")):
        try:
            documents.append(read_text(path))
        except CorruptFileError:
            continue  # a handful of stdlib test files are deliberately not UTF-8
    if max_bytes is None:
        return documents
    kept, size = [], 0
    for document in documents:
        if size >= max_bytes:
            break
        kept.append(document)
        size += len(document.encode("utf-8"))
    return kept
