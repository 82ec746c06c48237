"""`fmblocks prepare` then `fmblocks train --data DATA_DIR`: the workflow, its refusals, and an exact resume after
a SIGKILL."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fmblocks.cli import main
from fmblocks.files import read_tensors
from fmblocks.tokenizers.bpe import train_bpe
from fmblocks.training.checkpoint import read_state

SRC = str(Path(__file__).resolve().parents[2] / "src")
TEXT = "def add(a, b):\n    return a + b\n\ndef sub(a, b):\n    return a - b\n\n"
MODEL = ["--preset", "gpt2-style", "--set", "n_layers=1", "d_model=32", "n_heads=2", "d_ff=64", "max_len=16"]
FAST = ["--batch-size", "4", "--lr", "3e-3", "--warmup-steps", "2", "--log-every", "2", "--eval-every", "4",
        "--eval-batches", "2", "--no-progress"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("prepared")
    (folder / "corpus").mkdir()
    for i in range(10):
        (folder / "corpus" / f"{i}.py").write_text(TEXT * (5 + i), encoding="utf-8")
    train_bpe([TEXT], 280, special_tokens=["<|endoftext|>"], progress=False).save(folder / "tok.json")
    train_bpe([TEXT], 270, special_tokens=["<|endoftext|>"], progress=False).save(folder / "other.json")
    assert main(["prepare", "--data", str(folder / "corpus"), "--tokenizer", str(folder / "tok.json"), "--out",
                 str(folder / "data"), "--eval-fraction", "0.3", "--shard-mb", "0.001", "--no-progress"]) == 0
    return {"data": folder / "data", "other": folder / "other.json", "folder": folder}


def test_prepare_then_train_and_the_refusals(data, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "--data", str(data["data"]), "--out", str(out), *MODEL, *FAST, "--steps", "4"]) == 0
    state = read_state(out)
    assert state["step"] == 4 and state["history"][-1]["eval_loss"] is not None  # held-out documents evaluated
    assert (out / "tokenizer.json").read_bytes() == (data["data"] / "tokenizer.json").read_bytes()
    capsys.readouterr()

    refusals = [
        (["--tokenizer", str(data["other"])], "was tokenized by another tokenizer"),
        (["--eval-fraction", "0.2"], "drop --eval-fraction"),
        (["--data-dtype", "uint16"], "drop the flag"),
        (["--objective", "mlm", "--preset", "bert-style"], "trains --objective clm"),
    ]
    for extra, message in refusals:
        assert main(["train", "--data", str(data["data"]), "--out", str(tmp_path / "no"), *MODEL, *FAST, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    broken = tmp_path / "broken"
    subprocess.run(["cp", "-r", str(data["data"]), str(broken)], check=True)
    with open(broken / "shard-00002.bin", "r+b") as handle:
        handle.truncate(3)
    assert main(["train", "--data", str(broken), "--out", str(tmp_path / "no"), *MODEL, *FAST]) == 2
    assert "shard-00002.bin: shard is 3 bytes, expected" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def test_a_killed_run_on_prepared_data_resumes_exactly(data, tmp_path) -> None:
    argv = ["train", "--data", str(data["data"]), *MODEL, *FAST, "--steps", "10", "--checkpoint-every", "3"]
    assert main([*argv, "--out", str(tmp_path / "whole")]) == 0
    # a real `fmblocks train` killed (SIGKILL) in the middle of step 8, two steps after its checkpoint at 6; one
    # thread, like this process (conftest), so that float sums run in the same order
    script = ("import os, signal, sys; from fmblocks.training.trainer import Trainer; step = Trainer._train_step\n"
              "def dying(self, lr):\n    if self.step == 7: os.kill(os.getpid(), signal.SIGKILL)\n"
              "    return step(self, lr)\n"
              "Trainer._train_step = dying\nfrom fmblocks.cli import main; sys.exit(main(sys.argv[1:]))")
    killed = subprocess.run([sys.executable, "-c", script, *argv, "--out", str(tmp_path / "killed")],
                            env={**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert read_state(tmp_path / "killed")["step"] == 6
    assert main(["train", "--data", str(data["data"]), "--out", str(tmp_path / "killed"), "--resume"]) == 0
    whole, resumed = read_state(tmp_path / "whole"), read_state(tmp_path / "killed")
    timeless = [[{k: v for k, v in row.items() if k != "tokens_per_s"} for row in state["history"]]
                for state in (whole, resumed)]
    assert timeless[0] == timeless[1] and resumed["position"] == whole["position"]
    a = read_tensors(tmp_path / "whole" / "checkpoint" / "model.safetensors")
    b = read_tensors(tmp_path / "killed" / "checkpoint" / "model.safetensors")
    assert all(torch.equal(a[name], b[name]) for name in a)
