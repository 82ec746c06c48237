"""Text corpora: strict UTF-8 with the offset of a bad byte, directory expansion, empty corpora, built-in corpus."""

from pathlib import Path

import pytest

from fmblocks.data.text import TEXT_SUFFIXES, builtin_corpus, iter_texts, read_text, text_files
from fmblocks.errors import CorruptFileError, DataError


def test_read_text(tmp_path: Path) -> None:
    (tmp_path / "ok.txt").write_bytes("naïve\n".encode("utf-8"))
    assert read_text(tmp_path / "ok.txt") == "naïve\n"
    # "ab" + "é" in Latin-1 (0xE9) + "c": byte 2 starts an invalid sequence
    (tmp_path / "latin1.txt").write_bytes(b"ab\xe9c")
    with pytest.raises(CorruptFileError, match=r"latin1.txt: invalid UTF-8 at byte 2"):
        read_text(tmp_path / "latin1.txt")
    assert issubclass(CorruptFileError, ValueError)


def test_directory_expansion(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.py").write_text("z")
    (tmp_path / "b" / "image.png").write_bytes(b"\x89PNG")  # not a text suffix: skipped
    (tmp_path / "a.md").write_text("a")
    (tmp_path / "c.txt").write_text("c")
    other = tmp_path / "other.log"
    other.write_text("named explicitly, so kept whatever its suffix")
    found = text_files([tmp_path, other])
    assert found == [tmp_path / "a.md", tmp_path / "b" / "z.py", tmp_path / "c.txt", other]
    assert ".png" not in TEXT_SUFFIXES
    assert list(iter_texts([tmp_path / "b", tmp_path / "a.md"])) == ["z", "a"]
    with pytest.raises(FileNotFoundError, match="missing"):
        text_files([tmp_path / "missing"])


def test_empty_corpora(tmp_path: Path) -> None:
    (tmp_path / "nothing").mkdir()
    with pytest.raises(DataError, match="no text files"):
        list(iter_texts([tmp_path / "nothing"]))
    (tmp_path / "e1.txt").write_bytes(b"")
    (tmp_path / "e2.txt").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        list(iter_texts([tmp_path]))
    (tmp_path / "full.txt").write_text("x")
    assert list(iter_texts([tmp_path])) == ["", "", "x"]


def test_invalid_file_inside_a_corpus(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("fine")
    (tmp_path / "b.txt").write_bytes(b"fine\n\xc3(")  # 0xC3 must be followed by a continuation byte
    texts = iter_texts([tmp_path])
    assert next(texts) == "fine"
    with pytest.raises(CorruptFileError, match="b.txt: invalid UTF-8 at byte 5"):
        next(texts)


def test_builtin_corpus() -> None:
    from pydoc_data.topics import topics

    documents = builtin_corpus(max_bytes=200_000)
    assert documents == builtin_corpus(max_bytes=200_000)  # deterministic
    assert documents[0] == topics[sorted(topics)[0]]  # pydoc topics first, in name order
    sizes = [len(d.encode("utf-8")) for d in documents]
    # documents are kept until the total reaches max_bytes: the last one crosses it
    assert sum(sizes[:-1]) < 200_000 <= sum(sizes)
    everything = builtin_corpus()
    assert len(everything) > len(topics) + 100 and everything[: len(documents)] == documents
