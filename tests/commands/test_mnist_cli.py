"""`fmblocks mnist` and `fmblocks demo` end to end on the tiny preset; bad data directories fail clearly."""

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from fmblocks import cli


def main(argv: list[str]) -> int:
    """The CLI on one thread (the commands default to every core)."""
    return cli.main([*argv, "--threads", "1"])


def write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes: magic 0x0000 08 <rank>, big-endian sizes, then the data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist_dir(directory: Path, size: int = 28, n: int = 40) -> Path:
    rng = np.random.default_rng(0)
    directory.mkdir()
    for prefix in ("train", "t10k"):
        write_idx(directory / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, size, size)))
        write_idx(directory / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    return directory


def test_train_sample_eval_on_idx_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data, out = write_mnist_dir(tmp_path / "mnist"), tmp_path / "run"
    assert main(["mnist", "train", "--out", str(out), "--preset", "tiny", "--steps", "4", "--data-dir", str(data)]) == 0
    assert (out / "checkpoint" / "model.safetensors").is_file() and (out / "loss.png").is_file()
    assert (out / "classifier" / "checkpoint" / "model.safetensors").is_file()
    assert main(["mnist", "sample", "--out", str(out), "--per-class", "1", "--guidance", "1.5", "--temperature", "0.8",
                 "--top-k", "4", "--top-p", "0.9", "--seed", "3"]) == 0
    for name in ("samples.png", "unrolling.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert main(["mnist", "eval", "--out", str(out), "--samples-per-class", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_test_images"] == 40 and metrics["run"]["data_dir"] == str(data)
    bits = metrics["test_nll_nats_per_image"] / (784 * np.log(2))
    assert metrics["test_bits_per_pixel"] == pytest.approx(bits, rel=1e-3)
    assert 0 <= metrics["class_consistency"] <= 1 and metrics["sampling"]["guidance"] == 1.0  # the preset's
    assert "metrics.json" in capsys.readouterr().out


def test_demo_writes_its_pictures_and_metrics(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--preset", "tiny", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("samples.png", "unrolling.png", "loss.png", "metrics.json"):
        assert (out / name).is_file() and str(out / name) in printed
    assert "nats/image" in printed and "class consistency" in printed


@pytest.mark.parametrize("damage, message", [
    ("empty", "no train-images-idx3-ubyte"),
    ("size", "must be 28x28"),
    ("truncated", "bytes"),
    ("not-gzip", "cannot read IDX"),
])
def test_bad_data_dir_fails_clearly(tmp_path: Path, capsys: pytest.CaptureFixture, damage: str, message: str) -> None:
    data = tmp_path / "mnist"
    if damage == "empty":
        data.mkdir()
    elif damage == "size":
        write_mnist_dir(data, size=32)
    elif damage == "truncated":
        write_mnist_dir(data)
        path = data / "train-images-idx3-ubyte"
        path.write_bytes(path.read_bytes()[:-10])
    else:
        write_mnist_dir(data)
        (data / "train-images-idx3-ubyte").unlink()
        (data / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    code = main(["mnist", "train", "--out", str(tmp_path / "run"), "--preset", "tiny", "--data-dir", str(data)])
    assert code == 2
    assert message in capsys.readouterr().err


def test_sample_without_a_run_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["mnist", "sample", "--out", str(tmp_path / "nothing")]) == 2
    assert "fmblocks mnist train" in capsys.readouterr().err
    assert main(["mnist", "sample", "--out", str(tmp_path / "nothing"), "--per-class", "0"]) == 2
    assert "must be >= 1" in capsys.readouterr().err


def test_labels_out_of_range_in_idx_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = write_mnist_dir(tmp_path / "mnist")
    write_idx(data / "t10k-labels-idx1-ubyte", np.full(40, 12))
    assert main(["mnist", "eval", "--out", str(tmp_path / "run"), "--data-dir", str(data)]) == 2  # no run yet
    assert main(["mnist", "train", "--out", str(tmp_path / "run"), "--preset", "tiny", "--data-dir", str(data)]) == 2
    assert "0..9" in capsys.readouterr().err



def test_threads_below_one_fail_clearly(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli.main(["mnist", "train", "--out", str(tmp_path / "run"), "--preset", "tiny", "--threads", "0"]) == 2
    assert "--threads must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
