"""Token shards: `prepare` writes exactly the tokenizer's encoding, windows read from the memory maps equal
those built from the same files, a killed prepare resumes byte for byte, damage is refused naming the file."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from fmblocks.data.prepare import plan_pieces, prepare
from fmblocks.data.shards import (
    INDEX_FILE, flat_token_windows, open_prepared, verify_shards,
)
from fmblocks.errors import ConfigError, CorruptFileError
from fmblocks.tokenizers.bpe import train_bpe
from fmblocks.training.corpus import causal_lm_data, read_documents
from fmblocks.training.datasets import CausalLMWindows, ExampleStream, feistel_permute

SRC = str(Path(__file__).resolve().parents[2] / "src")
WORDS = ["def", "add", "return", "the", "fox", "über", "naïve", "λx", "\n", "  ", "(a, b)", ":"]


def write_corpus(folder: Path, n_files: int = 12) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n_files):
        words = rng.choice(WORDS, size=int(rng.integers(50, 400)))
        (folder / f"doc{i:02d}.txt").write_text(" ".join(words), encoding="utf-8")
    (folder / "empty.txt").write_text("")  # a document of no tokens: only its end-of-text
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    folder = write_corpus(tmp_path_factory.mktemp("c") / "corpus")
    documents, _ = read_documents([folder])
    return folder, train_bpe(documents, 300, special_tokens=["<|endoftext|>"], progress=False)


def stream(prepared_dir: Path, part: str) -> list[int]:
    prepared = open_prepared(prepared_dir)
    return [int(i) for s in getattr(prepared, part) for i in s.array[s.start : s.end]]


def split_documents(ids: list[int], end: int) -> list[tuple[int, ...]]:
    documents, current = [], []
    for i in ids:
        current.append(i)
        if i == end:
            documents.append(tuple(current))
            current = []
    assert not current  # every document ends with the end-of-text id
    return documents


def test_shards_decode_to_the_tokenizers_encoding(corpus, tmp_path) -> None:
    folder, tokenizer = corpus
    end = tokenizer.special_tokens["<|endoftext|>"]
    documents, _ = read_documents([folder])
    expected = [i for d in documents for i in [*tokenizer.encode(d), end]]
    index = prepare([folder], tokenizer, tmp_path / "all", eval_fraction=0, shard_bytes=600, workers=2, progress=False)
    assert index["complete"] and len(index["shards"]) > 2 and index["dtype"] == "uint16"
    assert index["documents"] == len(documents) and index["tokens"] == len(expected)
    assert stream(tmp_path / "all", "train") == expected and stream(tmp_path / "all", "held_out") == []
    assert tokenizer.decode(expected).count("<|endoftext|>") == len(documents)
    verify_shards(tmp_path / "all")

    # held-out documents are whole: train and held-out streams are the documents, each once
    index = prepare([folder], tokenizer, tmp_path / "half", eval_fraction=0.5, shard_bytes=600, workers=1, progress=False)
    train, held = stream(tmp_path / "half", "train"), stream(tmp_path / "half", "held_out")
    assert 0 < index["eval_documents"] < index["documents"] and len(held) == index["eval_tokens"]
    assert sorted(split_documents(train, end) + split_documents(held, end)) == sorted(split_documents(expected, end))


def test_windows_from_shards_equal_windows_from_the_same_files(corpus, tmp_path) -> None:
    folder, tokenizer = corpus
    prepare([folder], tokenizer, tmp_path / "data", eval_fraction=0, shard_bytes=500, workers=1, progress=False)
    shards, held_out = open_prepared(tmp_path / "data").windows(16)
    files, _ = causal_lm_data(read_documents([folder])[0], tokenizer, context=16, eval_fraction=0)
    assert held_out is None and len(shards) == len(files) > 20
    order = ExampleStream(len(files), seed=3)
    for position in range(3 * len(files)):  # three epochs of the seeded order the trainer reads
        _, index = order.at(position)
        for key, value in files[index].items():
            assert torch.equal(shards[index][key], value)


def test_a_killed_prepare_resumes_and_writes_the_same_bytes(corpus, tmp_path) -> None:
    folder, tokenizer = corpus
    tokenizer.save(tmp_path / "tok.json")
    argv = ["prepare", "--data", str(folder), "--tokenizer", str(tmp_path / "tok.json"), "--shard-mb", "0.0006",
            "--workers", "1", "--no-progress", "--eval-fraction", "0.3"]
    # a real `fmblocks prepare` that stalls in its fourth shard, after writing three; then SIGKILL
    script = ("import sys, time; import fmblocks.data.prepare as p; make = p._make_shard\n"
              "p._make_shard = lambda task: time.sleep(600) if task[0] == 3 else make(task)\n"
              "from fmblocks.cli import main; sys.exit(main(sys.argv[1:]))")
    killed = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-c", script, *argv, "--out", str(killed)],
                               env={**os.environ, "PYTHONPATH": SRC}, stderr=subprocess.PIPE, text=True)
    try:
        while '"shard-00002.bin"' not in ((killed / INDEX_FILE).read_text() if (killed / INDEX_FILE).exists() else ""):
            assert process.poll() is None, process.communicate()
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
    assert not open_prepared_ok(killed)
    (killed / ".shard-00003.bin.0badf00d.tmp").write_bytes(b"half")  # what a kill mid-write leaves
    with open(killed / "shard-00001.bin", "r+b") as handle:  # and a damaged shard the index lists
        handle.truncate(10)

    from fmblocks.cli import main

    assert main([*argv, "--out", str(killed)]) == 0
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    names = sorted(p.name for p in (tmp_path / "whole").iterdir())
    assert sorted(p.name for p in killed.iterdir()) == names and len(names) > 6
    for name in names:
        if name != INDEX_FILE:
            assert (killed / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    assert main([*argv, "--eval-fraction", "0.2", "--out", str(killed)]) == 2  # other settings over it: refused


def open_prepared_ok(directory: Path) -> bool:
    try:
        open_prepared(directory)
    except CorruptFileError as err:
        assert "only partly prepared" in str(err)
        return False
    return True


def test_a_truncated_or_corrupt_shard_is_refused_naming_it(corpus, tmp_path) -> None:
    folder, tokenizer = corpus
    prepare([folder], tokenizer, tmp_path / "data", eval_fraction=0, shard_bytes=500, workers=1, progress=False)
    shard = tmp_path / "data" / "shard-00001.bin"
    good = shard.read_bytes()
    shard.write_bytes(good[:-2])
    with pytest.raises(CorruptFileError, match="shard-00001.bin: shard is .* bytes, expected"):
        open_prepared(tmp_path / "data")
    shard.write_bytes(b"\xff\xff" + good[2:])  # same size, an id outside the vocabulary
    with pytest.raises(CorruptFileError, match="shard-00001.bin: shard checksum differs"):
        verify_shards(tmp_path / "data")
    windows, _ = open_prepared(tmp_path / "data").windows(8)
    with pytest.raises(CorruptFileError, match="shard-00001.bin: token id 65535 is outside the vocabulary"):
        [windows[i] for i in range(len(windows))]


def test_flat_token_files_as_nanogpt_writes_them(tmp_path) -> None:
    ids = np.random.default_rng(0).integers(0, 50257, size=1000).astype(np.uint16)
    (tmp_path / "nano").mkdir()
    ids[:900].tofile(tmp_path / "nano" / "train.bin")
    ids[900:].tofile(tmp_path / "nano" / "val.bin")
    train, val = flat_token_windows([tmp_path / "nano"], "uint16", 32, vocab_size=50257)
    reference = CausalLMWindows(torch.from_numpy(ids[:900].astype(np.int64)), 32)
    assert len(train) == len(reference) and len(val) == 3
    assert all(torch.equal(train[i]["targets"], reference[i]["targets"]) for i in range(len(train)))
    one, tail = flat_token_windows([tmp_path / "nano" / "train.bin", tmp_path / "nano" / "val.bin"], "uint16", 32,
                                   vocab_size=50257, eval_fraction=0.2)  # the stream's last 20 % held out
    assert one.tokens == 800 and tail.tokens == 200 and torch.equal(tail[0]["input_ids"], torch.from_numpy(ids[800:832].astype(np.int64)))
    (tmp_path / "odd.bin").write_bytes(b"\x01\x02\x03")
    with pytest.raises(CorruptFileError, match="odd.bin: 3 bytes is not a whole number of uint16 tokens"):
        flat_token_windows([tmp_path / "odd.bin"], "uint16", 2, vocab_size=10)
    with pytest.raises(ConfigError, match="must be one of uint16, uint32"):
        flat_token_windows([tmp_path / "odd.bin"], "int8", 2, vocab_size=10)


def test_pieces_and_the_permutation_for_large_datasets(monkeypatch) -> None:
    assert plan_pieces([3, 3, 3], 100) == [[0, 1, 2]] and plan_pieces([], 10) == []
    for n in (1, 2, 3, 7, 64, 1000):
        assert sorted(feistel_permute(i, n, key=n) for i in range(n)) == list(range(n))
    from fmblocks.training import datasets

    monkeypatch.setattr(datasets, "RANDPERM_LIMIT", 10)
    order = ExampleStream(50, seed=1)
    epochs = [[order.at(e * 50 + p)[1] for p in range(50)] for e in range(2)]
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(50)) and epochs[0] != epochs[1]
