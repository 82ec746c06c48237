"""Class-conditioned autoregressive MNIST: a decoder writes a digit as 196 tokens of 2x2 binary patches.

Sequence layout (197 tokens; vocabulary 16 patch symbols + 10 class tokens + 1 "no class" token = 27):

    position   0          1 .. 196
    token      <class c>  s_1 .. s_196   patch symbols of the binarised digit, raster order of 2x2 blocks
    id         16 + c     0 .. 15        symbol = 8a + 4b + 2c + d for the block [[a, b], [c, d]]

The decoder models p(s | c) = prod_t p(s_t | c, s_<t): it reads input_ids = sequence[:-1] (196 tokens)
and predicts targets = sequence[1:] (the 196 patch symbols), so the loss covers the patches only and the
class token is the conditioning prefix. During training the class token is replaced by <no class>
(id 26) with probability `class_dropout`, so the same network also learns the unconditional p(s);
sampling can then use classifier-free guidance (Ho & Salimans 2022; see `mnist_sample`).

Runs are plain directories (see `train`): the decoder's trainer checkpoint, log.csv and loss.png at the
top, the ViT classifier used for class consistency under classifier/, and run.json naming the preset
and data. Presets are data (`RUN_PRESETS`): "default" is sized for `fmblocks demo` (about 6 of its 10
minutes on two CPU cores), "long" for more time (about 65 minutes of training on two cores) or a GPU,
"tiny" for tests.
Limits: 28x28 single-channel digits, classes 0..9; binarisation (pixel >= 128) drops grey levels.
"""

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fmblocks.data.mnist import IMAGE_SIZE, N_CLASSES, Digits, load_mnist
from fmblocks.errors import ConfigError, DataError, ShapeError, UnknownNameError
from fmblocks.files import read_json, write_json
from fmblocks.models import ModelConfig, build_model, preset
from fmblocks.tokenizers.image import BinaryPatchTokenizer
from fmblocks.training import DictDataset, TrainConfig, Trainer, load_checkpoint
from fmblocks.training.checkpoint import CHECKPOINT_DIR
from fmblocks.training.datasets import derived_seed

TOKENIZER = BinaryPatchTokenizer(IMAGE_SIZE, 2)
N_SYMBOLS = TOKENIZER.vocab_size  # 16 patch symbols, ids 0..15
N_PATCHES = TOKENIZER.n_tokens  # 196 = 14 x 14
CLASS_OFFSET = N_SYMBOLS  # class c is token 16 + c
NO_CLASS = N_SYMBOLS + N_CLASSES  # 26: the unconditional prefix
VOCAB_SIZE = NO_CLASS + 1  # 27
SEQ_LEN = 1 + N_PATCHES  # 197
RUN_FORMAT = "fmblocks-mnist-run"
CLASSIFIER_DIR = "classifier"


# ---- sequence layout ----------------------------------------------------------------------------------
def class_tokens(labels: torch.Tensor) -> torch.Tensor:
    """Class ids (N,) in 0..9 -> their conditioning tokens 16 + c (N,); DataError outside 0..9."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    if labels.numel() and (labels.min() < 0 or labels.max() >= N_CLASSES):
        raise DataError(f"classes must lie in 0..{N_CLASSES - 1}, got {labels.min().item()}..{labels.max().item()}")
    return labels + CLASS_OFFSET


def encode_digits(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Digits (N, 28, 28) with classes (N,) -> sequences (N, 197): [class token, 196 patch symbols]."""
    images = torch.as_tensor(images)
    if images.ndim != 3 or tuple(images.shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE):
        raise ShapeError(f"digit images must be (N, {IMAGE_SIZE}, {IMAGE_SIZE}), got {tuple(images.shape)}")
    if len(labels) != len(images):
        raise DataError(f"got {len(images)} images but {len(labels)} classes")
    return torch.cat([class_tokens(labels)[:, None], TOKENIZER.encode(images)], dim=1)  # (N, 1) + (N, 196)


def decode_sequences(sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences (N, 197) -> (binary images (N, 28, 28) uint8, classes (N,)); the inverse of encode_digits."""
    if sequences.ndim != 2 or sequences.shape[1] != SEQ_LEN:
        raise ShapeError(f"sequences must be (N, {SEQ_LEN}), got {tuple(sequences.shape)}")
    labels = sequences[:, 0] - CLASS_OFFSET
    if labels.numel() and (labels.min() < 0 or labels.max() >= N_CLASSES):
        raise DataError(f"position 0 must hold a class token ({CLASS_OFFSET}..{CLASS_OFFSET + N_CLASSES - 1})")
    return TOKENIZER.decode(sequences[:, 1:]), labels


class DigitSequences:
    """Next-token examples {"input_ids": sequence[:-1], "targets": sequence[1:]} of digits (N, 197).

    With `class_dropout` p > 0, example i of epoch e has its class token replaced by <no class> with
    probability p, drawn from a generator seeded by (seed, e, i): reproducible, new every epoch.
    """

    max_length = SEQ_LEN - 1

    def __init__(self, digits: Digits, *, class_dropout: float = 0.0, seed: int = 0) -> None:
        if not 0.0 <= class_dropout < 1.0:
            raise ConfigError(f"class_dropout must lie in [0, 1), got {class_dropout}")
        self.sequences = encode_digits(digits.images, digits.labels)
        if not len(self.sequences):
            raise DataError("no digits to train on")
        self.class_dropout, self.seed, self.epoch = class_dropout, seed, 0

    def __len__(self) -> int:
        return len(self.sequences)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        sequence = self.sequences[index]
        if self.class_dropout:
            generator = torch.Generator().manual_seed(derived_seed(self.seed, self.epoch, index))
            if torch.rand((), generator=generator) < self.class_dropout:
                sequence = torch.cat([sequence.new_tensor([NO_CLASS]), sequence[1:]])
        return {"input_ids": sequence[:-1], "targets": sequence[1:]}


# ---- presets --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunPreset:
    """What a run trains and how it samples: decoder, ViT classifier, their schedules, guidance."""

    decoder: ModelConfig
    train: TrainConfig
    class_dropout: float  # share of training sequences without their class (enables guidance)
    classifier: ModelConfig
    classifier_train: TrainConfig
    classifier_shifts: int  # shifted copies of each training digit the classifier also sees
    guidance: float  # default classifier-free guidance weight w for sampling (0 = plain conditional)
    top_p: float | None  # default nucleus for sampling (None = the full distribution)
    samples_per_class: int  # generated per class to measure class consistency


RUN_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        decoder=("llama-style", dict(d_model=32, n_layers=1, n_heads=2, n_kv_heads=2, d_ff=64)),
        train=dict(steps=20, batch_size=8, lr=3e-3, warmup_steps=2, eval_every=0, eval_batches=1),
        class_dropout=0.1,
        classifier=dict(d_model=16, n_layers=1, n_heads=2, d_ff=32),
        classifier_train=dict(steps=10, batch_size=8, lr=3e-3, warmup_steps=2, eval_every=0, eval_batches=1),
        classifier_shifts=0, guidance=1.0, top_p=0.9, samples_per_class=1,
    ),
    "default": dict(
        decoder=("llama-style", dict(d_model=128, n_layers=4, n_heads=4, n_kv_heads=4, d_ff=344)),
        train=dict(steps=700, batch_size=32, lr=3e-3, warmup_steps=50, eval_every=175, eval_batches=8,
                   checkpoint_every=175),
        class_dropout=0.1,
        classifier=dict(dropout=0.1),
        classifier_train=dict(steps=1600, batch_size=64, lr=1e-3, warmup_steps=50, weight_decay=0.05,
                              eval_every=0, eval_batches=0),
        classifier_shifts=4, guidance=1.0, top_p=0.9, samples_per_class=30,
    ),
    "long": dict(
        decoder=("llama-style", dict(d_model=192, n_layers=6, n_heads=6, n_kv_heads=3, d_ff=512, dropout=0.1)),
        train=dict(steps=2000, batch_size=32, lr=2e-3, warmup_steps=100, eval_every=250, eval_batches=8,
                   checkpoint_every=250),
        class_dropout=0.1,
        classifier=dict(d_model=96, n_layers=6, n_heads=4, d_ff=192, dropout=0.1),
        classifier_train=dict(steps=4000, batch_size=64, lr=1e-3, warmup_steps=100, weight_decay=0.05,
                              eval_every=0, eval_batches=0),
        classifier_shifts=8, guidance=1.0, top_p=0.9, samples_per_class=100,
    ),
}


def run_preset(name: str, *, steps: int | None = None, seed: int = 0) -> RunPreset:
    """The run preset `name` ("tiny", "default", "long"); `steps` overrides the decoder's step count."""
    if name not in RUN_PRESETS:
        raise UnknownNameError(f"unknown mnist preset {name!r}; known: {', '.join(RUN_PRESETS)}")
    data = RUN_PRESETS[name]
    base, overrides = data["decoder"]
    return RunPreset(
        decoder=preset(base, vocab_size=VOCAB_SIZE, max_len=SEQ_LEN, **overrides),
        train=TrainConfig(**{**data["train"], "seed": seed, **({"steps": steps} if steps is not None else {})}),
        class_dropout=data["class_dropout"],
        classifier=preset("vit-tiny", image_size=IMAGE_SIZE, channels=1, n_classes=N_CLASSES, **data["classifier"]),
        classifier_train=TrainConfig(**{**data["classifier_train"], "seed": seed}),
        classifier_shifts=data["classifier_shifts"], guidance=data["guidance"], top_p=data["top_p"],
        samples_per_class=data["samples_per_class"],
    )


# ---- training -------------------------------------------------------------------------------------------
def binary_images(images: torch.Tensor) -> torch.Tensor:
    """Digits (N, 28, 28) -> the classifier's input (N, 1, 28, 28) float in {0, 1} (binarised like the tokens)."""
    return TOKENIZER.decode(TOKENIZER.encode(images)).float().unsqueeze(1)  # (N, 28, 28) -> (N, 1, 28, 28)


def shifted_copies(images: torch.Tensor, labels: torch.Tensor, copies: int, *, max_shift: int = 2,
                   seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """The images (N, ..., H, W) plus `copies` versions each moved by a random (dy, dx) in [-max_shift, max_shift].

    Pixels move cyclically (torch.roll), harmless for digits with an empty border of >= max_shift.
    """
    generator = torch.Generator().manual_seed(seed)
    moved, span = [images], range(-max_shift, max_shift + 1)
    for _ in range(copies):
        shifts = torch.randint(-max_shift, max_shift + 1, (len(images), 2), generator=generator)  # (N, 2)
        copy = images.clone()
        for dy in span:
            for dx in span:
                chosen = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
                copy[chosen] = images[chosen].roll((dy, dx), dims=(-2, -1))
        moved.append(copy)
    return torch.cat(moved), labels.repeat(copies + 1)


def _fit(model_config: ModelConfig, train_data: Any, eval_data: Any, config: TrainConfig, out_dir: Path) -> float:
    """Build (seeded) and train to config.steps, resuming from out_dir/checkpoint if one exists; seconds spent."""
    started = time.perf_counter()
    torch.manual_seed(config.seed)  # the initial weights
    trainer = Trainer(build_model(model_config), train_data, config=config, eval_data=eval_data,
                      model_config=model_config, out_dir=out_dir)
    if (out_dir / CHECKPOINT_DIR).exists():
        trainer.resume()
    if trainer.step < config.steps:
        trainer.fit()
    return time.perf_counter() - started


def train(out_dir: str | Path, *, preset_name: str = "default", data_dir: str | Path | None = None,
          steps: int | None = None, seed: int = 0, progress: bool = True) -> Path:
    """Train the decoder (out_dir/) and the ViT classifier (out_dir/classifier/); resumes; returns out_dir.

    run.json records the preset, data and seed, and the seconds spent training (summed over resumptions).
    """
    out_dir = Path(out_dir)
    run = run_preset(preset_name, steps=steps, seed=seed)
    train_digits, test_digits = load_mnist(data_dir)
    previous = read_run(out_dir) if (out_dir / "run.json").is_file() else {}
    record = {"preset": preset_name, "steps": run.train.steps, "seed": seed,
              "data_dir": None if data_dir is None else str(data_dir)}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "run.json", {**previous, **record}, fmt=RUN_FORMAT)

    decoder_seconds = _fit(
        run.decoder, DigitSequences(train_digits, class_dropout=run.class_dropout, seed=seed),
        DigitSequences(test_digits), TrainConfig.from_dict({**run.train.to_dict(), "progress": progress}), out_dir)
    images, labels = shifted_copies(binary_images(train_digits.images), train_digits.labels, run.classifier_shifts,
                                    seed=seed)
    classifier_seconds = _fit(
        run.classifier, DictDataset(images=images, labels=labels),
        DictDataset(images=binary_images(test_digits.images), labels=test_digits.labels),
        TrainConfig.from_dict({**run.classifier_train.to_dict(), "progress": progress}), out_dir / CLASSIFIER_DIR)
    seconds = {"decoder_seconds": previous.get("decoder_seconds", 0.0) + decoder_seconds,
               "classifier_seconds": previous.get("classifier_seconds", 0.0) + classifier_seconds}
    write_json(out_dir / "run.json", {**record, **{k: round(v, 1) for k, v in seconds.items()}}, fmt=RUN_FORMAT)
    return out_dir


def read_run(out_dir: str | Path) -> dict[str, Any]:
    """run.json of a run directory (preset, steps, seed, data_dir, seconds); DataError when there is none."""
    path = Path(out_dir) / "run.json"
    if not path.is_file():
        raise DataError(f"{out_dir}: not an mnist run directory (no run.json); "
                        f"run `fmblocks mnist train --out {out_dir}` first")
    document = read_json(path, fmt=RUN_FORMAT)
    return {key: value for key, value in document.items() if key not in ("format", "version")}


def load_decoder(out_dir: str | Path) -> nn.Module:
    """The trained decoder of a run directory, in eval mode."""
    model, config, _ = load_checkpoint(out_dir)
    if config.arch != "decoder" or config.vocab_size != VOCAB_SIZE or config.max_len < SEQ_LEN:
        raise ConfigError(
            f"{out_dir}: the checkpoint is not an mnist decoder (vocabulary {VOCAB_SIZE}, context {SEQ_LEN})")
    return model


def load_classifier(out_dir: str | Path) -> nn.Module:
    """The ViT classifier of a run directory, in eval mode."""
    return load_checkpoint(Path(out_dir) / CLASSIFIER_DIR)[0]
