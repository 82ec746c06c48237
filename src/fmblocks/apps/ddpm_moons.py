"""A class-conditioned DDPM on 2-D moons, sampled with classifier-free guidance (see fmblocks.diffusion).

Data: sklearn.datasets.make_moons points (x, y) with Gaussian noise (default sd 0.05); the class is
which moon (0 = upper, 1 = lower). Points are used as they are (they lie in [-1.2, 2.2] x [-0.7, 1.2]).

Denoiser eps_theta(x_t, t, c), built from fmblocks blocks:

    cond = MLP(sinusoidal_table[t]) + class_embedding[c]        (D,); class row 2 is the null class
    h    = W_in x_t                                             (B, 2) -> (B, D)
    h    = h + MLP(norm(h) + W_c cond)                          one residual block, repeated n_blocks times
    eps  = W_out norm(h)                                        (B, D) -> (B, 2)

Quality (`sample_quality`), measured in data units against a fresh reference set of moons:
  distance  mean distance from a sample to the nearest reference point of its requested class (precision)
  coverage  mean distance from a reference point to the nearest sample of its class (recall: it grows
            when samples crowd into part of their moon, as strong guidance makes them do)
  accuracy  fraction of samples whose nearest reference point (either class) has the requested class

Runs are directories: the trainer's checkpoint/ (config.json = MoonsConfig, weights), log.csv,
loss.png, run.json (preset, steps, seed, data noise); `write_samples` adds samples.png (data, then one
panel per guidance weight) and metrics.json. Presets are data (`RUN_PRESETS`): "default" trains in
about a minute on two CPU cores, "tiny" in seconds (tests). Limits: two classes, 2-D points only.
"""

import dataclasses
import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fmblocks.blocks.feedforward import MLP
from fmblocks.blocks.norms import build_norm
from fmblocks.blocks.positional import sinusoidal_table
from fmblocks.diffusion import DDPM, NULL_LABEL, NoiseSchedule
from fmblocks.configs import check_fields, config_from_dict
from fmblocks.errors import ConfigError, DataError, UnknownNameError
from fmblocks.files import read_json, write_bytes, write_json
from fmblocks.training import DictDataset, TrainConfig, Trainer, load_weights
from fmblocks.training.checkpoint import CHECKPOINT_DIR, CONFIG_FILE, resolve_checkpoint

N_CLASSES = 2
MOON_NAMES = ("upper", "lower")  # class 0, class 1
CONFIG_FORMAT, RUN_FORMAT = "fmblocks-ddpm-moons-config", "fmblocks-ddpm-moons-run"
CLASS_COLOURS = ("tab:blue", "tab:orange")


# ---- data -----------------------------------------------------------------------------------------------
def moons(n: int, *, noise: float = 0.05, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n two-moons points (n, 2) float32 and their moon (n,) long (0 = upper, 1 = lower), shuffled by seed."""
    from sklearn.datasets import make_moons  # imported on use: scikit-learn takes a second to import

    if n < 2:
        raise DataError(f"need at least 2 points (one per moon), got n={n}")
    if noise < 0:
        raise DataError(f"moons noise must be >= 0, got {noise}")
    points, labels = make_moons(n_samples=n, noise=noise, random_state=seed)
    return torch.as_tensor(points, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.long)


def check_classes(labels: torch.Tensor) -> torch.Tensor:
    """labels as a long tensor, or DataError unless each is 0, 1 or NULL_LABEL."""
    labels = torch.as_tensor(labels, dtype=torch.long)
    bad = (labels != NULL_LABEL) & ((labels < 0) | (labels >= N_CLASSES))
    if bool(bad.any()):
        raise DataError(f"unknown class {labels[bad][0].item()}: moons classes are 0 (upper), 1 (lower) "
                        f"or {NULL_LABEL} (no class)")
    return labels


# ---- model ----------------------------------------------------------------------------------------------
@dataclass
class MoonsConfig:
    """The denoiser's sizes and parts, and the diffusion it is trained for."""

    d_model: int = 128
    d_hidden: int = 256
    n_blocks: int = 3
    norm: str = "layer"
    activation: str = "silu"
    schedule: str = "linear"
    timesteps: int = 100
    p_uncond: float = 0.1

    def __post_init__(self) -> None:
        check_fields(self)
        for name in ("d_model", "d_hidden", "n_blocks"):
            if getattr(self, name) < 1:
                raise ConfigError(f"MoonsConfig.{name} must be a positive integer, got {getattr(self, name)!r}")
        if not 0.0 <= self.p_uncond < 1.0:
            raise ConfigError(f"MoonsConfig.p_uncond must lie in [0, 1), got {self.p_uncond!r}")
        if self.d_model % 2:
            raise ConfigError(f"MoonsConfig.d_model must be even (sinusoidal time embedding), got {self.d_model}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MoonsConfig":
        return config_from_dict(cls, {key: value for key, value in data.items() if key not in ("format", "version")})

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict(), fmt=CONFIG_FORMAT)

    @classmethod
    def load(cls, path: str | Path) -> "MoonsConfig":
        return cls.from_dict(read_json(path, fmt=CONFIG_FORMAT))


class ResidualBlock(nn.Module):
    """h + MLP(norm(h) + W_c cond): (B, D) with cond (B, D) -> (B, D)."""

    def __init__(self, d_model: int, d_hidden: int, *, norm: str, activation: str) -> None:
        super().__init__()
        self.norm = build_norm(norm, d_model)
        self.cond = nn.Linear(d_model, d_model)
        self.mlp = MLP(d_model, d_hidden, activation=activation)

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return h + self.mlp(self.norm(h) + self.cond(cond))


class MoonsDenoiser(nn.Module):
    """eps_theta(x_t (B, 2), t (B,) in 1..T, labels (B,) in {0, 1, NULL_LABEL}) -> eps (B, 2)."""

    def __init__(self, config: MoonsConfig) -> None:
        super().__init__()
        d = config.d_model
        self.register_buffer("time_table", sinusoidal_table(config.timesteps + 1, d), persistent=False)
        self.time_mlp = MLP(d, config.d_hidden, activation=config.activation)
        self.class_embedding = nn.Embedding(N_CLASSES + 1, d)  # row N_CLASSES = the null class
        self.input = nn.Linear(2, d)
        self.blocks = nn.ModuleList(
            ResidualBlock(d, config.d_hidden, norm=config.norm, activation=config.activation)
            for _ in range(config.n_blocks)
        )
        self.norm = build_norm(config.norm, d)
        self.output = nn.Linear(d, 2)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        labels = check_classes(labels)
        rows = torch.where(labels == NULL_LABEL, N_CLASSES, labels)  # (B,) embedding rows
        cond = self.time_mlp(self.time_table[t]) + self.class_embedding(rows)  # (B, D)
        h = self.input(x_t)
        for block in self.blocks:
            h = block(h, cond)
        return self.output(self.norm(h))


def build_ddpm(config: MoonsConfig) -> DDPM:
    """The untrained DDPM of `config`: MoonsDenoiser + the named schedule + label dropout p_uncond."""
    schedule = NoiseSchedule.named(config.schedule, config.timesteps)
    return DDPM(MoonsDenoiser(config), schedule, p_uncond=config.p_uncond)


# ---- runs -----------------------------------------------------------------------------------------------
RUN_PRESETS: dict[str, dict[str, Any]] = {
    "tiny": dict(
        model=dict(d_model=64, d_hidden=128, n_blocks=2, timesteps=50),
        train=dict(steps=500, batch_size=128, lr=3e-3, warmup_steps=20, weight_decay=0.0, eval_every=0,
                   eval_batches=4),
        n_points=4000,
    ),
    "default": dict(
        model=dict(),
        train=dict(steps=3000, batch_size=256, lr=2e-3, warmup_steps=100, weight_decay=0.0, eval_every=1000,
                   eval_batches=8, checkpoint_every=1000),
        n_points=20000,
    ),
}


def train(out_dir: str | Path, *, preset_name: str = "default", steps: int | None = None, seed: int = 0,
          noise: float = 0.05, progress: bool = True, **model_overrides: Any) -> Path:
    """Train a run in out_dir (resuming an interrupted one); model_overrides replace MoonsConfig fields."""
    if preset_name not in RUN_PRESETS:
        raise UnknownNameError(f"unknown ddpm preset {preset_name!r}; known: {', '.join(RUN_PRESETS)}")
    run = RUN_PRESETS[preset_name]
    config = MoonsConfig(**{**run["model"], **model_overrides})
    train_config = TrainConfig(**{**run["train"], "seed": seed, "progress": progress,
                                  **({"steps": steps} if steps is not None else {})})
    points, labels = moons(run["n_points"], noise=noise, seed=seed)
    eval_points, eval_labels = moons(2048, noise=noise, seed=seed + 1)
    torch.manual_seed(seed)  # the initial weights
    trainer = Trainer(build_ddpm(config), DictDataset(x0=points, labels=labels), config=train_config,
                      eval_data=DictDataset(x0=eval_points, labels=eval_labels), model_config=config, out_dir=out_dir)
    out_dir = Path(out_dir)
    if (out_dir / CHECKPOINT_DIR).exists():
        trainer.resume()  # before run.json is rewritten: a conflicting checkpoint leaves the run as it was
    record = {"preset": preset_name, "steps": train_config.steps, "seed": seed, "noise": noise}
    write_json(out_dir / "run.json", record, fmt=RUN_FORMAT)
    started = time.perf_counter()
    if trainer.step < train_config.steps:
        trainer.fit()
    write_json(out_dir / "run.json", {**record, "train_seconds": round(time.perf_counter() - started, 1)},
               fmt=RUN_FORMAT)
    return out_dir


def read_run(out_dir: str | Path) -> dict[str, Any]:
    """run.json of a run directory; DataError when out_dir holds no run."""
    path = Path(out_dir) / "run.json"
    if not path.is_file():
        raise DataError(f"{out_dir}: not a ddpm run directory (no run.json); run `fmblocks ddpm train --out {out_dir}` first")
    return {k: v for k, v in read_json(path, fmt=RUN_FORMAT).items() if k not in ("format", "version")}


def load_ddpm(out_dir: str | Path) -> DDPM:
    """The trained DDPM of a run (or checkpoint) directory, in eval mode on the CPU."""
    directory = resolve_checkpoint(out_dir)
    ddpm = build_ddpm(MoonsConfig.load(directory / CONFIG_FILE))
    load_weights(ddpm, directory)
    return ddpm.eval()


# ---- sampling and quality -------------------------------------------------------------------------------
def sample_moons(ddpm: DDPM, n_per_class: int, *, guidance: float = 0.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """n_per_class samples of each moon: points (2n, 2) and their requested classes (2n,) = [0]*n + [1]*n."""
    if n_per_class < 1:
        raise DataError(f"n_per_class must be >= 1, got {n_per_class}")
    labels = torch.arange(N_CLASSES).repeat_interleave(n_per_class)  # (2n,)
    generator = torch.Generator(device=ddpm.schedule.betas.device).manual_seed(seed)
    return ddpm.sample(labels, (2,), guidance=guidance, generator=generator).cpu(), labels


def sample_quality(samples: torch.Tensor, labels: torch.Tensor, reference: torch.Tensor,
                   reference_labels: torch.Tensor) -> dict[str, Any]:
    """distance (overall and per class), coverage and accuracy of samples (N, 2) against reference points (M, 2)."""
    labels = check_classes(labels)
    distances = torch.cdist(samples.double(), reference.double())  # (N, M)
    same_class = labels[:, None] == reference_labels[None, :]  # (N, M)
    between = distances.masked_fill(~same_class, float("inf"))  # (N, M), inf across classes
    to_class = between.min(dim=1).values  # (N,) sample -> nearest reference point of its class
    to_sample = between.min(dim=0).values  # (M,) reference point -> nearest sample of its class
    nearest_label = reference_labels[distances.argmin(dim=1)]  # (N,)
    return {
        "distance": to_class.mean().item(),
        "distance_per_class": [to_class[labels == c].mean().item() for c in range(N_CLASSES)],
        "coverage": to_sample[to_sample.isfinite()].mean().item(),
        "accuracy": (nearest_label == labels).double().mean().item(),
    }


def plot_samples(data: tuple[torch.Tensor, torch.Tensor], samples: dict[float, tuple[torch.Tensor, torch.Tensor]],
                 path: str | Path, *, quality: dict[float, dict[str, Any]] | None = None) -> Path:
    """PNG: the data, then one panel per guidance weight; colour = (requested) class, data grey behind samples."""
    from matplotlib.figure import Figure  # Agg canvas; no pyplot global state

    panels = [("data", *data, None)] + [(f"guidance w = {w:g}", *s, (quality or {}).get(w)) for w, s in samples.items()]
    figure = Figure(figsize=(3.3 * len(panels), 3.4), dpi=100)
    axes = figure.subplots(1, len(panels), sharex=True, sharey=True, squeeze=False)[0]
    for ax, (title, points, labels, metrics) in zip(axes, panels):
        if metrics is not None:
            ax.scatter(*data[0].T.numpy(), s=2, c="0.85", linewidths=0)
            title += (f"\ndistance {metrics['distance']:.3f}, coverage {metrics['coverage']:.3f}\n"
                      f"accuracy {metrics['accuracy']:.3f}")
        for c in range(N_CLASSES):
            ax.scatter(*points[labels == c].T.numpy(), s=3, c=CLASS_COLOURS[c], linewidths=0,
                       label=f"class {c} ({MOON_NAMES[c]})")
        ax.set_title(title, fontsize=9)
        ax.set_aspect("equal")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower left", fontsize=7, markerscale=3)
    axes[0].set_xlim(-1.6, 2.6)
    axes[0].set_ylim(-1.1, 1.6)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_bytes(path, buffer.getvalue())
    return Path(path)


def write_samples(out_dir: str | Path, *, guidance: tuple[float, ...] = (0.0, 1.0, 3.0), n_per_class: int = 500,
                  seed: int = 0) -> dict[str, Any]:
    """Sample a trained run at each guidance weight: samples.png and metrics.json in out_dir; returns the metrics."""
    out_dir = Path(out_dir)
    noise = read_run(out_dir)["noise"]
    ddpm = load_ddpm(out_dir)
    reference = moons(4000, noise=noise, seed=seed + 2)
    samples = {float(w): sample_moons(ddpm, n_per_class, guidance=w, seed=seed) for w in guidance}
    quality = {w: sample_quality(*s, *reference) for w, s in samples.items()}
    plot_samples(moons(2 * n_per_class, noise=noise, seed=seed + 3), samples, out_dir / "samples.png", quality=quality)
    metrics = {"n_per_class": n_per_class, "seed": seed, "guidance": [{"w": w, **q} for w, q in quality.items()]}
    write_json(out_dir / "metrics.json", metrics, fmt="fmblocks-ddpm-moons-metrics")
    return metrics
