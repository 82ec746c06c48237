"""`fmblocks train` and `fmblocks sample` end to end on tiny files in tmp_path."""

from pathlib import Path

import pytest

from fmblocks.cli import main
from fmblocks.tokenizers import load
from fmblocks.tokenizers.bpe import train_bpe
from fmblocks.training.checkpoint import load_checkpoint, read_state

TEXT = "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\n" * 40
TINY = ["--set", "n_layers=1", "d_model=32", "n_heads=2", "d_ff=64", "max_len=32"]
FAST = ["--batch-size", "4", "--lr", "3e-3", "--warmup-steps", "2", "--log-every", "2", "--eval-every", "4",
        "--eval-batches", "2", "--no-progress"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("data")
    (folder / "code.txt").write_text(TEXT, encoding="utf-8")
    train_bpe([TEXT], 280, special_tokens=["<|endoftext|>"], progress=False).save(folder / "tok.json")
    return {"text": folder / "code.txt", "tokenizer": folder / "tok.json"}


def train(files: dict[str, Path], out: Path, *extra: str) -> int:
    return main(["train", "--data", str(files["text"]), "--tokenizer", str(files["tokenizer"]), "--objective", "clm",
                 "--out", str(out), *FAST, *extra])


def test_train_a_tiny_decoder_then_sample(files, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert train(files, out, "--preset", "gpt2-style", *TINY, "--steps", "8") == 0
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint", "log.csv", "loss.png", "tokenizer.json"]
    model, config, state = load_checkpoint(out)
    assert (config.n_layers, config.d_model, config.vocab_size) == (1, 32, 280)
    assert state["step"] == 8 and state["history"][-1]["eval_loss"] is not None
    assert "step 8: train loss" in capsys.readouterr().out

    assert main(["sample", "--checkpoint", str(out), "--prompt", "def", "--max-new-tokens", "6", "--temperature", "0"]) == 0
    greedy = capsys.readouterr().out
    assert greedy.startswith("def")
    tokenizer = load(out / "tokenizer.json")
    assert len(tokenizer.encode(greedy.rstrip("\n"))) >= len(tokenizer.encode("def")) + 1
    args = ["sample", "--checkpoint", str(out / "checkpoint"), "--max-new-tokens", "5", "--top-k", "5",
            "--seed", "3", "--num-samples", "2"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first  # seeded
    assert len(first.split("\n---\n")) == 2


def test_resume_continues_the_run(files, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert train(files, out, "--preset", "gpt2-style", *TINY, "--steps", "4") == 0
    assert main(["train", "--data", str(files["text"]), "--out", str(out), "--steps", "6", "--resume", *FAST]) == 0
    state = read_state(out)
    assert state["step"] == 6 and [row["step"] for row in state["history"]] == [2, 4, 6]


def test_refusals_are_clear(files, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert train(files, out, "--preset", "bert-style", *TINY, "--steps", "1") == 2
    assert "--objective clm trains a decoder, but the config's arch is 'encoder'" in capsys.readouterr().err
    assert train(files, out, "--steps", "1") == 2
    assert "needs --preset NAME or --config FILE" in capsys.readouterr().err
    assert train(files, out, "--preset", "gpt2-style", *TINY, "--steps", "1") == 0
    assert train(files, out, "--preset", "gpt2-style", *TINY, "--steps", "1") == 2
    assert "already holds a checkpoint; pass --resume" in capsys.readouterr().err
    assert train(files, tmp_path / "long", "--preset", "gpt2-style", *TINY, "--context", "64", "--steps", "1") == 2
    assert "longer than the model's context of 32" in capsys.readouterr().err
    assert not (tmp_path / "long" / "checkpoint").exists()
