"""Class-conditioned autoregressive MNIST: a decoder writes a digit as 196 tokens of 2x2 binary patches.

Sequence layout (197 tokens; vocabulary 16 patch symbols + 10 class tokens = 26):

    position   0          1 .. 196
    token      <class c>  s_1 .. s_196   patch symbols of the binarised digit, raster order of 2x2 blocks
    id         16 + c     0 .. 15        symbol = 8a + 4b + 2c + d for the block [[a, b], [c, d]]

The decoder models p(s | c) = prod_t p(s_t | c, s_<t): it reads input_ids = sequence[:-1] (196 tokens)
and predicts targets = sequence[1:] (the 196 patch symbols), so the loss covers the patches only and the
class token is the conditioning prefix. Sampling starts from the class token alone and draws 196
symbols, with the class tokens removed from the candidates (a sample is always an image).

Runs are plain directories (see `train`): the decoder's trainer checkpoint, log.csv and loss.png at the
top, the ViT classifier used for class consistency under classifier/, and run.json naming the preset
and data. Presets are data (`RUN_PRESETS`): "default" is sized for `fmblocks demo` (10 minutes on two
CPU cores), "long" for more time or a GPU, "tiny" for tests.
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
from fmblocks.generation import generate
from fmblocks.models import ModelConfig, ModelOutput, build_model, preset
from fmblocks.tokenizers.image import BinaryPatchTokenizer
from fmblocks.training import DictDataset, TrainConfig, Trainer, load_checkpoint
from fmblocks.training.checkpoint import CHECKPOINT_DIR

TOKENIZER = BinaryPatchTokenizer(IMAGE_SIZE, 2)
N_SYMBOLS = TOKENIZER.vocab_size  # 16 patch symbols, ids 0..15
N_PATCHES = TOKENIZER.n_tokens  # 196 = 14 x 14
CLASS_OFFSET = N_SYMBOLS  # class c is token 16 + c
VOCAB_SIZE = N_SYMBOLS + N_CLASSES  # 26
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
        raise DataError(f"position 0 must hold a class token ({CLASS_OFFSET}..{VOCAB_SIZE - 1})")
    return TOKENIZER.decode(sequences[:, 1:]), labels


def lm_dataset(digits: Digits) -> DictDataset:
    """Next-token examples: input_ids = sequence[:-1], targets = sequence[1:] (the 196 patch symbols)."""
    sequences = encode_digits(digits.images, digits.labels)
    return DictDataset(input_ids=sequences[:, :-1], targets=sequences[:, 1:])


# ---- presets --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunPreset:
    """What a run trains: the decoder and its schedule, the ViT classifier and its schedule."""

    decoder: ModelConfig
    train: TrainConfig
    classifier: ModelConfig
    classifier_train: TrainConfig
    samples_per_class: int  # generated per class to measure class consistency


RUN_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        decoder=("gpt2-style", dict(d_model=32, n_layers=1, n_heads=2, d_ff=64)),
        train=dict(steps=20, batch_size=8, lr=3e-3, warmup_steps=2, eval_every=0, eval_batches=1),
        classifier=dict(d_model=16, n_layers=1, n_heads=2, d_ff=32),
        classifier_train=dict(steps=10, batch_size=8, lr=3e-3, warmup_steps=2, eval_every=0, eval_batches=1),
        samples_per_class=1,
    ),
    "default": dict(
        decoder=("gpt2-style", dict(d_model=128, n_layers=4, n_heads=4, d_ff=512)),
        train=dict(steps=600, batch_size=32, lr=3e-3, warmup_steps=50, eval_every=200, eval_batches=8,
                   checkpoint_every=200),
        classifier=dict(),
        classifier_train=dict(steps=600, batch_size=64, lr=2e-3, warmup_steps=30, eval_every=0, eval_batches=0),
        samples_per_class=30,
    ),
    "long": dict(
        decoder=("gpt2-style", dict(d_model=256, n_layers=8, n_heads=8, d_ff=1024, dropout=0.1)),
        train=dict(steps=8000, batch_size=64, lr=1e-3, warmup_steps=200, eval_every=500, eval_batches=0,
                   checkpoint_every=500),
        classifier=dict(d_model=128, n_layers=6, n_heads=4, d_ff=256),
        classifier_train=dict(steps=3000, batch_size=128, lr=1e-3, warmup_steps=100, eval_every=0, eval_batches=0),
        samples_per_class=100,
    ),
}


def run_preset(name: str, *, steps: int | None = None, seed: int = 0) -> RunPreset:
    """The run preset `name` ("tiny", "default", "long"); `steps` overrides the decoder's step count."""
    if name not in RUN_PRESETS:
        raise UnknownNameError(f"unknown mnist preset {name!r}; known: {', '.join(RUN_PRESETS)}")
    data = RUN_PRESETS[name]
    base, overrides = data["decoder"]
    decoder = preset(base, vocab_size=VOCAB_SIZE, max_len=SEQ_LEN, **overrides)
    train = TrainConfig(**{**data["train"], "seed": seed, **({"steps": steps} if steps is not None else {})})
    classifier = preset("vit-tiny", image_size=IMAGE_SIZE, channels=1, n_classes=N_CLASSES, **data["classifier"])
    classifier_train = TrainConfig(**{**data["classifier_train"], "seed": seed})
    return RunPreset(decoder, train, classifier, classifier_train, data["samples_per_class"])


# ---- training -------------------------------------------------------------------------------------------
def binary_images(images: torch.Tensor) -> torch.Tensor:
    """Digits (N, 28, 28) -> the classifier's input (N, 1, 28, 28) float in {0, 1} (binarised like the tokens)."""
    return TOKENIZER.decode(TOKENIZER.encode(images)).float().unsqueeze(1)  # (N, 28, 28) -> (N, 1, 28, 28)


def _fit(model: nn.Module, train_data: DictDataset, eval_data: DictDataset, config: TrainConfig,
         model_config: ModelConfig, out_dir: Path) -> None:
    """Train to config.steps, resuming from out_dir/checkpoint when an interrupted run left one."""
    trainer = Trainer(model, train_data, config=config, eval_data=eval_data, model_config=model_config, out_dir=out_dir)
    if (out_dir / CHECKPOINT_DIR).exists():
        trainer.resume()
    if trainer.step < config.steps:
        trainer.fit()


def train(out_dir: str | Path, *, preset_name: str = "default", data_dir: str | Path | None = None,
          steps: int | None = None, seed: int = 0, progress: bool = True) -> Path:
    """Train the decoder (out_dir/) and the ViT classifier (out_dir/classifier/); resumes; returns out_dir."""
    out_dir = Path(out_dir)
    run = run_preset(preset_name, steps=steps, seed=seed)
    train_digits, test_digits = load_mnist(data_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "run.json", {"preset": preset_name, "steps": run.train.steps, "seed": seed,
                                      "data_dir": None if data_dir is None else str(data_dir)}, fmt=RUN_FORMAT)
    started = time.perf_counter()
    train_config = TrainConfig.from_dict({**run.train.to_dict(), "progress": progress})
    _fit(build_model(run.decoder), lm_dataset(train_digits), lm_dataset(test_digits), train_config,
         run.decoder, out_dir)
    decoder_seconds = time.perf_counter() - started
    images = {name: binary_images(d.images) for name, d in (("train", train_digits), ("test", test_digits))}
    classifier_config = TrainConfig.from_dict({**run.classifier_train.to_dict(), "progress": progress})
    _fit(build_model(run.classifier), DictDataset(images=images["train"], labels=train_digits.labels),
         DictDataset(images=images["test"], labels=test_digits.labels), classifier_config, run.classifier,
         out_dir / CLASSIFIER_DIR)
    write_json(out_dir / "run.json", {**read_run(out_dir), "decoder_seconds": round(decoder_seconds, 1),
                                      "classifier_seconds": round(time.perf_counter() - started - decoder_seconds, 1)},
               fmt=RUN_FORMAT)
    return out_dir


def read_run(out_dir: str | Path) -> dict[str, Any]:
    """run.json of a run directory (preset, steps, seed, data_dir); DataError when out_dir holds no run."""
    path = Path(out_dir) / "run.json"
    if not path.is_file():
        raise DataError(f"{out_dir}: not an mnist run directory (no run.json); run `fmblocks mnist train --out {out_dir}` first")
    document = read_json(path, fmt=RUN_FORMAT)
    return {key: value for key, value in document.items() if key not in ("format", "version")}


def load_decoder(out_dir: str | Path) -> nn.Module:
    """The trained decoder of a run directory, in eval mode."""
    model, config, _ = load_checkpoint(out_dir)
    if config.arch != "decoder" or config.vocab_size != VOCAB_SIZE or config.max_len < SEQ_LEN:
        raise ConfigError(f"{out_dir}: the checkpoint is not an mnist decoder (vocabulary {VOCAB_SIZE}, context {SEQ_LEN})")
    return model


# ---- sampling ---------------------------------------------------------------------------------------------
class PatchSymbolsOnly(nn.Module):
    """The decoder with class tokens removed from its next-token logits, so samples are always images."""

    def __init__(self, decoder: nn.Module) -> None:
        super().__init__()
        self.decoder = decoder
        self.config = decoder.config

    def new_caches(self) -> list:
        return self.decoder.new_caches()

    def forward(self, input_ids: torch.Tensor, **kwargs: Any) -> ModelOutput:
        out = self.decoder(input_ids, **kwargs)
        out.logits[..., N_SYMBOLS:] = float("-inf")
        return out


def sample_digits(
    decoder: nn.Module,
    labels: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Draw one binary digit (28, 28) uint8 per requested class in `labels` (N,) -> (N, 28, 28)."""
    prompt = class_tokens(labels)[:, None]  # (N, 1)
    generator = torch.Generator(device=prompt.device).manual_seed(seed)
    sequences = generate(PatchSymbolsOnly(decoder), prompt, N_PATCHES, temperature=temperature, top_k=top_k,
                         top_p=top_p, generator=generator)
    return decode_sequences(sequences)[0]
