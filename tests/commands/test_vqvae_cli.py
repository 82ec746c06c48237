"""`fmblocks vqvae train | encode` end to end on a tiny run."""

import json

from fmblocks.cli import main
from fmblocks.tokenizers import load
from fmblocks.tokenizers.image import BinaryPatchTokenizer
from fmblocks.tokenizers.vq import VQTokenizer


def test_train_writes_tokenizer_metrics_and_picture(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    argv = ["vqvae", "train", "--out", str(out), "--steps", "3", "--hidden", "8", "--codebook-size", "16", "--batch-size", "8",
            "--threads", "1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "reconstruction MSE" in printed and "perplexity" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"mse", "perplexity", "used"} <= set(metrics) and metrics["tokens_per_image"] == 49
    assert 1.0 <= metrics["perplexity"] <= 16 and 0 < metrics["used"] <= 1
    assert (out / "reconstructions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tokenizer = load(out / "vqvae.json")
    assert isinstance(tokenizer, VQTokenizer) and tokenizer.vocab_size == 16

    assert main(["vqvae", "encode", "--tokenizer", str(out / "vqvae.json"), "--count", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    grid = json.loads(lines[0].split(": ", 1)[1])
    assert len(grid) == 7 and all(len(row) == 7 and all(0 <= t < 16 for t in row) for row in grid)


def test_encode_refuses_another_tokenizer_kind(tmp_path, capsys) -> None:
    BinaryPatchTokenizer().save(tmp_path / "binary.json")
    assert main(["vqvae", "encode", "--tokenizer", str(tmp_path / "binary.json")]) == 2
    assert "expected a 'vq' tokenizer" in capsys.readouterr().err
