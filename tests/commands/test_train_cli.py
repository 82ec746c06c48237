"""`fmblocks train` and `fmblocks sample` end to end on tiny files in tmp_path."""

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fmblocks.cli import main
from fmblocks.models import PRESETS, preset
from fmblocks.tokenizers import load
from fmblocks.tokenizers.bpe import train_bpe
from fmblocks.training.checkpoint import load_checkpoint, read_state

SRC = str(Path(__file__).resolve().parents[2] / "src")
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
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint", "log.csv", "loss.png", "run.json", "tokenizer.json"]
    _, config, state = load_checkpoint(out)
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

    # several prompts share one left-padded batch; each continues exactly as when sampled alone
    alone = []
    for text in ("def", "import os"):
        assert main(["sample", "--checkpoint", str(out), "--prompt", text, "--max-new-tokens", "6",
                     "--temperature", "0"]) == 0
        alone.append(capsys.readouterr().out.rstrip("\n"))
    assert main(["sample", "--checkpoint", str(out), "--prompt", "def", "--prompt", "import os",
                 "--max-new-tokens", "6", "--temperature", "0"]) == 0
    assert capsys.readouterr().out.rstrip("\n").split("\n---\n") == alone


def test_a_config_file_then_resume_continues_the_run(files, tmp_path, capsys) -> None:
    out, config = tmp_path / "run", tmp_path / "model.json"
    fields = {**PRESETS["gpt2-style"], "n_layers": 1, "d_model": 32, "n_heads": 2, "d_ff": 64, "max_len": 16}
    config.write_text(json.dumps(fields), encoding="utf-8")  # plain ModelConfig fields; vocab_size comes from the tokenizer
    assert train(files, out, "--config", str(config), "--steps", "4") == 0
    assert load_checkpoint(out)[1].max_len == 16
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


@pytest.mark.parametrize(("flags", "message"), [
    (["--lr", "inf"], "TrainConfig.lr must be a finite float, got inf"),
    (["--weight-decay", "nan"], "TrainConfig.weight_decay must be a finite float, got nan"),
    (["--set", "eps=NaN"], "ModelConfig.eps must be a finite float, got nan"),
])
def test_non_finite_numbers_are_refused_before_training(files, tmp_path, capsys, flags, message) -> None:
    assert train(files, tmp_path / "run", "--preset", "gpt2-style", *TINY, "--steps", "1", *flags) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoint").exists()


def test_a_config_file_with_nan_is_refused(files, tmp_path, capsys) -> None:
    config = tmp_path / "model.json"
    config.write_text(json.dumps({**preset("gpt2-style").to_dict(), "eps": float("nan")}))  # writes NaN
    assert train(files, tmp_path / "run", "--config", str(config), "--steps", "1") == 2
    assert "ModelConfig.eps must be a finite float, got nan" in capsys.readouterr().err


def write_fasta(path: Path, sequences: list[str]) -> Path:
    """Records >s0, >s1, ... with sequence lines of at most 30 letters."""
    lines = []
    for i, sequence in enumerate(sequences):
        lines += [f">s{i} made up", *(sequence[j : j + 30] for j in range(0, len(sequence), 30))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_train_a_tiny_protein_masked_lm_from_fasta(tmp_path, capsys) -> None:
    generator = random.Random(0)
    proteins = ["".join(generator.choice("LAGVSERTIDPKQNFYMHWC") for _ in range(generator.randint(20, 60)))
                for _ in range(30)]
    fasta = write_fasta(tmp_path / "proteins.fasta", proteins)
    out = tmp_path / "esm"
    assert main(["train", "--preset", "bert-style", *TINY[:-1], "max_len=64", "--data", str(fasta),
                 "--objective", "mlm", "--out", str(out), "--steps", "4", *FAST]) == 0
    model, config, state = load_checkpoint(out)
    tokenizer = load(out / "tokenizer.json")
    assert (config.arch, config.vocab_size, tokenizer.kind) == ("encoder", 33, "protein")
    assert state["history"][-1]["eval_loss"] is not None  # 3 of the 30 sequences held out
    assert main(["sample", "--checkpoint", str(out)]) == 2
    assert "a decoder checkpoint is needed, this one is an encoder" in capsys.readouterr().err
    too_long = write_fasta(tmp_path / "long.fa", ["M" * 70])
    assert main(["train", "--preset", "bert-style", *TINY[:-1], "max_len=64", "--data", str(too_long),
                 "--objective", "mlm", "--out", str(tmp_path / "long"), "--steps", "1", *FAST]) == 2
    assert "sequence 0 has 70 tokens, longer than the context of 64" in capsys.readouterr().err


def test_train_a_tiny_dna_decoder_from_fasta_then_sample(tmp_path, capsys) -> None:
    generator = random.Random(1)
    genome = write_fasta(tmp_path / "genome.fa", ["".join(generator.choice("acgt") for _ in range(900)) for _ in range(2)])
    out = tmp_path / "dna"
    assert main(["train", "--preset", "gpt2-style", *TINY, "--data", str(genome), "--objective", "clm",
                 "--out", str(out), "--steps", "4", *FAST]) == 0
    _, config, _ = load_checkpoint(out)
    assert load(out / "tokenizer.json").kind == "dna-kmer" and config.vocab_size == 5 + 5 + 4**6
    capsys.readouterr()
    assert main(["sample", "--checkpoint", str(out), "--prompt", "ACGTAC", "--max-new-tokens", "4", "--top-k", "3"]) == 0
    bases = capsys.readouterr().out.strip()
    assert bases.startswith("ACGTAC") and set(bases) <= set("ACGTN") and len(bases) > 6


def test_train_the_hyena_dna_preset_on_single_nucleotides_then_sample(tmp_path, capsys) -> None:
    from fmblocks.tokenizers.bio_dna import KmerTokenizer

    generator = random.Random(2)
    motif = "".join(generator.choice("ACGT") for _ in range(10))
    genome = write_fasta(tmp_path / "genome.fa", [motif * 60, motif[3:] * 40])
    out = tmp_path / "hyena"  # no --tokenizer: the preset's single bases
    assert main(["train", "--preset", "hyena-dna", "--set", "n_layers=1", "d_model=32", "d_ff=64", "max_len=64",
                 "--data", str(genome), "--objective", "clm",
                 "--out", str(out), "--steps", "12", *FAST[:-1], "--lr", "1e-2", "--no-progress"]) == 0
    assert load(out / "tokenizer.json").to_dict() == KmerTokenizer(k=1).to_dict()
    _, config, state = load_checkpoint(out)
    assert (config.mixer, config.vocab_size, config.max_len) == ("hyena", PRESETS["hyena-dna"]["vocab_size"], 64)
    losses = [row["train_loss"] for row in state["history"] if row["train_loss"] is not None]
    assert losses[-1] < 0.8 * losses[0], losses
    assert "FLOPs per step" in capsys.readouterr().err  # fmblocks.cost has a formula for the hyena layers
    assert main(["sample", "--checkpoint", str(out), "--prompt", motif, "--max-new-tokens", "8", "--top-k", "2"]) == 0
    bases = capsys.readouterr().out.strip()
    assert bases.startswith(motif) and set(bases) <= set("ACGTN") and len(bases) == 18


def start_training(files: dict[str, Path], out: Path, *extra: str) -> subprocess.Popen:
    """`fmblocks train` of a tiny decoder in a subprocess, for (nearly) ever; returns once it has checkpointed."""
    argv = [sys.executable, "-m", "fmblocks.cli", "train", "--data", str(files["text"]), "--tokenizer",
            str(files["tokenizer"]), "--out", str(out), "--preset", "gpt2-style", *TINY, *FAST, "--steps", "100000",
            "--checkpoint-every", "5", *extra]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": SRC})
    deadline = time.monotonic() + 60
    while not (out / "checkpoint").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.1)
    return process


def test_a_second_run_is_refused_ctrl_c_saves_and_a_killed_run_resumes(files, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    first = start_training(files, out)
    try:
        assert train(files, out, "--preset", "gpt2-style", *TINY, "--steps", "2") == 2
        assert f"is in use by another process (PID {first.pid}" in capsys.readouterr().err
        first.send_signal(signal.SIGINT)
        stdout, stderr = first.communicate(timeout=60)
    finally:
        first.kill()
    assert first.returncode == 128 + signal.SIGINT
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1].startswith(
        "fmblocks train: stopped by SIGINT after step ")
    assert "continue with the same command plus --resume" in stderr
    stopped = int(stderr.strip().splitlines()[-1].split("after step ")[1].split()[0])
    assert read_state(out)["step"] == stopped and not (out / ".lock").exists()

    second = start_training(files, tmp_path / "killed")
    second.kill()  # SIGKILL: the lock file stays, its flock does not
    second.communicate()
    assert (tmp_path / "killed" / ".lock").exists()
    (tmp_path / "killed" / ".log.csv.0badf00d.tmp").write_text("half")
    done = read_state(tmp_path / "killed")["step"]
    assert main(["train", "--data", str(files["text"]), "--out", str(tmp_path / "killed"), "--resume",
                 "--steps", str(done + 2)]) == 0
    assert read_state(tmp_path / "killed")["step"] == done + 2
    assert sorted(p.name for p in (tmp_path / "killed").iterdir()) == [
        "checkpoint", "log.csv", "loss.png", "run.json", "tokenizer.json"]


def test_resume_keeps_the_saved_settings_and_refuses_conflicting_flags(files, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert train(files, out, "--preset", "gpt2-style", *TINY, "--steps", "4", "--lr", "1e-3", "--warmup-steps", "3",
                 "--context", "16") == 0
    resume = ["train", "--data", str(files["text"]), "--out", str(out), "--resume", "--no-progress"]
    assert main([*resume, "--lr", "2e-3", "--steps", "6"]) == 2
    assert "--lr 0.002 (the run has 0.001)" in capsys.readouterr().err
    assert main([*resume, "--context", "32", "--steps", "6"]) == 2
    assert "--context 32 (the run has 16)" in capsys.readouterr().err
    assert main([*resume, "--steps", "6", "--lr", "1e-3"]) == 0  # a repeated flag that agrees is fine
    assert "note: --steps 6 changes the run's length from 4" in capsys.readouterr().err
    config = read_state(out)["train_config"]
    assert (config["lr"], config["warmup_steps"], config["steps"], config["checkpoint_every"]) == (1e-3, 3, 6, 100)


def test_a_lone_previous_checkpoint_is_never_deleted_by_a_fresh_run(files, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert train(files, out, "--preset", "gpt2-style", *TINY, "--steps", "2") == 0
    os.replace(out / "checkpoint", out / ".checkpoint.previous")  # a crash between save_checkpoint's renames
    assert train(files, out, "--preset", "gpt2-style", *TINY, "--steps", "2") == 2
    assert "(only as .checkpoint.previous, left by a crash while saving); pass --resume" in capsys.readouterr().err
    assert read_state(out / ".checkpoint.previous")["step"] == 2
    assert main(["train", "--data", str(files["text"]), "--out", str(out), "--resume", "--steps", "3"]) == 0
    assert read_state(out)["step"] == 3


def test_messages_name_the_flags_users_have(files, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert train(files, out, "--preset", "gpt2-style", *TINY, "--steps", "1") == 0
    capsys.readouterr()
    sample = ["sample", "--checkpoint", str(out), "--max-new-tokens", "2", "--prompt", "def<|endoftext|>"]
    assert main(sample) == 2
    assert "special token '<|endoftext|>'; pass --allow-special" in capsys.readouterr().err
    assert main([*sample, "--allow-special"]) == 0
    (out / "tokenizer.json").unlink()  # like a run of `fmblocks mnist`: ids that are not text
    assert main(["explain", "--checkpoint", str(out), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "no tokenizer.json beside the checkpoint" in err and "pass a tokenizer" not in err


def test_precision_is_saved_with_the_run_and_the_summary_is_printed(files, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert train(files, out, "--preset", "gpt2-style", *TINY, "--steps", "2", "--precision", "bf16") == 0
    err = capsys.readouterr().err
    for line in ("parameters:", "tokens per step: 128", "FLOPs per step:", "device: cpu", "precision: bf16",
                 "strategy: single process", "peak for MFU:"):
        assert line in err
    resume = ["train", "--data", str(files["text"]), "--out", str(out), "--resume", "--no-progress"]
    assert main([*resume, "--steps", "3"]) == 0
    assert read_state(out)["train_config"]["precision"] == "bf16"
    assert main([*resume, "--steps", "4", "--precision", "fp32"]) == 2
    assert "--precision 'fp32' (the run has 'bf16')" in capsys.readouterr().err
    assert train(files, tmp_path / "fp16", "--preset", "gpt2-style", *TINY, "--steps", "1", "--precision", "fp16",
                 "--device", "cpu") == 2
    assert "'fp16' needs a CUDA device" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train(files, tmp_path / "fp8", "--preset", "gpt2-style", *TINY, "--precision", "fp8")
    assert "invalid choice: 'fp8'" in capsys.readouterr().err


def test_a_char_tokenizer_is_built_from_the_data(files, tmp_path, capsys) -> None:
    out = tmp_path / "char"
    assert main(["train", "--data", str(files["text"]), "--tokenizer", "char", "--objective", "clm", "--out", str(out),
                 "--preset", "gpt2-style", *TINY, "--steps", "2", *FAST]) == 0
    tokenizer = load(out / "tokenizer.json")
    assert tokenizer.vocab_size == len(set(TEXT)) and tokenizer.decode(tokenizer.encode(TEXT[:40])) == TEXT[:40]
    resume = ["train", "--data", str(files["text"]), "--out", str(out), "--resume", "--no-progress", "--steps", "3"]
    assert main([*resume, "--tokenizer", "char"]) == 0  # the same data gives the same vocabulary


def test_the_strategy_is_saved_and_a_resumed_run_may_change_it(files, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert train(files, out, "--preset", "gpt2-tiny", *TINY, "--steps", "2", "--strategy", "fsdp") == 0
    assert "strategy: single process" in capsys.readouterr().err  # alone, fsdp trains the plain model
    assert read_state(out)["train_config"]["strategy"] == "fsdp"
    resume = ["train", "--data", str(files["text"]), "--out", str(out), "--resume", "--no-progress"]
    assert main([*resume, "--steps", "3", "--strategy", "ddp"]) == 0
    assert read_state(out)["train_config"]["strategy"] == "ddp"
    with pytest.raises(SystemExit):
        train(files, tmp_path / "zero", "--preset", "gpt2-tiny", "--strategy", "zero3")
    assert "invalid choice: 'zero3'" in capsys.readouterr().err
