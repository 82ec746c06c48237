"""`fmblocks tokenize train|encode|decode|report` end to end on tiny corpora in tmp_path."""

import json
from pathlib import Path

import pytest

from fmblocks.cli import main
from fmblocks.tokenizers import load

TEXT = "The cat sat on the mat.\nThe dog ate 12 apples and 345 pears!\nnaïve café, déjà vu\n" * 20


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    (folder / "a.txt").write_text(TEXT, encoding="utf-8")
    (folder / "sub").mkdir()
    (folder / "sub" / "b.md").write_text("More text: cats and dogs.\n", encoding="utf-8")
    return folder


@pytest.mark.parametrize(("kind", "size"), [("bpe", 300), ("wordpiece", 90), ("char", 30), ("word", 20)])
def test_train_encode_decode(kind: str, size: int, corpus: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / f"{kind}.json"
    assert main(["tokenize", "train", "--kind", kind, "--vocab-size", str(size), "--out", str(out), "--no-progress",
                 str(corpus)]) == 0
    assert f"{kind} tokenizer with" in capsys.readouterr().out
    tok = load(out)
    assert tok.kind == kind and tok.vocab_size <= size

    assert main(["tokenize", "encode", "--tokenizer", str(out), "The cat ate pears."]) == 0
    ids = [int(i) for i in capsys.readouterr().out.split()]
    assert ids == tok.encode("The cat ate pears.")
    (tmp_path / "in.txt").write_text("the mat", encoding="utf-8")
    assert main(["tokenize", "encode", "--tokenizer", str(out), "--file", str(tmp_path / "in.txt")]) == 0
    assert [int(i) for i in capsys.readouterr().out.split()] == tok.encode("the mat")

    assert main(["tokenize", "decode", "--tokenizer", str(out), *map(str, ids)]) == 0
    assert capsys.readouterr().out.rstrip("\n") == tok.decode(ids)


def test_pretrained_encode_with_pieces(capsys) -> None:
    assert main(["tokenize", "encode", "--tokenizer", "bert-base-uncased", "--pieces", "Tokenization!"]) == 0
    ids, pieces = capsys.readouterr().out.splitlines()
    assert ids == " ".join(map(str, load("bert-base-uncased").encode("Tokenization!")))
    assert pieces.count("|") == len(ids.split()) - 1


def test_builtin_corpus_by_default(tmp_path: Path, capsys) -> None:
    out = tmp_path / "char.json"
    assert main(["tokenize", "train", "--kind", "char", "--out", str(out), "--max-bytes", "20000"]) == 0
    assert load(out).vocab_size > 50  # pydoc topics use many characters


def test_report(corpus: Path, tmp_path: Path, capsys) -> None:
    word = tmp_path / "word.json"
    assert main(["tokenize", "train", "--kind", "word", "--vocab-size", "10", "--out", str(word), str(corpus)]) == 0
    out = tmp_path / "report"
    assert main(["tokenize", "report", "--tokenizers", "bert-base-uncased", str(word), "--corpus", str(corpus),
                 "--lines", "20", "--out", str(out)]) == 0
    table = capsys.readouterr().out
    assert "bert-base-uncased" in table and str(word) in table
    document = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert [r["name"] for r in document["reports"]] == ["bert-base-uncased", str(word)]
    assert all(r["samples"] == 20 for r in document["reports"])
    assert (out / "report.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(("argv", "message"), [
    (["encode", "--tokenizer", "no-such-tokenizer", "x"], "neither a saved tokenizer file nor a pretrained name"),
    (["encode", "--tokenizer", "gpt2"], "nothing to encode: give the text as an argument or a file with --file"),
    (["encode", "--tokenizer", "gpt2", "--file", "{tmp}/empty.txt", "x"], "either as an argument or with --file, not both"),
    (["encode", "--tokenizer", "bert-base-uncased", "a [SEP] b"], "special token '[SEP]'; pass --allow-special"),
    (["decode", "--tokenizer", "bert-base-uncased", "999999"], "outside the vocabulary"),
    (["train", "--kind", "wordpiece", "--out", "{tmp}/t.json", "{corpus}"], "--vocab-size is required"),
    (["train", "--kind", "bpe", "--vocab-size", "100", "--out", "{tmp}/t.json", "{corpus}"], "vocab_size 100"),
    (["train", "--kind", "word", "--vocab-size", "10", "--out", "{tmp}/t.json", "{tmp}/empty.txt"], "empty"),
    (["train", "--kind", "word", "--vocab-size", "10", "--out", "{tmp}/t.json", "{tmp}/bad.txt"], "invalid UTF-8"),
    (["train", "--kind", "word", "--vocab-size", "10", "--out", "{tmp}/t.json", "{tmp}/missing"], "no such file"),
    (["report", "--tokenizers", "gpt2", "--corpus", "{tmp}/blank.txt", "--out", "{tmp}/r"], "no non-blank lines"),
])
def test_errors_exit_2(argv: list[str], message: str, corpus: Path, tmp_path: Path, capsys) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "bad.txt").write_bytes(b"ok \xff\xfe")
    (tmp_path / "blank.txt").write_text("\n  \n")
    argv = [a.format(tmp=tmp_path, corpus=corpus) for a in argv]
    assert main(["tokenize", *argv]) == 2
    assert message in capsys.readouterr().err
