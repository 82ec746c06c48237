"""MNIST readers: IDX files (plain and gzipped) written here, malformed files, the stratified split."""

import gzip
import struct

import numpy as np
import pytest
import torch

from fmblocks.data.mnist import Digits, load_idx, load_mnist, load_shipped, read_idx, stratified_split
from fmblocks.errors import DataError


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: 0x0000 0x08 rank, big-endian dimensions, then the bytes."""
    return struct.pack(f">HBB{array.ndim}I", 0, 0x08, array.ndim, *array.shape) + array.astype(np.uint8).tobytes()


def write_split(directory, images: np.ndarray, labels: np.ndarray, split: str, gz: bool = False) -> None:
    stem = "train" if split == "train" else "t10k"
    for name, array in ((f"{stem}-images-idx3-ubyte", images), (f"{stem}-labels-idx1-ubyte", labels)):
        data = idx_bytes(array)
        if gz:
            (directory / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)


def test_idx_round_trip(tmp_path) -> None:
    rng = np.random.default_rng(0)
    train_images, train_labels = rng.integers(0, 256, (6, 28, 28)), rng.integers(0, 10, 6)
    test_images, test_labels = rng.integers(0, 256, (3, 28, 28)), rng.integers(0, 10, 3)
    write_split(tmp_path, train_images, train_labels, "train")
    write_split(tmp_path, test_images, test_labels, "test", gz=True)
    train, test = load_mnist(tmp_path)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert np.array_equal(train.images.numpy(), train_images) and np.array_equal(train.labels.numpy(), train_labels)
    assert np.array_equal(test.images.numpy(), test_images) and np.array_equal(test.labels.numpy(), test_labels)
    assert read_idx(tmp_path / "train-labels-idx1-ubyte").shape == (6,)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00\x00\x09\x01\x00\x00\x00\x01\x05", "bad magic"),  # 0x09: not unsigned bytes
        (b"\x00\x00", "bad magic"),
        (b"\x00\x00\x08\x03\x00\x00\x00\x01", "truncated IDX header"),
        (struct.pack(">HBBI", 0, 8, 1, 4) + b"\x01\x02", "declares shape"),
        (struct.pack(">HBBI", 0, 8, 1, 1) + b"\x01\x02", "declares shape"),  # trailing bytes
    ],
)
def test_malformed_idx(tmp_path, data: bytes, message: str) -> None:
    path = tmp_path / "bad-idx"
    path.write_bytes(data)
    with pytest.raises(DataError, match=message):
        read_idx(path)


def test_malformed_splits(tmp_path) -> None:
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_idx(tmp_path, "train")
    write_split(tmp_path, np.zeros((2, 28, 27)), np.zeros(2), "train")
    with pytest.raises(DataError, match="28x28"):
        load_idx(tmp_path, "train")
    write_split(tmp_path, np.zeros((2, 28, 28)), np.zeros(3), "train")
    with pytest.raises(DataError, match="expected 2 labels"):
        load_idx(tmp_path, "train")
    write_split(tmp_path, np.zeros((1, 28, 28)), np.array([10]), "train")
    with pytest.raises(DataError, match="0..9"):
        load_idx(tmp_path, "train")
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(1)))
    with pytest.raises(DataError, match="cannot read"):
        load_idx(tmp_path, "test")


def test_shipped_digits_and_stratified_split() -> None:
    digits = load_shipped()
    assert digits.images.shape == (5000, 28, 28) and digits.images.dtype == torch.uint8
    assert torch.bincount(digits.labels).tolist() == [500] * 10
    train, test = load_mnist()
    assert len(train) == 4000 and len(test) == 1000
    assert torch.bincount(test.labels).tolist() == [100] * 10  # 20 % of every class
    assert torch.bincount(train.labels).tolist() == [400] * 10
    again_train, _ = load_mnist()
    assert torch.equal(again_train.images, train.images)  # seeded: the same split every time
    other_train, _ = load_mnist(seed=1)
    assert not torch.equal(other_train.images, train.images)


def test_split_of_a_small_set_is_disjoint_and_covers_all() -> None:
    labels = torch.tensor([0] * 5 + [1] * 10 + [2] * 3)
    images = torch.arange(len(labels), dtype=torch.uint8).view(-1, 1, 1).expand(-1, 28, 28).contiguous()
    train, test = stratified_split(Digits(images, labels), test_fraction=0.4, seed=0)
    assert torch.bincount(test.labels, minlength=3).tolist() == [2, 4, 1]  # round(0.4 * (5, 10, 3))
    ids = sorted(train.images[:, 0, 0].tolist() + test.images[:, 0, 0].tolist())
    assert ids == list(range(len(labels)))
    with pytest.raises(DataError, match="test_fraction"):
        stratified_split(Digits(images, labels), test_fraction=1.0)
